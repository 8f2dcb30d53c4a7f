/**
 * The manager's server: objects in one process, served to clients over a
 * Listener (a Unix socket in a private directory, or TCP).
 *
 * One event loop serves every client. Each connection (`Session`) reads
 * frames as they arrive and runs each request at once; a request that
 * waits (a `get` on an empty queue, an `acquire` of a held lock) is a
 * promise, answered whenever it settles, so nothing a client does blocks
 * another call or another client. Answers are batched per connection (one
 * frame per turn of the event loop).
 *
 * Guards, since a client is only known to have the key: the handshake comes
 * first (Listener); frames are capped (`maxFrame`) and a frame begun must
 * go on arriving, no pause longer than `readTimeout`; a frame that does
 * not parse, or a message of the wrong shape, closes that connection only;
 * nothing received is evaluated; only exposed methods are called, found
 * among an object's data properties (never a getter, never Object's own).
 */
import { randomHex } from '../builtins.js';
import { describe } from '../describe.js';
import { AuthenticationError, RemoteError, StateError, ValueError } from '../errors.js';
import type { Address } from '../connection/address.js';
import type { Connection } from '../connection/connection.js';
import { listen, type ConnectionListener } from '../connection/listener.js';
import type { SocketTransport } from '../connection/socket-transport.js';
import { EOF } from '../connection/transport.js';
import { cloneError } from '../serialize/encode.js';
import { MARKER } from '../serialize/shared.js';
import { Entry, ObjectTable, Ref, type Holder, type TypeInfo } from './object-table.js';
import {
  DEFAULT_KEEPALIVE,
  DEFAULT_MAX_FRAME,
  MIN_MAX_FRAME,
  Op,
  PROTOCOL_VERSION,
  ProtocolError,
  Reply,
  FrameWriter,
  isId,
  readMessages,
  toWireError,
  type Message,
  type WireError,
} from './protocol.js';
import { decodeArgs, encodeResult, type ProxyDescription } from './values.js';
import { DEFAULT_MAX_ARRAY_BYTES, isManaged, withLimits, type Caller, type CallerState, type ServerLimits } from './managed/base.js';
import { callFactory, methodOf, publicMethods, type Registration } from './typeids.js';

/**
 * Answer bytes handed to a connection's socket and not yet written, above
 * which the server stops reading that connection's requests until they are
 * (a client that pipelines without reading its answers is slowed down, not
 * fed by the server's memory); reading resumes below half of it.
 */
const UNSENT_HIGH_WATER = 16 * 1024 * 1024;

/** How long a frame may take to arrive whole, once it began, by default. */
export const DEFAULT_READ_TIMEOUT = 30_000;

/** A typeid as the server serves it. */
export interface ServedType extends TypeInfo {
  readonly factory: Function | null;
}

/** What the server serves, from a manager class's registrations. */
export function servedTypes(registrations: Iterable<Registration>): Map<string, ServedType> {
  const types = new Map<string, ServedType>();
  for (const r of registrations) {
    types.set(r.typeid, { typeid: r.typeid, factory: r.factory, exposed: r.exposed, methodToTypeid: r.methodToTypeid, proxytype: r.proxytype });
  }
  return types;
}

/** Options of a server. */
export interface ServerOptions {
  /** Where to listen: `[host, port]` or a Unix socket path; default a Unix socket in a private directory. */
  readonly address?: Address | undefined;
  readonly authkey: Uint8Array;
  readonly types: Map<string, ServedType>;
  /** The largest frame accepted (and sent); default 64 MiB. */
  readonly maxFrame?: number | undefined;
  /** Milliseconds a frame begun may go without a byte arriving; default 30,000. */
  readonly readTimeout?: number | undefined;
  /** Milliseconds a client has for the authkey handshake; default 10,000. */
  readonly handshakeTimeout?: number | undefined;
  /** The largest manager `Array`, in bytes of its elements; default 64 MiB. */
  readonly maxArrayBytes?: number | undefined;
  /** Milliseconds after which a TCP client that stopped answering is dropped (its references and locks released); default 30,000. */
  readonly keepalive?: number | undefined;
}

/**
 * A manager's server. Made by `manager.getServer()` or `mp.serveManager()`
 * (not with `new`), or run in a process of its own by `manager.start()`.
 * @example
 * ```ts
 * const server = new MyManager({ address: ['0.0.0.0', 50000], authkey: 'secret' }).getServer();
 * await server.listen();
 * console.log('serving at', server.address);
 * await server.serveForever();            // until server.shutdown() or a client's shutdown request
 * ```
 */
