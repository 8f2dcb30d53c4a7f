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
 *               compare-exchanges change it.
 *   SEQ 1:      bumped after every change of STATE a waiter waits for (waiting.ts).
 *   SLEEPERS 2: waits that may be asleep on SEQ (waiting.ts).
 *   PARTIES 3:  the number of parties. Written once.
 *   ACTOR 4:    holder id (liveness.ts) of the party running the action, 0
 *               otherwise: a party killed inside the action breaks the
 *               barrier (the others see it dead) instead of wedging it.
 *   OUTCOMES 5: bit (gen mod 32): 1 when that cycle ended by `reset()`, 0
 *               when its parties were released. Written by the cycle's
 *               end-owner before it moves gen on, so a party that sees gen
 *               move learns how its own cycle ended, even looking late
 *               (while fewer than 32 more cycles have ended since).
 *
 * Waiters sleep on SEQ and every change wakes all (waiting.ts): a release,
 * a break, a reset. A party that arrives while the previous cycle's action
 * runs waits for that cycle to end before it counts itself in.
 *
 * What a killed party does, as in Python: one killed while waiting is still
 * counted in its cycle, which then never fills: the others wait until their
 * timeout breaks the barrier (BrokenBarrierError for all), or forever without
 * one. One killed while running the action breaks the barrier: the others
 * check the actor's liveness every 100 ms and get BrokenBarrierError
 * (Python's others would hang on the condition's lock).
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
  type SequenceWords,
  type Sleep,
} from './waiting.js';

const STATE = 0;
const SEQ = 1;
const SLEEPERS = 2;
const PARTIES = 3;
const ACTOR = 4;
const OUTCOMES = 5;
const BYTES = 24;

const COUNT_MASK = 0xffff;
const GEN_SHIFT = 16;
const GEN_MASK = 0x3fff;
const BROKEN = 1 << 30;
/** Most parties one barrier takes (count must reach parties in 16 bits). */
const MAX_PARTIES = COUNT_MASK;

/** How often a waiter looks whether the party running the action still lives. */
const ACTOR_CHECK_MS = 100;

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

  private actorDead(): boolean {
    const actor = Atomics.load(this.words, ACTOR);
    return actor !== 0 && !isAlive(actor);
  }

  /** Sets BROKEN while STATE is still `w`. */
  private breakAt(w: number): boolean {
    if (Atomics.compareExchange(this.words, STATE, w, w | BROKEN) !== w) return false;
    bumpAndWakeAll(this.at);
    return true;
  }

  /** Counts this party in. @returns its index and STATE after its arrival. */
  private *arriving(deadline: number): Generator<Sleep, { index: number; state: number }, void> {
    const parties = this.parties;
    for (;;) {
      const seen = observe(this.at);
      const w = Atomics.load(this.words, STATE);
      if (w & BROKEN) throw broken();
      const count = w & COUNT_MASK;
      if (count < parties) {
        if (Atomics.compareExchange(this.words, STATE, w, w + 1) === w) return { index: count, state: w + 1 };
        continue;
      }
      // The previous cycle is ending (its action runs): wait for it, as Python's new arrivals do.
      if (this.actorDead()) {
        this.breakAt(w);
        continue;
      }
      const ms = remaining(deadline);
      if (ms === 0) {
        if (this.breakAt(w)) throw broken();
        continue;
      }
      yield { seen, ms: Math.min(ms, ACTOR_CHECK_MS) };
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
        // The last party runs the action: its outcome decides, whatever our timeout says (as Python).
        if (this.actorDead()) this.breakAt(w);
        else yield { seen, ms: ACTOR_CHECK_MS };
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
   * The last party, before the action: records itself as the actor and
   * wakes the others, so they watch it (a sleeper with no timeout would
   * otherwise not look until the cycle ends).
   */
  private startAction(): void {
    if (!this.action) return;
    Atomics.store(this.words, ACTOR, selfTid());
    bumpAndWakeAll(this.at);
  }

  /** The last party: the action ran (or threw); end the cycle. */
  private endCycle(claimed: number, error: unknown, failed: boolean): void {
    Atomics.store(this.words, ACTOR, 0);
    if (failed) {
      // Python: an action that raises breaks the barrier, and the error reaches this party.
      this.breakAt(claimed);
      throw error;
    }
    Atomics.and(this.words, OUTCOMES, ~outcomeBit(genOf(claimed)));
    // Fails only when abort() broke the cycle meanwhile: it stays broken.
    Atomics.compareExchange(this.words, STATE, claimed, nextCycle(claimed));
    bumpAndWakeAll(this.at);
  }

  private deadline(timeout: number | undefined, call: string): number {
    return deadlineOfTimeout(timeout === undefined ? this.timeout : timeout, call);
  }

  /**
   * Waits until `parties` parties have called `wait()`; the last runs the action.
   * @param timeout milliseconds at most (negative means 0); default: the barrier's own timeout.
   * @returns this party's arrival index, 0 to parties − 1.
   * @throws BrokenBarrierError when the barrier is or becomes broken, is reset, or the wait times out (which breaks it).
   */
  async wait(timeout?: number): Promise<number> {
    const deadline = this.deadline(timeout, 'Barrier.wait()');
    const { index, state } = await driveAsync(this.at, this.arriving(deadline));
    if (index + 1 < this.parties) return driveAsync(this.at, this.awaiting(state, index, deadline));
    this.startAction();
    try {
      if (this.action) await (await this.action.ready())();
    } catch (err) {
      this.endCycle(state, err, true);
    }
    this.endCycle(state, undefined, false);
    return index;
  }

  /** `wait`, blocking the thread (an async action is called but not awaited). */
  waitSync(timeout?: number): number {
    const deadline = this.deadline(timeout, 'Barrier.waitSync()');
    const { index, state } = driveSync(this.at, this.arriving(deadline));
    if (index + 1 < this.parties) return driveSync(this.at, this.awaiting(state, index, deadline));
    this.startAction();
    try {
      if (this.action) this.action.now()();
    } catch (err) {
      this.endCycle(state, err, true);
    }
    this.endCycle(state, undefined, false);
    return index;
  }

  /**
   * Returns the barrier to its empty, unbroken state; parties waiting now
   * get BrokenBarrierError (Python's `reset()`). While the last party runs
   * the action, its cycle is ending anyway and reset leaves it be.
   */
  reset(): void {
    const parties = this.parties;
    for (;;) {
      const w = Atomics.load(this.words, STATE);
      if ((w & COUNT_MASK) >= parties && !(w & BROKEN) && !this.actorDead()) return;
      // Own the cycle's end, then say how it ended, then move on.
      const claimed = (w & ~COUNT_MASK) | parties;
      if (Atomics.compareExchange(this.words, STATE, w, claimed) !== w) continue;
      Atomics.store(this.words, ACTOR, 0);
      Atomics.or(this.words, OUTCOMES, outcomeBit(genOf(w)));
      Atomics.store(this.words, STATE, nextCycle(w));
      bumpAndWakeAll(this.at);
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
