/**
 * Task arguments, made ready to travel at the call.
 *
 * Checking at the call (not when a batch is sent) is what makes an
 * argument that cannot travel a `SerializationError` of the very call that
 * passed it, naming it (`pool.map(square): iterable[3].cb is a function…`),
 * with nothing submitted. Primitives need no check and travel as they are
 * inside the batch; anything else is encoded (shared objects become
 * handles) and turned into V8 bytes now, once: the copy is taken at the
 * call, so later mutation does not leak, and the batch carries the bytes.
 */
import { SerializationError } from '../errors.js';
import type { InFlight } from '../shm/segment.js';
import { Segment } from '../shm/segment.js';
import { encode, toBytes } from '../serialize/encode.js';

export function isPrimitive(value: unknown): boolean {
  const t = typeof value;
  return value === null || (t !== 'object' && t !== 'function' && t !== 'symbol');
}

/** One value: itself when primitive, else the bytes of its encoding (its handles' references go to `refs`). */
export function packValue(value: unknown, path: string, refs: InFlight[]): unknown {
  if (isPrimitive(value)) return value;
  const encoded = encode(value, path, { crossProcess: true });
  const bytes = toBytes(encoded, path);
  refs.push(...encoded.segments);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** An argument list: a copy when all primitives, else the bytes of the whole list (shared references kept). */
export function packArgs(args: readonly unknown[], path: string, refs: InFlight[]): unknown {
  return args.every(isPrimitive) ? args.slice() : packValue(args, path, refs);
}

/**
 * Runs `pack` for a call labelled `label`; a SerializationError names the
 * call, and the references taken before it are given back.
 */
export function packing<T>(label: string, refs: InFlight[], pack: () => T): T {
  try {
    return pack();
  } catch (err) {
    Segment.abandonAll(refs);
    refs.length = 0;
    throw namedFor(label, err);
  }
}

/** `err`, a SerializationError naming the call `label` (other errors as they are). */
export function namedFor(label: string, err: unknown): unknown {
  return err instanceof SerializationError ? new SerializationError(`${label}: ${err.message}`, { cause: err }) : err;
}

/** Rough bytes of a packed payload in a batch, to keep batches small enough for the ring. */
export function packedSize(packed: unknown): number {
  if (packed instanceof Uint8Array) return packed.byteLength + 16;
  if (Array.isArray(packed)) {
    let n = 16;
    for (const v of packed) n += packedSize(v);
    return n;
  }
  if (typeof packed === 'string') return packed.length * 3 + 8;
  // A bigint travels as its magnitude's bytes (a 1 MiB one spills as surely as a 1 MiB array).
  if (typeof packed === 'bigint') return (packed < 0n ? -packed : packed).toString(16).length / 2 + 16;
  return 16;
}
