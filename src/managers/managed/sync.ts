/**
 * The server's synchronization primitives: Lock, RLock, Semaphore,
 * BoundedSemaphore, Condition, Event, Barrier.
 *
 * They live in the server's memory and every wait is a promise (base.ts),
 * so a client blocked in `acquire()` holds up no one else. The holder of a
 * Lock or RLock is a client (its connection) and, within it, an async
 * chain (OwnerChain): a proxy's `withLock` callback is a chain of its own,
 * so concurrent tasks of one process exclude each other there, while a bare
 * `acquire()` outside any `withLock` is held by the whole process (as a
 * thread holds a lock in Python). When that
 * connection ends — the process exited or was killed — what it held is
 * released and handed to the next waiter. Semaphores have no holder (any
 * client may release), so theirs are not.
 */
import { describe } from '../../describe.js';
import { BrokenBarrierError, StateError, ValueError } from '../../errors.js';
import { Managed, WaitList, timeoutOf, waitTime, type Caller, type CallerState } from './base.js';

/**
 * The async chains of a client that a call comes from, innermost first:
 * ids of its task frames (a proxy's `withLock` callback runs in one) and
 * last 0, the process itself. A lock held by any of them is held by the
 * call; a lock taken free is held by the first (a bare `acquire()` puts 0
 * first: the process holds it, as a thread does in Python). Sent by the
 * proxies as a method's last argument; a call without one is the process's.
 */
export type OwnerChain = readonly number[];

const PROCESS: OwnerChain = [0];

function chainOf(owner: unknown): OwnerChain {
  if (!Array.isArray(owner) || owner.length === 0 || owner.length > 1024) return PROCESS;
  return owner.every((id) => Number.isSafeInteger(id)) ? (owner as number[]) : PROCESS;
}

/** Who holds a lock, or waits for it: a client and its async chain (the innermost of the chain it acquired in). */
interface Holder {
  readonly caller: Caller;
  readonly task: number;
}

/** What Condition needs of its lock. */
interface ConditionLock {
  acquireFor(caller: Caller, chain: OwnerChain, ms: number): Promise<boolean>;
  /** The task of `caller` that holds it, if one in `chain` does. */
  heldTask(caller: Caller, chain: OwnerChain): number | undefined;
  /** Lets go entirely (an RLock's whole depth) and says how deep it was held. */
  releaseAll(caller: Caller, chain: OwnerChain): number;
  /** After `acquireFor`: the depth `releaseAll` saved. */
  restoreDepth(caller: Caller, depth: number): void;
}

function holds(holder: Holder | null, caller: Caller, chain: OwnerChain): boolean {
  return holder !== null && holder.caller === caller && chain.includes(holder.task);
}

export class ManagedLock extends Managed implements CallerState, ConditionLock {
  static override readonly exposed: readonly string[] = ['acquire', 'release', 'locked'];

  /** Who acquired it (null: free). */
  #holder: Holder | null = null;
  /** Waiters get the lock handed to them (the payload is the waiter). */
  readonly #waiters = new WaitList<boolean, Holder>();

  acquire(caller: Caller, options?: unknown, owner?: unknown): Promise<boolean> {
    return this.acquireFor(caller, chainOf(owner), waitTime(options, 'acquire()'));
  }

  /** Python's Lock: any client may release it (as any thread may). */
  release(_caller: Caller, _owner?: unknown): void {
    if (!this.#holder) throw new ValueError('release() of a Lock that is not held');
    this.#handOff();
  }

  locked(): boolean {
    return this.#holder !== null;
  }

  acquireFor(caller: Caller, chain: OwnerChain, ms: number): Promise<boolean> {
    const wanted: Holder = { caller, task: chain[0]! };
    if (!this.#holder) {
      this.#take(wanted);
      return Promise.resolve(true);
    }
    if (ms === 0) return Promise.resolve(false);
    return this.#waiters.wait(caller, ms, () => false, wanted);
  }

  heldTask(caller: Caller, chain: OwnerChain): number | undefined {
    return holds(this.#holder, caller, chain) ? this.#holder!.task : undefined;
  }

  releaseAll(caller: Caller, chain: OwnerChain): number {
    if (holds(this.#holder, caller, chain)) this.#handOff();
    return 1;
  }

  restoreDepth(): void {}

  callerGone(caller: Caller): void {
    if (this.#holder?.caller === caller) this.#handOff();
  }

  #take(holder: Holder): void {
    this.#holder = holder;
    holder.caller.track(this);
  }

  #handOff(): void {
    this.#holder?.caller.untrack(this);
    this.#holder = null;
    this.#waiters.wakeFirst((next) => {
      this.#take(next);
      return true;
    });
  }
}

/** Reentrant for the async chain that holds it (and the chains it started), not for other tasks of the same client. */
export class ManagedRLock extends Managed implements CallerState, ConditionLock {
  static override readonly exposed: readonly string[] = ['acquire', 'release', 'locked'];

