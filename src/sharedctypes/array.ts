/**
 * `Array`/`SharedArray` and `RawArray`: fixed-length typed arrays in shared
 * memory.
 *
 * A raw array *is* a typed array (an `Int32Array` subclass for `'i'`…) over
 * the segment, so indexing, `length`, iteration and every typed-array method
 * run at native speed. The synchronized array wraps one in a Proxy whose
 * index reads and writes take the lock, as Python's `SynchronizedArray`
 * does; `getObj()` gives the raw array for bulk work under `withLock`.
 */
import { describe } from '../describe.js';
import { IndexError, ValueError } from '../errors.js';
import { Segment, type SegmentHandle } from '../shm/segment.js';
import type { Lock, RLock } from '../sync/lock.js';
import { SHARED, registerShared, reviveShared, type SharedHandle } from '../serialize/shared.js';
import { toElement, typeInfo, type ElementOf, type TypeInfo, type TypedArray, type Typecode } from './typecodes.js';
import { DATA_OFFSET, resolveLock, type LockOption } from './value.js';

interface RawArrayHandle extends SharedHandle {
  readonly segment: SegmentHandle;
  readonly offset: number;
  readonly typecode: Typecode;
  readonly length: number;
}

/** What every raw shared array adds to its typed array. */
export interface SharedArrayMethods {
  /** The typecode it was made with. */
  readonly typecode: Typecode;
  /** For `'c'` arrays: the bytes up to the first NUL, as latin1 text (settable). */
  value: string;
}

/** A typed array in shared memory (what `mp.RawArray` returns). */
export type RawSharedArray<T extends Typecode = Typecode> = (T extends 'l' | 'q'
  ? BigInt64Array
  : T extends 'L' | 'Q'
    ? BigUint64Array
    : T extends 'b'
      ? Int8Array
      : T extends 'c' | 'B'
        ? Uint8Array
        : T extends 'h'
          ? Int16Array
          : T extends 'H'
            ? Uint16Array
            : T extends 'I'
              ? Uint32Array
              : T extends 'f'
                ? Float32Array
                : T extends 'd'
                  ? Float64Array
                  : Int32Array) &
  SharedArrayMethods;

const placeOf = new WeakMap<object, { segment: Segment; offset: number; info: TypeInfo }>();
const classes = new Map<Typecode, new (buffer: SharedArrayBuffer, offset: number, length: number) => TypedArray>();

/** The typed-array subclass for `info`, made once per typecode. */
function rawClass(info: TypeInfo) {
  let cls = classes.get(info.code);
  if (cls) return cls;
  const Base = info.array as unknown as new (b: ArrayBufferLike, o: number, n: number) => Uint8Array;
  class RawArray extends Base {
    // Derived arrays (map, slice…) are plain typed arrays in private memory.
    static get [Symbol.species]() {
      return Base;
    }
    get typecode(): Typecode {
      return info.code;
    }
    get value(): string {
      const bytes = this as unknown as Uint8Array;
      const end = bytes.indexOf(0);
      return Buffer.from(bytes.buffer, bytes.byteOffset, end < 0 ? bytes.length : end).toString('latin1');
    }
    set value(text: string | Uint8Array) {
      writeBytes(this as unknown as Uint8Array, text);
    }
    [SHARED](): RawArrayHandle {
      const place = placeOf.get(this)!;
      return {
        kind: 'RawArray',
        segment: place.segment.toHandle(),
        offset: place.offset,
        typecode: info.code,
        length: this.length,
      };
    }
  }
  Object.defineProperty(RawArray, 'name', { value: `Shared${Base.name}` });
  cls = RawArray as any;
  classes.set(info.code, cls!);
  return cls!;
}

function wrap(info: TypeInfo, segment: Segment, offset: number, length: number): TypedArray {
  const arr = new (rawClass(info))(segment.sab, offset, length);
  placeOf.set(arr, { segment, offset, info });
  return arr;
}

function writeBytes(target: Uint8Array, text: string | Uint8Array): void {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  if (!(bytes instanceof Uint8Array)) throw new ValueError(`value of a 'c' array is a string or Uint8Array, not ${describe(text)}`);
  if (bytes.length > target.length) {
    throw new ValueError(`${bytes.length} bytes do not fit in a 'c' array of length ${target.length}`);
  }
  target.set(bytes);
  if (bytes.length < target.length) target[bytes.length] = 0;
}

