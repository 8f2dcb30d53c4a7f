/**
 * What the server's built-in objects (list, dict, Queue, Lock…) share: who
 * is calling, and waits that never block the server.
 *
 * The server runs every call on one event loop, so a call that would wait
 * (`lock.acquire()`, `queue.get()`, `event.wait()`) returns a promise that a
 * later call settles; meanwhile every other call and client is served.
 * Waits are per caller (a client's connection), so when a client goes away
 * its waits are dropped and what it held (a Lock) is let go.
 */
import { MAX_TIMER_MS } from '../../timer-limit.js';
import { describe } from '../../describe.js';
import { ValueError } from '../../errors.js';

/** A client's connection, as the objects see it. */
export interface Caller {
  readonly closed: boolean;
  /**
   * Asks for `object.callerGone(this)` when this caller's connection ends;
   * counted, so each `track` is paired with an `untrack` once that state is
   * gone (a connection that waited on many objects over time holds none of them).
   */
  track(object: CallerState): void;
  untrack(object: CallerState): void;
}

/** An object that keeps something per caller (a holder, waiters). */
export interface CallerState {
  callerGone(caller: Caller): void;
}

/** Limits a server puts on what its built-in objects make (its options). */
export interface ServerLimits {
  /** The largest manager `Array`, in bytes of its elements. */
  readonly maxArrayBytes: number;
}

/** The default of `maxArrayBytes`: 64 MiB (8 Mi doubles). */
export const DEFAULT_MAX_ARRAY_BYTES = 64 * 1024 * 1024;

let limits: ServerLimits = { maxArrayBytes: DEFAULT_MAX_ARRAY_BYTES };

/** Runs a factory under a server's limits (a process may run several servers with different options). */
export function withLimits<T>(serverLimits: ServerLimits, make: () => T): T {
  const outer = limits;
  limits = serverLimits;
  try {
    return make();
  } finally {
    limits = outer;
  }
}

/** The limits of the server whose factory runs now. */
export function currentLimits(): ServerLimits {
  return limits;
}

/** Marks the built-in objects: the server calls their methods with the caller first. */
export const MANAGED: unique symbol = Symbol.for('multiprocessing-ts.managed-object') as any;

/** Base of the built-in objects; `exposed` lists what clients may call. */
export abstract class Managed {
  static readonly exposed: readonly string[] = [];
  get [MANAGED](): true {
    return true;
  }
}

export function isManaged(value: object): value is Managed {
  return (value as { [MANAGED]?: boolean })[MANAGED] === true;
}

/** `{ block, timeout }`, as `Queue` and `Lock` take them. */
export interface WaitOptions {
  block?: boolean;
  timeout?: number;
}

/** Milliseconds to wait from options: 0 for `block: false` or a negative timeout, Infinity for none. */
export function waitTime(options: unknown, what: string): number {
  if (options === undefined || options === null) return Infinity;
  if (typeof options !== 'object') throw new ValueError(`${what} options must be an object { block?, timeout? }, not ${describe(options)}`);
  const { block, timeout } = options as WaitOptions;
  if (block === false) return 0;
  return timeoutOf(timeout, what);
}

/**
 * A timeout in milliseconds (undefined, null or Infinity: forever;
 * negative: 0; above setTimeout's largest delay, ~24.8 days: forever, as
 * setTimeout would fire such a timer at once).
 */
export function timeoutOf(timeout: unknown, what: string): number {
  if (timeout === undefined || timeout === null || timeout === Infinity) return Infinity;
  if (typeof timeout !== 'number' || Number.isNaN(timeout)) {
    throw new ValueError(`${what} timeout must be a number of milliseconds (or undefined for no limit), not ${describe(timeout)}`);
  }
  return timeout > MAX_TIMER_MS ? Infinity : Math.max(0, timeout);
}

interface Waiter<T, P> {
  readonly caller: Caller;
  readonly payload: P;
  readonly resolve: (value: T) => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Callers waiting their turn, first come first served, each with an
 * optional payload (a putter's item). A wait ends when `wakeFirst`/`wakeAll`
 * hands it a value, or at its timeout with `onTimeout()`'s value (or throw);
 * a wait of a caller that is gone is dropped, never woken.
 */
export class WaitList<T, P = undefined> implements CallerState {
  readonly #waiters: Waiter<T, P>[] = [];

  get length(): number {
    return this.#waiters.length;
  }

  /** Waits up to `ms` (Infinity: until woken). */
  wait(caller: Caller, ms: number, onTimeout: () => T, payload?: P): Promise<T> {
    caller.track(this);
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T, P> = { caller, payload: payload as P, resolve, timer: undefined };
      if (ms !== Infinity) {
        waiter.timer = setTimeout(() => {
          this.#remove(waiter);
          caller.untrack(this);
          try {
            resolve(onTimeout());
          } catch (err) {
            reject(err);
          }
        }, ms);
      }
      this.#waiters.push(waiter);
    });
  }

  /**
   * Wakes the longest waiting live caller with `value(payload)`, made only
   * for that caller (so what it hands over is never handed to a dead one);
   * false when nobody waits.
   */
  wakeFirst(value: (payload: P) => T): boolean {
    for (;;) {
      const waiter = this.#waiters.shift();
      if (!waiter) return false;
      clearTimeout(waiter.timer);
      waiter.caller.untrack(this);
      if (waiter.caller.closed) continue;
      waiter.resolve(value(waiter.payload));
      return true;
    }
  }

  /** Whether a live caller waits. */
  waiting(): boolean {
    while (this.#waiters.length > 0 && this.#waiters[0]!.caller.closed) {
      const gone = this.#waiters.shift()!;
      clearTimeout(gone.timer);
      gone.caller.untrack(this);
    }
    return this.#waiters.length > 0;
  }

  /** Wakes every waiter with `value(i)` (i: its place in line). */
  wakeAll(value: (i: number) => T): void {
    const all = this.#waiters.splice(0);
    all.forEach((waiter, i) => {
      clearTimeout(waiter.timer);
      waiter.caller.untrack(this);
      waiter.resolve(value(i));
    });
  }

  callerGone(caller: Caller): void {
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const waiter = this.#waiters[i]!;
      if (waiter.caller === caller) {
        clearTimeout(waiter.timer);
        this.#waiters.splice(i, 1);
        caller.untrack(this);
      }
    }
  }

  #remove(waiter: Waiter<T, P>): void {
    const at = this.#waiters.indexOf(waiter);
    if (at >= 0) this.#waiters.splice(at, 1);
  }
}

/** An index as Python reads it (negative from the end); an IndexError-worthy one is null. */
export function resolveIndex(index: unknown, length: number, what: string): number | null {
  if (typeof index !== 'number' || !Number.isInteger(index)) {
    throw new ValueError(`${what} index must be an integer, not ${describe(index)}`);
  }
  const i = index < 0 ? index + length : index;
  return i >= 0 && i < length ? i : null;
}
