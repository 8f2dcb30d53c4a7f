/**
 * A process's connection to a manager's server, shared by all its proxies
 * of that manager (one per address, per isolate).
 *
 * Requests are pipelined: each gets a number, goes into the outgoing batch
 * at once (one frame per turn of the event loop, however many calls were
 * made in it), and its promise settles when the answer with its number
 * comes, in whatever order answers come. Messages leave in the order they
 * were made, which the reference counting relies on (object-table.ts: a
 * handle's INCREF always precedes its sender's DECREF).
 *
 * The event loop: like a socket Connection, an idle one does not keep the
 * process alive; one with calls in flight does. When the server goes away
 * (it shut down, died, or the connection broke), every pending call and
 * every later one rejects at once with an `EOFError` saying so.
 */
import { describe } from '../describe.js';
import * as errors from '../errors.js';
import { BUILTIN_ERRORS, EOFError, SerializationError, StateError, TimeoutError } from '../errors.js';
import { showAddress, type Address } from '../connection/address.js';
import { connect } from '../connection/client.js';
import { DEFAULT_HANDSHAKE_TIMEOUT } from '../connection/listener.js';
import type { Connection } from '../connection/connection.js';
import type { SocketTransport } from '../connection/socket-transport.js';
import { EOF } from '../connection/transport.js';
import { whenReady } from '../connection/ready.js';
import { cloneError } from '../serialize/encode.js';
import {
  DEFAULT_KEEPALIVE,
  DEFAULT_MAX_FRAME,
  Op,
  PROTOCOL_VERSION,
  ProtocolError,
  Reply,
  FrameWriter,
  isId,
  isWireError,
  readMessages,
  type Message,
  type WireError,
} from './protocol.js';
import { decodeResult, encodeArgs, type ProxyDescription } from './values.js';

/** Builds a proxy for a description a result carried (set by proxy.ts, which imports this module). */
type ProxyMaker = (client: ManagerClient, description: ProxyDescription, serverId: string) => unknown;
let makeProxy: ProxyMaker | null = null;

/** @internal */
export function setProxyMaker(maker: ProxyMaker): void {
  makeProxy = maker;
}

/** Connection settings a manager may choose. */
export interface ClientSettings {
  readonly maxFrame?: number | undefined;
  /** Milliseconds to connect, prove the key and get the server's greeting; default 10,000. */
  readonly handshakeTimeout?: number | undefined;
  /** Milliseconds after which a TCP server that stopped answering is given up (keepalive.ts); default 30,000. */
  readonly keepalive?: number | undefined;
}

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
}

const POOL = Symbol.for('multiprocessing-ts.manager-clients');
/**
 * Clients by address, key and settings, per isolate (on globalThis: two
 * copies of the package share connections). A client with a wrong key
 * never displaces one that works; two managers of one address with
 * different settings (a smaller maxMessageBytes) get a client each.
 */
const pool: Map<string, ManagerClient> = ((globalThis as { [POOL]?: Map<string, ManagerClient> })[POOL] ??= new Map());

let flushingAtExit = false;

/** On 'exit', sends what every client has written (the INCREF of a handle sent just before `process.exit()`). */
function flushAtExit(): void {
  if (flushingAtExit) return;
  flushingAtExit = true;
  process.once('exit', () => {
    for (const client of pool.values()) client.flushNow();
  });
}

function poolKey(address: Address, key: Uint8Array, maxFrame: number, handshakeTimeout: number, keepalive: number): string {
  return `${showAddress(address)} ${Buffer.from(key).toString('hex')} ${maxFrame} ${handshakeTimeout} ${keepalive}`;
}