/** Size and initial elements from Python's `size_or_initializer`. */
function initialElements(info: TypeInfo, sizeOrInit: unknown): { length: number; items: ArrayLike<unknown> | null } {
  if (typeof sizeOrInit === 'number') {
    if (!Number.isSafeInteger(sizeOrInit) || sizeOrInit < 0) {
      throw new ValueError(`array size must be a non-negative integer, not ${sizeOrInit}`);
    }
    return { length: sizeOrInit, items: null };
  }
  if (info.code === 'c' && typeof sizeOrInit === 'string') {
    const bytes = Buffer.from(sizeOrInit, 'latin1');
    return { length: bytes.length, items: bytes };
  }
  if (sizeOrInit !== null && typeof sizeOrInit === 'object' && Symbol.iterator in sizeOrInit) {
    const items = ArrayBuffer.isView(sizeOrInit) ? (sizeOrInit as unknown as ArrayLike<unknown>) : [...(sizeOrInit as Iterable<unknown>)];
    return { length: items.length, items };
  }
  throw new ValueError(
    `size_or_initializer is ${describe(sizeOrInit)}; give a length (number) or an iterable of initial values`,
  );
}

function allocateRaw(typecode: unknown, sizeOrInit: unknown): TypedArray {
  const info = typeInfo(typecode);
  const { length, items } = initialElements(info, sizeOrInit);
  const segment = Segment.create(DATA_OFFSET + length * info.size);
  const arr = wrap(info, segment, segment.base + DATA_OFFSET, length);
  if (items) {
    for (let i = 0; i < length; i++) (arr as any)[i] = toElement(info, items[i], `initializer[${i}]`);
  }
  return arr;
}

/**
 * A typed array in shared memory, no lock (Python's `multiprocessing.RawArray`).
 * @example
 * ```ts
 * const xs = mp.RawArray('d', [0.5, 1.5]);   // a Float64Array over shared memory
 * xs[0] += 1;
 * ```
 */
export function makeRawArray<T extends Typecode>(
  typecode: T,
  sizeOrInit: number | Iterable<ElementOf<T> | number> | (T extends 'c' ? string : never),
): RawSharedArray<T> {
  return allocateRaw(typecode, sizeOrInit) as unknown as RawSharedArray<T>;
}

interface ArrayHandle extends SharedHandle {
  readonly raw: SharedHandle;
  readonly lock: SharedHandle | null;
}

/** Methods of a synchronized shared array; it is also indexable (`arr[i]`, negative `i` too). */
export interface SynchronizedArrayMethods<E> extends Iterable<E> {
  readonly length: number;
  readonly typecode: Typecode;
  /** `'c'` arrays: the bytes up to the first NUL as latin1 text (settable). */
  value: string;
  getLock(): Lock | RLock;
  /** The raw typed array underneath (no locking). */
  getObj(): RawSharedArray;
  /** Copies `values` in at `offset` under the lock (Python's slice assignment). */
  set(values: ArrayLike<E | number>, offset?: number): void;
  /** A private copy of the elements, taken under the lock (Python's `arr[:]`). */
  toArray(): E[];
}

/** What `mp.Array` returns: indexable like a typed array, each access locked. */
export type SynchronizedArray<E = number> = SynchronizedArrayMethods<E> & { [index: number]: E };

class SynchronizedArrayImpl {
  constructor(
    readonly raw: TypedArray,
    readonly lock: Lock | RLock | null,
  ) {}

  locked<T>(fn: () => T): T {
    const lock = this.lock;
    return !lock || lock.heldByCurrentTask() ? fn() : lock.guardSync(fn);
  }

  index(i: number): number {
    const n = this.raw.length;
    const j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) throw new IndexError(`index ${i} is out of range for a shared array of length ${n}`);
    return j;
  }

  get length(): number {
    return this.raw.length;
  }
  get typecode(): Typecode {
    return (this.raw as any).typecode;
  }
  get value(): string {
    return this.locked(() => (this.raw as any).value);
  }
  set value(text: string) {
    this.locked(() => ((this.raw as any).value = text));
  }
  getLock(): Lock | RLock {
    if (!this.lock) throw new ValueError('this Array was made with { lock: false } and has no lock');
    return this.lock;
  }
  getObj(): TypedArray {
    return this.raw;
  }
  set(values: ArrayLike<unknown>, offset = 0): void {
    const info = placeOf.get(this.raw)!.info;
    if (!Number.isInteger(offset) || offset < 0 || offset + values.length > this.raw.length) {
      throw new ValueError(
        `cannot place ${values.length} values at offset ${offset} in a shared array of length ${this.raw.length}`,
      );
    }
    const converted = Array.from(values, (v, i) => toElement(info, v, `values[${i}]`));
    this.locked(() => (this.raw as any).set(converted, offset));
  }
  toArray(): unknown[] {
    return this.locked(() => Array.from(this.raw as ArrayLike<unknown>));
  }
  [Symbol.iterator](): Iterator<unknown> {
    return this.toArray()[Symbol.iterator]();
  }
  toString(): string {
    return `<SynchronizedArray wrapper for ${this.raw.constructor.name}(${this.raw.length})>`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `SynchronizedArray(${this.typecode}) [ ${this.toArray().join(', ')} ]`;
  }
  toJSON(): unknown[] {
    return this.toArray();
  }
  [SHARED](): ArrayHandle {
    return { kind: 'Array', raw: (this.raw as any)[SHARED](), lock: this.lock ? this.lock[SHARED]() : null };
  }
}

