/**
 * `AsyncResult`: what `applyAsync`, `mapAsync` and `starmapAsync` return
 * (Python's `AsyncResult`), and a PromiseLike, so `await pool.applyAsync(…)`
 * works too.
 */
import { MAX_TIMER_MS } from '../timer-limit.js';
import { TimeoutError, ValueError } from '../errors.js';

/** Callbacks of an `…Async` call, run in the parent before `get()`/`wait()` resolve. */
export interface ResultCallbacks<T> {
  /** Called with the result when the call succeeds. */
  callback?: (result: T) => void;
  /** Called with the error when it fails. */
  errorCallback?: (error: unknown) => void;
}

/** @internal Settles a result: (true, value) or (false, error). */
export const SETTLE: unique symbol = Symbol('settle');
/** @internal Only the pool makes results. */
const MAKE: unique symbol = Symbol('make');

/** A callback that throws is the caller's bug: it surfaces as an uncaught exception, as a throwing event listener does. */
function runCallback(fn: ((arg: never) => void) | undefined, arg: unknown): void {
  if (!fn) return;
  try {
    (fn as (arg: unknown) => void)(arg);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}

function timer(timeoutMs: number): { promise: Promise<void>; cancel: () => void } {
  let handle: NodeJS.Timeout | undefined;
  // Past 2^31-1 ms (24.8 days) a wait is taken as forever, as the package's other waits do.
  const promise = new Promise<void>((resolve) => {
    if (timeoutMs <= MAX_TIMER_MS) handle = setTimeout(resolve, Math.max(0, timeoutMs));
  });
  return { promise, cancel: () => clearTimeout(handle) };
}

function checkTimeout(timeoutMs: number | undefined): void {
  if (timeoutMs !== undefined && timeoutMs !== null && (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs))) {
    throw new ValueError(`timeout must be a number of milliseconds (or undefined to wait forever), got ${String(timeoutMs)}`);
  }
}

/**
 * The result of an `…Async` call, ready once its task (or every task of
 * the map) has finished.
 * @example
 * ```ts
 * const r = pool.applyAsync(square, [7], { callback: (v) => console.log('got', v) });
 * console.log(r.ready());        // false, for now
 * console.log(await r.get());    // 49
 * console.log(r.successful());   // true
 * ```
 */
export class AsyncResult<T> implements PromiseLike<T> {
  #done = false;
  #ok = false;
  #value: unknown;
  /**
   * Made when someone first waits while it is pending: a result nobody
   * awaits (fire and forget, or an errorCallback) then never makes a
   * promise, so a failure is no unhandled rejection, and 100,000 of them
   * cost no promise each.
   */
  #pending: Promise<T> | null = null;
  #resolve: ((value: T) => void) | null = null;
  #reject: ((error: unknown) => void) | null = null;
  readonly #callbacks: ResultCallbacks<T>;

  /** @internal Made by the pool only. */
  constructor(token: typeof MAKE, callbacks: ResultCallbacks<T>) {
    if (token !== MAKE) throw new TypeError('an AsyncResult is made by the pool (applyAsync, mapAsync, starmapAsync)');
    this.#callbacks = callbacks;
  }

  /** @internal */
  static make<T>(callbacks: ResultCallbacks<T> = {}): AsyncResult<T> {
    return new AsyncResult<T>(MAKE, callbacks);
  }

  /** @internal */
  [SETTLE](ok: boolean, value: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#ok = ok;
    this.#value = value;
    runCallback(ok ? this.#callbacks.callback : this.#callbacks.errorCallback, value);
    if (this.#pending) {
      if (ok) this.#resolve!(value as T);
      else this.#reject!(value);
      this.#pending = this.#resolve = this.#reject = null;
    }
  }

  /** The outcome as a promise (a new settled one once ready). */
  #promise(): Promise<T> {
    if (this.#done) return this.#ok ? Promise.resolve(this.#value as T) : Promise.reject(this.#value);
    return (this.#pending ??= new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    }));
  }

  /** Whether the call has finished (successfully or not). */
  ready(): boolean {
    return this.#done;
  }

  /**
   * Whether the call finished without an error.
   * @throws ValueError while it is not ready (as Python's).
   */
  successful(): boolean {
    if (!this.#done) throw new ValueError('the result is not ready yet: await wait() or get() first');
    return this.#ok;
  }

  /**
   * The result, once ready; rejects with the task's error. With a timeout
   * (ms) it rejects with `TimeoutError` if the result is not ready by then
   * (the task goes on). A timeout past 2^31-1 ms (~24.8 days, the longest
   * a Node timer keeps) waits forever, as `Infinity` does.
   */
  get(timeoutMs?: number): Promise<T> {
    try {
      checkTimeout(timeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    if (timeoutMs === undefined || timeoutMs === null || timeoutMs === Infinity || this.#done) return this.#promise();
    const t = timer(timeoutMs);
    return Promise.race([
      this.#promise(),
      t.promise.then(() => {
        throw new TimeoutError(`the result was not ready within ${timeoutMs} ms`);
      }),
    ]).finally(t.cancel);
  }

  /** Waits until the result is ready, or `timeoutMs` passes (past 2^31-1 ms: forever); never rejects. */
  async wait(timeoutMs?: number): Promise<void> {
    checkTimeout(timeoutMs);
    if (this.#done) return;
    const settled = this.#promise().then(
      () => {},
      () => {},
    );
    if (timeoutMs === undefined || timeoutMs === null || timeoutMs === Infinity) return settled;
    const t = timer(timeoutMs);
    try {
      await Promise.race([settled, t.promise]);
    } finally {
      t.cancel();
    }
  }

  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.#promise().then(onfulfilled, onrejected);
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `<AsyncResult ${this.#done ? (this.#ok ? 'successful' : 'failed') : 'pending'}>`;
  }
}