export class ManagerClient {
  readonly address: Address;
  readonly key: Uint8Array;
  /** The largest frame this side reads, and sends until the greeting tells the server's (then the smaller of both). */
  #maxFrame: number;
  readonly #handshakeTimeout: number;
  readonly #keepalive: number;
  #connection: Connection | null = null;
  #transport: SocketTransport | null = null;
  #opening: Promise<void> | null = null;
  #serverId: string | null = null;
  #failure: Error | null = null;
  readonly #pending = new Map<number, Pending>();
  readonly #writer = new FrameWriter();
  /** Each message in the writer, in order: its request number and what it sends (null: not a request). */
  #written: ({ readonly req: number; readonly what: string } | null)[] = [];
  #flushQueued = false;
  #nextReq = 1;
  #stopReading: (() => void) | null = null;
  /** Its name in the pool. */
  readonly #name: string;

  private constructor(address: Address, key: Uint8Array, settings: ClientSettings) {
    this.address = address;
    this.key = key;
    this.#maxFrame = settings.maxFrame ?? DEFAULT_MAX_FRAME;
    this.#handshakeTimeout = settings.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
    this.#keepalive = settings.keepalive ?? DEFAULT_KEEPALIVE;
    this.#name = poolKey(address, key, this.#maxFrame, this.#handshakeTimeout, this.#keepalive);
  }

