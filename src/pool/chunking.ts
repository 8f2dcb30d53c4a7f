/**
 * Cutting an iterable into chunks: Python's default chunk size, and the
 * checks of what the caller passed.
 */
import { ValueError } from '../errors.js';
import { describe } from '../describe.js';

/**
 * Python's rule for `map` without a chunksize: about four chunks per
 * worker, `ceil(n / (4 × processes))`, and 0 for an empty input.
 */
export function defaultChunksize(n: number, processes: number): number {
  if (n === 0) return 0;
  return Math.ceil(n / (processes * 4));
}

/** A chunksize the caller gave: a positive integer. */
export function checkChunksize(chunksize: unknown, label: string): number | undefined {
  if (chunksize === undefined || chunksize === null) return undefined;
  if (typeof chunksize !== 'number' || !Number.isInteger(chunksize) || chunksize < 1) {
    throw new ValueError(`${label}: chunksize must be a positive integer (or undefined for the default), got ${describe(chunksize)}`);
  }
  return chunksize;
}

export function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return value !== null && value !== undefined && typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

export function isSyncIterable(value: unknown): value is Iterable<unknown> {
  return value !== null && value !== undefined && typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function';
}

/** Refuses what is neither an iterable nor an async iterable. */
export function checkIterable(iterable: unknown, label: string): void {
  if (!isSyncIterable(iterable) && !isAsyncIterable(iterable)) {
    throw new ValueError(`${label}: iterable is ${describe(iterable)}, not an iterable or async iterable; pass an array, a generator, or any iterable`);
  }
}

/** Every item of a sync or async iterable. */
export async function collect(iterable: Iterable<unknown> | AsyncIterable<unknown>): Promise<unknown[]> {
  if (isSyncIterable(iterable)) return Array.from(iterable);
  const out: unknown[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/**
 * Pulls items from an iterator a chunk at a time, sync or async alike:
 * `next(n)` gives up to n items (fewer only at the end), or throws what the
 * iterator threw after handing over the items before it.
 */
export class ChunkSource {
  private readonly iterator: Iterator<unknown> | AsyncIterator<unknown>;
  private readonly async: boolean;
  /** What the iterator threw, once the items before it were handed over. */
  private failure: { error: unknown } | null = null;
  done = false;

  constructor(iterable: Iterable<unknown> | AsyncIterable<unknown>) {
    this.async = !isSyncIterable(iterable);
    this.iterator = this.async
      ? (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator]()
      : (iterable as Iterable<unknown>)[Symbol.iterator]();
  }

  /** Up to `n` items; [] at the end. */
  async next(n: number): Promise<unknown[]> {
    if (this.failure) {
      const { error } = this.failure;
      this.failure = null;
      this.done = true;
      throw error;
    }
    const items: unknown[] = [];
    while (items.length < n && !this.done) {
      let step: IteratorResult<unknown>;
      try {
        step = this.async ? await (this.iterator as AsyncIterator<unknown>).next() : (this.iterator as Iterator<unknown>).next();
      } catch (err) {
        if (items.length === 0) {
          this.done = true;
          throw err;
        }
        this.failure = { error: err };
        break;
      }
      if (step.done) this.done = true;
      else items.push(step.value);
    }
    return items;
  }

  /** Whether `next` would only throw (the items before the iterator's error were all handed over). */
  get failing(): boolean {
    return this.failure !== null;
  }

  /** Stops the iterator early (its `return()`, so a generator's `finally` runs). */
  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      await this.iterator.return?.();
    } catch {
      // Its cleanup failing is not the caller's concern any more.
    }
  }
}
