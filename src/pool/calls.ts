/**
 * The calls of a pool: each turns its input into units, collects their
 * outcomes, and settles once — a value, the first error, an abort, or the
 * pool's end. A settled call drops what it still has queued (and, for an
 * abort or a time limit, ends its running tasks). `apply` and `map` here;
 * `imap` in imap.ts.
 */
import { ValueError } from '../errors.js';
import { Segment, type InFlight } from '../shm/segment.js';
import { AsyncResult, SETTLE } from './async-result.js';
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
export function onAbort(signal: AbortSignal | undefined, abort: (reason: unknown) => void): () => void {
  if (!signal) return NOTHING_TO_UNDO;
  const listener = () => abort(signal.reason);
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/**
 * The most payload bytes (roughly, `packedSize`) one chunk carries: a
 * chunk is cut there, whatever its chunksize. A chunk's arguments travel
 * as one item of the task ring, and past an eighth of the ring as one
 * file in /dev/shm; a chunk of tens of MiB filled Docker's 64 MiB on its
 * own. Below a MiB a file per chunk costs little next to its copy.
 */
export const CHUNK_BYTES = 1 << 20;

/** One chunk's packed items, its references in flight, and where it sits in the call. */
export interface PackedChunk {
  readonly payload: unknown[];
  readonly size: number;
  readonly refs: InFlight[];
  /** Where each item's references end in `refs` (Unit.refEnds); null while it has none. */
  readonly refEnds: number[] | null;
  /** Index of its first item in the call. */
  readonly index: number;
}

/** One item packed for `op` (Map: the item; Star: its argument tuple). */
function packItem(op: Op.Map | Op.Star, item: unknown, index: number, refs: InFlight[]): unknown {
  const path = `iterable[${index}]`;
  if (op === Op.Map) return packValue(item, path, refs);
  if (!Array.isArray(item)) {
    throw new ValueError(`${path} is not an array of arguments; starmap calls fn(...item) for each item`);
  }
  return packArgs(item, path, refs);
}

/** Chunks packed from the front of some items; `failed`: the first item that could not be packed, and why. */
export interface PackedPrefix {
  readonly chunks: PackedChunk[];
  readonly failed: { readonly at: number; readonly error: unknown } | null;
}

/**
 * Packs `items` (the call's items from index `first`, one chunksize's
 * worth) for `op`: one chunk, or several when their payload passes
 * CHUNK_BYTES (each holds one item at least). It stops at the first item
 * that cannot be packed, keeping the items before it packed (and their
 * references taken): an imap still runs them and yields their results
 * before that item's error.
 */
export function packChunksUntilFailure(op: Op.Map | Op.Star, items: readonly unknown[], first: number): PackedPrefix {
  const chunks: { payload: unknown[]; size: number; refs: InFlight[]; refEnds: number[] | null; index: number }[] = [];
  let chunk: (typeof chunks)[number] | null = null;
  for (let k = 0; k < items.length; k++) {
    if (!chunk) chunk = { payload: [], size: 16, refs: [], refEnds: null, index: first + k };
    let packed: unknown;
    try {
      // An item's references join `chunk.refs` only once it is packed whole (task-payload.ts).
      packed = packItem(op, items[k], first + k, chunk.refs);
    } catch (error) {
      return { chunks, failed: { at: first + k, error } };
    }
    if (chunk.payload.length === 0) chunks.push(chunk);
    chunk.payload.push(packed);
    if (chunk.refs.length > 0) (chunk.refEnds ??= new Array<number>(chunk.payload.length - 1).fill(0)).push(chunk.refs.length);
    chunk.size += packedSize(packed);
    if (chunk.size >= CHUNK_BYTES) chunk = null;
  }
  return { chunks, failed: null };
}

/** As `packChunksUntilFailure`, all or nothing: what throws gives back the references these chunks took. */
export function packChunks(op: Op.Map | Op.Star, items: readonly unknown[], first: number): PackedChunk[] {
  const { chunks, failed } = packChunksUntilFailure(op, items, first);
  if (!failed) return chunks;
  for (const c of chunks) Segment.abandonAll(c.refs);
  throw failed.error;
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
  /** Its arguments are its one item. */
  readonly refEnds = null;
  readonly index = 0;
  readonly count = 1;
  readonly submitted: number;
  state = UnitState.Queued;
  seq = 0;
  batch = 0;
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
  /** While its async input is read: what the pool knows of it (close() waits for it, terminate() fails it). */
  private input: Source | null = null;

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
        for (const chunk of packChunks(op, items.slice(first, first + chunksize), first)) {
          all.push(...chunk.refs);
          units.push(this.engine.unit(this, op, fn, chunk));
        }
      }
    });
    this.units = units;
    this.remaining = units.length;
    for (const unit of units) this.engine.submit(unit);
  }

  /** Without `onProgress`, its results are wanted only all at once. */
  get bulk(): boolean {
    return this.onProgress === undefined;
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
   * then the pool counts it as a source: close() waits for it, terminate()
   * fails it. Once settled (an abort, terminate()) it no longer counts,
   * even while a read of the input is still pending.
   */
  collecting(input: Promise<unknown[]>, begin: (items: unknown[]) => void): void {
    // It reads its whole input anyway: nothing to drain.
    const source: Source = { stop: (error) => this.fail(error), drain: () => {} };
    this.input = source;
    this.engine.addSource(source);
    input
      .then(
        (items) => begin(items),
        (err) => this.fail(err),
      )
      .catch((err) => this.fail(err))
      .finally(() => this.inputDone());
  }

  private inputDone(): void {
    if (!this.input) return;
    this.engine.removeSource(this.input);
    this.input = null;
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
    this.inputDone();
    this.result[SETTLE](ok, value);
  }
}
