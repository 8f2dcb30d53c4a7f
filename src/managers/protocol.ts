/**
 * The manager protocol: what clients and the server say to each other, on
 * top of a Listener/Client connection (CPython's framing and authkey
 * handshake, connection/).
 *
 * A frame (one connection message) carries one or more messages, each a
 * 4-byte big-endian length and a small array (V8's serialization, or a
 * compact form for messages of primitives: `FrameWriter`):
 *
 *   client → server
 *     [CALL, req, objectId, method, args, refs]    call an exposed method
 *     [CREATE, req, typeid, args, refs]            make an object, get a proxy
 *     [DECREF, objectId, count]                    proxies of this process were dropped
 *     [INCREF, objectId, ticket]                   a proxy handle left this process
 *     [CLAIM, objectId, ticket]                    a proxy handle arrived here
 *     [UNTICKET, objectId, ticket]                 a handle this process sent will never arrive
 *     [SHUTDOWN, req]                              end the server
 *     [INFO, req]                                  counts, for tests and debugging
 *     [LIMIT, maxFrame]                            first after the greeting: the largest frame this client reads
 *   server → client
 *     [HELLO, serverId, version, maxFrame]         first, once per connection
 *     [OK, req, value, proxies]                    a result
 *     [ERR, req, error]                            a failure: { name, message, stack }
 *
 * `req` numbers a request on its connection; answers come in any order (a
 * `get` waiting on an empty queue does not hold up a `len`). `refs` and
 * `proxies` say whether the value holds proxy markers to revive (values.ts),
 * so a value without any is never walked. Many messages share a frame when
 * they are ready together (calls made in one turn of the event loop): the
 * pipelining that makes many calls in flight cheap.
 *
 * Nothing received is ever evaluated: a message is data (V8's deserializer
 * builds plain values, never runs code), and `readMessages` checks its
 * shape; any frame that does not parse is a `ProtocolError` and ends that
 * connection.
 */
import { v8 } from '../builtins.js';

/** Bumped when messages change incompatibly; a client refuses a server that says another. */
export const PROTOCOL_VERSION = 3;

export const Op = {
  CALL: 1,
  CREATE: 2,
  DECREF: 3,
  INCREF: 4,
  CLAIM: 5,
  SHUTDOWN: 6,
  INFO: 7,
  UNTICKET: 8,
  LIMIT: 9,
} as const;

/** The smallest frame cap either side may set (maxMessageBytes). */
export const MIN_MAX_FRAME = 1024;

export const Reply = {
  HELLO: 100,
  OK: 101,
  ERR: 102,
} as const;

/** The largest frame either side accepts by default (a larger one ends the connection). */
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;

/** How long a TCP peer may go without answering before its connection is given up, by default (both sides; connection/keepalive.ts). */
export const DEFAULT_KEEPALIVE = 30_000;

/** A frame that does not follow the protocol: the connection it came on is closed. */
export class ProtocolError extends Error {}

/** A message as sent: an array whose first element is its `Op` or `Reply`. */
export type Message = readonly unknown[];

let v8Module: typeof import('node:v8') | null = null;
/** node:v8, loaded on first use (most children never talk to a manager). */
function V8(): typeof import('node:v8') {
  return (v8Module ??= v8());
}

/**
 * A message's body starts with its format: V8's serialization (whose first
 * byte, its version tag, is 0xFF), or this compact one for the common
 * messages made only of primitives (and, one level down, an array of
 * primitives: a call's arguments). V8's serializer costs a few
 * microseconds and an allocation per message, which a pipelined client
 * pays hundreds of thousands of times a second.
 */
const V8_FORMAT = 0xff;
const COMPACT_FORMAT = 0x01;

const T_UNDEFINED = 0;
const T_NULL = 1;
const T_FALSE = 2;
const T_TRUE = 3;
const T_INT32 = 4;
const T_FLOAT64 = 5;
const T_STRING = 6;
const T_ARRAY = 7;

