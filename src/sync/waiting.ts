/**
 * Sleeping on a sequence word: the one way every primitive but Lock waits.
 *
 * Each of them keeps, beside its state, two words:
 *   SEQ:      a sequence counter. Every change a waiter may be waiting for is
 *             made first, then SEQ is bumped, then sleepers are woken. It only
 *             grows (mod 2^32), so a waiter that read it before the change
 *             finds it different when it goes to sleep, and the futex returns
 *             at once: no wake is lost between a waiter's look and its sleep,
 *             and no change-and-change-back (ABA) hides one from the async
 *             waiter thread (futex.ts).
 *   SLEEPERS: how many waits may be asleep on SEQ; a waker skips the wake
 *             syscall while it is 0. Raised just before a sleep, lowered just
 *             after. A waiter killed asleep leaves it one too high for good,
 *             which costs later wakers a syscall, nothing else.
 *
 * A waiter reads SEQ, then looks at the state, then sleeps on SEQ expecting
 * what it read. A waker changes the state, bumps SEQ, then reads SLEEPERS.
 * Either the waiter's look sees the change, or its SEQ read came first and
 * the bump makes its sleep return (the kernel compares the word as it
 * queues the waiter, and the raised SLEEPERS makes the waker wake it).
 *
 * Wakers wake every sleeper, not one: a waiter the kernel woke can be killed
 * before it acts on the wake, and then the one wake that a live waiter needed
 * would be gone with it. Woken, each waiter looks again and the ones with
 * nothing to do sleep again: a release costs a wake per sleeper, which is
 * what buys "no killed waiter swallows a wake".
 *
 * Sleeps are cut into slices (100 ms blocking, 1 s async), after which
 * the waiter looks at the state again, whatever SEQ says: a waker killed
 * between its change and its bump wakes nobody, and would otherwise leave
 * a free unit or a set flag unseen until some later bump. The async sleeps
 * of one isolate on one word share one native wait per slice.
 */
import { ValueError } from '../errors.js';
import { describe } from '../describe.js';
import { deadlineOf, remaining, waitAsync, waitSync, wake } from './futex.js';

/** Wake count meaning "all of them". */
const ALL = 0x7fffffff;

/** A sequence word and its sleeper count, in one primitive's words. */
export interface SequenceWords {
  readonly words: Int32Array;
  readonly seq: number;
  readonly sleepers: number;
}

/** After a change a waiter may wait for: bump SEQ, then wake every sleeper, if any. */
export function bumpAndWakeAll({ words, seq, sleepers }: SequenceWords): void {
  Atomics.add(words, seq, 1);
  if (Atomics.load(words, sleepers) !== 0) wake(words, seq, ALL);
}

/** The SEQ value to sleep on: read it before looking at the state. */
export function observe({ words, seq }: SequenceWords): number {
  return Atomics.load(words, seq);
}

/**
 * The longest an async sleep lasts before its wait looks at the state
 * again. A waker killed between its change of the state and its bump of
 * SEQ (a SIGKILL, or a worker's `terminate()`, landing between the two
 * stores) wakes nobody, and its change would otherwise be seen only at the
 * next bump, which may never come. A slice bounds that to a second (the
 * recovery promised on crash paths), and costs a sleeper a look (and a
 * re-arm of its shared wait) once a second: with 200 ms, 10,000 idle async
 * waits on one Event cost 7% of a core, with a second about a fifth.
 */
const ASYNC_SLICE_MS = 1_000;

/**
 * The async sleeps of this isolate that last a whole slice, shared: SEQ's
 * buffer → its byte offset → the value slept on → the one native wait they
 * all await. Wakes go to every sleeper anyway, so one wait per word and
 * value does the work of many: 50,000 tasks awaiting one Event cost one
 * wait in the addon's waiter threads, not 50,000 (127 per thread), and one
 * re-arm per slice. An entry is dropped as its wait settles, before its
 * sleepers resume (the first reaction registered), so those that sleep
 * again share a fresh one.
 */
const sharedSleeps = new WeakMap<ArrayBufferLike, Map<number, Map<number, Promise<unknown>>>>();

