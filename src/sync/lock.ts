/**
 * Lock and RLock on four int32 words of a segment.
 *
 * Words (index: meaning — invariant):
 *   STATE 0: 0 free, 1 held, 2 held and somebody may sleep on it — only a
 *            holder moves it back to 0 (or a recoverer takes it over).
 *   OWNER 1: tid of the holder's thread, 0 when free — written by the holder
 *            right after it wins STATE, cleared before it releases STATE.
 *   COUNT 2: RLock recursion depth — only meaningful while OWNER is set,
 *            only touched by the holder.
 *   PID   3: pid of the holder — with OWNER, what `ownerAlive` checks; only
 *            meaningful while OWNER is set.
 *
 * Acquire is a compare-exchange fast path, a short spin, then a futex sleep
 * on STATE (Drepper's three-state mutex, so an uncontended release makes no
 * syscall). Sleeps are cut into slices; after each slice a waiter checks
 * whether the holder's thread still lives, and if not takes the lock over
 * with a compare-exchange on OWNER, so exactly one waiter inherits it.
 * The new holder can read `ownerDied`.
 *
 * Memory ordering: only STATE is changed with read-modify-write atomics;
 * OWNER, COUNT and PID are written with plain stores by the holder alone.
 * On x86-64 (the platform the native layer targets) stores are not reordered
 * with other stores, and the STATE compare-exchange/exchange are full
 * barriers, so a waiter that sees OWNER also sees the PID written before it.
 * That keeps an uncontended acquire+release at two locked instructions.
 *
 * Known gap: a holder killed between winning STATE and writing OWNER (two
 * adjacent instructions) leaves a lock with no owner to check; it stays held.
 */
import { ValueError } from '../errors.js';
import { Segment, type SegmentHandle } from '../shm/segment.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import { WaitResult, deadlineOf, remaining, waitAsync, waitSync, wake } from './futex.js';
import { SELF_PID, ownerAlive, selfTid } from './owner.js';

const STATE = 0;
const OWNER = 1;
const COUNT = 2;
const PID = 3;

/** Bytes a lock occupies in a segment. */
export const LOCK_BYTES = 16;

/** Busy checks before sleeping: a holder usually lets go within a few µs. */
const SPIN = 100;
/**
 * An async sleeper wakes through the waiter thread and the event loop, tens
 * of µs; a holder usually lets go far sooner, so async acquirers spin longer
 * (a few µs of a blocked loop) before they sleep.
 */
const SPIN_ASYNC = 2000;
/** How long a waiter sleeps before checking that the holder still lives. */
const OWNER_CHECK_MS = 100;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** The settled answer of every uncontended `acquire()`. */
const ACQUIRED: Promise<boolean> = Promise.resolve(true);

/** Options of `acquire`, as Python's `acquire(block=True, timeout=None)`. */
export interface AcquireOptions {
  /** `false`: try once and return at once. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most (ignored when `block` is false). Default: forever. */
  timeout?: number;
}

interface LockHandle extends SharedHandle {
  readonly segment: SegmentHandle;
  readonly offset: number;
}

abstract class MutexBase {
  /** @internal */ readonly segment: Segment;
  /** @internal */ readonly offset: number;
  /** @internal */ readonly words: Int32Array;
  private died = false;

  protected constructor(place?: { segment: Segment; offset: number }) {
    this.segment = place?.segment ?? Segment.create(LOCK_BYTES);
    this.offset = place?.offset ?? this.segment.base;
    this.words = new Int32Array(this.segment.sab, this.offset, 4);
  }

  /** True when the latest acquisition through this object took the lock over from a holder that had died. */
  get ownerDied(): boolean {
    return this.died;
  }

  /** @internal Whether the calling thread holds the lock. */
  heldByMe(): boolean {
    return this.words[OWNER] === selfTid() && this.words[PID] === SELF_PID;
  }

  /** Re-entry by the holder; `Lock` says no, `RLock` counts. */
  protected abstract reenter(): boolean;

  private won(): true {
    const w = this.words;
    // Reads are cheaper than writes on a contended line: skip unchanged words.
    if (w[PID] !== SELF_PID) w[PID] = SELF_PID;
    if (w[COUNT] !== 1) w[COUNT] = 1;
    w[OWNER] = selfTid();
    this.died = false;
    return true;
  }

  private tryOnce(): boolean {
    return Atomics.compareExchange(this.words, STATE, 0, 1) === 0 && this.won();
  }

  private spin(rounds: number): boolean {
    const w = this.words;
    for (let i = 0; i < rounds; i++) {
      if (Atomics.load(w, STATE) === 0 && Atomics.compareExchange(w, STATE, 0, 1) === 0) return this.won();
    }
    return false;
  }

  /** Takes the lock over when its holder's thread is gone. */
  private recover(): boolean {
    const w = this.words;
    const tid = Atomics.load(w, OWNER);
    const pid = Atomics.load(w, PID);
    if (tid === 0 || Atomics.load(w, STATE) === 0 || ownerAlive(pid, tid)) return false;
    if (Atomics.compareExchange(w, OWNER, tid, selfTid()) !== tid) return false;
    Atomics.store(w, PID, SELF_PID);
    Atomics.store(w, COUNT, 1);
    Atomics.store(w, STATE, 2); // others may be asleep; make release wake them
    this.died = true;
    return true;
  }

