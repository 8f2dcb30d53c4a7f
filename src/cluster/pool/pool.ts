/**
 * `ctx.Pool`: the local Pool's calls, run by workers anywhere that reach
 * the cluster's Redis (`npx multiprocessing-ts worker --cluster URL
 * --module M`).
 *
 * Differences from the local Pool (each refused with a clear error, or
 * documented in the README):
 * - task functions go by reference only: they must be named exports of the
 *   workers' module `M` (the code has to exist on the workers' machines);
 *   the caller sends the export name and a fingerprint of the function's
 *   source, and a worker whose module lacks it or holds another version
 *   fails the task with a `ClusterError` instead of running other code;
 * - `initializer`, `initargs`, `maxtasksperchild` and `heapLimitMb` belong
 *   to the workers (their CLI), not to the caller;
 * - `stats()` is async (it reads the workers' heartbeats from Redis);
 * - `processes` only feeds Python's default chunksize rule; it defaults to
 *   the task slots of the workers alive now.
 *
 * Delivery is at least once (a worker that dies mid-batch has its batch
 * run again elsewhere after the visibility timeout, up to `maxAttempts`
 * deliveries), results exactly once to the caller (submitter.ts).
 */
import { cpuCount } from '../../process/current.js';
import { describe } from '../../describe.js';
import { ClusterError, SerializationError, StateError, ValueError } from '../../errors.js';
import { AsyncResult, SETTLE, type ResultCallbacks } from '../../pool/async-result.js';
import { ChunkSource, checkChunksize, checkIterable, collect, defaultChunksize, isSyncIterable } from '../../pool/chunking.js';
import { pack, unpack, unpackError } from '../codec.js';
import { checkName, randomName } from '../keys.js';
import { bounded, DEFAULT_CONNECT_TIMEOUT_MS, type ClusterClients } from '../redis.js';
import { DEFAULT_MAX_ATTEMPTS, fingerprint, MAX_COALESCED, PoolKeys, WORKER_TTL_MS } from './protocol.js';
import { moduleFingerprint } from './module-fingerprint.js';
import { Submitter, type BatchResult } from './submitter.js';
import { readWorkers, type ClusterWorkerInfo } from './workers.js';

type TaskFn = (...args: any[]) => unknown;


function isPrimitive(value: unknown): boolean {
  return value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol');
}
type TaskResult<F extends TaskFn> = Awaited<ReturnType<F>>;

/** Options of `ctx.Pool`. */
export interface ClusterPoolOptions {
  /** The pool's name: workers started with `--pool <name>` serve it (default `'default'`). */
  readonly name?: string;
  /** Deliveries per batch before its tasks fail with `WorkerLostError` (default 3). */
  readonly maxAttempts?: number;
  /**
   * Whether workers compare the whole script that defines a task function
   * with the caller's (default true), beside the function's own source. Turn
   * it off when callers run the same code in another layout than the
   * workers (a bundle against the module file): only the function's own
   * source is compared then.
   */
  readonly checkModule?: boolean;
}

/** Per-call options (as the local Pool's). */
export interface ClusterCallOptions {
  readonly signal?: AbortSignal;
  /** Per task, in ms, from its start on a worker: a task still running then fails with `TimeoutError`. */
  readonly timeout?: number;
}

export interface ClusterMapOptions extends ClusterCallOptions {
  readonly onProgress?: (done: number, total: number) => void;
}

/** What `stats()` reports. */
export interface ClusterPoolStats {
  /** Workers heard from within the last few seconds. */
  readonly workers: ClusterWorkerInfo[];
  /** Batches of this caller waiting for a result. */
  readonly pendingBatches: number;
  readonly completed: number;
  readonly failed: number;
  /** Tasks whose batch needed more than one delivery (a worker died under it). */
  readonly retried: number;
}

interface Outcome {
  ok: boolean;
  value: unknown;
}

/** The tasks of one batch and where each task's outcome goes. */
type Sink = (index: number, outcome: Outcome) => void;

