/**
 * `Value` and `RawValue`: one typed element in shared memory.
 *
 * Layout in its segment's payload: an RLock's 16 bytes (used when the value
 * owns its lock), then the element at offset 16, 8-aligned.
 */
import { ValueError } from '../errors.js';
import { allocateRegion, attachRegion, type Region, type RegionHandle } from '../shm/region.js';
import { Lock, LOCK_BYTES, RLock } from '../sync/lock.js';
import { SHARED, registerShared, reviveShared, type SharedHandle } from '../serialize/shared.js';
import { toElement, typeInfo, type ElementOf, type TypeInfo, type TypedArray, type Typecode } from './typecodes.js';

/** Where the element sits in the payload, after the room for a lock. */
export const DATA_OFFSET = LOCK_BYTES;

/** A lock option as Python takes it: `true` (a new RLock), `false`, or a lock to use. */
export type LockOption = boolean | Lock | RLock;

/** @internal Makes the lock a synchronized object asks for, inside `segment` when new. */
export function resolveLock(option: unknown, region: Region): Lock | RLock | null {
  if (option === undefined || option === true) return new RLock({ segment: region, offset: region.base });
  if (option === false) return null;
  if (option instanceof Lock || option instanceof RLock) return option;
  throw new ValueError(`lock must be true, false, a Lock or an RLock, not ${String(option)}`);
}

interface RawValueHandle extends SharedHandle {
  readonly segment: RegionHandle;
  readonly offset: number;
  readonly typecode: Typecode;
}

/**
 * One element of shared memory without a lock (Python's `RawValue`, a ctypes
 * object). Reads and writes of one aligned element are atomic on x86-64, but
 * read-modify-write (`v.value += 1`) is not: guard it with a lock.
 */
export class RawValue<E extends number | bigint = number> {
  /** @internal */ readonly segment: Region;
  /** @internal */ readonly offset: number;
  /** @internal */ readonly info: TypeInfo;
  private readonly cell: TypedArray;

  /** @internal Use `mp.RawValue(typecode, init)`. */
  constructor(info: TypeInfo, segment: Region, offset: number) {
    this.info = info;
    this.segment = segment;
    this.offset = offset;
    this.cell = new info.array(segment.sab, offset, 1);
  }

  /** The typecode this value was made with. */
  get typecode(): Typecode {
    return this.info.code;
  }

  get value(): E {
    return this.cell[0] as E;
  }

  set value(v: E | number) {
    (this.cell as any)[0] = toElement(this.info, v, 'value');
  }

  toString(): string {
    return `${this.info.ctype}(${String(this.value)})`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal */
  [SHARED](): RawValueHandle {
    return { kind: 'RawValue', segment: this.segment.toHandle(), offset: this.offset, typecode: this.info.code };
  }
}

interface ValueHandle extends SharedHandle {
  readonly raw: RawValueHandle;
  /**
   * The lock, when it is not the value's own; `ownLock` names the kind of
   * one that lives beside the value, in the same region: it travels as no
   * handle of its own, so the receiver holds one reference per Value, not two.
   */
  readonly lock: SharedHandle | null;
  readonly ownLock?: 'Lock' | 'RLock';
}

/**
 * A shared element with a lock (Python's `Synchronized`, what `mp.Value`
 * returns). Each `.value` read or write takes the lock, unless the running
 * task holds it already; for read-modify-write hold it around the whole
 * update. A read or write that would wait for another async task of the same
 * thread throws DeadlockError: use `await v.getLock().withLock(…)` there.
 * @example
 * ```ts
 * const counter = mp.Value('i', 0);
 * await counter.getLock().withLock(() => { counter.value += 1; });
 * ```
 */
export class SynchronizedValue<E extends number | bigint = number> {
  private readonly raw: RawValue<E>;
  private readonly lock: Lock | RLock | null;

  /** @internal Use `mp.Value(typecode, init, { lock })`. */
  constructor(raw: RawValue<E>, lock: Lock | RLock | null) {
    this.raw = raw;
    this.lock = lock;
  }

  get typecode(): Typecode {
    return this.raw.typecode;
  }

