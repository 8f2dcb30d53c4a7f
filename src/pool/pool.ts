/**
 * `Pool`: Python's `multiprocessing.Pool` (the public face; the engine is
 * dispatcher.ts).
 */
import { ValueError } from '../errors.js';
import { describe } from '../describe.js';
import { resolveFromCaller } from '../caller-file.js';
import { cpuCount } from '../process/current.js';
import { getStartMethod, validateStartMethod, type StartMethod } from '../process/start-method.js';
import type { TargetSpec } from '../process/target.js';
import { abandon, encode, toBytes } from '../serialize/encode.js';
import { AsyncResult, type ResultCallbacks } from './async-result.js';
import { ApplyCall, MapCall, type CallLimits } from './calls.js';
import { ImapCall, ImapIterator } from './imap.js';
import { checkChunksize, checkIterable, collect, defaultChunksize, isSyncIterable } from './chunking.js';
import { Dispatcher } from './dispatcher.js';
import { FunctionRegistry, describeFunction } from './functions.js';
import { FIRST_UNIT, Op } from './protocol.js';
import type { PoolStats } from './stats.js';

/** Any task function. */
export type TaskFn = (...args: any[]) => unknown;
/** What awaiting a task of `F` gives. */
export type TaskResult<F extends TaskFn> = Awaited<ReturnType<F>>;
/** What `map` passes to `F`: its first parameter (anything, for a function that takes none). */
export type ItemOf<F extends TaskFn> = Parameters<F> extends [] ? unknown : Parameters<F>[0];
/** A sync or async iterable of `T`. */
export type AnyIterable<T> = Iterable<T> | AsyncIterable<T>;

/** Options of `new Pool(processes, options)`. */
export interface PoolOptions {
  /** Runs in each worker before its first task (awaited when async); follows the Process target rules. */
  initializer?: TaskFn | null;
  /** The initializer's arguments. */
  initargs?: unknown[];
  /**
   * Tasks a worker runs before it is replaced by a fresh one (a chunk of a
   * map counts as one); default: no limit. The replacement starts once the
   * retired worker has exited, so at most `processes` workers are alive.
   */
  maxtasksperchild?: number | null;
  /** The start method of the workers: `'process'`, `'thread'`, or a context from `mp.getContext()`. Default: the current one. */
  context?: StartMethod | { getStartMethod(): StartMethod } | null;
  /**
   * A module whose exported functions go to the workers by reference, when
   * it is not the entry script (as `module` of a Process): a URL such as
   * `import.meta.url`, or a path (a relative one is read from the calling file's directory).
   */
  module?: string | URL;
  /**
   * Each worker's V8 heap limit in MiB (`--max-old-space-size` for a
   * process worker, `resourceLimits.maxOldGenerationSizeMb` for a thread,
   * also when this process runs with `--max-old-space-size`): a task that
   * runs past it fails with WorkerLostError and its worker is replaced.
   * Under `'thread'`, one allocation larger than what is left of the heap
   * aborts the whole process (a Node limit): use `'process'` workers for
   * tasks that may make huge allocations. Default: V8's own limit.
   */
  heapLimitMb?: number;
}

/** Options every call takes after Python's parameters. */
export interface CallOptions {
  /** Aborting drops the call's queued tasks and ends its running ones (their workers are replaced); the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Per-task time limit in ms, counted from the task's start in its worker:
   * past it the worker is ended and replaced, and the task fails with
   * TimeoutError at once (even if the worker takes longer to end).
   */
  timeout?: number;
}

/** Options of `map`/`starmap`. */
export interface MapOptions extends CallOptions {
  /** Called in the parent after each chunk, with the items done and their total. */
  onProgress?: (done: number, total: number) => void;
}

/** Options of `imap`/`imapUnordered`. */
export interface ImapOptions extends CallOptions {
  /** Called after each chunk with the items done; `total` is known once the input is exhausted. */
  onProgress?: (done: number, total: number | undefined) => void;
}

/** Options of `applyAsync`. */
export interface ApplyAsyncOptions<T> extends CallOptions, ResultCallbacks<T> {}
/** Options of `mapAsync`/`starmapAsync`. */
export interface MapAsyncOptions<T> extends MapOptions, ResultCallbacks<T[]> {}

