/**
 * Values to and from bytes stored in Redis.
 *
 * V8's serializer, as everywhere else in the package (Map, Set, Date,
 * BigInt, typed arrays and errors keep their types), with two rules of
 * the cluster's own:
 * - Shared memory does not reach another machine, so shared objects and
 *   views of our segments are refused at the call, with their path.
 * - Whatever is read back is data: V8's deserializer builds plain values
 *   and never runs code, and a shared-object marker in it (which a hostile
 *   writer could plant) is refused before anything is revived. Errors travel
 *   as records (pool/remote-error.ts), whose class names make plain Error
 *   subclasses, never look up code.
 */
import { deserialize, serialize } from 'node:v8';
import { SerializationError } from '../errors.js';
import { encode } from '../serialize/encode.js';
import { decode } from '../serialize/decode.js';
import { NO_KIND } from '../serialize/shared.js';
import { fromRecord, toRecord, type ErrorRecord } from '../pool/remote-error.js';

const WHY = 'a cluster object lives in Redis, possibly on another machine, which shared memory cannot reach; send its contents instead';

/**
 * The bytes of `value`.
 * @param path how the value is named in errors, e.g. `args[0]`.
 * @throws SerializationError naming the path of what cannot be stored.
 */
export function pack(value: unknown, path: string): Buffer {
  const encoded = encode(value, path, { crossProcess: true, only: { kinds: NO_KIND, why: WHY } });
  try {
    return serialize(encoded.value);
  } catch (err) {
    throw new SerializationError(`${path} cannot be stored in Redis: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The value `bytes` hold.
 * @throws SerializationError when the bytes are not a value (corrupt, or not ours) or carry a shared-object marker.
 */
export function unpack(bytes: Buffer | Uint8Array, what: string): unknown {
  let value: unknown;
  try {
    value = deserialize(bytes);
  } catch (err) {
    throw new SerializationError(`${what} read from Redis is not a value this package stored: ${(err as Error).message}`, { cause: err });
  }
  return decode(value, NO_KIND, { root: what, why: WHY });
}

/** The bytes of a thrown value, as a record (class name, message, stack, own properties). */
export function packError(thrown: unknown): Buffer {
  return serialize(toRecord(thrown));
}

/** The error an error record's bytes describe. */
export function unpackError(bytes: Buffer | Uint8Array, what: string): unknown {
  const record = unpack(bytes, what) as ErrorRecord;
  if (typeof record !== 'object' || record === null || !['error', 'value', 'opaque'].includes((record as { kind?: string }).kind ?? '')) {
    return new SerializationError(`${what} read from Redis is not an error record`);
  }
  return fromRecord(record);
}
