/**
 * Object messages: what `send(obj)` puts on a connection and `recv()` reads.
 *
 * The bytes are the project's wire format (serialize/: shared objects become
 * handles, then V8's serializer) behind a 4-byte prefix of ours:
 *
 *   00 6D 70 VV   NUL, 'm', 'p', then the format version VV (now 1)
 *
 * The prefix tells our object messages apart from anything else a peer may
 * send. A Python peer's `send(obj)` is a pickle (protocol 2 and later start
 * with 0x80; no pickle opcode is NUL): it is refused, never unpickled, since
 * unpickling runs code the sender chose. Raw bytes from `sendBytes` are
 * refused by `recv()` too, with the hint to read them with `recvBytes()`.
 */
import { v8 } from '../builtins.js';
import { SerializationError } from '../errors.js';
import { abandon, encode, toBytes, type Encoded } from '../serialize/encode.js';
import { decode } from '../serialize/decode.js';

/** The current object format. */
export const OBJECT_FORMAT = 1;
const PREFIX = [0x00, 0x6d, 0x70] as const;

/** A value ready to send, and the shared-object references its handles put in flight. */
export interface ObjectMessage {
  readonly bytes: Uint8Array;
  readonly encoded: Encoded;
}

/**
 * Serializes `value` for another process.
 * @throws SerializationError naming the path (under `obj`) of what cannot travel; nothing is left in flight then.
 */
export function objectMessage(value: unknown): ObjectMessage {
  const encoded = encode(value, 'obj', { crossProcess: true });
  const body = toBytes(encoded, 'obj');
  const bytes = Buffer.allocUnsafe(PREFIX.length + 1 + body.byteLength);
  bytes.set(PREFIX, 0);
  bytes[PREFIX.length] = OBJECT_FORMAT;
  bytes.set(body, PREFIX.length + 1);
  return { bytes, encoded };
}

/** Gives back the references of a message that was never sent. */
export function dropObjectMessage(message: ObjectMessage): void {
  abandon(message.encoded);
}

/**
 * The value an object message carries, its shared objects revived.
 * @throws SerializationError for a pickle, raw bytes, or a format this build does not read.
 */
export function readObjectMessage(bytes: Uint8Array): unknown {
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
  return decode(value);
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
