/**
 * `mp.Listener`: accepts connections on a Unix socket or a TCP port
 * (Python's `multiprocessing.connection.Listener`).
 *
 * Each incoming connection is authenticated on its own as soon as it
 * arrives (with an authkey), not one at a time inside `accept()` as in
 * Python: a client that stalls mid-handshake holds only its own connection
 * (until the handshake deadline) and never the others. `accept()` hands out
 * the outcomes in the order they finish: a Connection, or the
 * AuthenticationError of a client that failed.
 *
 * Bounds, since anyone who can reach the address can connect: at most
 * `backlog` connections wait un-accepted (in their handshake, or done with
 * it), beyond the `accept()`s pending. One more makes room by closing the
 * oldest connection still in its handshake (it had the longest to prove
 * itself: connections that never answer cannot keep a real client out
 * until their deadline), or is closed itself when every waiting one is done
 * with its handshake.
 * (Node accepts every connection the kernel queues, so the OS backlog alone
 * bounds nothing; Python's kernel would leave the extra ones unanswered in
 * its queue instead.) A waiting connection is not read: its socket is
 * paused from the start (`pauseOnConnect`) and read only for the handshake,
 * then again once `accept()` hands it out.
 */
import type { Server, Socket } from 'node:net';
import { renameSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { describe } from '../describe.js';
import { StateError, ValueError } from '../errors.js';
import { addressError, privateSocketPath, socketOptions, type Address } from './address.js';
import { authenticateClient, authkeyBytes } from './auth.js';
import { Connection } from './connection.js';
import { SocketTransport } from './socket-transport.js';

const require = createRequire(import.meta.url);
const net = (): typeof import('node:net') => require('node:net');

/** How long a connecting client has to complete the handshake, by default. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
const DEFAULT_BACKLOG = 128;

export interface ListenerOptions {
  /** `[host, port]` (port 0: any free port) or a Unix socket path; default: a Unix socket in a private directory. */
  address?: Address;
  /** Clients must prove they know it (a mutual HMAC-SHA256 challenge); default: no authentication, as Python. */
  authkey?: string | Uint8Array;
  /**
   * How many connections may wait un-accepted (in their handshake, or done
   * with it), beyond the `accept()`s pending (default 128; also the OS
   * queue's length). One more closes the oldest still in its handshake, or
   * is closed as it arrives when all of them are done with it.
   */
  backlog?: number;
  /** Milliseconds a client has to complete the authkey handshake (default 10,000). */
  handshakeTimeout?: number;
}

/** Options of `accept()`. */
export interface AcceptOptions {
  /** Gives up waiting when aborted: the promise rejects with `signal.reason`, and no longer keeps the process alive. */
  signal?: AbortSignal;
}

type Outcome = { connection: Connection; transport: SocketTransport } | { error: Error };

interface Waiter {
  resolve(c: Connection): void;
  reject(e: Error): void;
}

/** A Unix socket file as bound, to tell it from another file put at its path since. */
interface BoundFile {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

/**
 * A bound listener. Made by `await mp.Listener(options)`.
 * @example
 * ```ts
 * const listener = await mp.Listener({ address: ['127.0.0.1', 0], authkey: 'secret' });
 * console.log(listener.address);          // ['127.0.0.1', 40123]: the real port
 * const conn = await listener.accept();   // rejects with AuthenticationError for a wrong key
 * console.log(await conn.recv());
 * listener.close();
 * ```
 */
export class ConnectionListener {
  readonly #server: Server;
  readonly #address: Address;
  readonly #key: Buffer | null;
  readonly #handshakeTimeout: number;
  readonly #removeDir: (() => void) | null;
  readonly #backlog: number;
  readonly #bound: BoundFile | null;
  /** Connections (or failures) that finished the handshake and wait for `accept()`. */
  readonly #ready: Outcome[] = [];
  readonly #waiters: Waiter[] = [];
  /** Connections still in their handshake. */
  readonly #handshaking = new Set<SocketTransport>();
  #lastAccepted: Address | null = null;
  #closed = false;