/** Strings longer than this go through V8's serializer (its UTF-16 form beats a UTF-8 round trip). */
const COMPACT_STRING_MAX = 4096;

function compactValue(value: unknown, nested: boolean): boolean {
  switch (typeof value) {
    case 'number':
    case 'boolean':
    case 'undefined':
      return true;
    case 'string':
      // UTF-8 cannot carry a lone surrogate (it would arrive as U+FFFD).
      return value.length <= COMPACT_STRING_MAX && value.isWellFormed();
    case 'object':
      if (value === null) return true;
      return !nested && Array.isArray(value) && compactArray(value);
    default:
      return false;
  }
}

/** Arrays longer than this go through V8's serializer (checking every item costs more than it saves). */
const COMPACT_ARRAY_MAX = 256;

/**
 * One level of arrays (a call's arguments, a short result), if the compact
 * form keeps them as they are: no holes and no properties besides the items.
 */
function compactArray(items: unknown[]): boolean {
  if (items.length > COMPACT_ARRAY_MAX) return false;
  for (let i = 0; i < items.length; i++) if (!(i in items) || !compactValue(items[i], true)) return false;
  return Object.keys(items).length === items.length;
}

/** A FrameWriter's first capacity, and what it goes back to after `take()` once above WRITER_KEEP. */
const WRITER_START = 16 * 1024;
const WRITER_KEEP = 1024 * 1024;

/**
 * Frames being written: messages appended one by one into one buffer,
 * each as its length and body. `take()` hands out the bytes, which stay
 * valid until the next `write` (the socket transport copies at `send`).
 */
export class FrameWriter {
  #buf = Buffer.allocUnsafe(WRITER_START);
  #length = 0;
  /** Where each message ends, to cut a long batch into frames under the cap. */
  #ends: number[] = [];

  /** Bytes written and not yet taken. */
  get length(): number {
    return this.#length;
  }