  #holder: Holder | null = null;
  #depth = 0;
  readonly #waiters = new WaitList<boolean, Holder>();

  acquire(caller: Caller, options?: unknown, owner?: unknown): Promise<boolean> {
    return this.acquireFor(caller, chainOf(owner), waitTime(options, 'acquire()'));
  }

  release(caller: Caller, owner?: unknown): void {
    if (!holds(this.#holder, caller, chainOf(owner))) {
      throw new ValueError(
        this.#holder ? 'release() of an RLock held by another client (process) or async task' : 'release() of an RLock that is not held',
      );
    }
    if (--this.#depth === 0) this.#handOff();
  }

  locked(): boolean {
    return this.#holder !== null;
  }

  acquireFor(caller: Caller, chain: OwnerChain, ms: number): Promise<boolean> {
    if (holds(this.#holder, caller, chain)) {
      this.#depth++;
      return Promise.resolve(true);
    }
    const wanted: Holder = { caller, task: chain[0]! };
    if (!this.#holder) {
      this.#take(wanted, 1);
      return Promise.resolve(true);
    }
    if (ms === 0) return Promise.resolve(false);
    return this.#waiters.wait(caller, ms, () => false, wanted);
  }

  heldTask(caller: Caller, chain: OwnerChain): number | undefined {
    return holds(this.#holder, caller, chain) ? this.#holder!.task : undefined;
  }

  releaseAll(caller: Caller, chain: OwnerChain): number {
    const depth = this.#depth;
    if (holds(this.#holder, caller, chain)) this.#handOff();
    return depth;
  }

  restoreDepth(caller: Caller, depth: number): void {
    if (this.#holder?.caller === caller) this.#depth = depth;
  }

  callerGone(caller: Caller): void {
    if (this.#holder?.caller === caller) this.#handOff();
  }

  #take(holder: Holder, depth: number): void {
    this.#holder = holder;
    this.#depth = depth;
    holder.caller.track(this);
  }

  #handOff(): void {
    this.#holder?.caller.untrack(this);
    this.#holder = null;
    this.#depth = 0;
    this.#waiters.wakeFirst((next) => {
      this.#take(next, 1);
      return true;
    });
  }
}

export class ManagedSemaphore extends Managed {
  static override readonly exposed: readonly string[] = ['acquire', 'release', 'getValue'];

  #value: number;
  readonly #bound: number | null;
  readonly #waiters = new WaitList<boolean>();

  constructor(value: unknown = 1, bounded = false) {
    super();
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new ValueError(`${bounded ? 'BoundedSemaphore' : 'Semaphore'} value must be an integer >= 0, not ${describe(value)}`);
    }
    this.#value = value;
    this.#bound = bounded ? value : null;
  }

  acquire(caller: Caller, options?: unknown): Promise<boolean> {
    if (this.#value > 0) {
      this.#value--;
      return Promise.resolve(true);
    }
    const ms = waitTime(options, 'acquire()');
    if (ms === 0) return Promise.resolve(false);
    return this.#waiters.wait(caller, ms, () => false);
  }

  release(): void {
    if (this.#bound !== null && this.#value >= this.#bound) {
      throw new ValueError('BoundedSemaphore released too many times (above its initial value)');
    }
    // A waiter is handed the unit; otherwise it is counted.
    if (!this.#waiters.wakeFirst(() => true)) this.#value++;
  }

  getValue(): number {
    return this.#value;
  }
}

export class ManagedBoundedSemaphore extends ManagedSemaphore {
  constructor(value: unknown = 1) {
    super(value, true);
  }
}

export class ManagedCondition extends Managed {
  static override readonly exposed: readonly string[] = ['acquire', 'release', 'wait', 'notify', 'notifyAll', 'locked'];

  readonly #lock: (ManagedLock | ManagedRLock) & ConditionLock;
  readonly #waiters = new WaitList<boolean>();

  /** `lock`: a manager Lock or RLock (as it arrives: its object), or none for a new RLock. */
  constructor(lock?: unknown) {
    super();
    if (lock === undefined || lock === null) this.#lock = new ManagedRLock();
    else if (lock instanceof ManagedLock || lock instanceof ManagedRLock) this.#lock = lock;
    else throw new ValueError(`Condition(lock) takes a manager Lock or RLock (await manager.Lock()), not ${describe(lock)}`);
  }

  /** The lock object (a Condition made with a manager Lock shares it). */
  get lock(): ManagedLock | ManagedRLock {
    return this.#lock;
  }

  acquire(caller: Caller, options?: unknown, owner?: unknown): Promise<boolean> {
    return this.#lock.acquire(caller, options, owner);
  }

  release(caller: Caller, owner?: unknown): void {
    this.#lock.release(caller, owner);
  }

  locked(): boolean {
    return this.#lock.locked();
  }

  /** Releases the lock, waits for a notify (or the timeout), takes the lock again; whether it was notified. */
  async wait(caller: Caller, timeout?: unknown, owner?: unknown): Promise<boolean> {
    const ms = timeoutOf(timeout, 'wait()');
    const chain = chainOf(owner);
    // Taken again by the same task that held it, so only that chain re-enters.
    const task = this.#mustHold(caller, chain, 'wait');
    const depth = this.#lock.releaseAll(caller, chain);
    const notified = await this.#waiters.wait(caller, ms, () => false);
    await this.#lock.acquireFor(caller, [task], Infinity);
    this.#lock.restoreDepth(caller, depth);
    return notified;
  }

  notify(caller: Caller, n: unknown = 1, owner?: unknown): void {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new ValueError(`Condition.notify(n) takes a number of waiters to wake, not ${describe(n)}`);
    }
    this.#mustHold(caller, chainOf(owner), 'notify');
    for (let i = 0; i < n && this.#waiters.wakeFirst(() => true); i++);
  }

  notifyAll(caller: Caller, owner?: unknown): void {
    this.#mustHold(caller, chainOf(owner), 'notifyAll');
    this.#waiters.wakeAll(() => true);
  }

  /** The holding task's id. */
  #mustHold(caller: Caller, chain: OwnerChain, call: string): number {
    const task = this.#lock.heldTask(caller, chain);
    if (task === undefined) {
      throw new StateError(`Condition.${call}() needs the condition's lock, held by this client and async task: acquire it first`);
    }
    return task;
  }
}

export class ManagedEvent extends Managed {
  static override readonly exposed: readonly string[] = ['set', 'clear', 'isSet', 'wait'];

  #flag = false;
  readonly #waiters = new WaitList<boolean>();

  set(): void {
    this.#flag = true;
    this.#waiters.wakeAll(() => true);
  }

  clear(): void {
    this.#flag = false;
  }

  isSet(): boolean {
    return this.#flag;
  }

  wait(caller: Caller, timeout?: unknown): Promise<boolean> {
    const ms = timeoutOf(timeout, 'wait()');
    if (this.#flag) return Promise.resolve(true);
    if (ms === 0) return Promise.resolve(false);
    return this.#waiters.wait(caller, ms, () => this.#flag);
  }
}

const BROKEN = -1;

export class ManagedBarrier extends Managed {
  static override readonly exposed: readonly string[] = ['wait', 'reset', 'abort', 'parties', 'nWaiting', 'broken'];

  readonly #parties: number;
  readonly #timeout: number;
  #count = 0;
  #broken = false;
  readonly #waiters = new WaitList<number>();

  constructor(parties: unknown, options?: unknown) {
    super();
    if (typeof parties !== 'number' || !Number.isSafeInteger(parties) || parties < 1) {
      throw new ValueError(`Barrier parties must be an integer >= 1, not ${describe(parties)}`);
    }
    if (options !== undefined && options !== null && typeof options !== 'object') {
      throw new ValueError(`Barrier options must be an object { timeout? }, not ${describe(options)}`);
    }
    this.#parties = parties;
    this.#timeout = timeoutOf((options as { timeout?: unknown } | undefined)?.timeout, 'Barrier');
  }

  /** Waits for all parties; resolves to this party's place (0 … parties-1, in order of arrival). */
  async wait(caller: Caller, timeout?: unknown): Promise<number> {
    const ms = timeout === undefined || timeout === null ? this.#timeout : timeoutOf(timeout, 'wait()');
    if (this.#broken) throw broken();
    const index = this.#count++;
    if (this.#count === this.#parties) {
      this.#count = 0;
      this.#waiters.wakeAll(() => 0);
      return index;
    }
    const outcome = await this.#waiters.wait(caller, ms, () => {
      this.#breakAll();
      return BROKEN;
    });
    if (outcome === BROKEN) throw broken();
    return index;
  }

  /** Breaks the current cycle (its waiters get BrokenBarrierError) and starts afresh. */
  reset(): void {
    this.#waiters.wakeAll(() => BROKEN);
    this.#count = 0;
    this.#broken = false;
  }

  abort(): void {
    this.#breakAll();
  }

  parties(): number {
    return this.#parties;
  }

  nWaiting(): number {
    return this.#count;
  }

  broken(): boolean {
    return this.#broken;
  }

  #breakAll(): void {
    this.#broken = true;
    this.#count = 0;
    this.#waiters.wakeAll(() => BROKEN);
  }
}

function broken(): BrokenBarrierError {
  return new BrokenBarrierError('the barrier is broken (reset, aborted, or a wait timed out)');
}