export class ManagerServer {
  /** Tells a restarted server at the same address from this one. */
  readonly id = randomHex(12);
  readonly #options: ServerOptions;
  readonly #maxFrame: number;
  readonly #readTimeout: number;
  readonly #limits: ServerLimits;
  readonly #keepalive: number;
  readonly #table = new ObjectTable();
  readonly #sessions = new Set<Session>();
  #listener: ConnectionListener | null = null;
  #listening: Promise<void> | null = null;
  #closed = false;
  #serving = false;
  #refused = 0;
  readonly #stopped: Promise<void>;
  #stop!: () => void;

  /** @internal Use `manager.getServer()` or `mp.serveManager()`. */
  constructor(options: ServerOptions) {
    this.#options = options;
    this.#maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    this.#readTimeout = options.readTimeout ?? DEFAULT_READ_TIMEOUT;
    this.#limits = { maxArrayBytes: options.maxArrayBytes ?? DEFAULT_MAX_ARRAY_BYTES };
    this.#keepalive = options.keepalive ?? DEFAULT_KEEPALIVE;
    this.#stopped = new Promise((resolve) => (this.#stop = resolve));
  }

  /** Where clients connect (the real port after port 0); before `listen()`, the address asked for (or null). */
  get address(): Address | null {
    return this.#listener?.address ?? this.#options.address ?? null;
  }

  /** Settles when the server has shut down. */
  get stopped(): Promise<void> {
    return this.#stopped;
  }

  /** Whether `shutdown()` ran (or a client asked for it). */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Binds the address. Idempotent.
   * @throws AddressInUseError when the address is taken; ValueError for a bad address.
   */
  listen(): Promise<void> {
    this.#listening ??= (async () => {
      if (this.#closed) throw new StateError('the server was shut down');
      this.#listener = await listen({
        ...(this.#options.address === undefined ? {} : { address: this.#options.address }),
        authkey: this.#options.authkey,
        ...(this.#options.handshakeTimeout === undefined ? {} : { handshakeTimeout: this.#options.handshakeTimeout }),
      });
      if (this.#closed) this.#listener.close();
    })();
    return this.#listening;
  }

