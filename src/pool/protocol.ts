/**
 * What the pool's parent and its workers agree on.
 *
 * Each worker has a task channel (parent → worker), a result channel
 * (worker → parent) and a control block in shared memory. The parent sends
 * *batches*: one channel item (the V8 bytes of a flat array) holding many
 * operations, so a dispatch round costs one serialization and one commit,
 * however many tasks it carries. A *unit* is what one operation runs: one
 * `apply`, or one chunk of a `map`/`starmap`; `maxtasksperchild` counts
 * units, as Python counts its tasks.
 *
 * Units are numbered per worker (`seq`, from 1) in the order the parent
 * hands them over; the worker runs them one at a time in that order and
 * answers each with one result item, in the same order. So neither side
 * sends the number: both count. The worker records in its control block
 * which unit it has started (STARTED) and answered (FINISHED), and which
 * item of a chunk it is on (ITEM), before it runs anything. When a worker
 * dies, the parent drains what it answered, and the unit after the last
 * answer is the one that was running if STARTED names it; the units after
 * it were handed over but never started, and go to another worker.
 *
 * Control block: one `RawArray('d')`; the first 4 KiB are int32 words.
 *   STATE     Starting → Ready (initializer done) → Stopped; InitFailed.
 *   STARTED   seq of the unit the worker started last (`seq | 0`, as
 *             FINISHED and WAKE_AT: compared with `reached`, `isUnit`).
 *   ITEM      index, inside that unit, of the item it is running.
 *   FINISHED  seq of the unit it answered last.
 *   LOADING   id of the task function it is importing or compiling (0: none).
 *   GATE      seq of the unit the worker entered last (`gateWord`, never
 *             CLOSED): it moves it from
 *             seq - 1 to seq (compare-and-swap) before anything else of the
 *             unit. A parent that means to end the worker because of unit
 *             seq (its time limit, an abort) swaps it from seq to CLOSED
 *             first: if that fails, the worker has moved on and is left
 *             alone; if it works, the worker cannot enter another unit (it
 *             waits at the gate), so the kill ends unit seq and no other.
 *             Had seq finished meanwhile (FINISHED), the parent opens the
 *             gate again (stores seq) instead of killing.
 *   WAKE_AT   0, or, while the parent sleeps on the answers lazily, the
 *             seq whose answer wakes it (for one whose word would be 0,
 *             once in 2^32 units, the one before it) (the worker then bumps NOTIFY and
 *             wakes it, and sets WAKE_AT back to 0); also a result ring a
 *             quarter full wakes it. The worker stores FINISHED and then
 *             reads WAKE_AT; the parent stores WAKE_AT and then reads
 *             FINISHED (sequentially consistent), so either the parent sees
 *             the answer and does not sleep, or the worker wakes it.
 *   NOTIFY    a sequence the parent sleeps on while it waits lazily.
 *   TAKEN     how many answer items (Part ones included) the parent
 *             has taken from the worker's result ring, modulo 2^32. A
 *             worker whose answers in spill files not yet taken pass its
 *             part of /dev/shm (`spillPart`) waits for it to grow before
 *             it runs on: the parent's reading is what frees those files.
 *   TAKEN_WAITER 1 while the worker waits on TAKEN. The worker stores it
 *             and then reads TAKEN; the parent stores TAKEN and then
 *             reads it (sequentially consistent), so either the worker
 *             sees the answer taken or the parent wakes it. The worker
 *             then reads WAKE_AT and wakes a lazily sleeping parent; the
 *             parent stores WAKE_AT and then reads TAKEN_WAITER, and does
 *             not sleep when it is set.
 *   BATCHES_READ  batches the worker has taken from its task ring and
 *             deserialized (modulo 2^32). The parent numbers a worker's
 *             batches in the order it commits them (`WorkerHandle.send`),
 *             and the ring counts the items taken (its GETS word, stored
 *             before a spill file is read), so a batch the ring counts as
 *             taken and BATCHES_READ not yet is being read: the balancer
 *             leaves its large units where they are.
 *   CANCEL+s  who decided unit seq's fate first (s = seq % MAX_WINDOW): the
 *             parent, which cancelled it (`cancelledMark(seq)`: the worker
 *             skips it), or the worker, which started it (`startedMark`:
 *             only ending the worker stops it). Each side writes its mark
 *             with a compare-exchange over whatever older unit's mark the
 *             word holds, unless the other side's mark for seq is there
 *             (`decideUnit`), so exactly one wins. (A flag stored by the
 *             parent and STARTED read after it, against STARTED stored by
 *             the worker and the flag read after it, only made one side
 *             see the other: both could, and a unit the parent took for
 *             started was answered Skipped, and its call never settled.)
 * Then float64 times (`monoNow()`, ms): ITEM_START (the running item's
 * start), and per slot s the START and END of unit seq ≡ s: the parent
 * reads them when it takes the unit's result (the worker cannot reuse the
 * slot before then: at most MAX_WINDOW units are handed over and not
 * answered), or START alone when it ends the worker while the unit runs
 * (the worker writes ITEM_START and START before STARTED).
 */