// Messages name it by what users call it (`… is a SynchronizedArray`).
Object.defineProperty(SynchronizedArrayImpl, 'name', { value: 'SynchronizedArray' });

const INTEGER_KEY = /^-?(0|[1-9]\d*)$/;

const indexing: ProxyHandler<SynchronizedArrayImpl> = {
  get(target, key, receiver) {
    if (typeof key === 'string' && INTEGER_KEY.test(key)) {
      const i = target.index(Number(key));
      return target.locked(() => target.raw[i]);
    }
    return Reflect.get(target, key, receiver);
  },
  set(target, key, value, receiver) {
    if (typeof key === 'string' && INTEGER_KEY.test(key)) {
      const i = target.index(Number(key));
      const element = toElement(placeOf.get(target.raw)!.info, value, `array[${key}]`);
      target.locked(() => ((target.raw as any)[i] = element));
      return true;
    }
    return Reflect.set(target, key, value, receiver);
  },
  has(target, key) {
    if (typeof key === 'string' && INTEGER_KEY.test(key)) return Number(key) >= 0 && Number(key) < target.raw.length;
    return Reflect.has(target, key);
  },
  ownKeys(target) {
    return [...Array.from({ length: target.raw.length }, (_, i) => String(i)), ...Reflect.ownKeys(target)];
  },
  getOwnPropertyDescriptor(target, key) {
    if (typeof key === 'string' && INTEGER_KEY.test(key) && Number(key) >= 0 && Number(key) < target.raw.length) {
      return { value: target.raw[Number(key)], writable: true, enumerable: true, configurable: true };
    }
    return Reflect.getOwnPropertyDescriptor(target, key);
  },
};

function synchronized(raw: TypedArray, lock: Lock | RLock | null): SynchronizedArray<any> {
  return new Proxy(new SynchronizedArrayImpl(raw, lock), indexing) as unknown as SynchronizedArray<any>;
}

/**
 * A fixed-length typed array in shared memory, guarded by a lock (Python's
 * `multiprocessing.Array`; also exported as `SharedArray`).
 * @param sizeOrInit a length (zero-filled), or initial values (`'c'`: also a string).
 * @example
 * ```ts
 * const result = mp.Array('i', 4);
 * result[0] = 1;
 * console.log(Array.from(result)); // [1, 0, 0, 0]
 * ```
 */
export function makeArray<T extends Typecode>(
  typecode: T,
  sizeOrInit: number | Iterable<ElementOf<T> | number> | (T extends 'c' ? string : never),
  options?: { lock?: true | Lock | RLock },
): SynchronizedArray<ElementOf<T>>;
export function makeArray<T extends Typecode>(
  typecode: T,
  sizeOrInit: number | Iterable<ElementOf<T> | number> | (T extends 'c' ? string : never),
  options: { lock: false },
): RawSharedArray<T>;
export function makeArray<T extends Typecode>(
  typecode: T,
  sizeOrInit: number | Iterable<ElementOf<T> | number> | (T extends 'c' ? string : never),
  options?: { lock?: LockOption },
): SynchronizedArray<ElementOf<T>> | RawSharedArray<T>;
export function makeArray<T extends Typecode>(
  typecode: T,
  sizeOrInit: number | Iterable<ElementOf<T> | number> | (T extends 'c' ? string : never),
  options: { lock?: LockOption } = {},
): SynchronizedArray<ElementOf<T>> | RawSharedArray<T> {
  const raw = allocateRaw(typecode, sizeOrInit);
  const lock = resolveLock(options.lock, placeOf.get(raw)!.segment);
  // Python: Array(..., lock=False) is the raw ctypes array itself.
  return lock === null ? (raw as unknown as RawSharedArray<T>) : synchronized(raw, lock);
}

registerShared('RawArray', (h) => {
  const { segment, offset, typecode, length } = h as RawArrayHandle;
  return wrap(typeInfo(typecode), Segment.attach(segment), offset, length);
});
registerShared('Array', (h) => {
  const { raw, lock } = h as ArrayHandle;
  return synchronized(reviveShared(raw) as TypedArray, lock ? (reviveShared(lock) as Lock | RLock) : null);
});
