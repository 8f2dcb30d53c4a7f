/**
 * Lock and RLock on int32 words of a segment.
 *
 * Words (index: meaning — invariant):
 *   STATE 0: 0 when free; otherwise the holder's thread id, with the WAITERS
 *            bit set once somebody may sleep on it. Only the holder moves it
 *            back to 0, or a recoverer replaces a dead holder's id with its own.
 *   COUNT 1: RLock recursion depth — only meaningful while held, only
 *            touched by the holder.
 *   2, 3:    an int64 random id naming the lock where its segment has no
 *            file path (no addon), written once by the first wrapper.
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
 * per lock word, which of its *task frames* (async-context.ts) holds it:
 * the frame `withLock` opened for its callback, or the thread's root for a
 * bare `acquire()`/`acquireSync()` that took it free (those keep Python's
 * per-thread ownership). A task of this thread takes a lock only when the
 * word is free or, for an RLock, when the holding frame is its own or one it
 * runs inside; an RLock re-entered by a `withLock` becomes that frame's
 * until it lets go (one entry per acquisition, released in any order), so
 * sibling tasks inside one holder still exclude each other. Otherwise a task
 * waits: for a Lock on the word like a waiter from another process (any
 * thread may release a Lock), for an RLock on this thread's record of it
 * (only this thread can release it). A synchronous acquire of an RLock held
 * by another task of its own thread, or a Value's accessor on any lock so
 * held, could only wait for a task that cannot run while the thread is
 * blocked: it throws DeadlockError instead of hanging.
 *
 * Acquire is a compare-exchange fast path, a short spin, then a futex sleep
 * on STATE (the WAITERS bit plays Drepper's "contended" state, so an
 * uncontended release makes no syscall). Sleeps are cut into slices; after
 * each a waiter checks whether the holder lives, and if not takes the lock
 * over with a compare-exchange on STATE, so exactly one waiter inherits it.
 * The new holder can read `ownerDied`.
 */
import { MAX_TIMER_MS } from '../timer-limit.js';
import { DeadlockError, ValueError } from '../errors.js';
import { allocateRegion, attachRegion, type Region, type RegionHandle } from '../shm/region.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import { currentTask, isWithin, openTask, runInFrame, type Frame } from '../async-context.js';
import { isAlive, selfTid, threadIdOf } from '../liveness.js';
import { WaitResult, deadlineOf, remaining, waitAsync, waitSync, wake } from './futex.js';
import { blocks } from './waiting.js';

const STATE = 0;
const COUNT = 1;

/** Set in STATE while a waiter may be asleep: release must wake one. */
const WAITERS = 1 << 30;
/** The holder's id in STATE: its thread id and start-time tag (see liveness.ts). */
const OWNER = WAITERS - 1;

/** Bytes a lock occupies in a segment. */
export const LOCK_BYTES = 16;

/**
 * How long to spin before sleeping, in pause steps (each look at the word
 * costs one, each pause as many as it lasts): a few µs. A holder usually
 * lets go sooner than a futex sleep and wake take (tens of µs for an async
 * waiter, through the waiter thread and the event loop), so async acquirers
 * spin a little longer — while the event loop stays blocked, so not much.
 */
const SPIN_STEPS = 2_000;
const SPIN_STEPS_ASYNC = 8_000;
/** The longest pause between two looks at a held lock, in steps. */
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
  /** `false` (or any other falsy value but `undefined`, as Python's `block=0`): try once and return at once. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most (ignored when `block` is false). Default: forever. */
  timeout?: number;
}

/** @internal Who held a lock and how deep, as `releaseSave` found it. */
export interface SavedHold {
  readonly owner: Frame | null;
  /** Opaque to callers: this lock's own record of its acquisitions. */
  readonly entries: ReadonlyArray<unknown>;
}

interface LockHandle extends SharedHandle {
  readonly segment: RegionHandle;
  readonly offset: number;
}

/**
 * This thread's record of one lock word, shared by every object of this
 * isolate that wraps the same word (a lock revived twice, or by two copies
 * of the package).
 */