import { v8 } from '../builtins.js';

/** The most units handed to one worker and not yet answered. */
export const MAX_WINDOW = 512;

// int32 words
export const STATE = 0;
export const STARTED = 1;
export const ITEM = 2;
export const FINISHED = 3;
export const LOADING = 4;
export const GATE = 5;
export const WAKE_AT = 6;
export const NOTIFY = 7;
export const TAKEN = 8;
export const TAKEN_WAITER = 9;
export const BATCHES_READ = 10;
/**
 * The share of /dev/shm a pool's spilled answers not yet taken may hold,
 * and, apart, the share its large task payloads in flight may: each worker
 * gets its part (`spillPart`) and waits, or is handed no more, past it
 * (one answer, or one unit, it always may).
 */
export const POOL_SPILL_SHARE = 1 / 4;

/** One worker's part (bytes) of POOL_SPILL_SHARE of a file system of `fsBytes`, in a pool of `processes`. */
export function spillPart(fsBytes: number, processes: number): number {
  return (fsBytes * POOL_SPILL_SHARE) / processes;
}
/**
 * Units whose payload is larger than this (bytes) are counted as going to
 * spill files (a task ring spills frames over an eighth of its 512 KiB;
 * counting from lower is on the safe side): they never go out in whole
 * shares, and the parent bounds how many bytes of them one worker holds.
 */
export const LARGE_UNIT_BYTES = 16 * 1024;
/** GATE while the parent ends the worker because of the unit it is in. */
export const CLOSED = -1;
export const CANCEL = 16;
const INT_BYTES = 4096;

// float64 words, after the int32 area
const FLOAT_BASE = INT_BYTES / 8;
export const ITEM_START = FLOAT_BASE;
const TIMES = FLOAT_BASE + 2;

/** Length of the control block's `RawArray('d')`. */
export const CONTROL_DOUBLES = TIMES + 2 * MAX_WINDOW;

export const enum WorkerState {
  Starting = 0,
  Ready = 1,
  InitFailed = 2,
  Stopped = 3,
}

/** Operations of a batch: each is the op and its fields, flat. */
export const enum Op {
  /** [Define, fnId, spec]: a task function, before the first unit that uses it. */
  Define = 1,
  /** [Apply, fnId, args]: `fn(...args)`. */
  Apply = 2,
  /** [Map, fnId, items]: `fn(item)` for each item of a chunk. */
  Map = 3,
  /** [Star, fnId, tuples]: `fn(...tuple)` for each tuple of a chunk. */
  Star = 4,
  /** [Stop]: no more units; the worker returns after the units before it. */
  Stop = 5,
}

/**
 * A result item is either the unit's value itself, when it is a primitive
 * the channel carries without a serializer (number, string, boolean, null,
 * undefined, bigint) — for a chunk of one item, that item's value — or, for
 * a chunk of several items whose values are all numbers, a Float64Array of
 * them (worker-loop.ts `asFloats` says when), or a Uint8Array: the V8 bytes
 * of an envelope `[Status, payload, item]`. (No unit's own value arrives as a Float64Array: only bare
 * primitives skip the envelope.)
 */
export const enum Status {
  /** payload: the encoded value (a chunk: the array of its values). */
  Ok = 0,
  /** payload: an error record (remote-error.ts); then the index of the failing item. */
  Error = 1,
  /** The unit was cancelled before it started. */
  Skipped = 2,
  /** payload: the initializer's error record; no unit is answered. */
  InitFailed = 3,
  /** payload: the SerializationError record of a result that cannot travel back (the parent names the task). */
  Unsendable = 4,
  /**
   * payload: the encoded values of the next items of the running chunk, in
   * order; its answer (Ok: the values of the items after them) follows. A
   * chunk whose answer is larger than the worker's part of /dev/shm
   * (`spillPart`) answers in parts, each one spill file, with a wait for
   * the parent to take them between (TAKEN).
   */
  Part = 5,
}