  get value(): E {
    const lock = this.lock;
    if (!lock || lock.heldByCurrentTask()) return this.raw.value;
    return lock.guardSync(() => this.raw.value);
  }

  set value(v: E | number) {
    const lock = this.lock;
    if (!lock || lock.heldByCurrentTask()) this.raw.value = v;
    else lock.guardSync(() => (this.raw.value = v));
  }

  /** The lock guarding this value (an RLock unless one was given). */
  getLock(): Lock | RLock {
    if (!this.lock) throw new ValueError('this Value was made with { lock: false } and has no lock');
    return this.lock;
  }

  /** The unsynchronized value underneath (Python's `get_obj()`). */
  getObj(): RawValue<E> {
    return this.raw;
  }

  toString(): string {
    return `<Synchronized wrapper for ${this.raw.toString()}>`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal */
  [SHARED](): ValueHandle {
    const lock = this.lock;
    const raw = this.raw[SHARED]();
    if (lock !== null && lock.segment === this.raw.segment && lock.offset === this.raw.segment.base) {
      return { kind: 'Value', raw, lock: null, ownLock: lock instanceof RLock ? 'RLock' : 'Lock' };
    }
    return { kind: 'Value', raw, lock: lock ? lock[SHARED]() : null };
  }
}

function allocateRaw<T extends Typecode>(typecode: T, init: unknown): RawValue<ElementOf<T>> {
  const info = typeInfo(typecode);
  const element = toElement(info, init, 'initial value');
  const segment = allocateRegion(DATA_OFFSET + 8);
  const raw = new RawValue<ElementOf<T>>(info, segment, segment.base + DATA_OFFSET);
  raw.value = element as ElementOf<T>;
  return raw;
}

/**
 * A shared element with no lock (Python's `multiprocessing.RawValue`).
 * @example `const flag = mp.RawValue('b', 0);`
 */
export function makeRawValue<T extends Typecode>(typecode: T, init: ElementOf<T> | number = 0): RawValue<ElementOf<T>> {
  return allocateRaw(typecode, init);
}

/**
 * A shared element guarded by a lock (Python's `multiprocessing.Value`).
 * @param typecode one of `c b B h H i I l L q Q f d`.
 * @param init the initial value (0 by default).
 * @param options.lock `true` (a new RLock, default), a Lock/RLock to share, or `false`: then the
 *   result is the unsynchronized `RawValue` itself, as Python's.
 * @example
 * ```ts
 * const total = mp.Value('d', 0);
 * total.value = 2.5;
 * ```
 */
export function makeValue<T extends Typecode>(
  typecode: T,
  init?: ElementOf<T> | number,
  options?: { lock?: true | Lock | RLock },
): SynchronizedValue<ElementOf<T>>;
export function makeValue<T extends Typecode>(typecode: T, init: ElementOf<T> | number, options: { lock: false }): RawValue<ElementOf<T>>;
export function makeValue<T extends Typecode>(
  typecode: T,
  init?: ElementOf<T> | number,
  options?: { lock?: LockOption },
): SynchronizedValue<ElementOf<T>> | RawValue<ElementOf<T>>;
export function makeValue<T extends Typecode>(
  typecode: T,
  init: ElementOf<T> | number = 0,
  options: { lock?: LockOption } = {},
): SynchronizedValue<ElementOf<T>> | RawValue<ElementOf<T>> {
  const raw = allocateRaw(typecode, init);
  const lock = resolveLock(options.lock, raw.segment);
  // Python: Value(..., lock=False) is the raw ctypes object itself.
  return lock === null ? raw : new SynchronizedValue(raw, lock);
}

registerShared('RawValue', (h) => {
  const { segment, offset, typecode } = h as RawValueHandle;
  return new RawValue(typeInfo(typecode), attachRegion(segment), offset);
});
registerShared('Value', (h) => {
  const { raw, lock, ownLock } = h as ValueHandle;
  const value = reviveShared(raw) as RawValue;
  if (ownLock) {
    const place = { segment: value.segment, offset: value.segment.base };
    return new SynchronizedValue(value, ownLock === 'RLock' ? new RLock(place) : new Lock(place));
  }
  return new SynchronizedValue(value, lock ? (reviveShared(lock) as Lock | RLock) : null);
});
