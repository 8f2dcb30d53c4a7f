/**
 * Barrier on int32 words of an arena block (Python's `threading.Barrier`
 * semantics, which `multiprocessing.Barrier` shares), without a lock.
 *
 * Words (index: meaning — invariant):
 *   STATE 0:    count (bits 0–15): parties arrived in this cycle;
 *               gen (bits 16–29): the cycle's number, mod 2^14;
 *               BROKEN (bit 30): the barrier is broken (sticky until reset).
 *               count < parties while the cycle fills. The party that makes
 *               it `parties` owns the cycle's end: it runs the action, then
 *               moves STATE to (gen + 1, count 0). `reset()` ends a cycle the
 *               same way (claims count = parties, then moves on). Only
 *               compare-exchanges change it, but for reset's last step.
 *   SEQ 1:      bumped after every change of STATE a waiter waits for (waiting.ts).
 *   SLEEPERS 2: waits that may be asleep on SEQ (waiting.ts).
 *   PARTIES 3:  the number of parties. Written once.
 *   CLOSER 4:   holder id (liveness.ts) of the party that owns, or is about
 *               to own, the end of a cycle; 0 when none does. The last
 *               arrival takes it (compare-exchange from 0) *before* its
 *               arrival makes count = parties, and gives it back after STATE
 *               moved on; `reset()` likewise around its claim. So while
 *               count = parties and the barrier is not broken, CLOSER names
 *               the party ending the cycle, and one found dead (or 0) was
 *               killed between its arrival and the cycle's end: the others
 *               break the barrier instead of waiting for it for good. Only
 *               one party holds it: a would-be last arrival that finds
 *               another live holder waits (the previous cycle's closer is
 *               letting go, or another arrival is about to fail or win),
 *               and a dead holder's id is cleared by whoever finds it.
 *   OUTCOMES 5: bit (gen mod 32): 1 when that cycle ended by `reset()`, 0
 *               when its parties were released. Written by the cycle's
 *               end-owner before it moves gen on, so a party that sees gen
 *               move learns how its own cycle ended, even looking late
 *               (while fewer than 32 more cycles have ended since).
 *
 * Waiters sleep on SEQ and every change wakes all (waiting.ts): a release,
 * a break, a reset. A party that arrives while the previous cycle is ending
 * (its action runs) waits for that end before it counts itself in, with no
 * timeout, as Python's new arrivals wait for the draining barrier before
 * theirs starts: its timeout counts from its arrival, and it never touches
 * the ending cycle (a timeout there would break a cycle all of whose parties
 * had arrived).
 *
 * What a killed party does: one killed while waiting is still counted in
 * its cycle, which then never fills: the others wait until their timeout
 * breaks the barrier (BrokenBarrierError for all), or forever without one,
 * as in Python. The last party killed between its arrival and the end of
 * the cycle (inside the action, or before or after it) breaks the barrier:
 * the others, once they see the cycle full, check CLOSER every 100 ms and
 * get BrokenBarrierError (Python's others would hang on the condition's
 * lock), as do later arrivals; `reset()` ends such a cycle like any other.
 */
import { BrokenBarrierError, ValueError } from '../errors.js';
import { describe } from '../describe.js';
import { allocateRegion, attachRegion, type Region, type RegionHandle } from '../shm/region.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import { isAlive, selfTid } from '../liveness.js';
import type { TargetSpec } from '../process/target.js';
import { BarrierAction } from './barrier-action.js';
import {
  bumpAndWakeAll,
  deadlineOfTimeout,
  driveAsync,
  driveSync,
  observe,
  remaining,
  sleepSync,
  type SequenceWords,
  type Sleep,
} from './waiting.js';

const STATE = 0;
const SEQ = 1;
const SLEEPERS = 2;
const PARTIES = 3;
const CLOSER = 4;
const OUTCOMES = 5;
const BYTES = 24;

const COUNT_MASK = 0xffff;
const GEN_SHIFT = 16;
const GEN_MASK = 0x3fff;
const BROKEN = 1 << 30;
/** Most parties one barrier takes (count must reach parties in 16 bits). */
const MAX_PARTIES = COUNT_MASK;

/** How often a waiter looks whether the party ending a full cycle still lives. */
const CLOSER_CHECK_MS = 100;

const genOf = (w: number) => (w >>> GEN_SHIFT) & GEN_MASK;
const nextCycle = (w: number) => ((genOf(w) + 1) & GEN_MASK) << GEN_SHIFT;
const outcomeBit = (gen: number) => 1 << (gen & 31);