  /**
   * Serves clients until `shutdown()` (or a client's shutdown request);
   * resolves then. Listens first if `listen()` was not called.
   */
  async serveForever(): Promise<void> {
    if (this.#serving) return this.#stopped;
    this.#serving = true;
    await this.listen();
    const listener = this.#listener!;
    while (!this.#closed) {
      let connection: Connection;
      try {
        connection = await listener.accept();
      } catch (err) {
        if (this.#closed) break;
        // A client with a wrong key (or none) was refused; the others are served.
        if (err instanceof AuthenticationError) this.#refused++;
        continue;
      }
      if (this.#closed) {
        connection.close();
        break;
      }
      const session = new Session(this, connection);
      this.#sessions.add(session);
      session.start();
    }
    await this.#stopped;
  }

  /** Stops listening (a Unix socket's file is removed), ends every connection and drops every object. */
  shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener?.close();
    for (const session of [...this.#sessions]) session.close();
    this.#table.clear();
    this.#stop();
  }

  /**
   * Counts for tests and debugging: objects with counted references,
   * handles in flight (unclaimed tickets), tickets waiting for a late
   * message (object-table.ts), connections, refused clients.
   */
  info(): { objects: number; tickets: number; waiting: number; connections: number; refused: number } {
    return { ...this.#table.info(), connections: this.#sessions.size, refused: this.#refused };
  }

  /** @internal */
  get table(): ObjectTable {
    return this.#table;
  }
  /** @internal */
  get types(): Map<string, ServedType> {
    return this.#options.types;
  }
  /** @internal */
  get maxFrame(): number {
    return this.#maxFrame;
  }
  /** @internal */
  get keepalive(): number {
    return this.#keepalive;
  }
  /** @internal */
  get limits(): ServerLimits {
    return this.#limits;
  }
  /** @internal */
  get readTimeout(): number {
    return this.#readTimeout;
  }
  /** @internal */
  ended(session: Session): void {
    this.#sessions.delete(session);
  }
}

/** One client connection: a Caller for the objects, a Holder of references for the table. */
class Session implements Caller, Holder {
  closed = false;
  readonly owned = new Map<Entry, number>();
  readonly #server: ManagerServer;
  readonly #connection: Connection;
  readonly #transport: SocketTransport;
  /** Objects keeping state for this client (waits, a held lock), with how many. */
  readonly #tracked = new Map<CallerState, number>();
  readonly #writer = new FrameWriter();
  #flushQueued = false;
  #stall: NodeJS.Timeout | undefined;
  /** Answer bytes given to the socket and not yet written (backpressure). */
  #unsent = 0;
  /** Reading stopped for backpressure; it resumes once answers are written. */
  #paused = false;
  #stopReading: (() => void) | null = null;
  /**
   * The messages of the frame being handled and the next one's place: a
   * frame of small calls can ask for many large answers, so backpressure
   * may stop between two of its messages, not only between frames.
   */
  #messages: unknown[][] = [];
  #next = 0;
  /** The largest frame sent to this client: the server's cap, or the client's if smaller (LIMIT). */
  #answerCap: number;

  constructor(server: ManagerServer, connection: Connection) {
    this.#server = server;
    this.#connection = connection;
    this.#transport = connection.transportForWait() as SocketTransport;
    this.#answerCap = server.maxFrame;
  }

  start(): void {
    this.#transport.maxFrame = this.#server.maxFrame;
    // A client machine that vanished (powered off) sends no FIN: without probes its locks stay held.
    // Probes only: a client slow to read its answers is alive (keepalive.ts).
    this.#transport.keepAlive(this.#server.keepalive, false);
    this.#reply([Reply.HELLO, this.#server.id, PROTOCOL_VERSION, this.#server.maxFrame]);
    this.#stopReading = this.#transport.onReadable(() => this.#drain());
    this.#drain();
  }

  track(object: CallerState): void {
    this.#tracked.set(object, (this.#tracked.get(object) ?? 0) + 1);
  }

  untrack(object: CallerState): void {
    const n = this.#tracked.get(object) ?? 0;
    if (n <= 1) this.#tracked.delete(object);
    else this.#tracked.set(object, n - 1);
  }

  /** Ends the connection: its references go, its waits are dropped, what it held is released. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#stall);
    this.#stopReading?.();
    this.#connection.close();
    this.#server.table.release(this);
    const tracked = [...this.#tracked.keys()];
    this.#tracked.clear();
    for (const object of tracked) object.callerGone(this);
    this.#server.ended(this);
  }

  #drain(): void {
    while (!this.closed) {
      // Until the client reads its answers, its requests wait in its socket
      // (which then pauses); answers built but not yet flushed count too.
      if (this.#unsent + this.#writer.length > UNSENT_HIGH_WATER) {
        this.#paused = true;
        clearTimeout(this.#stall);
        this.#stall = undefined;
        return;
      }
      if (this.#next < this.#messages.length) {
        const message = this.#messages[this.#next++]!;
        try {
          this.#handle(message);
        } catch (err) {
          // Anything else thrown is this request's failure (or, not a request, this session's): never the server's.
          if (err instanceof ProtocolError || !this.#failRequest(message, err)) {
            this.close();
            return;
          }
        }
        continue;
      }
      this.#messages = []; // the handled frame's values are not kept
      let frame: Uint8Array | typeof EOF | null;
      try {
        frame = this.#transport.take();
      } catch {
        // Oversized (OversizedFrame), or cut short: nothing after it can be read.
        this.close();
        return;
      }
      if (frame === null) break;
      if (frame === EOF) {
        this.close();
        return;
      }
      try {
        this.#messages = readMessages(frame);
        this.#next = 0;
      } catch {
        this.close();
        return;
      }
    }
    if (this.closed) return;
    // A frame that began must go on arriving: each time bytes come (this
    // runs then), the clock restarts, so a large frame from a client whose
    // event loop is busy now and then is not cut off.
    if (!this.#transport.partialMessage) {
      clearTimeout(this.#stall);
      this.#stall = undefined;
    } else {
      clearTimeout(this.#stall);
      this.#stall = setTimeout(() => this.close(), this.#server.readTimeout);
      this.#stall.unref();
    }
  }

  #handle(m: unknown[]): void {
    switch (m[0]) {
      case Op.CALL: {
        const [, req, id, method, args, refs] = m;
        if (!isId(req) || !isId(id) || typeof method !== 'string' || !Array.isArray(args) || typeof refs !== 'boolean') throw bad(m);
        this.#call(req, id, method, args, refs);
        return;
      }
      case Op.CREATE: {
        const [, req, typeid, args, refs] = m;
        if (!isId(req) || typeof typeid !== 'string' || !Array.isArray(args) || typeof refs !== 'boolean') throw bad(m);
        this.#create(req, typeid, args, refs);
        return;
      }
      case Op.DECREF: {
        const [, id, count] = m;
        if (!isId(id) || !isId(count)) throw bad(m);
        this.#server.table.decref(this, id, count);
        return;
      }
      case Op.INCREF: {
        const [, id, ticket] = m;
        if (!isId(id) || !isTicket(ticket)) throw bad(m);
        this.#server.table.incref(id, ticket);
        return;
      }
      case Op.CLAIM: {
        const [, id, ticket] = m;
        if (!isId(id) || !isTicket(ticket)) throw bad(m);
        this.#server.table.claim(this, id, ticket);
        return;
      }
      case Op.UNTICKET: {
        const [, id, ticket] = m;
        if (!isId(id) || !isTicket(ticket)) throw bad(m);
        this.#server.table.withdraw(ticket);
        return;
      }
      case Op.SHUTDOWN: {
        const [, req] = m;
        if (!isId(req)) throw bad(m);
        this.#reply([Reply.OK, req, undefined, false]);
        // After the answer is on its way.
        this.#flush()?.finally(() => this.#server.shutdown());
        return;
      }
      case Op.LIMIT: {
        const [, maxFrame] = m;
        if (!isId(maxFrame) || maxFrame < MIN_MAX_FRAME) throw bad(m);
        this.#answerCap = Math.min(this.#server.maxFrame, maxFrame);
        return;
      }
      case Op.INFO: {
        const [, req] = m;
        if (!isId(req)) throw bad(m);
        this.#reply([Reply.OK, req, this.#server.info(), false]);
        return;
      }
      default:
        throw bad(m);
    }
  }

  #call(req: number, id: number, method: string, args: unknown[], refs: boolean): void {
    const entry = this.#server.table.get(id);
    if (!entry) {
      this.#fail(req, new StateError(`the manager holds no object #${id} any more (freed, or the server was restarted)`));
      return;
    }
    const fn = entry.exposed.has(method) ? methodOf(entry.obj, method) : null;
    if (!fn) {
      const known = [...entry.exposed].join(', ');
      this.#fail(
        req,
        new RemoteError(
          entry.exposed.has(method)
            ? `'${method}' is exposed by '${entry.typeid}' but its object has no such method`
            : `'${method}' is not an exposed method of '${entry.typeid}' objects (exposed: ${known || 'none'})`,
        ),
      );
      return;
    }
    let result: unknown;
    try {
      const input = refs ? (decodeArgs(args, (i) => this.#server.table.get(i), `${entry.typeid}.${method}() args`) as unknown[]) : args;
      result = isManaged(entry.obj) ? Reflect.apply(fn, entry.obj, [this, ...input]) : Reflect.apply(fn, entry.obj, input);
    } catch (err) {
      this.#fail(req, err);
      return;
    }
    if (isThenable(result)) {
      Promise.resolve(result).then(
        (value) => this.#guarded(req, () => this.#done(req, entry, method, value)),
        (err) => this.#guarded(req, () => this.#fail(req, err)),
      );
    } else {
      this.#done(req, entry, method, result);
    }
  }

  #create(req: number, typeid: string, args: unknown[], refs: boolean): void {
    const type = this.#server.types.get(typeid);
    if (!type?.factory) {
      const known = [...this.#server.types.values()].filter((t) => t.factory).map((t) => t.typeid);
      this.#fail(
        req,
        new ValueError(
          type
            ? `typeid '${typeid}' has no factory in this server (it was registered without one here)`
            : `unknown typeid '${typeid}'; this server makes ${known.join(', ') || 'nothing'}`,
        ),
      );
      return;
    }
    let made: unknown;
    try {
      const input = refs ? (decodeArgs(args, (i) => this.#server.table.get(i), `${typeid}() args`) as unknown[]) : args;
      made = withLimits(this.#server.limits, () => callFactory(type.factory!, input));
    } catch (err) {
      this.#fail(req, err);
      return;
    }
    const finish = (obj: unknown): void => {
      if (this.closed) return;
      let entry: Entry;
      try {
        entry = this.#register(obj, type, `the factory of '${typeid}'`);
      } catch (err) {
        this.#fail(req, err);
        return;
      }
      // The description itself: the client's create() builds the proxy.
      this.#reply([Reply.OK, req, this.#hand(entry), false], [entry]);
    };
    if (isThenable(made)) {
      Promise.resolve(made).then(
        (obj) => this.#guarded(req, () => finish(obj)),
        (err) => this.#guarded(req, () => this.#fail(req, err)),
      );
    } else {
      finish(made);
    }
  }

  /** The entry of an object the server now serves as `type`. */
  #register(obj: unknown, type: ServedType, what: string): Entry {
    if (obj instanceof Ref) return obj.entry;
    if ((typeof obj !== 'object' && typeof obj !== 'function') || obj === null) {
      throw new ValueError(`${what} returned ${describe(obj)}; a manager serves objects (return an object, or a class instance)`);
    }
    const exposed = type.exposed ?? (isManaged(obj) ? (obj.constructor as unknown as { exposed: readonly string[] }).exposed : publicMethods(obj));
    return this.#server.table.entryFor(obj, type, exposed);
  }

  /** Counts a reference for this client and describes the proxy it will build. */
  #hand(entry: Entry): ProxyDescription {
    this.#server.table.own(this, entry);
    return { id: entry.id, typeid: entry.typeid, exposed: [...entry.exposed], proxytype: entry.proxytype };
  }

  #done(req: number, entry: Entry, method: string, value: unknown): void {
    if (this.closed) return;
    const typeid = entry.methodToTypeid[method];
    if (typeid !== undefined) {
      const type = this.#server.types.get(typeid);
      if (!type) {
        this.#fail(req, new ValueError(`methodToTypeid names '${typeid}' for ${entry.typeid}.${method}(), a typeid this server does not know`));
        return;
      }
      let made: Entry;
      try {
        made = this.#register(value, type, `${entry.typeid}.${method}()`);
      } catch (err) {
        this.#fail(req, err);
        return;
      }
      this.#reply([Reply.OK, req, { [MARKER]: this.#hand(made) }, true], [made]);
      return;
    }
    let encoded;
    try {
      encoded = encodeResult(value, (e) => this.#hand(e));
    } catch (err) {
      this.#fail(req, err);
      return;
    }
    this.#reply([Reply.OK, req, encoded.value, encoded.proxies], encoded.handed);
  }

  #fail(req: number, err: unknown): void {
    if (this.closed) return;
    this.#reply([Reply.ERR, req, toWireError(err)]);
  }

  /** Runs what answers `req` later (a settled promise's); what it throws fails that request, or else this session. */
  #guarded(req: number, answer: () => void): void {
    try {
      answer();
    } catch (err) {
      if (!this.#failRequest([Op.CALL, req], err)) this.close();
    }
  }

  /** Answers the request `message` was with `err`; false if it was no request, or the answer failed too. */
  #failRequest(message: unknown[], err: unknown): boolean {
    const [op, req] = message;
    if ((op !== Op.CALL && op !== Op.CREATE && op !== Op.INFO && op !== Op.SHUTDOWN) || !isId(req)) return false;
    try {
      this.#fail(req, err);
      return !this.closed;
    } catch {
      return false;
    }
  }

