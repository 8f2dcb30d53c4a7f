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
 * leaves a lock that the next waiter can take over. Liveness is read from
 * /proc (see liveness.ts), so a killed holder that is not yet reaped (a
 * zombie) counts as dead.
 *
 * Inside one thread, async tasks interleave at every await, so the thread id
 * alone cannot tell who holds a lock. Each thread therefore also records,
 * per lock word, the *task frame* (async-context.ts) that holds it: the
 * frame `withLock` opened for its callback, or the root for code outside
 * any `withLock`. A task of this thread acquires only when the word is free
 * (or, for an RLock, when the holding frame is its own or one it runs
 * inside); otherwise it sleeps on the word like a waiter from another
 * process, and the holder's release wakes it. A synchronous acquire that
 * finds the word held by another task of its own thread could only wait
 * for a task that cannot run while the thread is blocked: it throws
 * DeadlockError instead of hanging.
 *
 * Acquire is a compare-exchange fast path, a short spin, then a futex sleep
 * on STATE (the WAITERS bit plays Drepper's "contended" state, so an
 * uncontended release makes no syscall). Sleeps are cut into slices; after
 * each a waiter checks whether the holder lives, and if not takes the lock
 * over with a compare-exchange on STATE, so exactly one waiter inherits it.
 * The new holder can read `ownerDied`.
 */
import { DeadlockError, ValueError } from '../errors.js';
import { Segment, type SegmentHandle } from '../shm/segment.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import { currentTask, isWithin, openTask, parentOf, runInFrame, type Frame } from '../async-context.js';
import { isAlive, selfTid, threadIdOf } from '../liveness.js';
import { WaitResult, deadlineOf, remaining, waitAsync, waitSync, wake } from './futex.js';

const STATE = 0;
const COUNT = 1;

/** Set in STATE while a waiter may be asleep: release must wake one. */
const WAITERS = 1 << 30;
/** The holder's id in STATE: its thread id and start-time tag (see liveness.ts). */
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
/** The longest pause between two looks at a held lock, in `spinPause` steps. */
const MAX_PAUSE = 64;

/** Burns about `steps` cheap operations without touching shared memory (JS has no PAUSE instruction). */
let pauseSink = 0;
function spinPause(steps: number): void {
  let x = pauseSink;
  for (let i = 0; i < steps; i++) x = (x * 31 + i) | 0;
  pauseSink = x;
}

/** How long a waiter sleeps before checking that the holder still lives. */
const OWNER_CHECK_MS = 100;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** The settled answer of every uncontended `acquire()`. */
const ACQUIRED: Promise<boolean> = Promise.resolve(true);
/** What `withLock` returns for a synchronous callback that returned nothing. */
const SETTLED_UNDEFINED: Promise<undefined> = Promise.resolve(undefined);

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

/**
 * This thread's view of one lock word, shared by every object of this
 * thread that wraps the same word (a lock revived twice).
 */
interface LocalHold {
  /**
   * True from this thread's acquisition until its own release. Exact for an
   * RLock (only its holder releases it); for a Lock, which any thread may
   * release, the word itself is checked instead.
   */
  held: boolean;
  /** The task frame of this thread that holds it (`null`: the root); meaningful while `held`. */
  owner: Frame | null;
}

/** Segments are mapped once per isolate, so (segment, offset) names a word here. */
const holds = new WeakMap<Segment, Map<number, LocalHold>>();

function localHold(segment: Segment, offset: number): LocalHold {
  let byOffset = holds.get(segment);
  if (!byOffset) holds.set(segment, (byOffset = new Map()));
  let hold = byOffset.get(offset);
  if (!hold) byOffset.set(offset, (hold = { held: false, owner: null }));
  return hold;
}

const SYNC_DEADLOCK =
  'would wait for a lock that another async task of this same thread holds; that task cannot run while this ' +
  'thread is blocked, so the call could never return. In async code take the lock with `await lock.withLock(async () => …)` ' +
  '(for a Value or Array: `await v.getLock().withLock(…)`), which waits without blocking the thread';