/** Options of `new mp.Barrier(parties, options)`. */
export interface BarrierOptions {
  /** Called once per cycle, by the last party to arrive, before the others are released (target rules). */
  action?: () => unknown;
  /** Default timeout of `wait()` in ms; forever when undefined. */
  timeout?: number;
  /** The module exporting `action` when it is not the entry script (as Process's `module`). */
  module?: string | URL;
}

interface BarrierHandle extends SharedHandle {
  readonly segment: RegionHandle;
  readonly offset: number;
  readonly timeout: number | null;
  readonly action: TargetSpec | null;
}

function broken(): BrokenBarrierError {
  return new BrokenBarrierError('the barrier is broken (aborted, reset, or a wait timed out)');
}

/**
 * A barrier for a fixed number of parties, shared by threads and processes
 * (Python's `multiprocessing.Barrier`).
 * @example
 * ```ts
 * const barrier = new mp.Barrier(3, { timeout: 5000 });
 * const index = await barrier.wait(); // 0, 1 or 2
 * ```
 */
export class Barrier {
  /** @internal */ readonly segment: Region;
  /** @internal */ readonly offset: number;
  /** @internal */ readonly words: Int32Array;
  private readonly at: SequenceWords;
  private readonly action: BarrierAction | null;
  private readonly timeout: number | undefined;

  /**
   * @param parties how many parties each cycle waits for (≥ 1).
   * @param place @internal where a revived barrier lives.
   */
  constructor(
    parties: number,
    options: BarrierOptions = {},
    place?: { segment: Region; offset: number; action: BarrierAction | null },
  ) {
    if (!place) {
      if (typeof parties !== 'number' || !Number.isInteger(parties) || parties < 1 || parties > MAX_PARTIES) {
        throw new ValueError(
          `Barrier parties must be an integer from 1 to ${MAX_PARTIES}, got ${describe(parties)}; pass how many parties each wait() waits for`,
        );
      }
      if (typeof options !== 'object' || options === null) {
        throw new ValueError(`Barrier options must be an object { action?, timeout? }, got ${describe(options)}`);
      }
      if (options.action !== undefined && typeof options.action !== 'function') {
        throw new ValueError(`Barrier action must be a function, got ${describe(options.action)}`);
      }
      deadlineOfTimeout(options.timeout, 'Barrier({ timeout })');
    }
    this.segment = place?.segment ?? allocateRegion(BYTES);
    this.offset = place?.offset ?? this.segment.base;
    this.words = new Int32Array(this.segment.sab, this.offset, BYTES / 4);
    this.at = { words: this.words, seq: SEQ, sleepers: SLEEPERS };
    this.timeout = options.timeout ?? undefined;
    this.action = place ? place.action : options.action ? BarrierAction.of(options.action, options.module) : null;
    if (!place) this.words[PARTIES] = parties;
  }

  /** The number of parties a cycle waits for. */
  get parties(): number {
    return this.words[PARTIES]!;
  }

  /** Parties waiting in the cycle that is filling now. */
  get nWaiting(): number {
    const w = Atomics.load(this.words, STATE);
    const count = w & COUNT_MASK;
    return w & BROKEN || count >= this.parties ? 0 : count;
  }

  /** Whether the barrier is broken (until `reset()`). */
  get broken(): boolean {
    return (Atomics.load(this.words, STATE) & BROKEN) !== 0;
  }

  /**
   * Whether the party ending the full cycle of a STATE just read is gone
   * (read STATE first: a cycle that ended meanwhile also leaves CLOSER 0, and
   * then breaking that STATE by compare-exchange fails harmlessly).
   */
  private closerGone(): boolean {
    const closer = Atomics.load(this.words, CLOSER);
    return closer === 0 || !isAlive(closer);
  }

  /** Gives CLOSER back (if this thread still holds it) and wakes whoever waits to take it. */
  private letGo(): void {
    Atomics.compareExchange(this.words, CLOSER, selfTid(), 0);
    bumpAndWakeAll(this.at);
  }

  /** Sets BROKEN while STATE is still `w`. */
  private breakAt(w: number): boolean {
    if (Atomics.compareExchange(this.words, STATE, w, w | BROKEN) !== w) return false;
    bumpAndWakeAll(this.at);
    return true;
  }