/** No options given: shared, never written. */
const NO_OPTIONS: Record<string, unknown> = Object.freeze({});
const NO_LIMITS: CallLimits = Object.freeze({ signal: undefined, timeout: undefined });

function checkOptions(options: unknown, what: string): Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw new ValueError(`${what}: options must be an object, got ${describe(options)}`);
  return options as Record<string, unknown>;
}

function checkLimits(options: Record<string, unknown>, label: string): CallLimits {
  const { signal, timeout } = options;
  if (signal !== undefined && signal !== null && !(signal instanceof AbortSignal)) {
    throw new ValueError(`${label}: signal must be an AbortSignal (e.g. AbortSignal.timeout(ms) or an AbortController's), got ${describe(signal)}`);
  }
  if (timeout !== undefined && timeout !== null && (typeof timeout !== 'number' || Number.isNaN(timeout))) {
    throw new ValueError(`${label}: timeout must be a number of milliseconds (or undefined for none), got ${describe(timeout)}`);
  }
  return {
    signal: (signal as AbortSignal | null) ?? undefined,
    timeout: timeout === undefined || timeout === null || timeout === Infinity ? undefined : Math.max(0, timeout as number),
  };
}

function checkCallback(value: unknown, name: string, label: string): void {
  if (value !== undefined && value !== null && typeof value !== 'function') {
    throw new ValueError(`${label}: ${name} must be a function, got ${describe(value)}`);
  }
}

function startMethodOf(context: PoolOptions['context']): StartMethod {
  if (context === undefined || context === null) return getStartMethod();
  if (typeof context === 'string') return validateStartMethod(context);
  if (typeof context === 'object' && typeof context.getStartMethod === 'function') return validateStartMethod(context.getStartMethod());
  throw new ValueError(`context must be 'process', 'thread' or a context from mp.getContext(), got ${describe(context)}`);
}

/**
 * A pool of worker processes (or threads) that run tasks: Python's
 * `multiprocessing.Pool`.
 *
 * Workers start at once and are replaced when they die: a worker that
 * exits, is killed or runs out of memory fails only the task it was
 * running (`WorkerLostError`), and nothing hangs. Task functions follow
 * the Process target rules: exported by the entry script (or by `module`)
 * they go by reference, self-contained ones by source; each is checked
 * once. Task errors keep their class name, message, stack and own
 * properties. Several tasks are in flight per worker, so a worker never
 * waits for the parent between tasks.
 * @example
 * ```ts
 * import * as mp from 'multiprocessing-ts';
 * export function square(x: number) { return x * x; }
 * if (mp.isMainProcess()) {
 *   await using pool = new mp.Pool(4);
 *   console.log(await pool.map(square, [1, 2, 3])); // [1, 4, 9]
 *   for await (const y of pool.imapUnordered(square, [4, 5])) console.log(y);
 *   console.log(await pool.apply((a: number, b: number) => a + b, [2, 3])); // 5, by source
 * }
 * ```
 */
export class Pool {
  readonly #engine: Dispatcher;
  readonly #functions: FunctionRegistry;

