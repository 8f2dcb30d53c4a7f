/**
 * Preparing values to cross into another isolate.
 *
 * `encode` walks a value once (walk.ts): shared objects, and views of shared
 * memory (views.ts), become handle markers; what structured clone would
 * refuse (functions, symbols, weak collections, promises), and what it would
 * silently turn into a copy of a shared object (one inside a class instance),
 * is refused here with the path of the offending value. The result is
 * structured-cloneable; `decode` (decode.ts) walks it back and revives the
 * markers.
 */
import { v8 } from '../builtins.js';
import { article, describe } from '../describe.js';
import { SerializationError } from '../errors.js';
import { Segment, collectHandles, type InFlight } from '../shm/segment.js';
import { MARKER, SHARED, allowsKind, isShareable, type Shareable, type SharedHandle } from './shared.js';
import { isLeaf } from './leaf.js';
import { isMappedByUs, memoryHandle, sharedBufferOf } from './views.js';
import { pathOf } from './path.js';
import { DESCEND, Walk, type Visitor } from './walk.js';

const UNCLONEABLE: ReadonlyArray<[Function | undefined, string]> = [
  [WeakMap, 'a WeakMap'],
  [WeakSet, 'a WeakSet'],
  [globalThis.WeakRef, 'a WeakRef'],
  [globalThis.FinalizationRegistry, 'a FinalizationRegistry'],
  [Promise, 'a Promise (await it first)'],
];

/** How the receiver relates to the sender. */
export interface EncodeOptions {
  /**
   * The receiver is another process, not a thread of this one. A
   * SharedArrayBuffer this package did not map cannot be shared with it
   * (a thread would share it, a process would get a copy), so it is refused.
   */
  readonly crossProcess?: boolean;
  /**
   * Only handles of these kinds may travel (see `HandleKinds` in shared.ts;
   * default: every kind), and why the receiver takes no other, for the
   * error. A shared object or view of shared memory of another kind is
   * refused with its path; with no kind allowed, before its handle is made.
   */
  readonly only?: { readonly kinds: ReadonlySet<string>; readonly why: string };
  /** The value is a child's arguments at its start (see `ShareContext`). */
  readonly spawning?: boolean;
}

/** An encoded value and the segment references its handles hold. */
export interface Encoded {
  /** Structured-cloneable; shared objects are handle markers. */
  readonly value: unknown;
  /**
   * One entry per segment reference put in flight (see `collectHandles`):
   * the receiver takes them over when it revives the value; `abandon` gives
   * them back if it never will.
   */
  readonly segments: InFlight[];
}

/**
 * Replaces shared objects inside `value` by handle markers.
 * @param path how the value is named in error messages, e.g. `args`.
 * @throws SerializationError naming the path of a value that cannot travel
 *   (and then holds no reference).
 */
export function encode(value: unknown, path: string, options: EncodeOptions = {}): Encoded {
  const { result, segments } = collectHandles(() => Walk.run(value, path, encoder(options), true));
  return { value: result, segments };
}

/**
 * Gives back the segment references an encoded value holds, when it will
 * never reach a receiver (a failed transfer): a refused `start()` leaks
 * nothing. Calling it twice is harmless.
 */
export function abandon(encoded: Encoded): void {
  Segment.abandonAll(encoded.segments);
  encoded.segments.length = 0;
}

function encoder(options: EncodeOptions): Visitor {
  return {
    enter(value, walk) {
      if (typeof value !== 'object' || value === null) return primitive(value, walk);
      if (isShareable(value)) {
        if (options.only?.kinds.size === 0) throw refusedShared(`${describe(value)} (a shared object)`, walk, options.only.why);
        return marker(checkedKind(handleOf(value, walk, options), `${describe(value)} (a shared object)`, walk, options));
      }
      const buffer = sharedBufferOf(value);
      if (buffer) {
        if (options.only?.kinds.size === 0 && isMappedByUs(buffer)) {
          throw refusedShared(`${describe(value)} over shared memory`, walk, options.only.why);
        }
        const handle = memoryHandle(value, buffer);
        if (handle) return marker(checkedKind(handle, `${describe(value)} over shared memory`, walk, options));
        if (options.crossProcess) throw foreignBuffer(value, walk);
        return value;
      }
      refuseUncloneable(value, walk);
      if (isLeaf(value)) return value;
      if (Array.isArray(value) || value instanceof Map || value instanceof Set) return DESCEND;
      if (isPlain(value)) {
        if (Object.hasOwn(value, MARKER)) {
          throw new SerializationError(
            `${pathOf(walk)} has the key '${MARKER}', which multiprocessing-ts reserves for shared objects in transit; rename that key`,
          );
        }
        return DESCEND;
      }
      checkInstance(value, walk, options);
      // Structured clone copies it as a plain object of its own fields, under
      // both start methods alike.
      return value;
    },
  };
}

/** A shared object's handle; one that cannot travel says why (a SerializationError), and this adds where it is. */
function handleOf(value: Shareable, walk: Walk, options: EncodeOptions): SharedHandle {
  try {
    return value[SHARED](options.spawning ? { spawning: true } : undefined);
  } catch (err) {
    if (err instanceof SerializationError) throw new SerializationError(`${pathOf(walk)} is ${err.message}`, { cause: err });
    throw err;
  }
}