  /**
   * Counts this party in, first waiting (untimed, as Python's `_enter`)
   * while the previous cycle ends. `mayClose` runs before this party becomes
   * the last one; what it throws leaves the barrier as it was.
   * @returns its index and STATE after its arrival.
   */
  private *arriving(mayClose: () => void): Generator<Sleep, { index: number; state: number }, void> {
    const parties = this.parties;
    for (;;) {
      const seen = observe(this.at);
      const w = Atomics.load(this.words, STATE);
      if (w & BROKEN) throw broken();
      const count = w & COUNT_MASK;
      if (count >= parties) {
        // The previous cycle is ending: its closer decides how; wait for it.
        if (this.closerGone()) this.breakAt(w);
        else yield { seen, ms: CLOSER_CHECK_MS };
        continue;
      }
      if (count + 1 < parties) {
        if (Atomics.compareExchange(this.words, STATE, w, w + 1) === w) return { index: count, state: w + 1 };
        continue;
      }
      // This arrival fills the cycle: name itself the closer first, so a death from here on is seen.
      mayClose();
      const self = selfTid();
      const closer = Atomics.load(this.words, CLOSER);
      // Our own id there is stale: this thread takes and gives it back without an await in between.
      if (closer !== 0 && closer !== self) {
        if (isAlive(closer)) yield { seen, ms: CLOSER_CHECK_MS };
        else Atomics.compareExchange(this.words, CLOSER, closer, 0);
        continue;
      }
      if (Atomics.compareExchange(this.words, CLOSER, closer, self) !== closer) continue;
      if (Atomics.compareExchange(this.words, STATE, w, w + 1) === w) return { index: count, state: w + 1 };
      // STATE moved (the barrier broke meanwhile): look again, without the claim.
      this.letGo();
    }
  }

  /** A party that is not the last: waits for its cycle to end. @returns its index. */
  private *awaiting(arrived: number, index: number, deadline: number): Generator<Sleep, number, void> {
    const gen = genOf(arrived);
    const parties = this.parties;
    for (;;) {
      const seen = observe(this.at);
      const w = Atomics.load(this.words, STATE);
      if (genOf(w) !== gen) {
        if (Atomics.load(this.words, OUTCOMES) & outcomeBit(gen)) throw broken();
        return index;
      }
      if (w & BROKEN) throw broken();
      if ((w & COUNT_MASK) >= parties) {
        // The last party ends the cycle: its outcome decides, whatever our timeout says (as Python).
        if (this.closerGone()) this.breakAt(w);
        else yield { seen, ms: CLOSER_CHECK_MS };
        continue;
      }
      const ms = remaining(deadline);
      if (ms === 0) {
        if (this.breakAt(w)) throw broken();
        continue;
      }
      yield { seen, ms };
    }
  }

  /**
   * The last party, before the action: wakes the others, so that they
   * watch it (an async sleeper would otherwise look only once a slice).
   */
  private startAction(): void {
    if (this.action) bumpAndWakeAll(this.at);
  }

  /** The last party: the action ran (or threw); end the cycle, then let go of CLOSER. */
  private endCycle(claimed: number, error: unknown, failed: boolean): void {
    if (failed) {
      // Python: an action that raises breaks the barrier, and the error reaches this party.
      this.breakAt(claimed);
      this.letGo();
      throw error;
    }
    Atomics.and(this.words, OUTCOMES, ~outcomeBit(genOf(claimed)));
    // Fails only when abort() broke the cycle meanwhile: it stays broken (or reset() moved on).
    Atomics.compareExchange(this.words, STATE, claimed, nextCycle(claimed));
    this.letGo();
  }

  /** A wait's timeout, checked now; the deadline is taken once the party has arrived. */
  private timeoutOf(timeout: number | undefined, call: string): number | undefined {
    const ms = timeout === undefined ? this.timeout : timeout;
    deadlineOfTimeout(ms, call);
    return ms;
  }

  /**
   * Waits until `parties` parties have called `wait()`; the last runs the action.
   * A party that comes while the previous cycle's action runs first waits for
   * that cycle to end (with no timeout, as in Python); its timeout counts from
   * then on.
   * @param timeout milliseconds at most (negative means 0); default: the barrier's own timeout.
   * @returns this party's arrival index, 0 to parties − 1.
   * @throws BrokenBarrierError when the barrier is or becomes broken, is reset, or the wait times out (which breaks it).
   */
  async wait(timeout?: number): Promise<number> {
    const ms = this.timeoutOf(timeout, 'Barrier.wait()');
    const { index, state } = await driveAsync(this.at, this.arriving(() => {}));
    if (index + 1 < this.parties) {
      return driveAsync(this.at, this.awaiting(state, index, deadlineOfTimeout(ms, 'Barrier.wait()')));
    }
    this.startAction();
    try {
      if (this.action) await (await this.action.ready())();
    } catch (err) {
      this.endCycle(state, err, true);
    }
    this.endCycle(state, undefined, false);
    return index;
  }

