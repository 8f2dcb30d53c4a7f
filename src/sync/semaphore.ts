/**
 * Semaphore and BoundedSemaphore on int32 words of an arena block.
 *
 * Words (index: meaning — invariant):
 *   VALUE 0:    the count, never below 0. Acquire takes one by a
 *               compare-exchange from a positive value; release adds one.
 *   SEQ 1:      bumped by every release, after VALUE changed (waiting.ts).
 *   SLEEPERS 2: waits that may be asleep on SEQ (waiting.ts).
 *   BOUND 3:    BoundedSemaphore: the largest VALUE a release may leave
 *               (its initial value); -1 for a Semaphore. Written once.
 *
 * No wake is lost: a waiter reads SEQ, tries VALUE, and sleeps on SEQ
 * expecting what it read; a release changes VALUE, bumps SEQ and wakes every
 * sleeper (waiting.ts says why every one). The count lives in VALUE, not in
 * the wake, so a waiter killed while waiting — asleep, or woken and not yet
 * through — takes nothing with it: the count it did not take is still there
 * for the live waiters, which were all woken.
 *
 * What a death does lose, exactly as in Python: a semaphore has no owner (any
 * thread may release what another acquired), so a holder that dies between
 * its acquire and its release keeps its unit for good — the count stays one
 * lower. POSIX semaphores, under Python's, are not robust either. Use a Lock
 * (recovered from a dead holder) where that matters.
 */
import { ValueError } from '../errors.js';
import { describe } from '../describe.js';
import { allocateRegion, attachRegion, type Region, type RegionHandle } from '../shm/region.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import {
  deadlineOfOptions,
  driveAsync,
  driveSync,
  bumpAndWakeAll,
  observe,
  remaining,
  type BlockOptions,
  type SequenceWords,
  type Sleep,
} from './waiting.js';

const VALUE = 0;
const SEQ = 1;
const SLEEPERS = 2;
const BOUND = 3;
const BYTES = 16;

/** The largest count a semaphore holds (Python's SEM_VALUE_MAX on Linux). */
const MAX_VALUE = 0x7fffffff;

const ACQUIRED: Promise<boolean> = Promise.resolve(true);

interface SemaphoreHandle extends SharedHandle {
  readonly segment: RegionHandle;
  readonly offset: number;
}

function checkValue(value: unknown, kind: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_VALUE) {
    throw new ValueError(
      `${kind} value must be an integer from 0 to ${MAX_VALUE}, got ${describe(value)}; ` +
        `pass the number of units free at the start (e.g. new mp.${kind}(1))`,
    );
  }
  return value;
}

/**
 * A counting semaphore shared by threads and processes (Python's
 * `multiprocessing.Semaphore`). It has no owner: any thread may release.
 * A holder that dies without releasing keeps its unit, as in Python.
 * @example
 * ```ts
 * const slots = new mp.Semaphore(2);
 * await slots.withLock(async () => { … }); // at most 2 at once, across processes
 * ```
 */
export class Semaphore {
  /** @internal */ readonly segment: Region;
  /** @internal */ readonly offset: number;
  /** @internal */ readonly words: Int32Array;
  private readonly at: SequenceWords;

  /**
   * @param value units free at the start (default 1).
   * @param place @internal where a revived semaphore lives.
   */
  constructor(value = 1, place?: { segment: Region; offset: number }) {
    if (!place) checkValue(value, new.target === BoundedSemaphore ? 'BoundedSemaphore' : 'Semaphore');
    this.segment = place?.segment ?? allocateRegion(BYTES);
    this.offset = place?.offset ?? this.segment.base;
    this.words = new Int32Array(this.segment.sab, this.offset, BYTES / 4);
    this.at = { words: this.words, seq: SEQ, sleepers: SLEEPERS };
    if (!place) {
      this.words[VALUE] = value;
      this.words[BOUND] = this.bounded ? value : -1;
    }
  }

  /** Whether releases are checked against the initial value. */
  protected get bounded(): boolean {
    return false;
  }