  /**
   * Appends `message`; returns its size in bytes.
   * @throws what V8's serializer throws (a DataCloneError), or a RangeError
   *   past `cap`; the writer is then as it was.
   */
  write(message: Message, cap: number): number {
    const start = this.#length;
    try {
      this.#ensure(5);
      this.#length += 4;
      if (message.every((v) => compactValue(v, false))) {
        this.#buf[this.#length++] = COMPACT_FORMAT;
        for (const value of message) this.#value(value);
      } else {
        const body = V8().serialize(message);
        this.#ensure(body.length);
        body.copy(this.#buf, this.#length);
        this.#length += body.length;
      }
      const size = this.#length - start - 4;
      if (size > cap) throw new RangeError(`a message of ${size} bytes, more than the frame limit of ${cap}`);
      this.#buf.writeUInt32BE(size, start);
      this.#ends.push(this.#length);
      return size + 4;
    } catch (err) {
      this.#length = start;
      throw err;
    }
  }

  /**
   * Removes the messages larger than `cap` bytes (written under a larger
   * cap that no longer holds); returns their places among the messages
   * written since the last `take`.
   */
  dropLarger(cap: number): number[] {
    const dropped: number[] = [];
    const ends: number[] = [];
    let from = 0;
    let kept = 0;
    this.#ends.forEach((end, i) => {
      if (end - from - 4 > cap) {
        dropped.push(i);
      } else {
        if (kept !== from) this.#buf.copy(this.#buf, kept, from, end);
        kept += end - from;
        ends.push(kept);
      }
      from = end;
    });
    this.#length = kept;
    this.#ends = ends;
    return dropped;
  }

  /**
   * The frames written so far, each at most `cap` bytes (a message longer
   * than that was refused by `write`), and a fresh start.
   */
  take(cap: number): Buffer[] {
    const frames: Buffer[] = [];
    let from = 0;
    let last = 0;
    for (const end of this.#ends) {
      if (end - from > cap && last > from) {
        frames.push(this.#buf.subarray(from, last));
        from = last;
      }
      last = end;
    }
    if (last > from) frames.push(this.#buf.subarray(from, last));
    this.#length = 0;
    this.#ends = [];
    // One large answer must not pin its size for the connection's life; the
    // frames taken keep the old buffer until they are sent.
    if (this.#buf.length > WRITER_KEEP) this.#buf = Buffer.allocUnsafe(WRITER_START);
    return frames;
  }

  #ensure(more: number): void {
    if (this.#length + more <= this.#buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + more));
    this.#buf.copy(bigger, 0, 0, this.#length);
    this.#buf = bigger;
  }

  #value(value: unknown): void {
    switch (typeof value) {
      case 'number':
        if ((value | 0) === value && !Object.is(value, -0)) {
          this.#ensure(5);
          this.#buf[this.#length] = T_INT32;
          this.#buf.writeInt32LE(value, this.#length + 1);
          this.#length += 5;
        } else {
          this.#ensure(9);
          this.#buf[this.#length] = T_FLOAT64;
          this.#buf.writeDoubleLE(value, this.#length + 1);
          this.#length += 9;
        }
        return;
      case 'string': {
        this.#ensure(5 + value.length * 3);
        this.#buf[this.#length] = T_STRING;
        const n = this.#buf.write(value, this.#length + 5, 'utf8');
        this.#buf.writeUInt32LE(n, this.#length + 1);
        this.#length += 5 + n;
        return;
      }
      case 'boolean':
        this.#ensure(1);
        this.#buf[this.#length++] = value ? T_TRUE : T_FALSE;
        return;
      case 'undefined':
        this.#ensure(1);
        this.#buf[this.#length++] = T_UNDEFINED;
        return;
      default:
        if (value === null) {
          this.#ensure(1);
          this.#buf[this.#length++] = T_NULL;
          return;
        }
        {
          const items = value as unknown[];
          this.#ensure(5);
          this.#buf[this.#length] = T_ARRAY;
          this.#buf.writeUInt32LE(items.length, this.#length + 1);
          this.#length += 5;
          for (const item of items) this.#value(item);
        }
    }
  }
}

/** One message's bytes (length and body) on its own, for a frame of one. */
export function messageBytes(message: Message): Buffer {
  const writer = new FrameWriter();
  writer.write(message, Number.MAX_SAFE_INTEGER);
  return Buffer.from(writer.take(Number.MAX_SAFE_INTEGER)[0]!);
}

/**
 * The messages of a frame, each an array starting with a number.
 * @throws ProtocolError when the frame is not a sequence of such messages.
 */
export function readMessages(frame: Uint8Array): unknown[][] {
  const bytes = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const messages: unknown[][] = [];
  let at = 0;
  if (bytes.length === 0) throw new ProtocolError('an empty frame');
  while (at < bytes.length) {
    if (bytes.length - at < 4) throw new ProtocolError('a frame ends inside a message length');
    const length = bytes.readUInt32BE(at);
    at += 4;
    if (length === 0 || length > bytes.length - at) throw new ProtocolError(`a message length (${length}) past the frame's end`);
    const body = bytes.subarray(at, at + length);
    at += length;
    let message: unknown;
    if (body[0] === V8_FORMAT) {
      try {
        message = V8().deserialize(body);
      } catch (err) {
        throw new ProtocolError(`a message that does not deserialize (${(err as Error).message})`);
      }
      checkArrayLengths(message, body.length);
    } else if (body[0] === COMPACT_FORMAT) {
      message = readCompact(body);
    } else {
      throw new ProtocolError(`a message in an unknown format (${body[0]})`);
    }
    if (!Array.isArray(message) || typeof message[0] !== 'number') throw new ProtocolError('a message that is not [op, ...]');
    messages.push(message);
  }
  return messages;
}

/**
 * Refuses a message whose arrays claim more items, all told, than its bytes
 * can carry. V8 builds `new Array(2 ** 30)` from a few bytes (a sparse
 * array), and every later loop over it (walking the arguments, a list's
 * `extend`, a reply's encoding) would stall the server for every client. A
 * dense item takes at least a byte, so real data always passes; each array
 * is counted once, however often it is referenced.
 */
function checkArrayLengths(message: unknown, bytes: number): void {
  let budget = bytes;
  const seen = new Set<object>();
  const stack: object[] = [];
  const push = (value: unknown): void => {
    if (typeof value === 'object' && value !== null && !seen.has(value)) {
      seen.add(value);
      stack.push(value);
    }
  };
  push(message);
  while (stack.length > 0) {
    const value = stack.pop()!;
    if (Array.isArray(value)) {
      budget -= value.length;
      if (budget < 0) {
        throw new ProtocolError(`a message with an array of length ${value.length}: more items than its ${bytes} bytes can carry`);
      }
      for (let i = 0; i < value.length; i++) push(value[i]);
    } else if (value instanceof Map) {
      for (const [k, v] of value) {
        push(k);
        push(v);
      }
    } else if (value instanceof Set) {
      for (const v of value) push(v);
    } else if (!ArrayBuffer.isView(value) && !(value instanceof ArrayBuffer)) {
      for (const key of Object.keys(value)) push((value as Record<string, unknown>)[key]);
    }
  }
}

function readCompact(body: Buffer): unknown[] {
  let at = 1;
  const need = (n: number): void => {
    if (at + n > body.length) throw new ProtocolError('a compact message cut short');
  };
  const value = (depth: number): unknown => {
    need(1);
    const tag = body[at++];
    switch (tag) {
      case T_UNDEFINED:
        return undefined;
      case T_NULL:
        return null;
      case T_FALSE:
        return false;
      case T_TRUE:
        return true;
      case T_INT32:
        need(4);
        at += 4;
        return body.readInt32LE(at - 4);
      case T_FLOAT64:
        need(8);
        at += 8;
        return body.readDoubleLE(at - 8);
      case T_STRING: {
        need(4);
        const n = body.readUInt32LE(at);
        at += 4;
        need(n);
        at += n;
        return body.toString('utf8', at - n, at);
      }
      case T_ARRAY: {
        if (depth > 0) throw new ProtocolError('a compact message nested too deep');
        need(4);
        const n = body.readUInt32LE(at);
        at += 4;
        if (n > body.length - at) throw new ProtocolError('a compact array longer than its message');
        const items = new Array<unknown>(n);
        for (let i = 0; i < n; i++) items[i] = value(depth + 1);
        return items;
      }
      default:
        throw new ProtocolError(`a compact value of unknown tag ${tag}`);
    }
  };
  const message: unknown[] = [];
  while (at < body.length) message.push(value(0));
  return message;
}

/** A request or object id: a positive safe integer. */
export function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

/** An error as it travels: its class name, message and stack (the stack is the server's). */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly stack: string;
}

/** Any thrown value as a `WireError`. */
export function toWireError(err: unknown): WireError {
  // Whatever was thrown is the user's: its name, message or conversion may throw too (a getter, an
  // object without a prototype), and the server must answer anyway.
  try {
    if (err instanceof Error) {
      return { name: String(err.name || err.constructor?.name || 'Error'), message: String(err.message), stack: String(err.stack ?? '') };
    }
  } catch {
    return { name: 'Error', message: `an error was thrown that cannot be described (${safeString(err)})`, stack: '' };
  }
  return { name: 'Error', message: `a non-Error was thrown: ${safeString(err)}`, stack: '' };
}

/** `String(value)`, or `[object Object]`-like when that throws. */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return 'an unprintable value';
    }
  }
}

/** Whether a value has the shape of a `WireError`. */
export function isWireError(value: unknown): value is WireError {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Record<string, unknown>;
  return typeof e['name'] === 'string' && typeof e['message'] === 'string' && typeof e['stack'] === 'string';
}
