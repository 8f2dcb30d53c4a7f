/**
 * The manager protocol: what clients and the server say to each other, on
 * top of a Listener/Client connection (CPython's framing and authkey
 * handshake, connection/).
 *
 * A frame (one connection message) carries one or more messages, each a
 * 4-byte big-endian length and V8's serialization of a small array:
 *
 *   client → server
 *     [CALL, req, objectId, method, args, refs]    call an exposed method
 *     [CREATE, req, typeid, args, refs]            make an object, get a proxy
 *     [DECREF, objectId, count]                    proxies of this process were dropped
 *     [INCREF, objectId, ticket]                   a proxy handle left this process
 *     [CLAIM, objectId, ticket]                    a proxy handle arrived here
 *     [SHUTDOWN, req]                              end the server
 *     [INFO, req]                                  counts, for tests and debugging
 *   server → client
 *     [HELLO, serverId, version]                   first, once per connection
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
export const PROTOCOL_VERSION = 1;

export const Op = {
  CALL: 1,
  CREATE: 2,
  DECREF: 3,
  INCREF: 4,
  CLAIM: 5,
  SHUTDOWN: 6,
  INFO: 7,
} as const;

export const Reply = {
  HELLO: 100,
  OK: 101,
  ERR: 102,
} as const;

/** The largest frame either side accepts by default (a larger one ends the connection). */
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;

/** A frame that does not follow the protocol: the connection it came on is closed. */
export class ProtocolError extends Error {}

/** A message as sent: an array whose first element is its `Op` or `Reply`. */
export type Message = readonly unknown[];

/** One message's bytes, ready to be put in a frame. */
export function messageBytes(message: Message): Buffer {
  const body = v8().serialize(message);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** A frame of messages whose bytes were made by `messageBytes`. */
export function frameOf(parts: Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
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
    let message: unknown;
    try {
      message = v8().deserialize(bytes.subarray(at, at + length));
    } catch (err) {
      throw new ProtocolError(`a message that does not deserialize (${(err as Error).message})`);
    }
    at += length;
    if (!Array.isArray(message) || typeof message[0] !== 'number') throw new ProtocolError('a message that is not [op, ...]');
    messages.push(message);
  }
  return messages;
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
  if (err instanceof Error) {
    return { name: String(err.name || err.constructor?.name || 'Error'), message: String(err.message), stack: String(err.stack ?? '') };
  }
  return { name: 'Error', message: `a non-Error was thrown: ${String(err)}`, stack: '' };
}

/** Whether a value has the shape of a `WireError`. */
export function isWireError(value: unknown): value is WireError {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Record<string, unknown>;
  return typeof e['name'] === 'string' && typeof e['message'] === 'string' && typeof e['stack'] === 'string';
}