  /** Takes a unit when one is free. */
  private tryTake(): boolean {
    const w = this.words;
    for (let v = Atomics.load(w, VALUE); v > 0; ) {
      const seen = Atomics.compareExchange(w, VALUE, v, v - 1);
      if (seen === v) return true;
      v = seen;
    }
    return false;
  }

  private *acquiring(deadline: number): Generator<Sleep, boolean, void> {
    for (;;) {
      const seen = observe(this.at);
      if (this.tryTake()) return true;
      const ms = remaining(deadline);
      if (ms === 0) return false;
      yield { seen, ms };
    }
  }

  /**
   * Takes a unit, waiting without blocking the event loop while none is free.
   * @returns true when taken; false on timeout, or at once with `{ block: false }` when none is free.
   */
  acquire(options?: BlockOptions): Promise<boolean> {
    const deadline = deadlineOfOptions(options, `${this.kind}.acquire()`);
    if (this.tryTake()) return ACQUIRED;
    if (remaining(deadline) === 0) return Promise.resolve(false);
    return driveAsync(this.at, this.acquiring(deadline));
  }

  /** `acquire`, blocking the calling thread while it waits. */
  acquireSync(options?: BlockOptions): boolean {
    const deadline = deadlineOfOptions(options, `${this.kind}.acquireSync()`);
    return this.tryTake() || driveSync(this.at, this.acquiring(deadline));
  }

  /**
   * Gives a unit back and wakes the waiters.
   * @throws ValueError for a BoundedSemaphore already at its initial value (released too many times).
   */
  release(): void {
    const w = this.words;
    const bound = this.words[BOUND]!;
    for (let v = Atomics.load(w, VALUE); ; ) {
      if (bound >= 0 ? v >= bound : v >= MAX_VALUE) {
        throw new ValueError(
          bound >= 0
            ? `BoundedSemaphore released too many times: its value is already ${v}, the value it was made with; ` +
                `release only what you acquired (withLock pairs them)`
            : `Semaphore value would pass ${MAX_VALUE}`,
        );
      }
      const seen = Atomics.compareExchange(w, VALUE, v, v + 1);
      if (seen === v) break;
      v = seen;
    }
    bumpAndWakeAll(this.at);
  }

  /** Units free now (Python's `get_value()`). */
  getValue(): number {
    return Atomics.load(this.words, VALUE);
  }

  /**
   * Runs `fn` holding a unit and gives it back however `fn` ends.
   * @returns what `fn` returns (awaited).
   */
  async withLock<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** `withLock` for synchronous code, blocking the thread while it waits. */
  withLockSync<T>(fn: () => T): T {
    this.acquireSync();
    try {
      return fn();
    } finally {
      this.release();
    }
  }

  /** @internal The kind its handle is revived by. */
  protected get kind(): 'Semaphore' | 'BoundedSemaphore' {
    return 'Semaphore';
  }

  /** Python's repr. */
  toString(): string {
    const value = this.getValue();
    return this.bounded ? `<BoundedSemaphore(value=${value}, maxvalue=${this.words[BOUND]})>` : `<Semaphore(value=${value})>`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal */
  [SHARED](): SemaphoreHandle {
    return { kind: this.kind, segment: this.segment.toHandle(), offset: this.offset };
  }
}

/**
 * A semaphore whose `release()` throws once the count is back at its
 * initial value (Python's `multiprocessing.BoundedSemaphore`).
 */
export class BoundedSemaphore extends Semaphore {
  protected override get bounded(): boolean {
    return true;
  }

  protected override get kind(): 'BoundedSemaphore' {
    return 'BoundedSemaphore';
  }
}

function reviveSemaphore(ctor: typeof Semaphore) {
  return (h: SharedHandle) => {
    const { segment, offset } = h as SemaphoreHandle;
    return new ctor(0, { segment: attachRegion(segment), offset });
  };
}
registerShared('Semaphore', reviveSemaphore(Semaphore));
registerShared('BoundedSemaphore', reviveSemaphore(BoundedSemaphore));