interface LocalHold {
  /**
   * True from this thread's acquisition until its own release. Exact for an
   * RLock (only its holder releases it); for a Lock, which any thread may
   * release, the word itself is checked instead.
   */
  held: boolean;
  /**
   * The frame holding it now (`null`: the thread's root); meaningful while
   * `held`. For an RLock, the newest `withLock` frame among `entries`, or
   * null when there is none.
   */
  owner: Frame | null;
  /**
   * RLock: one entry per acquisition still held, oldest first — the
   * `withLock` frame that took it, or BARE for a bare `acquire()` (those
   * belong to the thread). Async code releases out of order, so a release
   * removes its own entry wherever it sits. The frame entries always form
   * an ancestor chain (each was admitted only inside the one before).
   */
  readonly entries: Array<Frame | typeof BARE>;
  /** Tasks of this thread waiting for an RLock's holder here to change or let go. */
  waiters: Array<() => void> | null;
  /** Wrapper objects alive for this record; it is dropped with the last one (when not held). */
  wrappers: number;
}

interface HoldsState {
  readonly byWord: Map<string, LocalHold>;
  readonly collector: FinalizationRegistry<string>;
}

const HOLDS = Symbol.for('multiprocessing-ts.lock-holds.v1');
const holds: HoldsState = ((globalThis as { [HOLDS]?: HoldsState })[HOLDS] ??= (() => {
  const byWord = new Map<string, LocalHold>();
  const collector = new FinalizationRegistry<string>((key) => {
    const hold = byWord.get(key);
    if (hold && --hold.wrappers === 0 && !hold.held) byWord.delete(key);
  });
  return { byWord, collector };
})());

/** The name of a lock word in this isolate: its region's key and offset, or the random id in its words 2–3. */
function wordKey(segment: Region, offset: number): string {
  if (segment.key !== null) return `${segment.key}#${offset}`;
  const id = new BigInt64Array(segment.sab, offset + 8, 1);
  if (Atomics.load(id, 0) === 0n) {
    const random = new BigInt64Array(1);
    do crypto.getRandomValues(random);
    while (random[0] === 0n);
    Atomics.compareExchange(id, 0, 0n, random[0]!);
  }
  return `sab#${Atomics.load(id, 0)}`;
}

function localHold(owner: object, segment: Region, offset: number): LocalHold {
  const key = wordKey(segment, offset);
  let hold = holds.byWord.get(key);
  if (!hold) holds.byWord.set(key, (hold = { held: false, owner: null, entries: [], waiters: null, wrappers: 0 }));
  hold.wrappers++;
  holds.collector.register(owner, key);
  return hold;
}

/** An RLock entry taken by a bare `acquire()`/`acquireSync()`: the thread's. */
const BARE = Symbol('bare acquire');

/** Wakes the tasks of this thread waiting on `hold` (they look again). */
function notifyLocal(hold: LocalHold): void {
  const waiters = hold.waiters;
  if (waiters === null || waiters.length === 0) return;
  hold.waiters = null;
  for (const wakeUp of waiters) wakeUp();
}

const SYNC_DEADLOCK =
  'would wait for a lock that another async task of this same thread holds; that task cannot run while this ' +
  'thread is blocked, so the call could never return. In async code take the lock with `await lock.withLock(async () => …)` ' +
  '(for a Value or Array: `await v.getLock().withLock(…)`), which waits without blocking the thread';

abstract class MutexBase {
  /** @internal */ readonly segment: Region;
  /** @internal */ readonly offset: number;
  /** @internal */ readonly words: Int32Array;
  /**
   * This thread's record of the word, looked up on first use: most shared
   * values' locks are never taken in most isolates, and a million of them
   * must not cost a million records.
   */
  private localRecord: LocalHold | null = null;
  private died = false;

  protected constructor(place?: { segment: Region; offset: number }) {
    this.segment = place?.segment ?? allocateRegion(LOCK_BYTES);
    this.offset = place?.offset ?? this.segment.base;
    this.words = new Int32Array(this.segment.sab, this.offset, 4);
  }

