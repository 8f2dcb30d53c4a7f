/**
 * Lock and RLock on int32 words of a segment.
 *
 * Words (index: meaning — invariant):
 *   STATE 0: 0 when free; otherwise the holder's thread id, with the WAITERS
 *            bit set once somebody may sleep on it. Only the holder moves it
 *            back to 0, or a recoverer replaces a dead holder's id with its own.
 *   COUNT 1: RLock recursion depth — only meaningful while held, only
 *            touched by the holder.
 *   2, 3:    reserved.
 *
 * The holder's id is in the very word the compare-exchange wins, as in
 * Linux's robust and PI futexes: there is no instant at which the lock is
 * held but its owner unrecorded, so a holder killed at any instruction
 * leaves a lock that the next waiter can take over. Linux thread ids are
 * unique system-wide while the thread lives, so one id names a holder whether
 * it is a process's main thread or a worker thread, and `kill(tid, 0)` tells
 * whether it still lives.
 *
 * Acquire is a compare-exchange fast path, a short spin, then a futex sleep
 * on STATE (the WAITERS bit plays Drepper's "contended" state, so an
 * uncontended release makes no syscall). Sleeps are cut into slices; after
 * each a waiter checks whether the holder lives, and if not takes the lock
 * over with a compare-exchange on STATE, so exactly one waiter inherits it.
 * The new holder can read `ownerDied`.
 */
import { ValueError } from '../errors.js';
import { Segment, type SegmentHandle } from '../shm/segment.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import { WaitResult, deadlineOf, remaining, waitAsync, waitSync, wake } from './futex.js';
import { ownerAlive, selfTid } from './owner.js';

const STATE = 0;
const COUNT = 1;

/** Set in STATE while a waiter may be asleep: release must wake one. */
const WAITERS = 1 << 30;
/** The holder's thread id in STATE (Linux's pid_max is at most 2^22). */
const OWNER = WAITERS - 1;

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
    return (this.words[STATE]! & OWNER) === selfTid();
  }

  /** @internal The kind its handle is revived by (not `constructor.name`: minifiers and subclasses change that). */
  protected abstract readonly kind: 'Lock' | 'RLock';

  /** Re-entry by the holder; `Lock` says no, `RLock` counts. */
  protected abstract reenter(): boolean;

  private won(): true {
    // A read is cheaper than a write on a contended line: COUNT is nearly always 1.
    if (this.words[COUNT] !== 1) this.words[COUNT] = 1;
    this.died = false;
    return true;
  }

  private tryOnce(): boolean {
    return Atomics.compareExchange(this.words, STATE, 0, selfTid()) === 0 && this.won();
  }

  private spin(rounds: number): boolean {
    const w = this.words;
    const me = selfTid();
    for (let i = 0; i < rounds; i++) {
      if (Atomics.load(w, STATE) === 0 && Atomics.compareExchange(w, STATE, 0, me) === 0) return this.won();
    }
    return false;
  }

  /**
   * One step of the sleeping acquire: take a free lock (marked WAITERS, as
   * others may sleep), or mark a held one so its release wakes us.
   * @returns true when acquired, else the STATE value to sleep on.
   */
  private claimOrMark(): true | number {
    const w = this.words;
    for (;;) {
      const s = Atomics.load(w, STATE);
      if (s === 0) {
        if (Atomics.compareExchange(w, STATE, 0, selfTid() | WAITERS) === 0) return this.won();
        continue;
      }
      if (s & WAITERS || Atomics.compareExchange(w, STATE, s, s | WAITERS) === s) return s | WAITERS;
    }
  }

  /** Takes the lock over when its holder's thread is gone. */
  private recover(): boolean {
    const w = this.words;
    const s = Atomics.load(w, STATE);
    if (s === 0 || ownerAlive(s & OWNER)) return false;
    // Exactly one waiter replaces the dead id; WAITERS stays, others may sleep.
    if (Atomics.compareExchange(w, STATE, s, selfTid() | WAITERS) !== s) return false;
    w[COUNT] = 1;
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
    for (;;) {
      const seen = this.claimOrMark();
      if (seen === true) return true;
      const left = remaining(deadline);
      if (left === 0) return false;
      const r = await waitAsync(this.words, STATE, seen, Math.min(left, OWNER_CHECK_MS));
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
    for (;;) {
      const seen = this.claimOrMark();
      if (seen === true) return true;
      const left = remaining(deadline);
      if (left === 0) return false;
      const r = waitSync(this.words, STATE, seen, Math.min(left, OWNER_CHECK_MS));
      if (r === WaitResult.TimedOut && this.recover()) return true;
    }
  }

  /** Releases the lock. */
  abstract release(): void;

  /** @internal Lets the lock go entirely. */
  protected unlock(): void {
    if (Atomics.exchange(this.words, STATE, 0) & WAITERS) wake(this.words, STATE, 1);
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
    return { kind: this.kind, segment: this.segment.toHandle(), offset: this.offset };
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
  protected readonly kind = 'Lock';

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
    return `<Lock(owner=${Atomics.load(this.words, STATE) & OWNER || 'None'})>`;
  }
}

/**
 * A re-entrant lock (Python's `multiprocessing.RLock`): the holding thread
 * may acquire it again, and must release it as often.
 */
export class RLock extends MutexBase {
  protected readonly kind = 'RLock';

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
    const owner = Atomics.load(this.words, STATE) & OWNER;
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