  /**
   * `wait`, blocking the thread (an async action is called but not awaited).
   * @throws StateError, leaving the barrier as it was, when this party would
   *   be the last and the action, received by reference after this process
   *   started, is still being imported (`await wait()` waits for it).
   */
  waitSync(timeout?: number): number {
    const ms = this.timeoutOf(timeout, 'Barrier.waitSync()');
    const action = this.action;
    const { index, state } = driveSync(this.at, this.arriving(() => void action?.now()));
    if (index + 1 < this.parties) {
      return driveSync(this.at, this.awaiting(state, index, deadlineOfTimeout(ms, 'Barrier.waitSync()')));
    }
    this.startAction();
    try {
      if (action) action.now()();
    } catch (err) {
      this.endCycle(state, err, true);
    }
    this.endCycle(state, undefined, false);
    return index;
  }

  /**
   * Returns the barrier to its empty, unbroken state; parties waiting now
   * get BrokenBarrierError (Python's `reset()`). While the last party ends
   * the cycle (runs the action), its cycle is ending anyway and reset leaves
   * it be; one whose last party died is reset like any other.
   */
  reset(): void {
    const parties = this.parties;
    const self = selfTid();
    for (;;) {
      const seen = observe(this.at);
      const w = Atomics.load(this.words, STATE);
      const full = (w & COUNT_MASK) >= parties;
      const closer = Atomics.load(this.words, CLOSER);
      const live = closer !== 0 && (closer === self || isAlive(closer));
      if (full && live) {
        if (!(w & BROKEN)) return;
        // Broken (abort()) while its closer still runs the action: end the
        // cycle without it, and take CLOSER from it (its own end finds STATE
        // moved, and its letGo finds another id).
        Atomics.or(this.words, OUTCOMES, outcomeBit(genOf(w)));
        if (Atomics.compareExchange(this.words, STATE, w, nextCycle(w)) !== w) continue;
        Atomics.compareExchange(this.words, CLOSER, closer, 0);
        bumpAndWakeAll(this.at);
        return;
      }
      if (live && closer !== self) {
        // Another party is between two steps of its own (about to arrive
        // last, or letting go after ending a cycle): it wakes us when done.
        sleepSync(this.at, seen, CLOSER_CHECK_MS);
        continue;
      }
      // No live closer (none, a dead one, or a stale id of this thread):
      // take its place, so that a reset killed halfway is seen like a dead
      // closer; then own the cycle's end, say how it ended, and move on.
      if (Atomics.compareExchange(this.words, CLOSER, closer, self) !== closer) continue;
      const claimed = (w & ~COUNT_MASK) | parties;
      if (Atomics.compareExchange(this.words, STATE, w, claimed) !== w) {
        this.letGo();
        continue;
      }
      Atomics.or(this.words, OUTCOMES, outcomeBit(genOf(w)));
      // Only a break (which the move clears) or another reset (which moved on already) can come between.
      for (let now = claimed; ; ) {
        const found = Atomics.compareExchange(this.words, STATE, now, nextCycle(w));
        if (found === now || genOf(found) !== genOf(w)) break;
        now = found;
      }
      this.letGo();
      return;
    }
  }

  /** Breaks the barrier: waiting parties and later waits get BrokenBarrierError until `reset()`. */
  abort(): void {
    for (;;) {
      const w = Atomics.load(this.words, STATE);
      if (w & BROKEN || this.breakAt(w)) return;
    }
  }

  toString(): string {
    return `<Barrier(parties=${this.parties}, waiting=${this.nWaiting}${this.broken ? ', broken' : ''})>`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal */
  [SHARED](): BarrierHandle {
    // Described first: an action that cannot travel throws before a reference is taken.
    const action = this.action ? this.action.toSpec() : null;
    return {
      kind: 'Barrier',
      segment: this.segment.toHandle(),
      offset: this.offset,
      timeout: this.timeout ?? null,
      action,
    };
  }
}

registerShared('Barrier', (h) => {
  const { segment, offset, timeout, action } = h as BarrierHandle;
  return new Barrier(0, { timeout: timeout ?? undefined }, {
    segment: attachRegion(segment),
    offset,
    action: action ? BarrierAction.fromSpec(action) : null,
  });
});