  /**
   * Acquires the lock, waiting without blocking the event loop.
   * @returns true when acquired, false on timeout or when `block` is false and it is taken.
   * @example
   * ```ts
   * if (await lock.acquire({ timeout: 100 })) try { … } finally { lock.release(); }
   * ```
   */
  acquire(options: AcquireOptions = {}): Promise<boolean> {
    // No async function here: an uncontended acquire must not cost the extra
    // promise turns of one (the caller resumes one microtask later, still
    // holding the lock, and under contention that doubles the hold time).
    if (this.takeWithoutSleeping(options)) return ACQUIRED;
    return this.acquireSlowly(options);
  }

  /** The synchronous part of an async acquire: try, re-enter, spin. */
  private takeWithoutSleeping(options: AcquireOptions): boolean {
    return (
      this.tryOnce() || (this.heldByMe() && this.reenter()) || (options.block !== false && this.spin(SPIN_ASYNC))
    );
  }

  /** Sleeps on the lock word until it is ours (or the deadline passes). */
  private async acquireSlowly(options: AcquireOptions): Promise<boolean> {
    if (options.block === false) return this.recover();
    const deadline = deadlineOf(options.timeout);
    const w = this.words;
    for (;;) {
      if (Atomics.exchange(w, STATE, 2) === 0) return this.won();
      const left = remaining(deadline);
      if (left === 0) return false;
      const r = await waitAsync(w, STATE, 2, Math.min(left, OWNER_CHECK_MS));
      if (r === WaitResult.TimedOut && this.recover()) return true;
    }
  }

  /**
   * Acquires the lock, blocking the calling thread: for hot paths in
   * children, where blocking is what Python does.
   */
  acquireSync(options: AcquireOptions = {}): boolean {
    if (this.tryOnce()) return true;
    if (this.heldByMe() && this.reenter()) return true;
    if (options.block === false) return this.recover();
    const deadline = deadlineOf(options.timeout);
    if (this.spin(SPIN)) return true;
    const w = this.words;
    for (;;) {
      if (Atomics.exchange(w, STATE, 2) === 0) return this.won();
      const left = remaining(deadline);
      if (left === 0) return false;
      const r = waitSync(w, STATE, 2, Math.min(left, OWNER_CHECK_MS));
      if (r === WaitResult.TimedOut && this.recover()) return true;
    }
  }

  /** Releases the lock. */
  abstract release(): void;

  /** @internal Lets the lock go entirely. */
  protected unlock(): void {
    const w = this.words;
    // COUNT and PID mean nothing once OWNER is 0; leaving them spares writes.
    w[OWNER] = 0;
    if (Atomics.exchange(w, STATE, 0) === 2) wake(w, STATE, 1);
  }

  /** @internal */
  protected isLocked(): boolean {
    return Atomics.load(this.words, STATE) !== 0;
  }

  /**
   * Runs `fn` holding the lock and releases it however `fn` ends.
   * @example `const n = await lock.withLock(() => counter.value++);`
   */
  withLock<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    if (this.takeWithoutSleeping({})) return this.runHeld(fn);
    return this.acquireSlowly({}).then(() => this.runHeld(fn));
  }

  /**
   * Runs `fn` with the lock held and releases it as soon as `fn` is done:
   * at once when `fn` is synchronous, so the lock is not held across the
   * caller's await (under contention that would double the hold time).
   */
  private runHeld<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    let result: T | Promise<T>;
    try {
      result = fn();
    } catch (err) {
      this.release();
      return Promise.reject(err);
    }
    if (!isThenable(result)) {
      this.release();
      return Promise.resolve(result as Awaited<T>);
    }
    return Promise.resolve(result).finally(() => this.release()) as Promise<Awaited<T>>;
  }

  /** `withLock` for synchronous code, blocking the thread while waiting. */
  withLockSync<T>(fn: () => T): T {
    this.acquireSync();
    try {
      return fn();
    } finally {
      this.release();
    }
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal */
  [SHARED](): LockHandle {
    return { kind: this.constructor.name, segment: this.segment.toHandle(), offset: this.offset };
  }
}

/**
 * A mutual-exclusion lock shared by threads and processes (Python's
 * `multiprocessing.Lock`). Any thread may release it.
 * @example
 * ```ts
 * const lock = new mp.Lock();
 * await lock.withLock(async () => { … });
 * ```
 */
export class Lock extends MutexBase {
  constructor(place?: { segment: Segment; offset: number }) {
    super(place);
  }

  protected reenter(): boolean {
    return false;
  }

  release(): void {
    if (!this.isLocked()) throw new ValueError('release() of a Lock that is not held');
    this.unlock();
  }

  override toString(): string {
    return `<Lock(owner=${this.isLocked() ? Atomics.load(this.words, OWNER) : 'None'})>`;
  }
}

/**
 * A re-entrant lock (Python's `multiprocessing.RLock`): the holding thread
 * may acquire it again, and must release it as often.
 */
export class RLock extends MutexBase {
  constructor(place?: { segment: Segment; offset: number }) {
    super(place);
  }

  protected reenter(): boolean {
    this.words[COUNT]! += 1;
    return true;
  }

  release(): void {
    if (!this.heldByMe()) throw new ValueError('release() of an RLock by a thread that does not hold it');
    const count = this.words[COUNT]!;
    if (count > 1) {
      this.words[COUNT] = count - 1;
      return;
    }
    this.unlock();
  }

  override toString(): string {
    const owner = Atomics.load(this.words, OWNER);
    return owner ? `<RLock(owner=${owner}, count=${this.words[COUNT]})>` : '<RLock(owner=None, count=0)>';
  }
}

function reviveLock(ctor: typeof Lock | typeof RLock) {
  return (h: SharedHandle) => {
    const { segment, offset } = h as LockHandle;
    return new ctor({ segment: Segment.attach(segment), offset });
  };
}
registerShared('Lock', reviveLock(Lock));
registerShared('RLock', reviveLock(RLock));
