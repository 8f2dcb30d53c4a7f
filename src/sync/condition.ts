/**
 * Condition variables over any Lock or RLock, on int32 words of a segment.
 *
 * Words (index: meaning — invariant):
 *   SEQ 0:      bumped by every notify that handed out something, after the
 *               slots changed (waiting.ts).
 *   SLEEPERS 1: waits that may be asleep on SEQ (waiting.ts).
 *   CURSOR 2:   the slot the next notify looks at first, so that notify(1)
 *               does not always favour the same thread.
 *   3:          unused.
 *   Then SLOTS slots of two words, one per thread that has waits pending:
 *   OWNER:      the waiting thread's holder id (tid and start-time tag, see
 *               liveness.ts), or 0 when the slot is free. Claimed (0 → id)
 *               and taken from a dead owner only while holding the lock;
 *               given back (→ 0) only by its owner, once PACKED is 0.
 *   PACKED:     waiting (bits 0–15): that thread's waits pending;
 *               notified (bits 16–31): notifications handed to them and not
 *               yet taken. notified ≤ waiting. Changed by compare-exchange
 *               only, as one word, so a notify and a timing-out wait never
 *               both count one waiter.
 *
 * Python's Condition counts sleepers in semaphores, and its notify() waits
 * for the woken to say so: a waiter killed at the wrong moment takes a
 * notification with it, or hangs the notifier. Here a notification is not a
 * wake but an entry in a slot: notify(n), holding the lock, walks the slots,
 * skips and frees those whose thread is dead (a killed process, a terminated
 * worker), and raises `notified` on live ones up to n; then bumps SEQ and
 * wakes every sleeper. Each wakes, looks at its own thread's slot, and takes
 * a notification by a compare-exchange or sleeps again. So a waiter that was
 * dead when notify ran is never counted, and one killed after it was woken
 * takes no wake a live waiter needed (all were woken). What it does take is
 * a notification already handed to its slot: a waiter that dies after being
 * notified is as one that died just after `wait()` returned.
 *
 * The tasks of one thread share its slot, and queue their waits in this
 * isolate in the order they entered (tickets, oldest first; entering holds
 * the lock, as notify does). Whichever task of the thread looks first hands
 * the slot's notifications to the oldest tickets, not to itself: a
 * notification is for a wait that was pending when notify ran, and those
 * are the oldest, so a task that starts waiting later cannot take it. A
 * wait that times out leaves by the same compare-exchange, taking a
 * notification that raced it instead (then it returns true), so none is
 * lost to a timeout either. One consequence: a `waitSync` blocks its whole
 * thread, so a notification handed to an older async wait of that thread
 * is taken only once the thread is free again (as a lock held by an async
 * task is); mixing the two on one thread is best avoided.
 *
 * At most SLOTS threads (processes, workers) wait on one Condition at once,
 * and 65,535 waits per thread.
 */
import { StateError, ValueError } from '../errors.js';
import { describe } from '../describe.js';
import { allocateRegion, attachRegion, type Region, type RegionHandle } from '../shm/region.js';
import { SHARED, registerShared, reviveShared, type SharedHandle } from '../serialize/shared.js';
import { isAlive, isAliveNow, selfTid } from '../liveness.js';
import { Lock, RLock, type SavedHold } from './lock.js';
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

const SEQ = 0;
const SLEEPERS = 1;
const CURSOR = 2;
const HEADER_WORDS = 4;
/** Threads that may wait at once on one Condition. */
export const SLOTS = 254;
const BYTES = (HEADER_WORDS + SLOTS * 2) * 4;

const WAITING_MASK = 0xffff;
const NOTIFIED_ONE = 0x10000;

/** One wait of this thread on a condition: set once a notification is handed to it. */
interface Ticket {
  granted: boolean;
}

/**
 * This isolate's pending waits per condition (keyed by its region's key and
 * offset), oldest first. An entry lives while its queue is non-empty, so
 * every Condition object of one condition in this isolate finds the same
 * queue. Without the addon regions have no key: the queue is then keyed by
 * the mapping object, so two objects of one condition on separate mappings
 * of a thread would queue apart (the order between them is then the
 * looking order).
 */