  /** @internal This thread's record of the lock word (shared by every wrapper of it in this isolate). */
  protected get hold(): LocalHold {
    return (this.localRecord ??= localHold(this, this.segment, this.offset));
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

  /** Re-entry by the holder for `frame` (`withLock`'s) or, when null, by a bare acquire; `Lock` says no. */
  protected abstract reenter(frame: Frame | null): boolean;

  /** A fresh acquisition, held by `frame` (a `withLock`) or the thread's root (`null`). */
  private won(frame: Frame | null): true {
    // A read is cheaper than a write on a contended line: COUNT is nearly always 1.
    if (this.words[COUNT] !== 1) this.words[COUNT] = 1;
    const hold = this.hold;
    hold.held = true;
    hold.owner = frame;
    const entries = hold.entries;
    // Usually one entry is left from the last hold (release keeps it): reuse it.
    if (entries.length === 1) entries[0] = frame ?? BARE;
    else {
      entries.length = 0;
      entries.push(frame ?? BARE);
    }
    this.died = false;
    return true;
  }

  private tryOnce(frame: Frame | null): boolean {
    return Atomics.compareExchange(this.words, STATE, 0, selfTid()) === 0 && this.won(frame);
  }

  /** Spins with growing pauses up to `budget` steps: each look pulls the line the holder works on. */
  private spin(budget: number, frame: Frame | null): boolean {
    const w = this.words;
    const me = selfTid();
    let pause = 1;
    for (let spent = 0; spent < budget; spent += pause + 1) {
      if (Atomics.load(w, STATE) === 0 && Atomics.compareExchange(w, STATE, 0, me) === 0) return this.won(frame);
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
   * Whether a task of this thread holds it and `task` may re-enter: the
   * holding frame is `task`'s own or one it runs inside.
   */
  private mayReenter(task: Frame | null): boolean {
    return this.heldByThisThread() && isWithin(this.hold.owner, task);
  }

  /**
   * Acquires the lock, waiting without blocking the event loop.
   *
   * A bare `acquire()` is held by the thread (Python's ownership): any code
   * of the thread may re-enter an RLock or release it. `withLock` makes
   * concurrent async tasks exclude each other instead.
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
    if (this.tryOnce(null) || this.reenterOrSpin(blocks(options), null)) return ACQUIRED;
    return this.acquireSlowly(options, null);
  }

  /** After a failed compare-exchange: re-enter when a chain of ours may, else spin a while. */
  private reenterOrSpin(spin: boolean, frame: Frame | null): boolean {
    // Held by this thread: spinning cannot help, the holder is a task of ours.
    if (this.heldHere(Atomics.load(this.words, STATE))) return this.mayReenter(frame ?? currentTask()) && this.reenter(frame);
    return spin && this.spin(SPIN_STEPS_ASYNC, frame);
  }

  /**
   * Sleeps until the lock is ours (or the deadline passes). `frame` is the
   * `withLock` frame that will hold it, or null for a bare acquire.
   */
  private async acquireSlowly(options: AcquireOptions, frame: Frame | null): Promise<boolean> {
    // The awaits below keep the caller's frame: it is the task asking (a
    // withLock's frame was entered, so its parent is known).
    const task = frame ?? currentTask();
    if (!blocks(options)) return this.recover(frame);
    const deadline = deadlineOf(options.timeout);
    for (;;) {
      const seen = this.claimOrMark(frame);
      if (seen === true) return true;
      if (this.heldHere(seen)) {
        // Held by a task of ours: take part in it, or wait for it.
        if (this.mayReenter(task) && this.reenter(frame)) return true;
        if (this.heldByThisThread() && this.kind === 'RLock') {
          // Only this thread can let go of it: wait for its record to change.
          if (!(await this.localChange(remaining(deadline)))) return false;
          continue;
        }
      }
      const left = remaining(deadline);
      if (left === 0) return false;
      const r = await waitAsync(this.words, STATE, seen, Math.min(left, OWNER_CHECK_MS));
      if (r === WaitResult.TimedOut && this.recover(frame)) return true;
    }
  }

  /** Resolves true when this thread's record of the lock changes hands or lets go; false after `timeoutMs`. */
  private localChange(timeoutMs: number): Promise<boolean> {
    if (timeoutMs === 0) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const waiters = (this.hold.waiters ??= []);
      const wakeUp = () => {
        if (timer) clearTimeout(timer);
        resolve(true);
      };
      // Past 2^31-1 ms a timer fires at once: such a wait is forever.
      const timer =
        timeoutMs > MAX_TIMER_MS
          ? null
          : setTimeout(() => {
              const i = waiters.indexOf(wakeUp);
              if (i >= 0) waiters.splice(i, 1);
              resolve(false);
            }, timeoutMs);
      waiters.push(wakeUp);
    });
  }

  /**
   * Acquires the lock, blocking the calling thread: for hot paths in
   * children, where blocking is what Python does.
   * @throws DeadlockError when another async task of this thread holds this
   *   RLock and no timeout is given: only this blocked thread could let go
   *   of it. With a timeout the answer is false at once, the outcome of
   *   waiting it out; `{ block: false }` returns false.
   */
  acquireSync(options?: AcquireOptions): boolean {
    if (Atomics.compareExchange(this.words, STATE, 0, selfTid()) === 0) return this.won(null);
    return this.acquireSyncContended(options ?? {});
  }

  /** `acquireSync` past its fast path: re-entry, deadlock, spin, sleep, recovery. */
  private acquireSyncContended(options: AcquireOptions): boolean {
    if (this.heldHere(Atomics.load(this.words, STATE))) {
      if (this.mayReenter(currentTask()) && this.reenter(null)) return true;
      if (!blocks(options)) return false;
      // A Lock may still be released by another thread (as in Python): wait below.
      if (this.heldByThisThread() && this.kind === 'RLock') {
        if (deadlineOf(options.timeout) !== Infinity) return false;
        throw new DeadlockError(`acquireSync() ${SYNC_DEADLOCK}`);
      }
    } else if (!blocks(options)) {
      return this.recover(null);
    }
    const deadline = deadlineOf(options.timeout);
    // Spinning on a lock this very thread holds cannot help.
    if (!this.heldHere(Atomics.load(this.words, STATE)) && this.spin(SPIN_STEPS, null)) return true;
    for (;;) {
      const seen = this.claimOrMark(null);
      if (seen === true) return true;
      const left = remaining(deadline);
      if (left === 0) return false;
      const r = waitSync(this.words, STATE, seen, Math.min(left, OWNER_CHECK_MS));
      if (r === WaitResult.TimedOut && this.recover(null)) return true;
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
    if (this.heldHere(Atomics.load(this.words, STATE))) throw new DeadlockError(`reading or writing a shared value ${SYNC_DEADLOCK}`);
    this.acquireSync();
    try {
      return read();
    } finally {
      this.release();
    }
  }

  /**
   * @internal Lets the lock go entirely, however deep an RLock is held, and
   * says who held it how (Python's `_release_save`): what Condition.wait
   * does before it sleeps. The caller has checked that the running task holds it.
   */
  releaseSave(): SavedHold {
    const hold = this.hold;
    const saved: SavedHold = { owner: hold.owner, entries: hold.entries.slice() };
    this.unlock();
    return saved;
  }

  /**
   * @internal Takes the lock again for the holder `releaseSave` recorded,
   * at the same depth (Python's `_acquire_restore`), waiting without
   * blocking the event loop and without a timeout (as Python re-acquires).
   */
  async acquireRestore(saved: SavedHold): Promise<void> {
    if (!(this.tryOnce(saved.owner) || this.reenterOrSpin(true, saved.owner))) await this.acquireSlowly({}, saved.owner);
    this.restore(saved);
  }

  /** @internal `acquireRestore`, blocking the thread. */
  acquireRestoreSync(saved: SavedHold): void {
    this.acquireSync();
    this.restore(saved);
  }

  /** Puts back the holder and depth `releaseSave` recorded, over the fresh hold just taken. */
  private restore(saved: SavedHold): void {
    const hold = this.hold;
    hold.owner = saved.owner;
    hold.entries.length = 0;
    hold.entries.push(...(saved.entries as Array<Frame | typeof BARE>));
    this.words[COUNT] = saved.entries.length;
  }

  /** Releases the lock. */
  release(): void {
    this.releaseIn(null);
  }

  /** @internal Releases on behalf of `withLock`'s `frame`, or (null) of the running code. */
  protected abstract releaseIn(frame: Frame | null): void;

  /** @internal Lets the lock go entirely; returns what STATE held (0: it was not held). */
  protected unlock(): number {
    const hold = this.hold;
    hold.held = false;
    hold.owner = null;
    const s = Atomics.exchange(this.words, STATE, 0);
    if (s & WAITERS) wake(this.words, STATE, 1);
    notifyLocal(hold);
    return s;
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
    // Enter the callback's frame before taking the lock, not inside the
    // critical section: entering and leaving it cost two calls into the
    // addon, which must not lengthen the time the lock is held. The frame
    // learns its parent as it is entered.
    const frame = openTask();
    return runInFrame(frame, () => this.lockedCall(fn, frame));
  }

  /** Takes the lock for `frame` (running in it) and calls `fn` holding it. */
  private lockedCall<T>(fn: () => T | Promise<T>, frame: Frame): Promise<Awaited<T>> {
    if (this.tryOnce(frame) || this.reenterOrSpin(true, frame)) return this.callHeld(fn, frame);
    // The slow path's awaits and `.then` carry the frame: the callback runs in it.
    return this.acquireSlowly({}, frame).then(() => this.callHeld(fn, frame));
  }

  /**
   * Calls `fn` with the lock held by `frame` and releases it as soon as `fn`
   * is done: at once when `fn` is synchronous, so the lock is not held
   * across the caller's await (under contention that would double the hold time).
   */
  private callHeld<T>(fn: () => T | Promise<T>, frame: Frame): Promise<Awaited<T>> {
    let result: T | Promise<T>;
    let thenable: boolean;
    try {
      result = fn();
      thenable = isThenable(result);
    } catch (err) {
      try {
        this.releaseFrame(frame);
      } catch {
        // The callback's own error is the one to report.
      }
      return Promise.reject(err);
    }
    if (!thenable) {
      try {
        this.releaseFrame(frame);
      } catch (err) {
        // The callback released the lock itself.
        return Promise.reject(err);
      }
      // A settled promise is shared harmlessly: saves an allocation per call.
      return (result === undefined ? SETTLED_UNDEFINED : Promise.resolve(result)) as Promise<Awaited<T>>;
    }
    return Promise.resolve(result).finally(() => this.releaseFrame(frame)) as Promise<Awaited<T>>;
  }

  /** `withLock`'s release: the frame's hold ends, and frames opened later skip it as a parent. */
  private releaseFrame(frame: Frame): void {
    frame.done = true;
    this.releaseIn(frame);
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

  constructor(place?: { segment: Region; offset: number }) {
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
    // Any thread or task may release a Lock, as in Python; its waiters of
    // this thread sleep on the word too, so the futex wake reaches them.
    // One exchange both releases and tells an unheld lock apart.
    if (this.unlock() === 0) throw new ValueError('release() of a Lock that is not held');
  }

  override toString(): string {
    return `<Lock(owner=${threadIdOf(Atomics.load(this.words, STATE)) || 'None'})>`;
  }
}

/**
 * A re-entrant lock (Python's `multiprocessing.RLock`): the holding thread
 * may acquire it again, and must release it as often. Inside `withLock`,
 * the holder is the callback's task rather than the whole thread.
 */
export class RLock extends MutexBase {
  protected readonly kind = 'RLock';

  constructor(place?: { segment: Region; offset: number }) {
    super(place);
  }

  protected reenter(frame: Frame | null): boolean {
    const hold = this.hold;
    hold.entries.push(frame ?? BARE);
    this.words[COUNT] = hold.entries.length;
    // A withLock re-entry makes its own task the holder until it lets go; a
    // bare one keeps the holder it found.
    if (frame !== null) hold.owner = frame;
    return true;
  }

  protected heldByThisThread(): boolean {
    // The word names this thread whenever it holds it; only then is the record worth reading.
    return (Atomics.load(this.words, STATE) & OWNER) === selfTid() && this.hold.held;
  }

  protected releaseIn(frame: Frame | null): void {
    const hold = this.hold;
    const entries = hold.entries;
    const mark = frame ?? BARE;
    if (!hold.held || (entries.length === 1 ? entries[0] !== mark : entries.lastIndexOf(mark) < 0)) {
      throw new ValueError(
        frame === null
          ? 'release() of an RLock that this thread did not acquire() (a withLock callback\'s hold is released by withLock itself)'
          : 'release() of an RLock by a withLock that does not hold it',
      );
    }
    if (entries.length === 1) {
      // The entry stays, unread while not held: the next hold reuses it.
      this.unlock();
      return;
    }
    entries.splice(entries.lastIndexOf(mark), 1);
    this.words[COUNT] = entries.length;
    let owner: Frame | null = null;
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i]!;
      if (e !== BARE) {
        owner = e;
        break;
      }
    }
    if (owner !== hold.owner) {
      hold.owner = owner;
      notifyLocal(hold);
    }
  }

  override toString(): string {
    const owner = threadIdOf(Atomics.load(this.words, STATE));
    return owner ? `<RLock(owner=${owner}, count=${this.words[COUNT]})>` : '<RLock(owner=None, count=0)>';
  }
}

function reviveLock(ctor: typeof Lock | typeof RLock) {
  return (h: SharedHandle) => {
    const { segment, offset } = h as LockHandle;
    return new ctor({ segment: attachRegion(segment), offset });
  };
}
registerShared('Lock', reviveLock(Lock));
registerShared('RLock', reviveLock(RLock));