abstract class MutexBase {
  /** @internal */ readonly segment: Segment;
  /** @internal */ readonly offset: number;
  /** @internal */ readonly words: Int32Array;
  /** @internal */ protected readonly hold: LocalHold;
  private died = false;

  protected constructor(place?: { segment: Segment; offset: number }) {
    this.segment = place?.segment ?? Segment.create(LOCK_BYTES);
    this.offset = place?.offset ?? this.segment.base;
    this.words = new Int32Array(this.segment.sab, this.offset, 4);
    this.hold = localHold(this.segment, this.offset);
  }

  /** True when the latest acquisition through this object took the lock over from a holder that had died. */
  get ownerDied(): boolean {
    return this.died;
  }

  /** @internal The kind its handle is revived by (not `constructor.name`: minifiers and subclasses change that). */
  protected abstract readonly kind: 'Lock' | 'RLock';

  /** @internal Whether the running task holds the lock (its own frame's hold, or one it runs inside). */
  heldByCurrentTask(): boolean {
    const owner = this.hold.owner;
    return this.heldByThisThread() && (owner === null || isWithin(owner, currentTask()));
  }

  /** Whether this thread holds the lock (some task of it). */
  protected abstract heldByThisThread(): boolean;

  /** Whether STATE `s` names this thread as the holder. */
  private heldHere(s: number): boolean {
    return (s & OWNER) === selfTid();
  }

  /** Re-entry by the holder; `Lock` says no, `RLock` counts. */
  protected abstract reenter(): boolean;

  private won(frame: Frame | null): true {
    // A read is cheaper than a write on a contended line: COUNT is nearly always 1.
    if (this.words[COUNT] !== 1) this.words[COUNT] = 1;
    const hold = this.hold;
    hold.held = true;
    hold.owner = frame;
    this.died = false;
    return true;
  }

  private tryOnce(frame: Frame | null): boolean {
    return Atomics.compareExchange(this.words, STATE, 0, selfTid()) === 0 && this.won(frame);
  }

  private spin(rounds: number, frame: Frame | null): boolean {
    const w = this.words;
    const me = selfTid();
    let pause = 1;
    for (let i = 0; i < rounds; i++) {
      if (Atomics.load(w, STATE) === 0 && Atomics.compareExchange(w, STATE, 0, me) === 0) return this.won(frame);
      // Back off between looks: each look pulls the lock's cache line away
      // from the holder, who is working on that very line (the value sits
      // beside the word), so looking less often lets it finish sooner.
      spinPause(pause);
      if (pause < MAX_PAUSE) pause <<= 1;
    }
    return false;
  }

  /**
   * One step of the sleeping acquire: take a free lock (marked WAITERS, as
   * others may sleep), or mark a held one so its release wakes us.
   * @returns true when acquired, else the STATE value to sleep on.
   */
  private claimOrMark(frame: Frame | null): true | number {
    const w = this.words;
    for (;;) {
      const s = Atomics.load(w, STATE);
      if (s === 0) {
        if (Atomics.compareExchange(w, STATE, 0, selfTid() | WAITERS) === 0) return this.won(frame);
        continue;
      }
      if (s & WAITERS || Atomics.compareExchange(w, STATE, s, s | WAITERS) === s) return s | WAITERS;
    }
  }

  /** Takes the lock over when its holder's thread is gone (ended, or a zombie). */
  private recover(frame: Frame | null): boolean {
    const w = this.words;
    const s = Atomics.load(w, STATE);
    if (s === 0 || this.heldHere(s) || isAlive(s & OWNER)) return false;
    // Exactly one waiter replaces the dead id; WAITERS stays, others may sleep.
    if (Atomics.compareExchange(w, STATE, s, selfTid() | WAITERS) !== s) return false;
    this.won(frame);
    this.died = true;
    return true;
  }