  /**
   * This isolate's client of the manager at `address` with `key`, made on
   * first use. A client that failed is replaced (its proxies keep failing;
   * new ones use the new client).
   */
  static for(address: Address, key: Uint8Array, settings: ClientSettings = {}): ManagerClient {
    const name = poolKey(
      address,
      key,
      settings.maxFrame ?? DEFAULT_MAX_FRAME,
      settings.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
      settings.keepalive ?? DEFAULT_KEEPALIVE,
    );
    const known = pool.get(name);
    // A server that went away while nobody was waiting: notice it now (its EOF is buffered).
    if (known && known.#transport && !known.#failure) known.#drain();
    if (known && !known.#failure) return known;
    const client = new ManagerClient(address, key, settings);
    pool.set(name, client);
    return client;
  }

  /**
   * A live client of `address` in this isolate, if any, so a revived proxy
   * uses the key that worked: one that has connected, else one not failed
   * (still connecting: a proxy that arrived in `args` with its key, while
   * this one came through a Queue before that handshake was done).
   */
  static existing(address: Address): ManagerClient | null {
    const prefix = `${showAddress(address)} `;
    let connecting: ManagerClient | null = null;
    for (const [name, client] of pool) {
      if (!name.startsWith(prefix) || client.#failure) continue;
      if (client.#serverId !== null) return client;
      connecting ??= client;
    }
    return connecting;
  }

  /** The id the server gave in its greeting; null until connected. */
  get serverId(): string | null {
    return this.#serverId;
  }

  /** Why this client no longer works, or null. */
  get failure(): Error | null {
    return this.#failure;
  }

  /** Connects (once) and waits for the server's greeting; resolves to its id. */
  async open(): Promise<string> {
    this.#opening ??= this.#connect();
    await this.#opening;
    return this.#serverId!;
  }

  /** Calls `method` of object `id`; resolves to its result (proxies in it revived). */
  call(id: number, serverId: string | null, method: string, args: unknown[], what: string): Promise<unknown> {
    try {
      const { value, refs } = encodeArgs(args, this, `${what} args`);
      return this.#request((req) => [Op.CALL, req, id, method, value, refs], serverId, value, `${what} args`);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Makes an object of `typeid` in the server; resolves to the description of its proxy (a reference counted for this client). */
  create(typeid: string, args: unknown[]): Promise<ProxyDescription> {
    try {
      const { value, refs } = encodeArgs(args, this, `${typeid}() args`);
      return this.#request((req) => [Op.CREATE, req, typeid, value, refs], null, value, `${typeid}() args`) as Promise<ProxyDescription>;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Asks the server to shut down; resolves once it said it will. */
  shutdownServer(): Promise<void> {
    return this.#request((req) => [Op.SHUTDOWN, req], null, null, 'shutdown') as Promise<void>;
  }

  /** The server's counts (objects, tickets, connections, refused). */
  info(): Promise<Record<string, number>> {
    return this.#request((req) => [Op.INFO, req], null, null, 'info') as Promise<Record<string, number>>;
  }

  /** A proxy of object `id` was collected: its reference goes. */
  decref(id: number, serverId: string): void {
    this.#post([Op.DECREF, id, 1], serverId);
  }

  /** A handle of `id` leaves this process under `ticket` (before anything this process sends later). */
  incref(id: number, ticket: string, serverId: string): void {
    this.#post([Op.INCREF, id, ticket], serverId);
    // At once, not at the next microtask: the process may exit right after
    // sending the handle (`q.put(proxy); process.exit()`), and a handle whose
    // INCREF never left names a reference the server never counted.
    this.#flush();
    flushAtExit();
  }

  /** Sends what is written now (the process is exiting). @internal */
  flushNow(): void {
    this.#flush();
  }

  /**
   * A handle this process sent under `ticket` will never be claimed (its
   * transfer failed, or its receiver ended): the server may drop the
   * ticket's reference (object-table.ts says when a late claim still counts).
   */
  unticket(id: number, ticket: string, serverId: string): void {
    this.#post([Op.UNTICKET, id, ticket], serverId);
    flushAtExit();
  }

  /** A handle under `ticket` arrived here: its reference becomes this client's. */
  claim(id: number, ticket: string, serverId: string): void {
    this.#post([Op.CLAIM, id, ticket], serverId);
  }

  /**
   * Ends this client for good: pending and later calls reject with
   * `error`. Its proxies fail from then on; the next use of this address
   * makes a new client.
   */
  fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#end();
  }

  /** The manager shut its server down: from now on calls reject with `error`, whatever failed before. */
  shutDown(error: Error): void {
    this.#failure = error;
    this.#end();
  }

  #end(): void {
    const error = this.#failure!;
    if (pool.get(this.#name) === this) pool.delete(this.#name);
    this.#stopReading?.();
    this.#stopReading = null;
    this.#connection?.close();
    this.#writer.take(Number.MAX_SAFE_INTEGER);
    this.#written = [];
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
  }

  #connect(): Promise<void> {
    return (async () => {
      // One bound for all of it: a server that accepts and never greets (or a
      // SYN into a black hole) must not leave the first call waiting forever.
      const limit = this.#handshakeTimeout;
      const deadline = Date.now() + limit;
      let connection: Connection;
      try {
        connection = await beforeDeadline(connect(this.address, { authkey: this.key, handshakeTimeout: limit }), limit, (late) => late.close(), () =>
          this.#timeoutError(limit, 'connect and prove the key'),
        );
      } catch (err) {
        this.fail(err as Error);
        throw err;
      }
      if (this.#failure) {
        connection.close();
        throw this.#failure;
      }
      this.#connection = connection;
      const transport = connection.transportForWait() as SocketTransport;
      // This side reads up to its own cap, whatever the greeting says (the LIMIT sent below).
      const readCap = this.#maxFrame;
      transport.maxFrame = readCap;
      // Bounded sending too: a call written to a server that vanished is never acknowledged.
      transport.keepAlive(this.#keepalive, true);
      this.#transport = transport;
      while (this.#serverId === null) {
        if (this.#failure) throw this.#failure;
        if (!transport.ready() && !(await whenReady(transport, deadline - Date.now()))) {
          this.fail(this.#timeoutError(limit, 'greet'));
          throw this.#failure!;
        }
        this.#drain();
      }
      if (this.#failure) throw this.#failure;
      // First, the largest frame this side reads: the server's answers stay under it.
      const capMessage = new FrameWriter();
      capMessage.write([Op.LIMIT, readCap], 64);
      for (const frame of capMessage.take(64)) transport.send(frame).catch((err) => this.fail(this.#goneError(err as Error)));
      // What was written before the greeting goes now. (A message for a proxy of an earlier server at
      // this address names an id this server never gave: servers start their ids at random.)
      this.#flush();
      this.#read();
    })();
  }

  #timeoutError(limit: number, what: string): TimeoutError {
    return new TimeoutError(
      `the manager at ${showAddress(this.address)} did not ${what} within ${limit} ms (handshakeTimeout); ` +
        `is a multiprocessing-ts manager serving there, and reachable?`,
    );
  }

  #request(build: (req: number) => Message, serverId: string | null, value: unknown, what: string): Promise<unknown> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (serverId !== null && this.#serverId !== null && serverId !== this.#serverId) return Promise.reject(this.#staleError());
    const req = this.#nextReq++;
    try {
      this.#writer.write(build(req), this.#maxFrame - 4);
      this.#written.push({ req, what });
    } catch (err) {
      return Promise.reject(
        err instanceof RangeError
          ? this.#tooLarge(what)
          : (err as Error)?.name === 'DataCloneError'
            ? cloneError(value, what, err as Error)
            : new SerializationError(`${what} cannot be sent: ${String((err as Error)?.message ?? err)}`),
      );
    }
    const promise = new Promise<unknown>((resolve, reject) => this.#pending.set(req, { resolve, reject }));
    this.#scheduleFlush();
    this.#read();
    return promise;
  }

  #tooLarge(what: string): SerializationError {
    return new SerializationError(
      `${what} are too large for the connection's frame limit (${this.#maxFrame} bytes); send less at once, or raise maxMessageBytes on both sides`,
    );
  }

  #post(message: Message, serverId: string): void {
    if (this.#failure) return;
    if (this.#serverId !== null && serverId !== this.#serverId) return;
    this.#writer.write(message, this.#maxFrame - 4);
    this.#written.push(null);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (!this.#transport) void this.open().catch(() => {});
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /** Sends what was written, in frames no larger than the limit (once connected). */
  #flush(): void {
    this.#flushQueued = false;
    const transport = this.#transport;
    if (!transport || this.#failure || this.#serverId === null || this.#writer.length === 0) return;
    this.#written = [];
    for (const frame of this.#writer.take(this.#maxFrame)) {
      transport.send(frame).catch((err) => this.fail(this.#goneError(err as Error)));
    }
  }

  /** Reads answers while any are awaited (which keeps the process alive meanwhile). */
  #read(): void {
    const transport = this.#transport;
    if (!transport || this.#failure || this.#serverId === null) return;
    this.#drain();
    if (this.#pending.size > 0 && !this.#stopReading && !this.#failure) {
      this.#stopReading = transport.onReadable(() => this.#drain());
    }
  }

  #drain(): void {
    const transport = this.#transport!;
    while (!this.#failure) {
      let frame: Uint8Array | typeof EOF | null;
      try {
        frame = transport.take();
      } catch (err) {
        this.fail(this.#goneError(err as Error));
        return;
      }
      if (frame === null) break;
      if (frame === EOF) {
        this.fail(this.#goneError(null));
        return;
      }
      try {
        for (const message of readMessages(frame)) this.#handle(message);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.fail(new errors.ProcessError(`the manager at ${showAddress(this.address)} sent ${err.message}; is it a multiprocessing-ts manager?`));
        return;
      }
    }
    if (this.#pending.size === 0 && this.#stopReading) {
      this.#stopReading();
      this.#stopReading = null;
    }
  }

  #handle(m: unknown[]): void {
    switch (m[0]) {
      case Reply.HELLO: {
        const [, serverId, version] = m;
        if (typeof serverId !== 'string') throw new ProtocolError('a malformed greeting');
        if (version !== PROTOCOL_VERSION) {
          this.fail(
            new errors.ProcessError(
              `the manager at ${showAddress(this.address)} speaks protocol version ${describe(version)}, this process ${PROTOCOL_VERSION}: ` +
                `use the same multiprocessing-ts version on both sides`,
            ),
          );
          return;
        }
        this.#serverId ??= serverId;
        // A call larger than the server reads would close the connection every proxy shares: refuse it here,
        // and fail those made before the greeting (checked against this side's cap only) instead of sending them.
        if (isId(m[3]) && m[3] < this.#maxFrame) {
          this.#maxFrame = m[3];
          const written = this.#written;
          const dropped = new Set(this.#writer.dropLarger(this.#maxFrame - 4));
          this.#written = written.filter((_, i) => !dropped.has(i));
          for (const i of dropped) {
            const request = written[i];
            if (request) this.#settle(request.req, undefined, this.#tooLarge(request.what));
          }
        }
        return;
      }
      case Reply.OK: {
        const [, req, value, proxies] = m;
        if (!isId(req) || typeof proxies !== 'boolean') throw new ProtocolError('a malformed answer');
        let result = value;
        if (proxies) {
          const serverId = this.#serverId!;
          result = decodeResult(value, (d) => {
            if (!isDescription(d)) throw new ProtocolError('a malformed proxy in an answer');
            return makeProxy!(this, d, serverId);
          });
        }
        this.#settle(req, result, null);
        return;
      }
      case Reply.ERR: {
        const [, req, wire] = m;
        if (!isId(req) || !isWireError(wire)) throw new ProtocolError('a malformed error');
        this.#settle(req, undefined, remoteError(wire));
        return;
      }
      default:
        throw new ProtocolError(`an unknown message (${describe(m[0])})`);
    }
  }

  #settle(req: number, value: unknown, error: Error | null): void {
    const pending = this.#pending.get(req);
    if (!pending) return;
    this.#pending.delete(req);
    if (error) pending.reject(error);
    else pending.resolve(value);
  }

  #goneError(cause: Error | null): EOFError {
    return new EOFError(
      `the manager's server at ${showAddress(this.address)} closed the connection (it was shut down, or its process died)` +
        (cause ? `: ${cause.message}` : ''),
      cause ? { cause } : undefined,
    );
  }

  #staleError(): StateError {
    return new StateError(
      `this proxy's manager is gone: another server (restarted?) now listens at ${showAddress(this.address)}, ` +
        `and it does not hold this proxy's object`,
    );
  }
}

function isDescription(d: unknown): d is ProxyDescription {
  if (typeof d !== 'object' || d === null) return false;
  const x = d as Record<string, unknown>;
  return isId(x['id']) && typeof x['typeid'] === 'string' && typeof x['proxytype'] === 'string' &&
    Array.isArray(x['exposed']) && (x['exposed'] as unknown[]).every((n) => typeof n === 'string');
}

/**
 * An error from the server as one of the same name here: this package's
 * classes and JavaScript's own keep their class; any other name (a user's
 * error class) is a `RemoteError` carrying that name. The server's stack
 * is in `.remoteStack`.
 */
export function remoteError(wire: WireError): Error {
  const ours = (errors as Record<string, unknown>)[wire.name];
  let error: Error;
  if (typeof ours === 'function' && (ours === errors.ProcessError || ours.prototype instanceof errors.ProcessError)) {
    error = new (ours as new (message: string) => Error)(wire.message);
  } else if (Object.hasOwn(BUILTIN_ERRORS, wire.name)) {
    error = new BUILTIN_ERRORS[wire.name]!(wire.message);
  } else {
    error = new errors.RemoteError(wire.message);
    error.name = wire.name;
  }
  Object.defineProperty(error, 'remoteStack', { value: wire.stack, enumerable: false, writable: true, configurable: true });
  return error;
}

/**
 * `promise`, or a rejection with `timedOut()` once `ms` pass first; what
 * it resolves to later is handed to `late` (to close it).
 */
function beforeDeadline<T>(promise: Promise<T>, ms: number, late: (value: T) => void, timedOut: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let over = false;
    const timer = setTimeout(() => {
      over = true;
      reject(timedOut());
    }, ms);
    // The connection under way keeps the process alive while it is needed; the deadline alone does not.
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        if (over) late(value);
        else resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        if (!over) reject(err);
      },
    );
  });
}
