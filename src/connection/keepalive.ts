/**
 * Noticing a TCP peer that vanished from the network (powered off,
 * unplugged, a NAT that forgot the connection): it sends no FIN and no
 * reset, so without probes a connection to it waits forever, and calls
 * pending on it with it.
 *
 * Node's `setKeepAlive(true, idle)` sets when the first probe goes; how
 * often later ones go, how many may go unanswered, and how long sent data
 * may go unacknowledged are left to the system (Linux: 75 s × 9 probes, and
 * some 15 minutes of retries). The native addon sets those too
 * (native/src/net.cc).
 *
 * The bound on unacknowledged data (TCP_USER_TIMEOUT) is for the side
 * that waits for answers only: Linux (since 5.11) also ends a connection
 * whose data could not go for that long because the peer's window stayed
 * closed, that is, a live peer that merely did not read. A server must not
 * drop a client that is slow to read its answers (its references and
 * locks would go); a client whose requests the server has not taken for
 * that long has a server that does not serve it.
 */
import type { Socket } from 'node:net';
import { native } from '../native/addon.js';

/** Unanswered probes that end a connection. */
const PROBES = 3;

/**
 * Makes a TCP `socket` fail (an 'error', then EOF for its readers) once its
 * peer has not answered for about `deadAfterMs`: probes start after half of
 * that idle, go every sixth of it, and three unanswered end it. With
 * `boundSending`, data unacknowledged (or held back by a closed window) for
 * `deadAfterMs` ends it too. Whole seconds, at least 1. Nothing for a Unix
 * socket (its peer cannot vanish without the kernel knowing).
 * @returns whether the interval and count (and the bound on sending) were
 *   set (false without the native addon: only the idle time is).
 */
export function keepAlive(socket: Socket, deadAfterMs: number, boundSending: boolean): boolean {
  if (socket.remoteFamily === undefined || socket.destroyed) return false;
  const idleSeconds = Math.max(1, Math.round(deadAfterMs / 2000));
  socket.setKeepAlive(true, idleSeconds * 1000);
  const addon = native();
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof addon?.tuneTcpKeepalive !== 'function' || typeof fd !== 'number' || fd < 0) return false;
  const intervalSeconds = Math.max(1, Math.round(deadAfterMs / 6000));
  // 0 leaves the system's behaviour.
  const userTimeout = boundSending ? Math.max(1000, Math.round(deadAfterMs)) : 0;
  try {
    return addon.tuneTcpKeepalive(fd, intervalSeconds, PROBES, userTimeout);
  } catch {
    return false;
  }
}