  /**
   * Acquires the lock, waiting without blocking the event loop.
   *
   * Outside `withLock`, all code of one thread counts as one holder (the
   * thread's root frame): two async tasks that each call `acquire()` on an
   * RLock both get it. Use `withLock` to make concurrent tasks exclude each
   * other.
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
    const frame = currentTask();
    if (this.takeWithoutSleeping(options, frame)) return ACQUIRED;
    return this.acquireSlowly(options, frame);
  }

  /** The synchronous part of an async acquire: try, re-enter, spin. */
  private takeWithoutSleeping(options: AcquireOptions, frame: Frame | null): boolean {
    return this.tryOnce(frame) || this.reenterOrSpin(options.block !== false, frame);
  }

  /** After a failed compare-exchange: re-enter when a chain of ours holds it, else spin a while. */
  private reenterOrSpin(spin: boolean, frame: Frame | null): boolean {
    // Held by this thread: spinning cannot help, the holder is a task of ours.
    if (this.heldHere(Atomics.load(this.words, STATE))) return this.reenterFor(frame);
    return spin && this.spin(SPIN_ASYNC, frame);
  }

  /** Re-enters for `frame` when the holding frame of this thread is its own or one it runs inside. */
  private reenterFor(frame: Frame | null): boolean {
    if (frame !== null) parentOf(frame);
    return isWithin(this.hold.owner, frame) && this.reenter();
  }

  /** Sleeps on the lock word until it is ours (or the deadline passes). */
  private async acquireSlowly(options: AcquireOptions, frame: Frame | null): Promise<boolean> {
    if (options.block === false) return this.recover(frame);
    const deadline = deadlineOf(options.timeout);
    for (;;) {
      const seen = this.claimOrMark(frame);
      if (seen === true) return true;
      // While we slept, a chain this one runs inside may have taken it.
      if (this.heldHere(seen) && this.reenterFor(frame)) return true;
      const left = remaining(deadline);
      if (left === 0) return false;
      const r = await waitAsync(this.words, STATE, seen, Math.min(left, OWNER_CHECK_MS));
      if (r === WaitResult.TimedOut && this.recover(frame)) return true;
    }
  }

  /**
   * Acquires the lock, blocking the calling thread: for hot paths in
   * children, where blocking is what Python does.
   * @throws DeadlockError when another async task of this thread holds the
   *   lock (or, for a Lock, the running task holds it already): waiting
   *   could never end. `{ block: false }` returns false instead.
   */
  acquireSync(options?: AcquireOptions): boolean {
    if (Atomics.compareExchange(this.words, STATE, 0, selfTid()) === 0) return this.won(currentTask());
    return this.acquireSyncContended(options ?? {});
  }

  /** `acquireSync` past its fast path: re-entry, deadlock, spin, sleep, recovery. */
  private acquireSyncContended(options: AcquireOptions): boolean {
    const frame = currentTask();
    const s = Atomics.load(this.words, STATE);
    if (this.heldHere(s)) {
      const ours = isWithin(this.hold.owner, frame);
      if (ours && this.reenter()) return true;
      if (options.block === false) return false;
      throw new DeadlockError(
        ours
          ? `acquireSync() of a Lock this task holds already would never return (a Lock is not re-entrant: use an RLock, or release it first)`
          : `acquireSync() ${SYNC_DEADLOCK}`,
      );
    }
    if (options.block === false) return this.recover(frame);
    const deadline = deadlineOf(options.timeout);
    if (this.spin(SPIN, frame)) return true;
    for (;;) {
      const seen = this.claimOrMark(frame);
      if (seen === true) return true;
      const left = remaining(deadline);
      if (left === 0) return false;
      const r = waitSync(this.words, STATE, seen, Math.min(left, OWNER_CHECK_MS));
      if (r === WaitResult.TimedOut && this.recover(frame)) return true;
    }
  }

