/**
 * Event on int32 words of an arena block.
 *
 * Words (index: meaning — invariant):
 *   FLAG 0:     1 while set, 0 while clear.
 *   SEQ 1:      bumped by every `set()`, after FLAG became 1 (waiting.ts).
 *   SLEEPERS 2: waits that may be asleep on SEQ (waiting.ts).
 *
 * A waiter reads SEQ, then FLAG; while FLAG is 0 it sleeps on SEQ expecting
 * what it read. `set()` stores FLAG, bumps SEQ and wakes every sleeper, so a
 * set between a waiter's look and its sleep ends the sleep at once. A wait
 * returns true when the flag is set, or when SEQ moved since it began (a
 * `set()` happened during the wait, even if a `clear()` followed before the
 * waiter ran: the outcome of Python's race when the waiter re-takes the
 * condition's lock first). `clear()` wakes nobody.
 *
 * The event has no owner and a wake carries nothing: a waiter killed mid-wait
 * takes nothing from the others, who were all woken and all read FLAG.
 */
import { allocateRegion, attachRegion, type Region, type RegionHandle } from '../shm/region.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import { bumpAndWakeAll, deadlineOfTimeout, driveAsync, driveSync, observe, remaining, type SequenceWords, type Sleep } from './waiting.js';

const FLAG = 0;
const SEQ = 1;
const SLEEPERS = 2;
const BYTES = 16;

const TRUE: Promise<boolean> = Promise.resolve(true);

interface EventHandle extends SharedHandle {
  readonly segment: RegionHandle;
  readonly offset: number;
}

/**
 * A flag that threads and processes wait on (Python's `multiprocessing.Event`).
 * @example
 * ```ts
 * const ready = new mp.Event();
 * // in a child: await ready.wait();    in the parent: ready.set();
 * ```
 */
export class Event {
  /** @internal */ readonly segment: Region;
  /** @internal */ readonly offset: number;
  /** @internal */ readonly words: Int32Array;
  private readonly at: SequenceWords;

  /** @param place @internal where a revived event lives. */
  constructor(place?: { segment: Region; offset: number }) {
    this.segment = place?.segment ?? allocateRegion(BYTES);
    this.offset = place?.offset ?? this.segment.base;
    this.words = new Int32Array(this.segment.sab, this.offset, BYTES / 4);
    this.at = { words: this.words, seq: SEQ, sleepers: SLEEPERS };
  }

  /** Whether the flag is set. */
  isSet(): boolean {
    return Atomics.load(this.words, FLAG) === 1;
  }

  /** Sets the flag and wakes every waiter. */
  set(): void {
    Atomics.store(this.words, FLAG, 1);
    bumpAndWakeAll(this.at);
  }

  /** Clears the flag; later waits wait again. */
  clear(): void {
    Atomics.store(this.words, FLAG, 0);
  }

  private *waiting(deadline: number): Generator<Sleep, boolean, void> {
    const start = observe(this.at);
    for (;;) {
      const seen = observe(this.at);
      if (this.isSet() || seen !== start) return true;
      const ms = remaining(deadline);
      if (ms === 0) return false;
      yield { seen, ms };
    }
  }

  /**
   * Waits until the flag is set, without blocking the event loop.
   * @param timeout milliseconds at most (negative means 0); forever when undefined.
   * @returns true when the flag is set (or was set during the wait), false on timeout.
   */
  wait(timeout?: number): Promise<boolean> {
    const deadline = deadlineOfTimeout(timeout, 'Event.wait()');
    if (this.isSet()) return TRUE;
    return driveAsync(this.at, this.waiting(deadline));
  }

  /** `wait`, blocking the calling thread. */
  waitSync(timeout?: number): boolean {
    const deadline = deadlineOfTimeout(timeout, 'Event.waitSync()');
    return this.isSet() || driveSync(this.at, this.waiting(deadline));
  }

  toString(): string {
    return `<Event(${this.isSet() ? 'set' : 'unset'})>`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal */
  [SHARED](): EventHandle {
    return { kind: 'Event', segment: this.segment.toHandle(), offset: this.offset };
  }
}

registerShared('Event', (h) => {
  const { segment, offset } = h as EventHandle;
  return new Event({ segment: attachRegion(segment), offset });
});
