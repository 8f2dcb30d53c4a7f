/**
 * Per-task time limits (`{ timeout }`): one timer, armed for the nearest
 * deadline, ends the worker of a task past its limit (the dispatcher then
 * fails that task with the TimeoutError and replaces the worker).
 *
 * A limit counts from the task's start in its worker (ITEM_START, written
 * before STARTED, per item of a chunk; protocol.ts), on a clock all
 * processes share. A timed task not started yet cannot run out before
 * now + its limit, which is when it is looked at again. A running task
 * keeps its limit after its call has settled (another task of its map
 * failed): it would otherwise hold its worker for as long as it runs.
 *
 * Ending the worker goes through the gate of protocol.ts (the `end`
 * given): a task that ends just as its limit runs out is never mistaken
 * for the one after it.
 */
import { MAX_TIMER_MS } from '../timer-limit.js';
import { TimeoutError } from '../errors.js';
import { ITEM, ITEM_START, monoNow } from './protocol.js';
import { UnitState, unitLabel, type Unit } from './task-queue.js';
import type { WorkerHandle } from './worker-handle.js';

/** Ends `w` because of `unit` (failing it with `error`) if `w` is still in that unit; whether it did. */
export type EndWorker = (w: WorkerHandle, unit: Unit, error: unknown) => boolean;

export class TimeLimits {
  private timer: NodeJS.Timeout | null = null;
  private at = Infinity;

  /**
   * @param workers the pool's live workers (the dispatcher's set, read at each check).
   * @param end how a worker is ended for a task past its limit.
   */
  constructor(
    private readonly workers: ReadonlySet<WorkerHandle>,
    private readonly end: EndWorker,
  ) {}

  /** Makes sure a check runs by `at` (a `monoNow()` time). */
  watch(at: number): void {
    if (at >= this.at) return;
    if (this.timer) clearTimeout(this.timer);
    this.at = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.at = Infinity;
      this.check();
      // A Node timer keeps at most 2^31-1 ms (a longer one fires after 1 ms): the check then arms the rest.
    }, Math.min(MAX_TIMER_MS, Math.max(0, at - monoNow())));
    // The pending answers keep the process alive, not this.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.at = Infinity;
  }

  /** Ends the workers whose running task is past its limit; watches for the next deadline. */
  private check(): void {
    const now = monoNow();
    let next = Infinity;
    for (const w of this.workers) {
      if (w.timed === 0 || w.dead || w.deliberate) continue;
      const front = w.front();
      const frontRunning = front !== undefined && w.isRunning(front);
      if (front && front.state === UnitState.Handed && front.call.timeout !== undefined && frontRunning) {
        const deadline = w.floats[ITEM_START]! + front.call.timeout;
        if (now >= deadline) {
          if (this.end(w, front, timeoutError(w, front))) continue;
          // It finished just now: its answer is on the way; the unit after it is looked at below.
        } else {
          next = Math.min(next, deadline);
        }
      }
      // Handed but not started (the front too, when its worker has not begun it yet: still starting, or
      // between two items): it cannot run out before now + its limit, so look again then.
      for (const unit of w.unanswered()) {
        if ((unit !== front || !frontRunning) && unit.state === UnitState.Handed && unit.call.timeout !== undefined) {
          next = Math.min(next, now + unit.call.timeout);
        }
      }
    }
    if (next < Infinity) this.watch(next);
  }
}

function timeoutError(w: WorkerHandle, unit: Unit): TimeoutError {
  const err = new TimeoutError(
    `${unitLabel(unit, Atomics.load(w.ints, ITEM))} ran past its timeout of ${unit.call.timeout} ms; ` +
      `the pool ended its worker ${w.name} and replaces it`,
  );
  Object.assign(err, { worker: w.name });
  return err;
}
