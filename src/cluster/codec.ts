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
 * - Cluster objects (a cluster Lock, Queue, Value, list…) do reach other
 *   machines: they live in Redis already. One is stored as a descriptor,
 *   `{ [CLUSTER_MARKER]: { kind, name, settings } }` (no code, no URL, no
 *   password), and `unpack` revives it bound to the unpacking side's own
 *   context (its `clients`), so it arrives live. A descriptor names an
 *   object; reviving one makes a handle to that name and nothing else.
 */
import { deserialize, serialize } from 'node:v8';
import { SerializationError } from '../errors.js';
import { encode } from '../serialize/encode.js';
import { decode } from '../serialize/decode.js';
import { NO_KIND } from '../serialize/shared.js';
import { fromRecord, toRecord, type ErrorRecord } from '../pool/remote-error.js';
import { isLeaf } from '../serialize/leaf.js';
import { pathOf } from '../serialize/path.js';
import { DESCEND, Walk, type Visitor } from '../serialize/walk.js';
import { DESCRIBE, isClusterObject, reviveDescriptor } from './objects/base.js';
import { ObjectClients } from './objects/connection.js';
import type { ClusterClients } from './redis.js';

const WHY = 'a cluster object lives in Redis, possibly on another machine, which shared memory cannot reach; send its contents instead';

/** The key of a descriptor standing for a cluster object in stored bytes. */
export const CLUSTER_MARKER = '__multiprocessing_ts_cluster__';

function isPlain(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Walks what structured clone would copy; `found` decides what a cluster object becomes. */
function clusterVisitor(found: (value: object, walk: Walk) => unknown): Visitor {
  return {
    enter(value, walk) {
      if (typeof value !== 'object' || value === null) return value;
      if (isClusterObject(value)) return found(value, walk);
      if (isLeaf(value)) return value;
      if (Array.isArray(value) || value instanceof Map || value instanceof Set) return DESCEND;
      if (!isPlain(value)) return value; // a class instance: encode refuses a shared object inside it
      if (Object.hasOwn(value, CLUSTER_MARKER)) {
        throw new SerializationError(`${pathOf(walk)} has the key '${CLUSTER_MARKER}', which multiprocessing-ts reserves for cluster objects in Redis; rename that key`);
      }
      return DESCEND;
    },
  };
}

/** `value` with its cluster objects replaced by descriptors (itself when it holds none). */
function describeClusterObjects(value: unknown, path: string): unknown {
  if (typeof value !== 'object' || value === null) return value;
  let any = false;
  Walk.run(
    value,
    path,
    clusterVisitor((v, walk) => {
      any = true;
      walk.stop();
      return v;
    }),
    false,
  );
  if (!any) return value;
  return Walk.run(value, path, clusterVisitor((v) => ({ [CLUSTER_MARKER]: (v as { [DESCRIBE](): unknown })[DESCRIBE]() })), true);
}

/** Revives, in place, the descriptors of a value read back. */
function reviveClusterObjects(value: unknown, what: string, clients: ClusterClients | undefined): unknown {
  if (typeof value !== 'object' || value === null) return value;
  return Walk.run(
    value,
    what,
    {
      enter(v, walk) {
        if (typeof v !== 'object' || v === null || isLeaf(v)) return v;
        if (!Object.hasOwn(v, CLUSTER_MARKER)) return DESCEND;
        if (!clients) throw new SerializationError(`${pathOf(walk)} is a cluster object, read without a cluster context to bind it to`);
        return reviveDescriptor((v as Record<string, unknown>)[CLUSTER_MARKER], ObjectClients.of(clients), pathOf(walk));
      },
    },
    false,
  );
}

/**
 * The bytes of `value`.
 * @param path how the value is named in errors, e.g. `args[0]`.
 * @throws SerializationError naming the path of what cannot be stored.
 */
export function pack(value: unknown, path: string): Buffer {
  const encoded = encode(describeClusterObjects(value, path), path, { crossProcess: true, only: { kinds: NO_KIND, why: WHY } });
  try {
    return serialize(encoded.value);
  } catch (err) {
    throw new SerializationError(`${path} cannot be stored in Redis: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The value `bytes` hold; cluster objects in it are bound to `clients` (the
 * unpacking side's context).
 * @throws SerializationError when the bytes are not a value (corrupt, or not ours), carry a shared-object marker, or hold a cluster object and no `clients` were given.
 */
export function unpack(bytes: Buffer | Uint8Array, what: string, clients?: ClusterClients): unknown {
  let value: unknown;
  try {
    value = deserialize(bytes);
  } catch (err) {
    throw new SerializationError(`${what} read from Redis is not a value this package stored: ${(err as Error).message}`, { cause: err });
  }
  return reviveClusterObjects(decode(value, NO_KIND, { root: what, why: WHY }), what, clients);
}

/**
 * The bytes of a thrown value, as a record (class name, message, stack, own
 * properties). A shared object in it is described, as any value that
 * cannot be stored: Redis takes none (`unpack` would refuse the record),
 * and encoded it would hold references nobody gives back.
 */
export function packError(thrown: unknown): Buffer {
  return serialize(toRecord(thrown, [], 0, { crossProcess: true, only: { kinds: NO_KIND, why: WHY } }));
}

/** The error an error record's bytes describe. */
export function unpackError(bytes: Buffer | Uint8Array, what: string): unknown {
  // Not `unpack`: packError leaves no cluster object live in a record (toRecord
  // describes them), so a marker key in one is the task's own plain data.
  // Revived, it would fail the call with a SerializationError in place of the error.
  let record: ErrorRecord;
  try {
    record = decode(deserialize(bytes), NO_KIND, { root: what, why: WHY }) as ErrorRecord;
  } catch (err) {
    return new SerializationError(`${what} read from Redis is not an error record: ${(err as Error).message}`, { cause: err });
  }
  if (typeof record !== 'object' || record === null || !['error', 'value', 'opaque'].includes((record as { kind?: string }).kind ?? '')) {
    return new SerializationError(`${what} read from Redis is not an error record`);
  }
  return fromRecord(record);
}
