/**
 * The calls of a pool: each turns its input into units, collects their
 * outcomes, and settles once — a value, the first error, an abort, or the
 * pool's end. A settled call drops what it still has queued (and, for an
 * abort or a time limit, ends its running tasks).
 */
import { ValueError } from '../errors.js';
import type { InFlight } from '../shm/segment.js';
import { AsyncResult, SETTLE } from './async-result.js';
import { ChunkSource } from './chunking.js';
import type { Dispatcher, Source } from './dispatcher.js';
import type { TaskFunction } from './functions.js';
import { Op, monoNow } from './protocol.js';
import { isPrimitive, packArgs, packValue, packedSize, packing } from './task-payload.js';
import { UnitState, releaseUnit, type Call, type Unit } from './task-queue.js';

/** What every call may take, besides its Python parameters. */
export interface CallLimits {
  readonly signal: AbortSignal | undefined;
  readonly timeout: number | undefined;
}

const NOTHING_TO_UNDO = (): void => {};
/** No references in flight (most payloads): shared, never grown. */
const NO_REFS: InFlight[] = [];

/** Listens for an abort; returns the function that stops listening. */
function onAbort(signal: AbortSignal | undefined, abort: (reason: unknown) => void): () => void {
  if (!signal) return NOTHING_TO_UNDO;
  const listener = () => abort(signal.reason);
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/** Packs a chunk's items for `op` (Map: each item; Star: each argument tuple). */
function packChunk(op: Op.Map | Op.Star, items: readonly unknown[], first: number, refs: InFlight[]): unknown[] {
  return items.map((item, k) => {
    const path = `iterable[${first + k}]`;
    if (op === Op.Map) return packValue(item, path, refs);
    if (!Array.isArray(item)) {
      throw new ValueError(`${path} is not an array of arguments; starmap calls fn(...item) for each item`);
    }
    return packArgs(item, path, refs);
  });
}

/**
 * `apply` / `applyAsync`: a call of one unit, so the call is its own unit
 * (one object fewer per task: 100,000 `applyAsync` at once are mostly
 * allocation and garbage collection in the parent).
 */
export class ApplyCall<T> implements Call, Unit {
  // The unit.
  readonly call: Call = this;
  readonly op = Op.Apply;
  readonly payload: unknown;
  readonly size: number;
  refs: InFlight[];
  readonly index = 0;
  readonly count = 1;
  readonly submitted: number;
  state = UnitState.Queued;
  seq = 0;
  worker: Unit['worker'] = null;
  // The call.
  settled = false;
  readonly timeout: number | undefined;
  private readonly unlisten: () => void;

  /** Packs the arguments (refusing what cannot travel, at the call); `start()` submits. */
  constructor(
    private readonly engine: Dispatcher,
    readonly label: string,
    limits: CallLimits,
    readonly result: AsyncResult<T>,
    readonly fn: TaskFunction,
    args: readonly unknown[],
  ) {
    if (args.every(isPrimitive)) {
      this.payload = args.slice();
      this.refs = NO_REFS;
    } else {
      const refs: InFlight[] = [];
      this.payload = packing(label, refs, () => packArgs(args, 'args', refs));
      this.refs = refs;
    }
    this.size = packedSize(this.payload);
    this.submitted = monoNow();
    this.timeout = limits.timeout;
    this.unlisten = onAbort(limits.signal, (reason) => this.abort(reason));
  }

  start(signal: AbortSignal | undefined): void {
    if (signal?.aborted) {
      releaseUnit(this);
      this.finish(false, signal.reason);
      return;
    }
    this.engine.submit(this);
  }

  unitDone(_unit: Unit, value: unknown): void {
    this.finish(true, value);
  }

  unitFailed(_unit: Unit, error: unknown): void {
    this.finish(false, error);
  }

  private abort(reason: unknown): void {
    if (this.settled) return;
    this.finish(false, reason);
    this.engine.drop([this], { error: reason });
  }

  private finish(ok: boolean, value: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.unlisten();
    this.result[SETTLE](ok, value);
  }
}

/** `map`, `starmap` and their `…Async` forms: the input cut into chunks, results in input order. */
export class MapCall<T> implements Call {
  settled = false;
  readonly timeout: number | undefined;
  private units: Unit[] = [];
  private results: T[] = [];
  private remaining = 0;
  private done = 0;
  private total = 0;
  private readonly unlisten: () => void;

  constructor(
    private readonly engine: Dispatcher,
    readonly label: string,
    limits: CallLimits,
    readonly result: AsyncResult<T[]>,
    private readonly onProgress: ((done: number, total: number) => void) | undefined,
  ) {
    this.timeout = limits.timeout;
    this.unlisten = onAbort(limits.signal, (reason) => this.abort(reason));
  }

  /** Packs every chunk (refusing what cannot travel before anything is submitted) and submits them. */
  start(op: Op.Map | Op.Star, fn: TaskFunction, items: readonly unknown[], chunksize: number, signal: AbortSignal | undefined): void {
    if (this.settled) return;
    if (signal?.aborted) {
      this.finish(false, signal.reason);
      return;
    }
    // An async input may finish after terminate().
    if (!this.engine.accepting) {
      this.finish(false, this.engine.endError);
      return;
    }
    this.total = items.length;
    this.results = new Array<T>(items.length);
    if (items.length === 0) {
      this.finish(true, this.results);
      return;
    }
    const all: InFlight[] = [];
    const units: Unit[] = [];
    packing(this.label, all, () => {
      for (let first = 0; first < items.length; first += chunksize) {
        const refs: InFlight[] = [];
        const chunk = items.slice(first, first + chunksize);
        const payload = packChunk(op, chunk, first, refs);
        all.push(...refs);
        units.push(this.engine.unit(this, op, fn, payload, packedSize(payload), refs, first, chunk.length));
      }
    });
    this.units = units;
    this.remaining = units.length;
    for (const unit of units) this.engine.submit(unit);
  }

  unitDone(unit: Unit, values: unknown): void {
    const list = values as T[];
    for (let k = 0; k < list.length; k++) this.results[unit.index + k] = list[k]!;
    this.done += unit.count;
    this.remaining--;
    if (this.onProgress) {
      try {
        this.onProgress(this.done, this.total);
      } catch (err) {
        this.fail(err);
        return;
      }
    }
    if (this.remaining === 0) this.finish(true, this.results);
  }

  unitFailed(_unit: Unit, error: unknown): void {
    this.fail(error);
  }

  /**
   * Starts once its async input is read (`begin` with the items). Until
   * then the pool counts it as a source: close() waits for it, terminate() fails it.
   */
  collecting(input: Promise<unknown[]>, begin: (items: unknown[]) => void): void {
    const source: Source = { stop: (error) => this.fail(error) };
    this.engine.addSource(source);
    input
      .then(
        (items) => begin(items),
        (err) => this.fail(err),
      )
      .catch((err) => this.fail(err))
      .finally(() => this.engine.removeSource(source));
  }

  /** The first error settles the call; its other queued tasks are dropped, running ones finish. */
  fail(error: unknown): void {
    if (this.settled) return;
    this.finish(false, error);
    this.engine.drop(this.units);
  }

  private abort(reason: unknown): void {
    if (this.settled) return;
    this.finish(false, reason);
    this.engine.drop(this.units, { error: reason });
  }

  private finish(ok: boolean, value: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.unlisten();
    this.result[SETTLE](ok, value);
  }
}

/** The most chunks per worker an imap has pulled from its input and not yet yielded. */
export const IMAP_CHUNKS_PER_WORKER = 8;

const ERROR = Symbol('error');
type Ready = { readonly [ERROR]: unknown };

/**
 * `imap` / `imapUnordered`: pulls its input a chunk at a time while fewer
 * than the bound of items are pulled and not yet yielded, so an endless
 * (or async) input is consumed as the results are, and memory stays
 * bounded. Ordered: results wait for those before them; an error (of a
 * task, or of the input) is thrown at its position, after every result
 * before it. Unordered: results as they come.
 */
export class ImapCall<T> implements Call, Source, AsyncIterableIterator<T> {
  settled = false;
  readonly timeout: number | undefined;
  private readonly source: ChunkSource;
  private readonly bound: number;
  private readonly pending = new Set<Unit>();
  /** Ordered: outcomes of units answered early, by their first item's index. */
  private readonly early = new Map<number, unknown[] | Ready>();
  /** The next item index to move to `ready` (ordered). */
  private nextIndex = 0;
  /** Values (and at most one final error) for the consumer, in order. */
  private ready: Array<unknown> = [];
  private readyHead = 0;
  private pulled = 0;
  private consumed = 0;
  private doneItems = 0;
  /** What the input threw, and after how many items. */
  private inputError: { error: unknown; at: number } | null = null;
  /** No more values will come (once `ready` is read). */
  private ended = false;
  private pumping = false;
  private wake: (() => void) | null = null;
  private readonly unlisten: () => void;

  constructor(
    private readonly engine: Dispatcher,
    readonly label: string,
    limits: CallLimits,
    private readonly op: Op.Map | Op.Star,
    private readonly fn: TaskFunction,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    private readonly chunksize: number,
    private readonly ordered: boolean,
    private readonly onProgress: ((done: number, total: number | undefined) => void) | undefined,
  ) {
    this.timeout = limits.timeout;
    this.source = new ChunkSource(iterable);
    this.bound = IMAP_CHUNKS_PER_WORKER * engine.processes * chunksize;
    this.unlisten = onAbort(limits.signal, (reason) => this.stop(reason, { error: reason }));
    engine.addSource(this);
    if (limits.signal?.aborted) this.stop(limits.signal.reason);
    else void this.pump();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.readyHead < this.ready.length) {
        const value = this.ready[this.readyHead]!;
        this.ready[this.readyHead++] = undefined;
        if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
          this.ready = this.ready.slice(this.readyHead);
          this.readyHead = 0;
        }
        if (typeof value === 'object' && value !== null && ERROR in value) {
          this.ready = [];
          this.readyHead = 0;
          throw (value as Ready)[ERROR];
        }
        this.consumed++;
        void this.pump();
        return { done: false, value: value as T };
      }
      if (this.ended) return { done: true, value: undefined };
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Breaking out of `for await`: stops pulling, drops what was not started. */
  async return(): Promise<IteratorResult<T>> {
    this.finishInput();
    this.ready = [];
    this.readyHead = 0;
    this.ended = true;
    this.engine.drop(this.pending);
    this.pending.clear();
    this.notify();
    await this.source.close();
    return { done: true, value: undefined };
  }

  /** Ends the iteration with `error` (an abort, the pool's end): it is thrown by the next `next()`; `kill` ends its running tasks too. */
  stop(error: unknown, kill?: { error: unknown }): void {
    if (this.ended && this.settled) return;
    this.finishInput();
    this.ready = [{ [ERROR]: error } satisfies Ready];
    this.readyHead = 0;
    this.ended = true;
    this.engine.drop(this.pending, kill);
    this.pending.clear();
    this.notify();
    void this.source.close();
  }

  unitDone(unit: Unit, values: unknown): void {
    this.pending.delete(unit);
    const list = values as unknown[];
    if (this.ordered) this.early.set(unit.index, list);
    else this.ready.push(...list);
    this.doneItems += unit.count;
    if (this.onProgress) {
      try {
        this.onProgress(this.doneItems, this.source.done && !this.source.failing ? this.pulled : undefined);
      } catch (err) {
        this.fail(unit.index, err);
        return;
      }
    }
    this.advance();
  }

  unitFailed(unit: Unit, error: unknown): void {
    this.pending.delete(unit);
    this.fail(unit.index, error);
  }

  /** An error at item `index`: thrown after every value before it (ordered) or after those already in (unordered). */
  private fail(index: number, error: unknown): void {
    if (this.settled) return;
    if (this.ordered) {
      this.early.set(index, { [ERROR]: error });
      this.advance();
    } else {
      this.end(error);
    }
  }

  /** Moves what is in order to `ready`, and ends the iteration when nothing more can come. */
  private advance(): void {
    if (this.settled) return;
    if (this.ordered) {
      for (let next = this.early.get(this.nextIndex); next !== undefined; next = this.early.get(this.nextIndex)) {
        this.early.delete(this.nextIndex);
        if (!Array.isArray(next)) {
          this.end((next as Ready)[ERROR]);
          return;
        }
        this.ready.push(...next);
        this.nextIndex += next.length;
      }
    }
    const inputError = this.inputError;
    if (inputError && (this.ordered ? this.nextIndex >= inputError.at : this.pending.size === 0)) {
      this.end(inputError.error);
      return;
    }
    if (this.source.done && !inputError && this.pending.size === 0 && this.early.size === 0 && !this.pumping) this.end();
    this.notify();
  }

  /** No more values after those in `ready` (then `error`, if given). */
  private end(...error: [] | [unknown]): void {
    this.finishInput();
    this.ended = true;
    if (error.length === 1) {
      this.ready.push({ [ERROR]: error[0] } satisfies Ready);
      this.engine.drop(this.pending);
      this.pending.clear();
      void this.source.close();
    }
    this.notify();
  }

  /** The call takes no more outcomes and pulls no more input. */
  private finishInput(): void {
    if (this.settled) return;
    this.settled = true;
    this.unlisten();
    this.engine.removeSource(this);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Pulls and submits chunks while under the bound. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.settled && !this.source.done && this.pulled - this.consumed < this.bound) {
        if (!this.engine.accepting) return;
        const first = this.pulled;
        let items: unknown[];
        try {
          items = await this.source.next(this.chunksize);
        } catch (err) {
          this.inputError = { error: err, at: first };
          break;
        }
        if (this.settled) return;
        if (items.length === 0) break;
        this.pulled += items.length;
        const refs: InFlight[] = [];
        let payload: unknown[];
        try {
          payload = packing(this.label, refs, () => packChunk(this.op, items, first, refs));
        } catch (err) {
          this.inputError = { error: err, at: first };
          this.pulled = first;
          break;
        }
        const unit = this.engine.unit(this, this.op, this.fn, payload, packedSize(payload), refs, first, items.length);
        this.pending.add(unit);
        this.engine.submit(unit);
      }
    } finally {
      this.pumping = false;
    }
    this.advance();
  }
}