const ticketQueues = new Map<string, Ticket[]>();
const plainTicketQueues = new WeakMap<SharedArrayBuffer, Map<string, Ticket[]>>();

/** A wait entered: its thread's slot, its ticket, and the queue holding the ticket. */
interface Entered {
  readonly slot: number;
  readonly ticket: Ticket;
  readonly queue: Ticket[];
}

interface ConditionHandle extends SharedHandle {
  readonly segment: RegionHandle;
  readonly offset: number;
  readonly lock: SharedHandle;
}

/**
 * A condition variable shared by threads and processes (Python's
 * `multiprocessing.Condition`), over a Lock or RLock (a new RLock by default).
 * `wait`, `waitFor` and `notify` need the lock held by the running task.
 * @example
 * ```ts
 * await cond.withLock(async () => {
 *   while (!ready.value) await cond.wait();
 * });
 * ```
 */
export class Condition {
  /** @internal */ readonly segment: Region;
  /** @internal */ readonly offset: number;
  /** @internal */ readonly words: Int32Array;
  private readonly lock: Lock | RLock;
  private readonly at: SequenceWords;

  /**
   * @param lock the Lock or RLock to use (default: a new RLock).
   * @param place @internal where a revived condition lives.
   */
  constructor(lock?: Lock | RLock | null, place?: { segment: Region; offset: number }) {
    if (lock !== undefined && lock !== null && !(lock instanceof Lock) && !(lock instanceof RLock)) {
      throw new ValueError(`Condition(lock) takes an mp.Lock or mp.RLock, got ${describe(lock)}; or pass nothing for a new RLock`);
    }
    this.lock = lock ?? new RLock();
    this.segment = place?.segment ?? allocateRegion(BYTES);
    this.offset = place?.offset ?? this.segment.base;
    this.words = new Int32Array(this.segment.sab, this.offset, BYTES / 4);
    this.at = { words: this.words, seq: SEQ, sleepers: SLEEPERS };
  }

  /** Takes the underlying lock (see Lock.acquire). */
  acquire(options?: { block?: boolean; timeout?: number }): Promise<boolean> {
    return this.lock.acquire(options);
  }

  /** Takes the underlying lock, blocking the thread. */
  acquireSync(options?: { block?: boolean; timeout?: number }): boolean {
    return this.lock.acquireSync(options);
  }

  /** Releases the underlying lock. */
  release(): void {
    this.lock.release();
  }