export class ClusterPool {
  readonly #clients: ClusterClients;
  readonly #keys: PoolKeys;
  readonly #submitter: Submitter;
  readonly #processes: number | null;
  readonly #maxAttempts: number;
  #state: 'open' | 'closed' | 'terminated' = 'open';
  #completed = 0;
  #failed = 0;
  #retried = 0;
  /** Calls not settled yet, for join(). */
  #outstanding = 0;
  /** Woken when #outstanding drops to 0. */
  #idle: (() => void) | null = null;
  /** `applyAsync` calls of this tick, by batch key, written together. */
  #coalescing = new Map<string, { fields: (string | Buffer)[]; args: unknown[][]; sinks: Sink[]; signals: (AbortSignal | undefined)[] }>();
  #slotsCache: { at: number; slots: number } | null = null;
  /** The longest one Redis call of this pool waits (the context's connect timeout). */
  readonly #callTimeoutMs: number;
  /** Send the module fingerprint (`checkModule`). */
  readonly #checkModule: boolean;

  /** @internal Made by a cluster context. */
  constructor(clients: ClusterClients, processes?: number | null, options: ClusterPoolOptions = {}) {
    if (processes !== undefined && processes !== null && (typeof processes !== 'number' || !Number.isInteger(processes) || processes < 1)) {
      throw new ValueError(`processes must be an integer of at least 1 (or undefined for the workers' slots), got ${describe(processes)}`);
    }
    if (typeof options !== 'object' || options === null) throw new ValueError(`options must be an object, got ${describe(options)}`);
    for (const local of ['initializer', 'initargs', 'maxtasksperchild', 'heapLimitMb', 'context', 'module'] as const) {
      if ((options as Record<string, unknown>)[local] !== undefined) {
        throw new ValueError(
          `a cluster Pool has no ${local} option: it belongs to the workers (npx multiprocessing-ts worker --module M …); their module's top-level code can set each worker up`,
        );
      }
    }
    const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new ValueError(`maxAttempts must be a positive integer, got ${describe(maxAttempts)}`);
    this.#clients = clients;
    this.#keys = new PoolKeys(checkName(options.name ?? 'default', 'a cluster Pool'));
    this.#processes = processes ?? null;
    this.#maxAttempts = maxAttempts;
    if (options.checkModule !== undefined && typeof options.checkModule !== 'boolean') throw new ValueError(`checkModule must be true or false, got ${describe(options.checkModule)}`);
    this.#checkModule = options.checkModule ?? true;
    this.#submitter = new Submitter(clients, this.#keys, randomName());
    this.#callTimeoutMs = clients.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }

  /** The pool's name, which its workers serve. */
  get name(): string {
    return this.#keys.name;
  }

  /** Runs `fn(...args)` on a worker. */
  apply<F extends () => unknown>(fn: F): Promise<TaskResult<F>>;
  apply<F extends TaskFn>(fn: F, args: Readonly<Parameters<F>>, options?: ClusterCallOptions): Promise<TaskResult<F>>;
  apply(fn: TaskFn, args: readonly unknown[] = [], options?: ClusterCallOptions): Promise<unknown> {
    return this.applyAsync(fn, args as never, options).get();
  }

  /** `apply` without waiting: an `AsyncResult` (also a PromiseLike). */
  applyAsync<F extends () => unknown>(fn: F): AsyncResult<TaskResult<F>>;
  applyAsync<F extends TaskFn>(fn: F, args: Readonly<Parameters<F>>, options?: ClusterCallOptions & ResultCallbacks<TaskResult<F>>): AsyncResult<TaskResult<F>>;
  applyAsync(fn: TaskFn, args: readonly unknown[] = [], options: ClusterCallOptions & ResultCallbacks<unknown> = {}): AsyncResult<unknown> {
    this.#checkOpen('applyAsync');
    const head = this.#head(fn, options, 'applyAsync');
    if (!Array.isArray(args)) throw new ValueError(`applyAsync: args must be an array of arguments, got ${describe(args)}`);
    // Refuses, at the call, what cannot be stored (primitives always can).
    if (!args.every(isPrimitive)) pack(args, 'args');
    const result = AsyncResult.make<unknown>(options);
    this.#begin();
    this.#coalesce(head, [...args], options.signal, (_i, outcome) => {
      this.#count(outcome.ok);
      result[SETTLE](outcome.ok, outcome.value);
      this.#end();
    });
    return result;
  }

  /** Python's `map`: `fn(item)` for every item, results in order. */
  async map<F extends (item: any) => unknown>(fn: F, iterable: Iterable<Parameters<F>[0]> | AsyncIterable<Parameters<F>[0]>, chunksize?: number, options?: ClusterMapOptions): Promise<TaskResult<F>[]> {
    return this.#mapCall('map', false, fn, iterable, chunksize, options) as Promise<TaskResult<F>[]>;
  }

  /** `map` without waiting. */
  mapAsync<F extends (item: any) => unknown>(fn: F, iterable: Iterable<Parameters<F>[0]> | AsyncIterable<Parameters<F>[0]>, chunksize?: number, options?: ClusterMapOptions & ResultCallbacks<TaskResult<F>[]>): AsyncResult<TaskResult<F>[]> {
    return this.#asyncResult(this.#mapCall('mapAsync', false, fn, iterable, chunksize, options) as Promise<TaskResult<F>[]>, options);
  }

  /** Python's `starmap`: `fn(...args)` for every argument list. */
  async starmap<F extends TaskFn>(fn: F, iterable: Iterable<Readonly<Parameters<F>>> | AsyncIterable<Readonly<Parameters<F>>>, chunksize?: number, options?: ClusterMapOptions): Promise<TaskResult<F>[]> {
    return this.#mapCall('starmap', true, fn, iterable, chunksize, options) as Promise<TaskResult<F>[]>;
  }

  /** `starmap` without waiting. */
  starmapAsync<F extends TaskFn>(fn: F, iterable: Iterable<Readonly<Parameters<F>>> | AsyncIterable<Readonly<Parameters<F>>>, chunksize?: number, options?: ClusterMapOptions & ResultCallbacks<TaskResult<F>[]>): AsyncResult<TaskResult<F>[]> {
    return this.#asyncResult(this.#mapCall('starmapAsync', true, fn, iterable, chunksize, options) as Promise<TaskResult<F>[]>, options);
  }

  /** Results in order as they come, pulling the iterable lazily (at most `4 × processes` chunks in flight). */
  imap<F extends (item: any) => unknown>(fn: F, iterable: Iterable<Parameters<F>[0]> | AsyncIterable<Parameters<F>[0]>, chunksize = 1, options?: ClusterMapOptions): AsyncIterableIterator<TaskResult<F>> {
    return this.#imap('imap', true, fn, iterable, chunksize, options) as AsyncIterableIterator<TaskResult<F>>;
  }

  /** `imap`, results in the order they finish. */
  imapUnordered<F extends (item: any) => unknown>(fn: F, iterable: Iterable<Parameters<F>[0]> | AsyncIterable<Parameters<F>[0]>, chunksize = 1, options?: ClusterMapOptions): AsyncIterableIterator<TaskResult<F>> {
    return this.#imap('imapUnordered', false, fn, iterable, chunksize, options) as AsyncIterableIterator<TaskResult<F>>;
  }

  /** The workers alive now and this caller's counters. */
  async stats(): Promise<ClusterPoolStats> {
    const release = this.#clients.hold();
    try {
      const redis = await this.#clients.command();
      return {
        workers: await bounded(readWorkers(redis, this.#keys), this.#callTimeoutMs, 'stats()', this.#clients.url),
        pendingBatches: this.#submitter.pendingCount,
        completed: this.#completed,
        failed: this.#failed,
        retried: this.#retried,
      };
    } finally {
      release();
    }
  }

  /** No more calls; those made go on. */
  close(): void {
    if (this.#state === 'open') this.#state = 'closed';
  }

  /** Fails every pending call and removes its batches that no worker has taken. */
  terminate(): void {
    if (this.#state === 'terminated') return;
    this.#state = 'terminated';
    const reason = new StateError('the pool was terminated');
    const unsent = [...this.#coalescing.values()];
    this.#coalescing.clear();
    for (const b of unsent) b.sinks.forEach((sink, i) => sink(i, { ok: false, value: reason }));
    void this.#submitter.stop(reason);
  }

  /** Waits for every call made to settle (after `close()` or `terminate()`), then lets go of this pool's keys. */
  async join(): Promise<void> {
    if (this.#state === 'open') throw new ValueError('join() needs close() or terminate() first (as Python)');
    while (this.#outstanding > 0 && this.#state !== 'terminated') await new Promise<void>((r) => (this.#idle = r));
    const release = this.#clients.hold();
    try {
      await this.#submitter.stop();
    } finally {
      release();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.join();
  }

  // ---- internals ----

  #checkOpen(call: string): void {
    if (this.#state !== 'open') throw new ValueError(`${call}: the pool is ${this.#state === 'closed' ? 'closed' : 'terminated'}; make a new one`);
  }

  /** The batch fields every task of `fn` shares, checked. */
  #head(fn: unknown, options: ClusterCallOptions, call: string): (string | Buffer)[] {
    if (typeof fn !== 'function') throw new ValueError(`${call}: the task must be a function exported by the workers' module, got ${describe(fn)}`);
    const name = fn.name;
    if (!name || name === 'anonymous' || /^bound /.test(name)) {
      throw new ValueError(
        `${call}: a cluster task goes by reference: pass a named function exported by the workers' --module (an arrow or bound function has no export name); got ${describe(fn)}`,
      );
    }
    if (typeof options !== 'object' || options === null) throw new ValueError(`${call}: options must be an object, got ${describe(options)}`);
    const { timeout, signal } = options;
    if (timeout !== undefined && timeout !== null && (typeof timeout !== 'number' || Number.isNaN(timeout))) {
      throw new ValueError(`${call}: timeout must be a number of milliseconds, got ${describe(timeout)}`);
    }
    if (signal !== undefined && signal !== null && !(signal instanceof AbortSignal)) throw new ValueError(`${call}: signal must be an AbortSignal, got ${describe(signal)}`);
    for (const key of ['onProgress', 'callback', 'errorCallback'] as const) {
      const value = (options as Record<string, unknown>)[key];
      if (value !== undefined && value !== null && typeof value !== 'function') throw new ValueError(`${call}: ${key} must be a function, got ${describe(value)}`);
    }
    return ['f', name, 'v', fingerprint(fn), 'm', this.#checkModule ? moduleFingerprint(fn) : '', 'a', String(this.#maxAttempts), 't', timeout === undefined || timeout === null ? '' : String(Math.max(0, timeout))];
  }

  #count(ok: boolean): void {
    if (ok) this.#completed++;
    else this.#failed++;
  }

  /** While calls are outstanding the connections keep this process alive; not after. */
  #release: (() => void) | null = null;

  #begin(): void {
    if (this.#outstanding++ === 0) this.#release = this.#clients.hold();
  }

  #end(): void {
    if (--this.#outstanding > 0) return;
    this.#release?.();
    this.#release = null;
    if (this.#idle) {
      const wake = this.#idle;
      this.#idle = null;
      wake();
    }
  }

  #asyncResult<T>(call: Promise<T>, callbacks: ResultCallbacks<T> = {}): AsyncResult<T> {
    const result = AsyncResult.make<T>(callbacks);
    call.then(
      (v) => result[SETTLE](true, v),
      (e) => result[SETTLE](false, e),
    );
    return result;
  }

  /** Joins `applyAsync` calls of one tick with the same function and limits into one batch entry. */
  #coalesce(head: (string | Buffer)[], args: unknown[], signal: AbortSignal | undefined, sink: Sink): void {
    const key = head.join('\0');
    let batch = this.#coalescing.get(key);
    if (!batch) {
      // A microtask, not setImmediate: calls made in one synchronous run still share a batch, and a lone apply() leaves at once.
      if (this.#coalescing.size === 0) queueMicrotask(() => this.#flushCoalesced());
      batch = { fields: head, args: [], sinks: [], signals: [] };
      this.#coalescing.set(key, batch);
    }
    batch.args.push(args);
    batch.sinks.push(sink);
    batch.signals.push(signal);
    if (batch.args.length >= MAX_COALESCED) {
      this.#coalescing.delete(key);
      this.#submitBatch(batch.fields, batch.args, (i, o) => batch!.sinks[i]!(i, o), batch.signals);
    }
  }

  #flushCoalesced(): void {
    const batches = [...this.#coalescing.values()];
    this.#coalescing.clear();
    for (const b of batches) this.#submitBatch(b.fields, b.args, (i, o) => b.sinks[i]!(i, o), b.signals);
  }

  /**
   * Writes one batch. Every task's outcome reaches `sink` exactly once:
   * from the result, or from an abort, the batch's failure or terminate().
   */
  #submitBatch(fields: (string | Buffer)[], args: unknown[][], sink: Sink, signals: readonly (AbortSignal | undefined)[] = []): number {
    const settled = new Array<boolean>(args.length).fill(false);
    /** Abort listeners by task, removed when the task settles (a long-lived signal must not collect them). */
    const unlisten: (() => void)[] = [];
    const give = (i: number, o: Outcome) => {
      if (settled[i]) return;
      settled[i] = true;
      unlisten[i]?.();
      try {
        sink(i, o);
      } catch (err) {
        // The sinks guard the user's callbacks themselves: this is a bug of
        // ours, made loud, without keeping the batch's other tasks from settling.
        queueMicrotask(() => {
          throw err;
        });
      }
    };
    const failAll = (error: unknown) => args.forEach((_, i) => give(i, { ok: false, value: error }));
    let payload: Buffer;
    try {
      payload = pack(args, 'args');
    } catch (err) {
      failAll(err);
      return -1;
    }
    const seq = this.#submitter.submit(
      {
        settle: (result) => this.#settleBatch(result, args.length, give),
        fail: (err) => failAll(err instanceof ClusterError || err instanceof StateError ? err : new ClusterError(`could not write a batch to ${this.#clients.url.redacted}: ${(err as Error)?.message}`, { cause: err })),
      },
      [...fields, 'p', payload],
    );
    // Aborts: a whole batch is dropped once every task in it is aborted.
    const live = new Set(args.keys());
    signals.forEach((signal, i) => {
      if (!signal) return;
      const onAbort = () => {
        give(i, { ok: false, value: signal.reason });
        live.delete(i);
        if (live.size === 0) this.#submitter.drop([seq]);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      unlisten[i] = () => signal.removeEventListener('abort', onAbort);
    });
    if (this.#state === 'terminated') failAll(new StateError('the pool was terminated'));
    return seq;
  }

  /**
   * Hands each task of a batch its outcome. Nothing read from Redis may
   * throw out of here (a malformed record becomes that task's error): the
   * results reader calls it, and a throw would leave the batch's other
   * tasks unsettled.
   */
  #settleBatch(result: BatchResult, n: number, give: (i: number, o: Outcome) => void): void {
    if (result.attempts > 1) this.#retried += n;
    if (result.error) {
      let err: unknown;
      try {
        err = unpackError(result.error, 'a batch error');
      } catch (unreadable) {
        err = unreadable;
      }
      for (let i = 0; i < n; i++) give(i, { ok: false, value: err });
      return;
    }
    let outcomes: [boolean, unknown][];
    try {
      outcomes = unpack(result.outcomes!, 'a batch result', this.#clients) as [boolean, unknown][];
      if (!Array.isArray(outcomes) || outcomes.length !== n) throw new SerializationError(`a batch result holds ${Array.isArray(outcomes) ? outcomes.length : 'no'} outcomes for ${n} tasks`);
    } catch (err) {
      for (let i = 0; i < n; i++) give(i, { ok: false, value: err });
      return;
    }
    outcomes.forEach((outcome, i) => {
      let error: unknown;
      try {
        const [ok, value] = outcome;
        if (ok) return give(i, { ok: true, value });
        error = unpackError(value as Buffer, 'a task error');
      } catch (unreadable) {
        error = unreadable;
      }
      give(i, { ok: false, value: error });
    });
  }

  async #slots(): Promise<number> {
    if (this.#processes !== null) return this.#processes;
    const now = Date.now();
    if (this.#slotsCache && now - this.#slotsCache.at < WORKER_TTL_MS) return this.#slotsCache.slots;
    let slots = 0;
    try {
      const workers = await bounded(readWorkers(await this.#clients.command(), this.#keys), this.#callTimeoutMs, 'reading the workers', this.#clients.url);
      slots = workers.reduce((s, w) => s + w.concurrency, 0);
    } catch {
      // Unknown: the local machine's count below.
    }
    if (slots === 0) slots = cpuCount();
    this.#slotsCache = { at: now, slots };
    return slots;
  }

  async #mapCall(call: string, star: boolean, fn: TaskFn, iterable: unknown, chunksize: unknown, options: ClusterMapOptions = {}): Promise<unknown[]> {
    this.#checkOpen(call);
    const head = this.#head(fn, options, call);
    checkIterable(iterable, call);
    // Counted from here: reading the workers' slots is a Redis call the process must stay up for.
    this.#begin();
    try {
      return await this.#mapBatches(call, star, head, iterable, chunksize, options);
    } finally {
      this.#end();
    }
  }

  async #mapBatches(call: string, star: boolean, head: (string | Buffer)[], iterable: unknown, chunksize: unknown, options: ClusterMapOptions): Promise<unknown[]> {
    const size = checkChunksize(chunksize, call);
    const items = await collect(iterable as Iterable<unknown>);
    const argLists = items.map((item, i) => {
      if (!star) return [item];
      if (!isSyncIterable(item)) throw new ValueError(`${call}: item ${i} must be an argument list (an array), got ${describe(item)}`);
      return [...(item as Iterable<unknown>)];
    });
    pack(argLists, 'iterable');
    const chunk = size ?? Math.max(1, defaultChunksize(argLists.length, await this.#slots()));
    const results = new Array<unknown>(argLists.length);
    const { signal, onProgress } = options;
    let done = 0;
    const call$ = new Promise<unknown[]>((resolve, reject) => {
      if (argLists.length === 0) return resolve([]);
      const seqs: number[] = [];
      let failed = false;
      const onAbort = () => fail(signal!.reason);
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        signal?.removeEventListener('abort', onAbort);
        this.#submitter.drop(seqs);
        reject(err);
      };
      if (signal?.aborted) return fail(signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      for (let start = 0; start < argLists.length && !failed; start += chunk) {
        const base = start;
        seqs.push(
          this.#submitBatch(head, argLists.slice(start, start + chunk), (i, outcome) => {
            this.#count(outcome.ok);
            if (!outcome.ok) return fail(outcome.value);
            results[base + i] = outcome.value;
            done++;
            if (onProgress) {
              // As the local Pool: a throwing progress callback fails the call with its error.
              try {
                onProgress(done, argLists.length);
              } catch (err) {
                return fail(err);
              }
            }
            if (done === argLists.length) {
              signal?.removeEventListener('abort', onAbort);
              resolve(results);
            }
          }),
        );
      }
    });
    return call$;
  }

  #imap(call: string, ordered: boolean, fn: TaskFn, iterable: unknown, chunksize: unknown, options: ClusterMapOptions = {}): AsyncIterableIterator<unknown> {
    this.#checkOpen(call);
    const head = this.#head(fn, options, call);
    checkIterable(iterable, call);
    const size = checkChunksize(chunksize, call) ?? 1;
    const source = new ChunkSource(iterable as Iterable<unknown>);
    const pool = this;
    const { signal, onProgress } = options;
    // Outcomes by item index; `next` is the next index to yield (ordered) or a FIFO of indexes (unordered).
    const ready = new Map<number, Outcome>();
    const order: number[] = [];
    let nextIndex = 0;
    let total = 0;
    let done = 0;
    let inFlight = 0;
    let sourceDone = false;
    let stopped = false;
    const seqs = new Set<number>();
    let wake: (() => void) | null = null;
    const notify = () => {
      wake?.();
      wake = null;
    };
    async function fill(): Promise<void> {
      const bound = 4 * (await pool.#slots());
      while (!sourceDone && !stopped && inFlight < bound) {
        const items = await source.next(size);
        if (items.length === 0) {
          sourceDone = true;
          break;
        }
        const base = total;
        total += items.length;
        if (inFlight++ === 0) pool.#begin(); // join() waits for the batches in flight
        let left = items.length;
        let seq = -1;
        seq = pool.#submitBatch(head, items.map((x) => [x]), (i, outcome) => {
          pool.#count(outcome.ok);
          ready.set(base + i, outcome);
          order.push(base + i);
          done++;
          if (onProgress) {
            try {
              onProgress(done, sourceDone ? total : (undefined as unknown as number));
            } catch (err) {
              // As the local Pool: the iteration fails with it at its next step.
              progressError ??= { error: err };
              notify();
            }
          }
          if (--left === 0) {
            if (--inFlight === 0) pool.#end();
            seqs.delete(seq);
          }
          notify();
        });
        if (seq >= 0 && left > 0) seqs.add(seq);
        if (source.done) sourceDone = true;
      }
    }
    let queue: Promise<void> = Promise.resolve();
    const stop = () => {
      stopped = true;
      signal?.removeEventListener('abort', stop);
      pool.#submitter.drop(seqs);
      if (inFlight > 0) {
        inFlight = 0;
        pool.#end();
      }
      notify();
    };
    signal?.addEventListener('abort', stop, { once: true });
    let sourceError: { error: unknown } | null = null;
    let progressError: { error: unknown } | null = null;
    const iterator: AsyncIterableIterator<unknown> = {
      next(): Promise<IteratorResult<unknown>> {
        // Calls queue: each next() resolves in order, after the one before it.
        const turn = queue.then(async () => {
          pool.#begin();
          try {
            return await nextResult();
          } finally {
            pool.#end();
          }
        });
        queue = turn.then(
          () => {},
          () => {},
        );
        return turn;
      },
      async return(): Promise<IteratorResult<unknown>> {
        stop();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    async function nextResult(): Promise<IteratorResult<unknown>> {
        for (;;) {
          if (signal?.aborted) {
            stop();
            throw signal.reason;
          }
          if (progressError) {
            stop();
            throw progressError.error;
          }
          if (stopped) return { done: true, value: undefined };
          let index: number | undefined;
          if (ordered) index = ready.has(nextIndex) ? nextIndex : undefined;
          else index = order.find((i) => ready.has(i));
          if (index !== undefined) {
            const outcome = ready.get(index)!;
            ready.delete(index);
            if (ordered) nextIndex++;
            else order.splice(order.indexOf(index), 1);
            void fill().catch((e) => (sourceError ??= { error: e }));
            if (!outcome.ok) {
              stop();
              throw outcome.value;
            }
            return { done: false, value: outcome.value };
          }
          if (sourceError) {
            stop();
            throw sourceError.error;
          }
          if (sourceDone && inFlight === 0 && ready.size === 0) {
            // Finished: a long-lived signal must not keep this iteration (see stop()).
            signal?.removeEventListener('abort', stop);
            return { done: true, value: undefined };
          }
          const woken = new Promise<void>((r) => (wake = r));
          await fill().catch((e) => {
            sourceError ??= { error: e };
          });
          if (sourceError || ready.size > 0 || (sourceDone && inFlight === 0)) continue;
          await woken;
        }
    }
    return iterator;
  }
}

