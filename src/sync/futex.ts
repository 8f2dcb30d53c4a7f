/**
 * Futex wait and wake on an int32 word of a segment.
 *
 * With the addon these are real futexes on a MAP_SHARED mapping, so they
 * cross processes; V8's Atomics.wait/notify only reach threads of one
 * process and do not mix with a native futex, so every shared object uses
 * these functions and nothing else. Without the addon (threads only) the
 * same calls map onto Atomics.wait/waitAsync/notify.
 *
 * The contract every user of these functions keeps (the primitives built
 * on them do):
 * - A wait ends when it is woken, when the word no longer holds `expected`,
 *   on timeout, or spuriously; so a waiter re-checks its condition after
 *   every return, whatever the result says.
 * - A waker stores a new value into the word before every `wake`, one no
 *   sleeping waiter still expects: bump a sequence counter (a semaphore, an
 *   event, a queue), or change the owner of a lock. The async waits rest on
 *   this: a waiter thread sleeping on many words learns of at most one wake
 *   per return, and finds the others by the changed words (see
 *   native/src/waiter.h). Changing a word and changing it back before the
 *   waiters look can lose a wake.
 * Kept, no wake is lost: a wake the kernel charged to an async wait whose
 * thread is torn down before acting on it (a terminated worker) is passed
 * on to another waiter of the word. A waiter that dies after its wake
 * (a killed process) takes the wake with it, as with any futex; the
 * primitive on top must cope (a lock checks its holder).
 */
import { native, WaitResult } from '../native/addon.js';
import { ValueError } from '../errors.js';
import { describe } from '../describe.js';

export { WaitResult };

const RESULT: Record<string, WaitResult> = {
  ok: WaitResult.Ok,
  'not-equal': WaitResult.NotEqual,
  'timed-out': WaitResult.TimedOut,
};

/**
 * Blocks the calling thread while `view[index] === expected`, up to
 * `timeoutMs` (`Infinity`, or anything beyond what can be represented, is
 * forever). May return `Ok` spuriously: re-check (see the module comment).
 */
export function waitSync(view: Int32Array, index: number, expected: number, timeoutMs: number): WaitResult {
  releaseHeldWakes();
  const addon = native();
  if (addon) return addon.futexWait(view.buffer as SharedArrayBuffer, view.byteOffset + index * 4, expected, timeoutMs);
  return RESULT[Atomics.wait(view, index, expected, timeoutMs)]!;
}

/**
 * Like `waitSync`, but the calling thread keeps running; the promise settles
 * on wake, when the word is seen to differ from `expected`, or on timeout.
 */
export function waitAsync(view: Int32Array, index: number, expected: number, timeoutMs: number): Promise<WaitResult> {
  const addon = native();
  if (addon) {
    return addon.futexWaitAsync(view.buffer as SharedArrayBuffer, view.byteOffset + index * 4, expected, timeoutMs);
  }
  const r = Atomics.waitAsync(view, index, expected, timeoutMs);
  if (!r.async) return Promise.resolve(RESULT[r.value]!);
  // V8's pending waitAsync does not keep Node's event loop alive (the
  // process would exit mid-wait); a pending native wait does, so match it.
  const keepAlive = setInterval(() => {}, 1 << 30);
  return r.value.then((v) => {
    clearInterval(keepAlive);
    return RESULT[v]!;
  });
}

/** Wakes up to `count` waiters of `view[index]`; change the word first (see the module comment). */
export function wake(view: Int32Array, index: number, count: number): number {
  const addon = native();
  if (addon) return addon.futexWake(view.buffer as SharedArrayBuffer, view.byteOffset + index * 4, count);
  return Atomics.notify(view, index, count);
}

/** Wakes `holdingWakes` owes, in triples: the view, the index, the count. */
let heldWakes: (Int32Array | number)[] | null = null;

/**
 * Runs `fn`, issuing the wakes it asks for with `wakeSoon` only when it
 * returns, one after the other, or earlier, before this thread blocks or
 * spins on a word (so no waiter is held back by a thread that is itself
 * waiting; an async wait holds no thread, and arming those first is the
 * point).
 *
 * Why: the pool's dispatch round fills several workers' task rings. Woken
 * as each was filled, the first worker started while the parent still
 * filled the next ring and armed its readers, and the next wake found no
 * free core (perf sched showed that worker queued 3.4 ms behind the first
 * for a scheduler tick). Woken together at the end, after the parent's own
 * waits are armed, they find it about to sleep, and one sweep of a
 * process's waiter thread sees them all.
 */
export function holdingWakes<T>(fn: () => T): T {
  if (heldWakes) return fn();
  heldWakes = [];
  try {
    return fn();
  } finally {
    releaseHeldWakes();
    heldWakes = null;
  }
}

/** `wake`, or, inside `holdingWakes`, a wake owed until its end; the word must already hold its new value. */
export function wakeSoon(view: Int32Array, index: number, count: number): void {
  if (heldWakes) heldWakes.push(view, index, count);
  else wake(view, index, count);
}

/**
 * Lifts `holdingWakes`' hold for user code (a callback may block in ways
 * this module never sees): issues what is owed, and until
 * `resumeHeldWakes` wakes go out at once. True when a hold was on.
 */
export function suspendHeldWakes(): boolean {
  if (!heldWakes) return false;
  releaseHeldWakes();
  heldWakes = null;
  return true;
}

/** Puts back the hold `suspendHeldWakes` lifted (`held`: what it returned). */
export function resumeHeldWakes(held: boolean): void {
  if (held) heldWakes = [];
}

/** Issues the wakes `holdingWakes` owes now (a thread about to wait or spin calls it). */
export function releaseHeldWakes(): void {
  const owed = heldWakes;
  if (!owed || owed.length === 0) return;
  heldWakes = [];
  for (let i = 0; i < owed.length; i += 3) wake(owed[i] as Int32Array, owed[i + 1] as number, owed[i + 2] as number);
}

/** Milliseconds left until `deadline` (a `performance.now()` time), never negative. */
export function remaining(deadline: number): number {
  return Math.max(0, deadline - performance.now());
}

/** A deadline from a user timeout in ms (`undefined` = none; negative = 0, as the API says). */
export function deadlineOf(timeoutMs: number | undefined): number {
  if (timeoutMs === undefined || timeoutMs === null || timeoutMs === Infinity) return Infinity;
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
    throw new ValueError(
      `timeout must be a number of milliseconds, got ${describe(timeoutMs)}; pass a number (negative means 0), or leave it undefined to wait forever`,
    );
  }
  return performance.now() + Math.max(0, timeoutMs);
}