  /** Runs `fn` holding the underlying lock (see Lock.withLock): `wait` and `notify` work inside it. */
  withLock<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    return this.lock.withLock(fn);
  }

  /** `withLock`, blocking the thread while it waits for the lock. */
  withLockSync<T>(fn: () => T): T {
    return this.lock.withLockSync(fn);
  }

  private checkHeld(call: string): void {
    if (!this.lock.heldByCurrentTask()) {
      throw new StateError(
        `Condition.${call} needs the condition's lock held by the running code (Python's "cannot ${call.replace(/\(.*/, '')} on un-acquired lock"); ` +
          `call it inside await cond.withLock(async () => …), or after await cond.acquire()`,
      );
    }
  }

  private ownerAt(slot: number): number {
    return HEADER_WORDS + slot * 2;
  }

  /** Frees a dead thread's slot (holding the lock, or as notify does). */
  private reclaim(slot: number, owner: number): void {
    const o = this.ownerAt(slot);
    Atomics.store(this.words, o + 1, 0);
    Atomics.compareExchange(this.words, o, owner, 0);
  }

  /** The ticket queues of this isolate that this condition's waits go in. */
  private queues(): Map<string, Ticket[]> {
    if (this.segment.key !== null) return ticketQueues;
    let queues = plainTicketQueues.get(this.segment.sab);
    if (!queues) plainTicketQueues.set(this.segment.sab, (queues = new Map()));
    return queues;
  }

  private queueKey(): string {
    return `${this.segment.key ?? ''}+${this.offset}`;
  }

  /** Counts one more wait of this thread, in its slot and at the end of its ticket queue (holding the lock). */
  private enter(): Entered {
    const slot = this.enterSlot();
    const queues = this.queues();
    const key = this.queueKey();
    let queue = queues.get(key);
    if (!queue) queues.set(key, (queue = []));
    const ticket: Ticket = { granted: false };
    queue.push(ticket);
    return { slot, ticket, queue };
  }

  /** Removes `ticket` from its queue (granted or leaving), and the queue from the map once empty. */
  private dequeue(queue: Ticket[], index: number): Ticket {
    const [ticket] = queue.splice(index, 1);
    if (queue.length === 0) {
      const queues = this.queues();
      const key = this.queueKey();
      if (queues.get(key) === queue) queues.delete(key);
    }
    return ticket!;
  }

  /** Counts one more wait of this thread in its slot (holding the lock). @returns the slot. */
  private enterSlot(): number {
    const w = this.words;
    const me = selfTid();
    let free = -1;
    for (let slot = 0; slot < SLOTS; slot++) {
      const o = this.ownerAt(slot);
      const owner = Atomics.load(w, o);
      if (owner === me) {
        if ((Atomics.load(w, o + 1) & WAITING_MASK) === WAITING_MASK) {
          throw new StateError(`Condition.wait(): this thread has ${WAITING_MASK} waits pending already`);
        }
        Atomics.add(w, o + 1, 1);
        return slot;
      }
      if (free < 0 && (owner === 0 || !isAlive(owner))) free = slot;
    }
    if (free < 0) {
      throw new StateError(`Condition.wait(): ${SLOTS} threads or processes wait on this Condition already, the most it serves at once`);
    }
    const o = this.ownerAt(free);
    const owner = Atomics.load(w, o);
    if (owner !== 0) this.reclaim(free, owner);
    Atomics.store(w, o + 1, 1);
    Atomics.store(w, o, me);
    return free;
  }

  /**
   * Hands the notifications in this thread's slot to its oldest tickets,
   * one compare-exchange each (counting each of those waits out).
   */
  private claim({ slot, queue }: Entered): void {
    const w = this.words;
    const o = this.ownerAt(slot);
    for (let p = Atomics.load(w, o + 1); queue.length > 0 && p >>> 16 !== 0; ) {
      const next = p - NOTIFIED_ONE - 1;
      const seen = Atomics.compareExchange(w, o + 1, p, next);
      if (seen !== p) {
        p = seen;
        continue;
      }
      this.dequeue(queue, 0).granted = true;
      // The last wait of this thread gives the slot back (no other thread claims it meanwhile: its owner is us).
      if (next === 0) Atomics.store(w, o, 0);
      p = next;
    }
  }

  /**
   * A wait that timed out counts itself out — unless a notification reached
   * its ticket first (then it was notified after all).
   * @returns whether it was notified.
   */
  private leave(entered: Entered): boolean {
    const w = this.words;
    const o = this.ownerAt(entered.slot);
    for (;;) {
      this.claim(entered);
      if (entered.ticket.granted) return true;
      const p = Atomics.load(w, o + 1);
      // A notify raced in after the claim: hand it out first.
      if (p >>> 16 !== 0) continue;
      if (Atomics.compareExchange(w, o + 1, p, p - 1) !== p) continue;
      this.dequeue(entered.queue, entered.queue.indexOf(entered.ticket));
      if (p - 1 === 0) Atomics.store(w, o, 0);
      return false;
    }
  }

  private *waiting(entered: Entered, deadline: number): Generator<Sleep, boolean, void> {
    for (;;) {
      const seen = observe(this.at);
      this.claim(entered);
      if (entered.ticket.granted) return true;
      const ms = remaining(deadline);
      if (ms === 0) return this.leave(entered);
      yield { seen, ms };
    }
  }

  /**
   * Releases the lock (fully, however deep an RLock is held), waits for a
   * notify, and takes the lock back before it returns, as Python's.
   * @param timeout milliseconds at most (negative means 0); forever when undefined.
   * @returns false when it timed out, true when notified.
   * @throws StateError when the running code does not hold the lock.
   */
  async wait(timeout?: number): Promise<boolean> {
    const deadline = deadlineOfTimeout(timeout, 'Condition.wait()');
    this.checkHeld('wait()');
    const entered = this.enter();
    const saved: SavedHold = this.lock.releaseSave();
    try {
      return await driveAsync(this.at, this.waiting(entered, deadline));
    } finally {
      await this.lock.acquireRestore(saved);
    }
  }

  /** `wait`, blocking the thread. */
  waitSync(timeout?: number): boolean {
    const deadline = deadlineOfTimeout(timeout, 'Condition.waitSync()');
    this.checkHeld('waitSync()');
    const entered = this.enter();
    const saved = this.lock.releaseSave();
    try {
      return driveSync(this.at, this.waiting(entered, deadline));
    } finally {
      this.lock.acquireRestoreSync(saved);
    }
  }

  /**
   * Waits until `predicate()` is truthy (Python's `wait_for`): checks it
   * first, then after each wake, until `timeout` ms have passed.
   * @returns the predicate's last result.
   */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number): Promise<T> {
    const deadline = deadlineOfTimeout(timeout, 'Condition.waitFor()');
    if (typeof predicate !== 'function') throw new ValueError(`Condition.waitFor() takes a predicate function, got ${describe(predicate)}`);
    let result = await predicate();
    while (!result) {
      const ms = remaining(deadline);
      if (ms === 0) break;
      await this.wait(ms === Infinity ? undefined : ms);
      result = await predicate();
    }
    return result;
  }

  /** `waitFor`, blocking the thread (the predicate is synchronous). */
  waitForSync<T>(predicate: () => T, timeout?: number): T {
    const deadline = deadlineOfTimeout(timeout, 'Condition.waitForSync()');
    if (typeof predicate !== 'function') throw new ValueError(`Condition.waitForSync() takes a predicate function, got ${describe(predicate)}`);
    let result = predicate();
    while (!result) {
      const ms = remaining(deadline);
      if (ms === 0) break;
      this.waitSync(ms === Infinity ? undefined : ms);
      result = predicate();
    }
    return result;
  }

  /**
   * Wakes up to `n` waits (default 1) among those waiting now; waiters whose
   * thread died are skipped. A fractional `n` counts up (`notify(1.5)`
   * wakes 2, as Python's multiprocessing Condition does).
   * @throws StateError when the running code does not hold the lock.
   */
  notify(n = 1): void {
    if (typeof n !== 'number' || Number.isNaN(n)) {
      throw new ValueError(`Condition.notify(n) takes a number of waiters to wake, got ${describe(n)}`);
    }
    this.checkHeld('notify()');
    let left = Math.ceil(n);
    if (left < 1) return;
    const w = this.words;
    const start = Atomics.load(w, CURSOR) % SLOTS;
    let gave = false;
    for (let i = 0; i < SLOTS && left > 0; i++) {
      const slot = (start + i) % SLOTS;
      const o = this.ownerAt(slot);
      const owner = Atomics.load(w, o);
      if (owner === 0) continue;
      // Not the memoized verdict: a waiter killed a few ms ago must not be handed a notification.
      if (!isAliveNow(owner)) {
        this.reclaim(slot, owner);
        continue;
      }
      for (let p = Atomics.load(w, o + 1); ; ) {
        const pending = (p & WAITING_MASK) - (p >>> 16);
        const k = Math.min(pending, left);
        if (k <= 0) break;
        const seen = Atomics.compareExchange(w, o + 1, p, p + k * NOTIFIED_ONE);
        if (seen !== p) {
          p = seen;
          continue;
        }
        left -= k;
        gave = true;
        Atomics.store(w, CURSOR, (slot + 1) % SLOTS);
        break;
      }
    }
    if (gave) bumpAndWakeAll(this.at);
  }

  /** Wakes every wait pending now. */
  notifyAll(): void {
    this.notify(Infinity);
  }

  toString(): string {
    let waiting = 0;
    for (let slot = 0; slot < SLOTS; slot++) {
      const o = this.ownerAt(slot);
      if (Atomics.load(this.words, o) !== 0) {
        const p = Atomics.load(this.words, o + 1);
        waiting += (p & WAITING_MASK) - (p >>> 16);
      }
    }
    return `<Condition(${this.lock}, ${waiting})>`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal */
  [SHARED](): ConditionHandle {
    return { kind: 'Condition', segment: this.segment.toHandle(), offset: this.offset, lock: this.lock[SHARED]() };
  }
}

registerShared('Condition', (h) => {
  const { segment, offset, lock } = h as ConditionHandle;
  return new Condition(reviveShared(lock) as Lock | RLock, { segment: attachRegion(segment), offset });
});
