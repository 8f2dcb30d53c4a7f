/**
 * `mp.Client`: connects to a Listener, ours or Python's (Python's
 * `multiprocessing.connection.Client`).
 */
import { createRequire } from 'node:module';
import { describe } from '../describe.js';
import { ValueError } from '../errors.js';
import { addressError, socketOptions, type Address } from './address.js';
import { authenticateListener, authkeyBytes } from './auth.js';
import { Connection } from './connection.js';
import { DEFAULT_HANDSHAKE_TIMEOUT } from './listener.js';
import { SocketTransport } from './socket-transport.js';

const require = createRequire(import.meta.url);
const net = (): typeof import('node:net') => require('node:net');

export interface ClientOptions {
  /** The listener's authkey (a string or Uint8Array); both sides prove they know it. */
  authkey?: string | Uint8Array;
  /** Milliseconds the listener has to accept the connection, and again to complete the authkey handshake (default 10,000). */
  handshakeTimeout?: number;
}

/**
 * Connects to `address` (`[host, port]` or a Unix socket path) and, with an
 * authkey, authenticates both ways before anything else is read.
 * @example
 * ```ts
 * const conn = await mp.Client(['127.0.0.1', 6000], { authkey: 'secret' });
 * await conn.sendBytes(new TextEncoder().encode('hello'));
 * ```
 * @throws AuthenticationError when the listener's key differs (or it speaks the legacy MD5 handshake).
 * @throws FileNotFoundError / ProcessError (code ECONNREFUSED…) when nothing listens there.
 */
export async function connect(address: Address, options: ClientOptions = {}): Promise<Connection> {
  const where = socketOptions(address, 'Client');
  if (options === null || typeof options !== 'object') {
    throw new ValueError(`mp.Client takes (address, { authkey? }), not an options ${describe(options)}`);
  }
  const key = authkeyBytes(options.authkey, 'Client');
  const handshakeTimeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
  if (typeof handshakeTimeout !== 'number' || !(handshakeTimeout > 0)) {
    throw new ValueError(`Client handshakeTimeout must be a number of milliseconds > 0, not ${describe(options.handshakeTimeout)}`);
  }
  const socket = net().connect(where);
  // A SYN into a black hole (a host that is off) is retried for minutes by the system.
  const timer = setTimeout(() => {
    const err: NodeJS.ErrnoException = new Error(`no answer within ${handshakeTimeout} ms (handshakeTimeout); is the host up and reachable?`);
    err.code = 'ETIMEDOUT';
    socket.destroy(err);
  }, handshakeTimeout);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    socket.destroy();
    throw addressError(err as NodeJS.ErrnoException, address, 'connect');
  } finally {
    clearTimeout(timer);
  }
  const transport = new SocketTransport(socket);
  if (key) await authenticateListener(transport, key, handshakeTimeout);
  return new Connection(transport);
}
