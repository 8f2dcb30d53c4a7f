/**
 * `imap` / `imapUnordered`: a call that pulls its input lazily and yields
 * results as an async iterator (see ImapCall).
 */
import type { InFlight } from '../shm/segment.js';
import { ChunkSource } from './chunking.js';
import type { Dispatcher, Source } from './dispatcher.js';
import type { TaskFunction } from './functions.js';
import type { Op } from './protocol.js';
import { namedFor } from './task-payload.js';
import type { Call, Unit } from './task-queue.js';
import { onAbort, packChunksUntilFailure, type CallLimits } from './calls.js';

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
 * before it. Unordered: results as they come. Calls of `next()` made
 * before the last one settled wait their turn, so each gets the next
 * result, in order.
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
  /**
   * join() waits for this call (`drain`): the bound counts what is pulled
   * and not yet answered, not yet consumed, so the input goes on at the
   * workers' pace whoever reads (never faster: the event loop keeps turning).
   */
  private draining = false;
  private wake: (() => void) | null = null;
  /** `next()` calls not yet settled, and the last of them (the next one waits for it). */
  private asking = 0;
  /** Its iterator was garbage-collected: nobody can ask again, so it is returned once the last `next()` settles. */
  private orphaned = false;
  private lastAsked: Promise<IteratorResult<T>> | null = null;
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

  next(): Promise<IteratorResult<T>> {
    // The common case, one next() at a time, costs no chaining.
    const asked = this.asking++ === 0 || !this.lastAsked ? this.take() : this.lastAsked.then(this.takeTurn, this.takeTurn);
    this.lastAsked = asked;
    return asked;
  }

  private readonly takeTurn = (): Promise<IteratorResult<T>> => this.take();

  /** The next value (waiting for it), the error in its place, or the end. */
  private async take(): Promise<IteratorResult<T>> {
    try {
      return await this.takeNow();
    } finally {
      if (--this.asking === 0) {
        this.lastAsked = null;
        if (this.orphaned && !this.draining) void this.return();
      }
    }
  }

  /**
   * Its iterator is gone (`ImapIterator`): what it pulled and holds is let
   * go, as after `break` — unless join() is draining it: then its input
   * runs to the end all the same (an imap made for its tasks' effects and
   * never read, as Python's); its results go with it once it ends.
   */
  abandon(): void {
    this.orphaned = true;
    if (!this.draining && this.asking === 0) void this.return();
  }

  private async takeNow(): Promise<IteratorResult<T>> {
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

  /**
   * Breaking out of `for await`: stops pulling, drops what was not started.
   * The input's own `return()` (a generator's `finally`) runs only after a
   * read of it still pending, which may never settle: it is waited for
   * while that read settles by itself (this turn of the event loop), else
   * it finishes in the background and what the read gives is dropped.
   */
  async return(): Promise<IteratorResult<T>> {
    this.finishInput();
    this.ready = [];
    this.readyHead = 0;
    this.ended = true;
    this.engine.drop(this.pending);
    this.pending.clear();
    this.notify();
    await Promise.race([this.source.close(), new Promise((resolve) => setImmediate(resolve))]);
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

  drain(): void {
    this.draining = true;
    void this.pump();
  }

  unitDone(unit: Unit, values: unknown): void {
    this.pending.delete(unit);
    const list = values as unknown[];
    if (this.ordered) this.early.set(unit.index, list);
    else this.ready.push(...list);
    this.doneItems += unit.count;
    if (this.draining) void this.pump();
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
      while (!this.settled && !this.inputError && !this.source.done && this.pulled - (this.draining ? this.doneItems : this.consumed) < this.bound) {
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
        const { chunks, failed } = packChunksUntilFailure(this.op, items, first);
        for (const chunk of chunks) {
          const unit = this.engine.unit(this, this.op, this.fn, chunk);
          this.pending.add(unit);
          this.engine.submit(unit);
        }
        if (failed) {
          // The items before it still run; the input ends at it, as if it had thrown there.
          this.inputError = { error: namedFor(this.label, failed.error), at: failed.at };
          this.pulled = failed.at;
          break;
        }
      }
    } finally {
      this.pumping = false;
    }
    this.advance();
  }
}

/**
 * Let go of the calls whose iterator nobody holds any more: such an imap
 * would keep what it pulled ahead, its input, and its place among the
 * pool's sources (which keep the workers of a closed pool) for as long as
 * the pool lives.
 */
const abandoned = new FinalizationRegistry<ImapCall<unknown>>((call) => call.abandon());

/**
 * What `imap` returns: the caller's handle on an `ImapCall`. The pool
 * holds the call (its units answer into it), never this, so once the
 * caller drops it (stops reading without `break` or `return()`) it can be
 * collected, and the call is let go (`abandon`).
 */
export class ImapIterator<T> implements AsyncIterableIterator<T> {
  readonly #call: ImapCall<T>;

  constructor(call: ImapCall<T>) {
    this.#call = call;
    abandoned.register(this, call as ImapCall<unknown>);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    return this.#call.next();
  }

  return(): Promise<IteratorResult<T>> {
    return this.#call.return();
  }
}
