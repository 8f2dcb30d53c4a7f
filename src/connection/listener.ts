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
 */
import type { Server, Socket } from 'node:net';
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
  /** How many connections the OS queues before we take them (default 128). */
  backlog?: number;
  /** Milliseconds a client has to complete the authkey handshake (default 10,000). */
  handshakeTimeout?: number;
}

type Outcome = { connection: Connection } | { error: Error };

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
  /** Connections (or failures) that finished the handshake and wait for `accept()`. */
  readonly #ready: Outcome[] = [];
  readonly #waiters: Array<{ resolve: (c: Connection) => void; reject: (e: Error) => void }> = [];
  /** Connections still in their handshake. */
  readonly #handshaking = new Set<SocketTransport>();
  #lastAccepted: Address | null = null;
  #closed = false;

  /** @internal Use `await mp.Listener(options)`. */
  constructor(server: Server, address: Address, key: Buffer | null, handshakeTimeout: number, removeDir: (() => void) | null) {
    this.#server = server;
    this.#address = address;
    this.#key = key;
    this.#handshakeTimeout = handshakeTimeout;
    this.#removeDir = removeDir;
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
   * The next connected (and authenticated) client.
   * @throws AuthenticationError for a client that failed the handshake; the listener goes on, call `accept()` again.
   * @throws StateError once the listener is closed.
   */
  accept(): Promise<Connection> {
    if (this.#closed) return Promise.reject(new StateError('accept() on a closed listener'));
    const outcome = this.#ready.shift();
    if (outcome) return this.#settle(outcome);
    return new Promise<Connection>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      // Someone waits for a client: keep the process alive meanwhile.
      this.#server.ref();
    });
  }

  /** Stops listening (a Unix socket's file is removed), closes connections not yet accepted; pending `accept()`s reject. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close(() => this.#removeDir?.());
    for (const transport of this.#handshaking) transport.destroy();
    this.#handshaking.clear();
    for (const outcome of this.#ready.splice(0)) if ('connection' in outcome) outcome.connection.close();
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new StateError('the listener was closed while accept() waited'));
    this.#server.unref();
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
    const transport = new SocketTransport(socket);
    const peer = transport.remoteAddress;
    if (!this.#key) {
      this.#finished({ connection: new Connection(transport) }, peer);
      return;
    }
    this.#handshaking.add(transport);
    authenticateClient(transport, this.#key, this.#handshakeTimeout).then(
      () => {
        this.#handshaking.delete(transport);
        if (this.#closed) transport.close();
        else this.#finished({ connection: new Connection(transport) }, peer);
      },
      (error: Error) => {
        this.#handshaking.delete(transport);
        if (!this.#closed) this.#finished({ error }, peer);
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
    if ('connection' in outcome) waiter.resolve(outcome.connection);
    else waiter.reject(outcome.error);
  }

  #settle(outcome: Outcome): Promise<Connection> {
    return 'connection' in outcome ? Promise.resolve(outcome.connection) : Promise.reject(outcome.error);
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
  const server = net().createServer();
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
  return new ConnectionListener(server, real, key, handshakeTimeout, own?.remove ?? null);
}