  /**
   * @param processes how many workers (default `mp.cpuCount()`).
   * @throws ValueError for `processes < 1`, a `maxtasksperchild` that is not a positive integer, an initializer that is not a function or cannot reach a child, bad options.
   * @throws SerializationError when `initargs` cannot travel.
   */
  constructor(processes?: number | null, options?: PoolOptions) {
    const opts = checkOptions(options, 'new Pool()') as PoolOptions;
    const n = processes ?? cpuCount();
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
      throw new ValueError(`processes must be an integer of at least 1 (or undefined for mp.cpuCount()), got ${describe(processes)}`);
    }
    const max = opts.maxtasksperchild;
    if (max !== undefined && max !== null && (typeof max !== 'number' || !Number.isInteger(max) || max < 1)) {
      throw new ValueError(`maxtasksperchild must be a positive integer (or undefined for no limit), got ${describe(max)}`);
    }
    const heap = opts.heapLimitMb;
    if (heap !== undefined && (typeof heap !== 'number' || !Number.isFinite(heap) || heap < 1)) {
      throw new ValueError(`heapLimitMb must be a number of MiB of at least 1, got ${describe(heap)}`);
    }
    let module = opts.module;
    if (module !== undefined && !(module instanceof URL)) {
      if (typeof module !== 'string' || module === '') {
        throw new ValueError(`module is ${describe(module)}; pass the module that exports the task functions as a URL (e.g. import.meta.url) or a path`);
      }
      if (!/^(file|data|node):/.test(module)) module = resolveFromCaller(module, Pool);
    }
    const initargs = opts.initargs ?? [];
    if (!Array.isArray(initargs)) throw new ValueError(`initargs must be an array of arguments, got ${describe(initargs)}`);
    let initializer: TargetSpec | null = null;
    if (opts.initializer !== undefined && opts.initializer !== null) {
      initializer = describeFunction(opts.initializer, module, 'the initializer');
    }
    // What cannot travel is refused here, by its own path, not by the first worker's start.
    abandon({ value: null, segments: encodeCheck(initargs) });
    const method = startMethodOf(opts.context);
    this.#functions = new FunctionRegistry(module);
    this.#engine = new Dispatcher({
      processes: n,
      method,
      initializer,
      initargs: initializer ? initargs : [],
      maxtasksperchild: max ?? undefined,
      // V8's flag takes whole MiB.
      heapLimitMb: heap === undefined ? undefined : Math.ceil(heap),
      firstUnit: firstUnitOf(opts),
    });
  }

  /** The number of workers it keeps. */
  get processes(): number {
    return this.#engine.processes;
  }

  /**
   * Runs `fn(...args)` in a worker and resolves to its result (Python's `apply`).
   * @example `const sum = await pool.apply(add, [2, 3]);`
   */
  apply<F extends () => unknown>(fn: F): Promise<TaskResult<F>>;
  apply<F extends TaskFn>(fn: F, args: Readonly<Parameters<F>>, options?: CallOptions): Promise<TaskResult<F>>;
  async apply(fn: TaskFn, args: readonly unknown[] = [], options?: CallOptions): Promise<unknown> {
    return this.applyAsync(fn, args as never, options as never).get();
  }

  /**
   * Submits `fn(...args)` and returns its `AsyncResult` at once (Python's `apply_async`).
   * @throws ValueError / SerializationError at the call for bad input (the pool goes on).
   * @example
   * ```ts
   * const results = xs.map((x) => pool.applyAsync(square, [x]));
   * console.log(await Promise.all(results)); // AsyncResult is PromiseLike
   * ```
   */
  applyAsync<F extends () => unknown>(fn: F): AsyncResult<TaskResult<F>>;
  applyAsync<F extends TaskFn>(fn: F, args: Readonly<Parameters<F>>, options?: ApplyAsyncOptions<TaskResult<F>>): AsyncResult<TaskResult<F>>;
  applyAsync(fn: TaskFn, args: readonly unknown[] = [], options?: ApplyAsyncOptions<unknown>): AsyncResult<unknown> {
    // The common call (no options, a function seen before) allocates nothing here but the call itself.
    const task = typeof fn === 'function' ? this.#functions.known(fn) : undefined;
    const label = task?.applyLabel ?? `pool.apply(${fn?.name || '(anonymous)'})`;
    const opts = options === undefined ? NO_OPTIONS : checkOptions(options, label);
    this.#engine.checkRunning(label);
    if (!Array.isArray(args)) throw new ValueError(`${label}: args must be an array of arguments, got ${describe(args)}`);
    const limits = opts === NO_OPTIONS ? NO_LIMITS : checkLimits(opts, label);
    if (opts !== NO_OPTIONS) {
      checkCallback(opts['callback'], 'callback', label);
      checkCallback(opts['errorCallback'], 'errorCallback', label);
    }
    const result = AsyncResult.make<unknown>(opts as ResultCallbacks<unknown>);
    new ApplyCall(this.#engine, label, limits, result, task ?? this.#functions.get(fn, label), args).start(limits.signal);
    return result;
  }


  /**
   * `fn(item)` for every item, in a list in input order (Python's `map`).
   * The iterable (sync or async) is consumed at the call, cut into chunks
   * of `chunksize` items (default: about four chunks per worker, Python's
   * rule); the first error rejects the call.
   * @example `const squares = await pool.map(square, [1, 2, 3], undefined, { onProgress: (d, t) => console.log(d, '/', t) });`
   */
  async map<F extends (item: any) => unknown>(
    fn: F,
    iterable: AnyIterable<ItemOf<F>>,
    chunksize?: number | null,
    options?: MapOptions,
  ): Promise<TaskResult<F>[]> {
    return this.#mapAsync(Op.Map, 'map', fn, iterable, chunksize, options).get() as Promise<TaskResult<F>[]>;
  }

  /** `map` returning an `AsyncResult` at once (Python's `map_async`); its callback gets the whole list. */
  mapAsync<F extends (item: any) => unknown>(
    fn: F,
    iterable: AnyIterable<ItemOf<F>>,
    chunksize?: number | null,
    options?: MapAsyncOptions<TaskResult<F>>,
  ): AsyncResult<TaskResult<F>[]> {
    return this.#mapAsync(Op.Map, 'map', fn, iterable, chunksize, options) as AsyncResult<TaskResult<F>[]>;
  }

  /**
   * `fn(...args)` for every argument tuple (Python's `starmap`); the tuples are checked against `fn`'s parameters.
   * @example `const products = await pool.starmap(mul, [[1, 2], [3, 4]]); // [2, 12]`
   */
  async starmap<F extends TaskFn>(
    fn: F,
    iterable: AnyIterable<Readonly<Parameters<F>>>,
    chunksize?: number | null,
    options?: MapOptions,
  ): Promise<TaskResult<F>[]> {
    return this.#mapAsync(Op.Star, 'starmap', fn, iterable, chunksize, options).get() as Promise<TaskResult<F>[]>;
  }

  /** `starmap` returning an `AsyncResult` at once (Python's `starmap_async`). */
  starmapAsync<F extends TaskFn>(
    fn: F,
    iterable: AnyIterable<Readonly<Parameters<F>>>,
    chunksize?: number | null,
    options?: MapAsyncOptions<TaskResult<F>>,
  ): AsyncResult<TaskResult<F>[]> {
    return this.#mapAsync(Op.Star, 'starmap', fn, iterable, chunksize, options) as AsyncResult<TaskResult<F>[]>;
  }

  #mapAsync(op: Op.Map | Op.Star, name: string, fn: TaskFn, iterable: unknown, chunksize: unknown, options: unknown): AsyncResult<unknown[]> {
    const label = `pool.${name}(${fn?.name || '(anonymous)'})`;
    const opts = checkOptions(options, label);
    this.#engine.checkRunning(label);
    const size = checkChunksize(chunksize, label);
    checkIterable(iterable, label);
    const limits = checkLimits(opts, label);
    checkCallback(opts['onProgress'], 'onProgress', label);
    checkCallback(opts['callback'], 'callback', label);
    checkCallback(opts['errorCallback'], 'errorCallback', label);
    const task = this.#functions.get(fn, label);
    const result = AsyncResult.make<unknown[]>(opts as ResultCallbacks<unknown[]>);
    const call = new MapCall<unknown>(this.#engine, label, limits, result, opts['onProgress'] as MapOptions['onProgress']);
    const begin = (items: unknown[]) => {
      call.start(op, task, items, size ?? Math.max(1, defaultChunksize(items.length, this.#engine.processes)), limits.signal);
    };
    if (isSyncIterable(iterable)) {
      // Consumed at the call: what the iterable throws, or an argument that cannot travel, is this call's error.
      let items: unknown[];
      try {
        items = Array.from(iterable);
      } catch (err) {
        call.fail(err);
        return result;
      }
      begin(items);
    } else {
      // An abort (or terminate()) stops the reading of the input.
      call.collecting(collect(iterable as AsyncIterable<unknown>, () => call.settled), begin);
    }
    return result;
  }

  /**
   * The results of `fn(item)` in input order, as they come (Python's
   * `imap`). The iterable (sync or async, endless too) is pulled lazily:
   * at most 8 chunks per worker are taken ahead of what was yielded.
   * An error (a task's, or the iterable's) is thrown after the results
   * before it; breaking out of the loop stops pulling. `next()` calls made
   * before the last one settled wait their turn.
   * @example `for await (const y of pool.imap(square, naturals(), 10)) if (y > 1e6) break;`
   */
  imap<F extends (item: any) => unknown>(
    fn: F,
    iterable: AnyIterable<ItemOf<F>>,
    chunksize: number | null = 1,
    options?: ImapOptions,
  ): AsyncIterableIterator<TaskResult<F>> {
    return this.#imap('imap', true, fn, iterable, chunksize, options) as AsyncIterableIterator<TaskResult<F>>;
  }

  /** `imap` yielding results as they finish, in any order (Python's `imap_unordered`). */
  imapUnordered<F extends (item: any) => unknown>(
    fn: F,
    iterable: AnyIterable<ItemOf<F>>,
    chunksize: number | null = 1,
    options?: ImapOptions,
  ): AsyncIterableIterator<TaskResult<F>> {
    return this.#imap('imapUnordered', false, fn, iterable, chunksize, options) as AsyncIterableIterator<TaskResult<F>>;
  }

  #imap(name: string, ordered: boolean, fn: TaskFn, iterable: unknown, chunksize: unknown, options: unknown): AsyncIterableIterator<unknown> {
    const label = `pool.${name}(${fn?.name || '(anonymous)'})`;
    const opts = checkOptions(options, label);
    this.#engine.checkRunning(label);
    const size = checkChunksize(chunksize, label) ?? 1;
    checkIterable(iterable, label);
    const limits = checkLimits(opts, label);
    checkCallback(opts['onProgress'], 'onProgress', label);
    const task = this.#functions.get(fn, label);
    const call = new ImapCall<unknown>(
      this.#engine,
      label,
      limits,
      Op.Map,
      task,
      iterable as AnyIterable<unknown>,
      size,
      ordered,
      opts['onProgress'] as ImapOptions['onProgress'],
    );
    return new ImapIterator(call);
  }

  /** Counters, run- and wait-time percentiles, utilization and the workers (see `PoolStats`). */
  stats(): PoolStats {
    return this.#engine.stats();
  }

  /** No more tasks may be submitted; the workers exit once the submitted ones are done (Python's `close`). */
  close(): void {
    this.#engine.close();
  }

  /**
   * Ends the workers now (SIGKILL; a thread is stopped); every call still
   * waiting rejects with a StateError (Python's `terminate`, whose pending
   * results would wait forever).
   */
  terminate(): void {
    this.#engine.terminate();
  }

  /**
   * Waits until every worker has ended; call `close()` or `terminate()` first.
   * @throws ValueError when the pool is still running (as Python).
   */
  join(): Promise<void> {
    return this.#engine.join();
  }

  /** `await using pool = new mp.Pool()`: `close()` then `join()` — graceful, unlike Python's `with`, which terminates. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.join();
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    const s = this.#engine.stats();
    const state = ['running', 'closed', 'terminated', 'broken'][this.#engine.state];
    return `<Pool ${state} processes=${s.processes} queued=${s.queued} inFlight=${s.inFlight} completed=${s.completed} failed=${s.failed}>`;
  }
}

/** Encodes `initargs` as a worker's start will, so what cannot travel is named now; returns the references to give back. */
function encodeCheck(initargs: unknown[]): ReturnType<typeof encode>['segments'] {
  const encoded = encode(initargs, 'initargs', { crossProcess: true });
  toBytes(encoded, 'initargs');
  return encoded.segments;
}

/** `Pool` bound to a start method, for `mp.getContext(method).Pool`. */
export function poolClassFor(method: StartMethod): typeof Pool {
  return class ContextPool extends Pool {
    constructor(processes?: number | null, options?: PoolOptions) {
      super(processes, { ...options, context: options?.context ?? method });
    }
  };
}

/** The first unit number a test asked for (protocol.ts FIRST_UNIT), else 0. */
function firstUnitOf(options: object): number {
  const first = (options as { [FIRST_UNIT]?: unknown })[FIRST_UNIT];
  if (first === undefined) return 0;
  if (typeof first !== 'number' || !Number.isInteger(first) || first < 0 || first > 2 ** 52) {
    throw new ValueError(`the first unit number must be an integer from 0 to 2^52, got ${describe(first)}`);
  }
  return first;
}