/** The shared slice-long wait on `words[index]` while it holds `seen`. */
function sharedSlice(words: Int32Array, index: number, seen: number): Promise<unknown> {
  let byOffset = sharedSleeps.get(words.buffer);
  if (!byOffset) sharedSleeps.set(words.buffer, (byOffset = new Map()));
  const offset = words.byteOffset + index * 4;
  let bySeen = byOffset.get(offset);
  if (!bySeen) byOffset.set(offset, (bySeen = new Map()));
  let sleep = bySeen.get(seen);
  if (!sleep) {
    sleep = waitAsync(words, index, seen, ASYNC_SLICE_MS);
    bySeen.set(seen, sleep);
    const values = bySeen;
    const forget = () => {
      values.delete(seen);
      if (values.size === 0 && byOffset.get(offset) === values) byOffset.delete(offset);
    };
    sleep.then(forget, forget);
  }
  return sleep;
}

/** Sleeps (without blocking the event loop) while SEQ holds `seen`, up to `ms` (at most a slice: callers look again). */
export async function sleepAsync(at: SequenceWords, seen: number, ms: number): Promise<void> {
  Atomics.add(at.words, at.sleepers, 1);
  try {
    if (ms >= ASYNC_SLICE_MS) await sharedSlice(at.words, at.seq, seen);
    else await waitAsync(at.words, at.seq, seen, ms);
  } finally {
    Atomics.sub(at.words, at.sleepers, 1);
  }
}

/**
 * The longest a blocking sleep lasts before it returns to JavaScript: a
 * worker's `terminate()` takes effect only while JavaScript runs, so a
 * 'thread' child blocked in a native wait would otherwise never end. (It
 * bounds a lost bump, as ASYNC_SLICE_MS does, too.)
 */
const SYNC_SLICE_MS = 100;

/** Sleeps, blocking the thread, while SEQ holds `seen`, up to `ms` (at most a slice: callers look again). */
export function sleepSync(at: SequenceWords, seen: number, ms: number): void {
  Atomics.add(at.words, at.sleepers, 1);
  try {
    waitSync(at.words, at.seq, seen, Math.min(ms, SYNC_SLICE_MS));
  } finally {
    Atomics.sub(at.words, at.sleepers, 1);
  }
}

/** Options of every acquire and wait that may block, as Python's `(block=True, timeout=None)`. */
export interface BlockOptions {
  /**
   * `false` (or any other falsy value but `undefined`, as Python's `block=0`):
   * try once and return at once (a `timeout` is then ignored). Default `true`.
   */
  block?: boolean;
  /** Milliseconds to wait at most (negative means 0). Default: forever. */
  timeout?: number;
}

/**
 * Whether options ask to wait: Python tests `block` for truth, so `0`,
 * `null` or `''` mean "do not block" as `false` does; left out, it blocks.
 */
export function blocks(options: { block?: unknown }): boolean {
  return options.block === undefined || Boolean(options.block);
}

/**
 * The deadline (`performance.now()` time) an options object asks for: now
 * for a falsy `block` (`{ block: false }`), Infinity for no timeout.
 * @throws ValueError naming the value and the fix, for anything but an options object or a number timeout.
 */
export function deadlineOfOptions(options: BlockOptions | undefined, call: string): number {
  if (options === undefined) return Infinity;
  if (typeof options !== 'object' || options === null) {
    throw new ValueError(`${call} takes an options object { block?, timeout? }, got ${describe(options)}; e.g. ${call.replace('()', '')}({ timeout: 100 })`);
  }
  if (!blocks(options)) return performance.now();
  return deadlineOfTimeout(options.timeout, call);
}

/** The deadline of a timeout argument in ms (`undefined` = forever; negative = 0). */
export function deadlineOfTimeout(timeout: number | undefined, call: string): number {
  try {
    return deadlineOf(timeout);
  } catch (err) {
    throw new ValueError(`${call}: ${(err as Error).message}`);
  }
}

export { remaining };

/**
 * A wait written once for both forms: a generator that looks at the state
 * and yields each time it wants to sleep, with the SEQ value it read before
 * looking and the longest sleep; the driver sleeps and resumes it.
 */
export interface Sleep {
  readonly seen: number;
  readonly ms: number;
}

/** Runs a wait without blocking the event loop. */
export async function driveAsync<R>(at: SequenceWords, steps: Generator<Sleep, R, void>): Promise<R> {
  for (let step = steps.next(); ; step = steps.next()) {
    if (step.done) return step.value;
    await sleepAsync(at, step.value.seen, step.value.ms);
  }
}

/** Runs a wait blocking the thread. */
export function driveSync<R>(at: SequenceWords, steps: Generator<Sleep, R, void>): R {
  for (let step = steps.next(); ; step = steps.next()) {
    if (step.done) return step.value;
    sleepSync(at, step.value.seen, step.value.ms);
  }
}