  /** Sends an answer; one that cannot be serialized (or is too large) becomes an error, and gives back what it handed out. */
  #reply(message: Message, handed: Entry[] = []): void {
    if (this.closed) return;
    const cap = this.#answerCap - 4;
    try {
      this.#writer.write(message, cap);
    } catch (err) {
      for (const entry of handed) this.#server.table.disown(this, entry, 1);
      // An error too large to send keeps its name and the start of its message (below).
      let wire = message[0] === Reply.ERR ? (message[2] as WireError) : undefined;
      try {
        if (wire) throw err;
        wire = toWireError(
          err instanceof RangeError
            ? new ValueError(
                `the result is too large for this connection's frame limit (${cap + 4} bytes); ` +
                  `fetch it in parts (e.g. list.slice(start, end)), or raise maxMessageBytes on both sides`,
              )
            : cloneError(message[2], 'result', err as Error),
        );
        this.#writer.write([Reply.ERR, message[1], wire], cap);
      } catch {
        // Even that is too large (a small cap, a long message): a short one, without its stack.
        const name = wire && wire.name.length <= 64 ? wire.name : 'ValueError';
        const text = (wire?.message ?? 'the answer cannot be sent').slice(0, 160);
        try {
          this.#writer.write([Reply.ERR, message[1], { name, message: `${text}… (cut to fit the frame limit of ${cap + 4} bytes)`, stack: '' }], cap);
        } catch {
          this.close();
          return;
        }
      }
    }
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => void this.#flush());
    }
  }

  #flush(): Promise<void> | undefined {
    this.#flushQueued = false;
    if (this.#writer.length === 0 || this.closed) return undefined;
    let sent: Promise<void> | undefined;
    for (const frame of this.#writer.take(this.#answerCap)) {
      const size = frame.length;
      this.#unsent += size;
      sent = this.#transport.send(frame).then(
        () => {
          this.#unsent -= size;
          if (this.#paused && this.#unsent <= UNSENT_HIGH_WATER / 2) {
            this.#paused = false;
            this.#drain();
          }
        },
        () => this.close(),
      );
    }
    return sent;
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** A ticket names one handle in flight: a short random string. */
function isTicket(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= 64;
}

function bad(m: unknown[]): ProtocolError {
  return new ProtocolError(`a malformed message (op ${describe(m[0])})`);
}
