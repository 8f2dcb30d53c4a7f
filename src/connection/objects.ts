/**
 * Object messages: what `send(obj)` puts on a socket connection and
 * `recv()` reads from one (and what a Pipe's `recvBytes` gives for a value).
 *
 * The bytes are V8's serialization of the `encode`d value (serialize/)
 * behind a 4-byte prefix of ours:
 *
 *   00 6D 70 VV   NUL, 'm', 'p', then the format version VV (now 1)
 *
 * The prefix tells our object messages apart from anything else a peer may
 * send. A Python peer's `send(obj)` is a pickle (protocol 2 and later start
 * with 0x80; no pickle opcode is NUL): it is refused, never unpickled, since
 * unpickling runs code the sender chose. Raw bytes from `sendBytes` are
 * refused by `recv()` too, with the hint to read them with `recvBytes()`.
 *
 * No shared object travels in an object message over a socket, either way
 * (`SOCKET_REFUSAL`): `send` refuses one with its path, and `recv` refuses a
 * message holding a handle before reviving anything (decode with `NO_KIND`),
 * so nothing a peer sends is mapped, compiled or imported. Bytes read as an
 * object message on a Pipe (sent with `sendBytes`) are judged the same way,
 * since bytes may have come from a socket, unless the Pipe knows them for a
 * value of its own relayed (pipe-transport.ts).
 */
import { v8 } from '../builtins.js';
import { SerializationError } from '../errors.js';
import { encode, toBytes } from '../serialize/encode.js';
import { decode } from '../serialize/decode.js';
import { NO_KIND, type HandleKinds } from '../serialize/shared.js';

/** The current object format. */
export const OBJECT_FORMAT = 1;
const PREFIX = [0x00, 0x6d, 0x70] as const;

/**
 * Why a socket carries no shared objects, either way: a handle names memory
 * to map and may name code to compile or import (a Barrier's action), and
 * anyone who can connect to a Listener may send one (with no authkey, the
 * default, anyone who can reach the address).
 */
export const SOCKET_REFUSAL =
  'shared objects travel through Pipes, Queues and Process args, not over a Listener/Client socket, ' +
  'whose peer is not trusted to name memory or code; send the data instead (e.g. a Value\'s .value, a copy of an array)';

/**
 * Serializes `value` for a socket peer. Shared objects (and views of shared
 * memory) are refused (see `SOCKET_REFUSAL`), so the message holds no
 * handle and no reference.
 * @throws SerializationError naming the path (under `obj`) of what cannot travel.
 */
export function objectMessage(value: unknown): Uint8Array {
  const encoded = encode(value, 'obj', { crossProcess: true, only: { kinds: NO_KIND, why: SOCKET_REFUSAL } });
  return framed(toBytes(encoded, 'obj'));
}

/**
 * An object message around a V8 serialization already made (a Pipe's
 * frame, handles and all).
 * @param own in a buffer of its own (never Node's shared pool), so the buffer tells the message.
 */
export function framed(body: Uint8Array, own = false): Uint8Array {
  const length = PREFIX.length + 1 + body.byteLength;
  const bytes = own ? Buffer.allocUnsafeSlow(length) : Buffer.allocUnsafe(length);
  bytes.set(PREFIX, 0);
  bytes[PREFIX.length] = OBJECT_FORMAT;
  bytes.set(body, PREFIX.length + 1);
  return bytes;
}

/**
 * The value an object message carries. Bytes from a socket may come from
 * anyone, so `kinds` is `NO_KIND` for them: a shared-object handle in them
 * is refused and nothing is revived (`why` says what to do instead). Only
 * bytes known to come from this tree (a Pipe's relayed value) pass
 * `EVERY_KIND`.
 * @throws SerializationError for a pickle, raw bytes, a format this build
 *   does not read, or a message holding a handle of a kind not allowed.
 */
export function readObjectMessage(bytes: Uint8Array, why: string, kinds: HandleKinds = NO_KIND): unknown {
  if (!hasPrefix(bytes)) throw new SerializationError(foreignMessage(bytes));
  const version = bytes[PREFIX.length];
  if (version !== OBJECT_FORMAT) {
    throw new SerializationError(
      `received an object in format version ${version}, but this multiprocessing-ts reads version ${OBJECT_FORMAT}; ` +
        `use the same multiprocessing-ts version on both ends`,
    );
  }
  let value: unknown;
  try {
    value = v8().deserialize(bytes.subarray(PREFIX.length + 1));
  } catch (err) {
    throw new SerializationError(`received an object message that does not deserialize: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return decode(value, kinds, { root: 'obj', why });
}
function hasPrefix(bytes: Uint8Array): boolean {
  return bytes.length > PREFIX.length && PREFIX.every((b, i) => bytes[i] === b);
}

function foreignMessage(bytes: Uint8Array): string {
  if (bytes.length >= 2 && bytes[0] === 0x80) {
    return (
      `recv() received a Python pickle (protocol ${bytes[1]}), which multiprocessing-ts never unpickles ` +
      `(unpickling runs code the sender chooses); have the Python side send bytes (conn.send_bytes(...)) ` +
      `and read them here with recvBytes()`
    );
  }
  const start = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return (
    `recv() received ${bytes.length} bytes that are not an object sent by multiprocessing-ts's send() ` +
    `(they start ${start || '(empty)'}); a message sent with sendBytes() is read with recvBytes()`
  );
}