let v8Module: typeof import('node:v8') | undefined;
/** node:v8, loaded on first use and kept (builtins.ts `v8()` is a `require` per call: too dear per batch). */
export function serializer(): typeof import('node:v8') {
  return (v8Module ??= v8());
}

/**
 * A monotonic clock in ms shared by every process of the machine
 * (CLOCK_MONOTONIC, which `process.hrtime` reads): `performance.now()`
 * counts from each isolate's own origin, so it is shifted once.
 */
const offset = clockOffset();
export function monoNow(): number {
  return performance.now() + offset;
}

/**
 * How far `performance.now()` is behind the shared clock, read between the
 * two closest of a few pairs of reads of that clock. A single read beside
 * the first use of `performance` (a global loaded lazily: about 0.7 ms
 * idle, measured up to 21 ms on a loaded machine) put a process's clock
 * behind the others' by as much: a task's times, measured across two
 * processes, came out short.
 */
function clockOffset(): number {
  performance.now();
  let closest = Infinity;
  let shift = 0;
  for (let i = 0; i < 8; i++) {
    const before = Number(process.hrtime.bigint()) / 1e6;
    const now = performance.now();
    const after = Number(process.hrtime.bigint()) / 1e6;
    if (after - before < closest) {
      closest = after - before;
      shift = (before + after) / 2 - now;
    }
  }
  return shift;
}

/** The int32 and float64 views of a control block. */
export interface ControlViews {
  readonly ints: Int32Array;
  readonly floats: Float64Array;
}

export function controlViews(block: Float64Array): ControlViews {
  return { ints: new Int32Array(block.buffer, block.byteOffset, INT_BYTES / 4), floats: block };
}

/** Where the start time of unit `seq` is; its end time is at the next index. */
export function timeSlot(seq: number): number {
  return TIMES + 2 * (seq % MAX_WINDOW);
}

/**
 * Unit numbers are exact JavaScript numbers on both sides (each counts the
 * units it handed or took, from `firstUnit` on), and int32 in the words
 * (STARTED, FINISHED, WAKE_AT hold `seq | 0`): a word and a number are
 * compared modulo 2^32, since a worker of small tasks passes 2^31 units
 * in a few hours. A word and the numbers it is compared with are never
 * 2^31 units apart: windows hold at most MAX_WINDOW units, and STARTED,
 * which skipped units leave behind, would need 2^31 skips in a row.
 */
export function reached(word: number, seq: number): boolean {
  return ((word - seq) | 0) >= 0;
}

/** Whether `word` (a unit number as stored) is unit `seq`. */
export function isUnit(word: number, seq: number): boolean {
  return (word | 0) === (seq | 0);
}

/** GATE's value for unit `seq`: 31 bits, so that no unit's is CLOSED. */
export function gateWord(seq: number): number {
  return seq & 0x7fffffff;
}

/**
 * @internal For tests of the wrap of unit numbers: a pool option under this
 * key numbers each worker's units from it + 1 (default 0; at most 2^52,
 * so that counting on stays exact). Not exported by the package.
 */
export const FIRST_UNIT = Symbol('multiprocessing-ts.pool.firstUnit');

/** The cancel word of unit `seq`. */
function cancelSlot(seq: number): number {
  return CANCEL + (seq % MAX_WINDOW);
}

/**
 * The marks of unit `seq` in its cancel word: its number (29 bits are
 * plenty to tell it from the older units of that word, at most a few
 * MAX_WINDOWs back) and a tag, never 0 (a word nobody wrote).
 */
export function cancelledMark(seq: number): number {
  return ((seq & 0x1fffffff) << 2) | 1;
}

export function startedMark(seq: number): number {
  return ((seq & 0x1fffffff) << 2) | 2;
}

/**
 * Writes `mine` into unit `seq`'s cancel word unless `theirs`, the other
 * side's mark for it, is there already; returns the mark that stands.
 */
export function decideUnit(ints: Int32Array, seq: number, mine: number, theirs: number): number {
  const at = cancelSlot(seq);
  for (;;) {
    const old = Atomics.load(ints, at);
    if (old === mine || old === theirs) return old;
    if (Atomics.compareExchange(ints, at, old, mine) === old) return mine;
  }
}