  /**
   * @internal Runs `read` under the lock for a synchronous accessor (a
   * Value's `.value`, an Array's `arr[i]`): directly when the running task
   * holds it already, otherwise around a blocking acquire.
   * @throws DeadlockError naming the async form, when another task of this thread holds it.
   */
  guardSync<T>(read: () => T): T {
    if (this.heldByCurrentTask()) return read();
    this.acquireSync();
    try {
      return read();
    } finally {
      this.release();
    }
  }

  /** Releases the lock. */
  release(): void {
    this.releaseIn(null, true);
  }

  /**
   * @internal Releases on behalf of the task `frame` (`withLock`), or of the
   * running task when `running` (whose frame is only read if it matters).
   */
  protected abstract releaseIn(frame: Frame | null, running: boolean): void;

  /** @internal Lets the lock go entirely. */
  protected unlock(): void {
    const hold = this.hold;
    hold.held = false;
    hold.owner = null;
    if (Atomics.exchange(this.words, STATE, 0) & WAITERS) wake(this.words, STATE, 1);
  }

  /**
   * Runs `fn` holding the lock and releases it however `fn` ends. The
   * callback runs as its own task: other tasks of this thread that call
   * `withLock` wait until it is done (even across its awaits), while code
   * inside it — after any await — holds the lock (an RLock re-enters, a
   * Value's accessors read directly).
   * @example `const n = await lock.withLock(() => counter.value++);`
   */
  withLock<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    const frame = openTask();
    // The frame learns its parent as it is entered, for free; only a
    // re-entry check needs it before (reenterFor reads it then). The slow
    // path's awaits and `.then` keep the caller's frame, so it is still
    // the parent when the callback is entered there.
    if (this.tryOnce(frame) || this.reenterOrSpin(true, frame)) return this.runHeld(fn, frame);
    return this.acquireSlowly({}, frame).then(() => this.runHeld(fn, frame));
  }

  /**
   * Runs `fn` in `frame` with the lock held and releases it as soon as `fn`
   * is done: at once when `fn` is synchronous, so the lock is not held
   * across the caller's await (under contention that would double the hold time).
   */
  private runHeld<T>(fn: () => T | Promise<T>, frame: Frame): Promise<Awaited<T>> {
    let result: T | Promise<T>;
    try {
      result = runInFrame(frame, fn);
    } catch (err) {
      this.releaseIn(frame, false);
      return Promise.reject(err);
    }
    if (!isThenable(result)) {
      this.releaseIn(frame, false);
      // A settled promise is shared harmlessly: saves an allocation per call.
      return (result === undefined ? SETTLED_UNDEFINED : Promise.resolve(result)) as Promise<Awaited<T>>;
    }
    return Promise.resolve(result).finally(() => this.releaseIn(frame, false)) as Promise<Awaited<T>>;
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

  protected heldByThisThread(): boolean {
    // Another thread may have released it: the word, not `hold`, tells.
    return (Atomics.load(this.words, STATE) & OWNER) === selfTid();
  }

  protected releaseIn(): void {
    // Any thread or task may release a Lock, as in Python.
    const hold = this.hold;
    hold.held = false;
    hold.owner = null;
    const s = Atomics.exchange(this.words, STATE, 0);
    if (s === 0) throw new ValueError('release() of a Lock that is not held');
    if (s & WAITERS) wake(this.words, STATE, 1);
  }

  override toString(): string {
    return `<Lock(owner=${threadIdOf(Atomics.load(this.words, STATE)) || 'None'})>`;
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

  protected heldByThisThread(): boolean {
    return this.hold.held;
  }

  protected releaseIn(frame: Frame | null, running: boolean): void {
    const hold = this.hold;
    const owner = hold.owner;
    if (!hold.held || (owner !== null && !isWithin(owner, running ? currentTask() : frame))) {
      throw new ValueError('release() of an RLock by a thread or task that does not hold it (inside `withLock`, let it release)');
    }
    const count = this.words[COUNT]!;
    if (count > 1) {
      this.words[COUNT] = count - 1;
      return;
    }
    this.unlock();
  }

  override toString(): string {
    const owner = threadIdOf(Atomics.load(this.words, STATE));
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
