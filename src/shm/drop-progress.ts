/**
 * Drop progress: how far a child got through the drops of the last batch
 * it logged, kept where its parent can read it once the child is gone.
 *
 * A child logs every reference it gives back before it drops it (ledger.ts),
 * so a kill between the two leaks that reference rather than letting the
 * parent drop it a second time. Drops are logged in batches, one write(2)
 * for many, so that window held a whole batch: a kill landing after the
 * write and before the last drop leaked every drop left in it. A worker
 * thread is stopped at the first JavaScript it runs after a terminate
 * request, and a request that arrives during the write(2) is served right
 * after it, so the window was hit far more often than its length suggests
 * (26 references of one Value lost in a run of eight kills).
 *
 * Each batch now starts with a `=<batch>` line, in the same write as its
 * `-` lines, and the child counts its drops in a small shared file,
 * `<ledger>~drops`, of two int32 words:
 *   0  batch  the number of the last logged batch whose drops have begun
 *             (set to it, with `done` at 0, only after its write succeeded)
 *   1  done   how many of that batch's logged names have been dropped,
 *             each counted with its drop (`dropCounted`)
 * When the child is gone, the parent (settle.ts) gives back the names of
 * the file's last batch that `done` does not cover. The count comes first,
 * in the same call of the addon as the drop: a worker thread's terminate
 * falls before both or after both, and a SIGKILL between the two
 * instructions leaks that one reference (the ledger's rule); none is ever
 * dropped twice. Every drop of a batch must go through `dropCounted`: one
 * that did not would be given back again.
 *
 * The child makes the file at its first batch. One that cannot (a full
 * /dev/shm) writes no `=` lines, and the parent takes its batches as done:
 * the old leak, never a double drop. Batch numbers wrap at 2^32 and are
 * compared by their difference.
 */
import { readFileSync, unlinkSync } from 'node:fs';
import { native } from '../native/addon.js';

const BATCH = 0;
const DONE = 1;

/** The progress file of the ledger at `ledgerPath`. */
function progressPath(ledgerPath: string): string {
  return `${ledgerPath}~drops`;
}

/**
 * The child's side: its progress words, mapped from a file it creates;
 * null when the file cannot be made (then it logs no batch markers).
 */
export function createDropProgress(ledgerPath: string): Int32Array | null {
  const addon = native();
  if (!addon) return null;
  try {
    return new Int32Array(addon.openSegment(progressPath(ledgerPath), 8, true), 0, 2);
  } catch {
    return null;
  }
}

/** Marks batch `batch` as logged, none of its drops done yet. */
export function beginBatch(words: Int32Array, batch: number): void {
  // `done` first: a kill between the two stores leaves the previous batch
  // number, which tells the parent that none of this one was done.
  Atomics.store(words, DONE, 0);
  Atomics.store(words, BATCH, batch | 0);
}

/**
 * Where a logged drop counts itself: the progress words of the batch being
 * dropped, or null when nothing counts (no ledger, or no progress file).
 */
export type DropCounter = Int32Array | null;

/**
 * Drops `count` references on `words[index]` if it holds at least that
 * many, counting them first on `counter`; returns the word as it was (less
 * than `count`: refused, nothing dropped). Counted, it is one call of the
 * addon: a worker thread's terminate is served at function entries, loop
 * back-edges and the entry of every built-in (`Atomics.sub` too), so in
 * JavaScript it could fall between the count and the drop, leaking the
 * drop in hand; in the addon it falls before both or after both.
 */
export function dropCounted(words: Int32Array, index: number, count: number, counter: DropCounter): number {
  if (counter) {
    return native()!.dropCounted(words.buffer as SharedArrayBuffer, words.byteOffset + 4 * index, count, counter.buffer as SharedArrayBuffer, counter.byteOffset + 4 * DONE);
  }
  let seen = Atomics.load(words, index);
  while (seen >= count) {
    const was = Atomics.compareExchange(words, index, seen, seen - count);
    if (was === seen) break;
    seen = was;
  }
  return seen;
}

/** The next batch number after `batch` (wrapping at 2^32). */
export function nextBatch(batch: number): number {
  return (batch + 1) >>> 0;
}

/** A logged batch as the parent reads it back: its number and its names, in the order they are dropped. */
export interface LoggedBatch {
  readonly batch: number;
  readonly names: readonly string[];
}

/** Where a dead child's last batch of drops stood. */
export interface BatchOutcome {
  /** Its names the child never dropped: the parent gives them back. */
  readonly undone: readonly string[];
  /**
   * The last name it did drop, when the kill may have cut what follows a
   * drop (a file removed, a block freed) from the drop itself; else null.
   */
  readonly lastDone: string | null;
}

const NONE: BatchOutcome = { undone: [], lastDone: null };

/**
 * The parent's side, once the child is gone: how far the ledger's last
 * batch got, and the progress file removed. Nothing undone when the
 * progress cannot be read (the child's batches count as done).
 */
export function batchOutcome(ledgerPath: string, last: LoggedBatch | null): BatchOutcome {
  const path = progressPath(ledgerPath);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    return NONE;
  }
  try {
    unlinkSync(path);
  } catch {
    // Already gone: the tree's reaper.
  }
  if (!last || bytes.length < 8) return NONE;
  // In the machine's byte order, as the child's Int32Array wrote them.
  const [batch, counted] = new Int32Array(Uint8Array.prototype.slice.call(bytes, 0, 8).buffer);
  const ahead = (batch! - (last.batch | 0)) | 0;
  // Behind: the last batch was logged but its drops never began.
  if (ahead < 0) return { undone: last.names, lastDone: null };
  // Ahead: a later batch's marker was compacted away, so this one finished.
  if (ahead > 0) return NONE;
  const done = Math.min(Math.max(0, counted!), last.names.length);
  return { undone: last.names.slice(done), lastDone: done > 0 ? last.names[done - 1]! : null };
}