  /** @internal Use `await mp.Listener(options)`. */
  constructor(
    server: Server,
    address: Address,
    key: Buffer | null,
    options: { handshakeTimeout: number; backlog: number; removeDir: (() => void) | null; bound: BoundFile | null },
  ) {
    this.#server = server;
    this.#address = address;
    this.#key = key;
    this.#handshakeTimeout = options.handshakeTimeout;
    this.#removeDir = options.removeDir;
    this.#backlog = options.backlog;
    this.#bound = options.bound;
    server.unref();
    server.on('connection', (socket) => this.#arrived(socket));
  }

  /** Where clients connect: the path, or `[host, port]` with the real port (also after port 0). */
  get address(): Address {
    return this.#address;
  }

  /** The address of the last accepted client (`[host, port]` over TCP, `''` over a Unix socket), or null. */
  get lastAccepted(): Address | null {
    return this.#lastAccepted;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The next connected (and authenticated) client. While it waits, the
   * process stays alive (as with a listening Node server); an idle listener
   * does not keep it alive. To give up waiting (a timeout, a race lost),
   * pass a `signal` (`AbortSignal.timeout(ms)`) or `close()` the listener:
   * a promise merely dropped still waits, and keeps the process alive.
   * @throws AuthenticationError for a client that failed the handshake, EOFError for one that hung up during it; the listener goes on, call `accept()` again.
   * @throws StateError once the listener is closed.
   * @throws `signal.reason` when `signal` aborts first.
   */
  accept(options: AcceptOptions = {}): Promise<Connection> {
    if (options === null || typeof options !== 'object') {
      return Promise.reject(new ValueError(`accept() takes an options object { signal? }, not ${describe(options)}`));
    }
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      return Promise.reject(new ValueError(`accept() signal must be an AbortSignal, not ${describe(signal)}`));
    }
    if (this.#closed) return Promise.reject(new StateError('accept() on a closed listener'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const outcome = this.#ready.shift();
    if (outcome) return this.#settle(outcome);
    return new Promise<Connection>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(waiter);
        if (i < 0) return;
        this.#waiters.splice(i, 1);
        if (this.#waiters.length === 0) this.#server.unref();
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        resolve: (c) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(c);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      // Someone waits for a client: keep the process alive meanwhile.
      this.#server.ref();
    });
  }

  /**
   * Stops listening (a Unix socket's file is removed, if it is still the
   * one this listener made), closes connections not yet accepted; pending
   * `accept()`s reject.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Node removes the socket file by its path as it closes the server:
    // another file that took the path since is moved out of the way meanwhile.
    const aside = this.#setAsideImpostor();
    this.#server.close(() => this.#removeDir?.());
    if (aside) restore(aside, this.#bound!.path);
    for (const transport of this.#handshaking) transport.destroy();
    this.#handshaking.clear();
    for (const outcome of this.#ready.splice(0)) if ('connection' in outcome) outcome.connection.close();
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new StateError('the listener was closed while accept() waited'));
    this.#server.unref();
  }

  /** Moves a file that is not our socket away from our path; where it went, or null. */
  #setAsideImpostor(): string | null {
    const bound = this.#bound;
    if (!bound) return null;
    let now;
    try {
      now = statSync(bound.path);
    } catch {
      return null; // nothing there: Node's unlink finds nothing
    }
    if (now.dev === bound.dev && now.ino === bound.ino) return null;
    const aside = join(dirname(bound.path), `.${basename(bound.path)}.${process.pid}.${Math.random().toString(36).slice(2)}.aside`);
    try {
      renameSync(bound.path, aside);
      return aside;
    } catch {
      // Not ours to move (another user's, in a sticky directory): nor is it ours to remove, and Node's unlink fails alike.
      return null;
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  #arrived(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    // Un-accepted connections beyond the backlog (net of the accept()s waiting): the oldest still in its handshake goes, else this one.
    if (this.#ready.length + this.#handshaking.size - this.#waiters.length >= this.#backlog) {
      const oldest = this.#handshaking.values().next();
      if (oldest.done) {
        socket.destroy();
        return;
      }
      this.#handshaking.delete(oldest.value);
      oldest.value.destroy();
    }
    const transport = new SocketTransport(socket, { suspended: true });
    const peer = transport.remoteAddress;
    if (!this.#key) {
      this.#finished({ connection: new Connection(transport), transport }, peer);
      return;
    }
    this.#handshaking.add(transport);
    transport.suspended = false;
    authenticateClient(transport, this.#key, this.#handshakeTimeout).then(
      () => {
        // Not there any more: closed with the listener, or made room for a newer one.
        if (!this.#handshaking.delete(transport)) return;
        transport.suspended = true;
        this.#finished({ connection: new Connection(transport), transport }, peer);
      },
      (error: Error) => {
        if (this.#handshaking.delete(transport)) this.#finished({ error }, peer);
      },
    );
  }

  #finished(outcome: Outcome, peer: Address): void {
    if ('connection' in outcome) this.#lastAccepted = peer;
    const waiter = this.#waiters.shift();
    if (!waiter) {
      this.#ready.push(outcome);
      return;
    }
    if (this.#waiters.length === 0) this.#server.unref();
    if ('connection' in outcome) waiter.resolve(handOut(outcome));
    else waiter.reject(outcome.error);
  }

  #settle(outcome: Outcome): Promise<Connection> {
    return 'connection' in outcome ? Promise.resolve(handOut(outcome)) : Promise.reject(outcome.error);
  }
}

/** An accepted connection, read from now on. */
function handOut(outcome: { connection: Connection; transport: SocketTransport }): Connection {
  outcome.transport.suspended = false;
  return outcome.connection;
}

function restore(aside: string, path: string): void {
  try {
    renameSync(aside, path);
  } catch {
    // Gone meanwhile (its owner removed it): nothing to put back.
  }
}

/**
 * Binds a listener (Python's `Listener(address, authkey=…, backlog=…)`).
 * An address in use rejects (`AddressInUseError`); a Unix path that exists is
 * never replaced or removed.
 */
export async function listen(options: ListenerOptions = {}): Promise<ConnectionListener> {
  if (options === null || typeof options !== 'object') {
    throw new ValueError(`mp.Listener takes an options object { address?, authkey?, backlog? }, not ${describe(options)}`);
  }
  const key = authkeyBytes(options.authkey, 'Listener');
  const backlog = options.backlog ?? DEFAULT_BACKLOG;
  if (!Number.isSafeInteger(backlog) || backlog < 1) {
    throw new ValueError(`Listener backlog must be an integer >= 1, not ${describe(options.backlog)}`);
  }
  const handshakeTimeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
  if (typeof handshakeTimeout !== 'number' || !(handshakeTimeout > 0)) {
    throw new ValueError(`Listener handshakeTimeout must be a number of milliseconds > 0, not ${describe(options.handshakeTimeout)}`);
  }
  const own = options.address === undefined ? privateSocketPath() : null;
  const address: Address = own ? own.path : options.address!;
  const where = socketOptions(address, 'Listener');
  // Connections are not read until their handshake or `accept()` (see the module comment).
  const server = net().createServer({ pauseOnConnect: true });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ ...where, backlog }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    own?.remove();
    throw addressError(err as NodeJS.ErrnoException, address, 'listen');
  }
  // A later error (rare: the fd failing) must not crash the process as an unhandled 'error'.
  server.on('error', () => {});
  const bound = server.address();
  const real: Address = typeof bound === 'object' && bound !== null ? [bound.address, bound.port] : address;
  return new ConnectionListener(server, real, key, { handshakeTimeout, backlog, removeDir: own?.remove ?? null, bound: boundFile(address, own) });
}

/** The socket file a user-given Unix path names now (just bound: ours); null for TCP, an abstract or a private address. */
function boundFile(address: Address, own: unknown): BoundFile | null {
  if (typeof address !== 'string' || own || address.startsWith('\0')) return null;
  try {
    const { dev, ino } = statSync(address);
    return { path: address, dev, ino };
  } catch {
    return null;
  }
}