/** `handle`, if `options.only` lets its kind travel (the walk's `collectHandles` gives back its references if not). */
function checkedKind(handle: SharedHandle, what: string, walk: Walk, options: EncodeOptions): SharedHandle {
  if (!options.only || allowsKind(options.only.kinds, handle.kind)) return handle;
  throw refusedShared(what, walk, options.only.why);
}

function refusedShared(what: string, walk: Walk, why: string): SerializationError {
  return new SerializationError(`${pathOf(walk)} is ${what}, which cannot be sent here: ${why}`);
}

function marker(handle: SharedHandle): object {
  return { [MARKER]: handle };
}

function isPlain(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function primitive(value: unknown, walk: Walk): unknown {
  if (typeof value === 'function') {
    throw new SerializationError(
      `${pathOf(walk)} is a function, which cannot be copied to another process; ` +
        `pass data, or a shared object, and give the child the function as its target`,
    );
  }
  if (typeof value === 'symbol') {
    throw new SerializationError(`${pathOf(walk)} is a symbol, which cannot be copied to another process`);
  }
  return value;
}

function refuseUncloneable(value: object, walk: Walk): void {
  for (const [ctor, what] of UNCLONEABLE) {
    if (ctor && value instanceof ctor) {
      throw new SerializationError(`${pathOf(walk)} is ${what}, which cannot be copied to another process`);
    }
  }
}

function foreignBuffer(value: object, walk: Walk): SerializationError {
  const bare = value instanceof SharedArrayBuffer;
  const what = bare ? 'a SharedArrayBuffer' : `${describe(value)} over a SharedArrayBuffer`;
  return new SerializationError(
    `${pathOf(walk)} is ${what} that multiprocessing-ts did not allocate, so another process cannot map it ` +
      `(a thread child would share it, a process child would get a copy); allocate it with mp.RawArray or ` +
      `mp.SharedMemory to share it, or pass a copy (${bare ? 'new Uint8Array(buffer).slice()' : 'view.slice()'})`,
  );
}

/**
 * A class instance travels as a plain copy of its own fields. A shared
 * object among them would arrive as a lifeless copy of its internals, so it
 * is refused, naming where it is and the fix.
 */
function checkInstance(instance: object, outer: Walk, options: EncodeOptions): void {
  const where = pathOf(outer);
  const cls = instance.constructor?.name || 'anonymous class';
  Walk.run(
    instance,
    where,
    {
      enter(value, walk) {
        if (typeof value !== 'object' || value === null) return primitive(value, walk);
        const buffer = sharedBufferOf(value);
        if (isShareable(value) || (buffer && isMappedByUs(buffer))) {
          const what = isShareable(value) ? describe(value) : `${describe(value)} over shared memory`;
          throw new SerializationError(
            `${pathOf(walk)} is ${what} inside ${where}, ${article(cls)} instance, which travels as a plain copy of its fields: ` +
              `a shared object in it would arrive as a dead copy. Pass a plain object instead (e.g. { ...${where} }), ` +
              `or pass the shared object itself as an argument`,
          );
        }
        if (buffer && options.crossProcess) throw foreignBuffer(value, walk);
        refuseUncloneable(value, walk);
        return isLeaf(value) ? value : DESCEND;
      },
    },
    false,
  );
}

/**
 * V8's serializer over an `encode`d value (for a process child). A value the
 * serializer still refuses is located and named, and the references the
 * encoded value holds are given back.
 */
export function toBytes(encoded: Encoded, path: string): Uint8Array {
  try {
    return v8().serialize(encoded.value);
  } catch (err) {
    abandon(encoded);
    throw cloneError(encoded.value, path, err as Error);
  }
}

/** Turns a DataCloneError about `root` into a SerializationError with a path. */
export function cloneError(root: unknown, path: string, err: Error): SerializationError {
  const where = findUncloneable(root, path) ?? path;
  return new SerializationError(`${where} cannot be copied to another process: ${err.message}`, { cause: err });
}

/** The path of the innermost value V8's serializer refuses. */
function findUncloneable(root: unknown, path: string): string | null {
  let found: string | null = null;
  const refuses = (value: unknown, walk: Walk): boolean => {
    try {
      v8().serialize(value);
      return false;
    } catch {
      const name = typeof value === 'object' && value !== null ? value.constructor?.name : undefined;
      found = name && name !== 'Object' ? `${pathOf(walk)} (${article(name)})` : pathOf(walk);
      walk.stop();
      return true;
    }
  };
  Walk.run(
    root,
    path,
    {
      enter(value, walk) {
        if (typeof value === 'object' && value !== null) {
          if (!isLeaf(value)) return DESCEND;
          refuses(value, walk);
        } else if (typeof value === 'function' || typeof value === 'symbol') {
          refuses(value, walk);
        }
        return value;
      },
      // Children first, so the innermost refused value is named.
      leave: (value, walk) => void refuses(value, walk),
    },
    false,
  );
  return found;
}
