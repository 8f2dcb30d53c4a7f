/**
 * Stuck workers: a long task, or a worker still starting, must not hold
 * the units queued behind it while another worker idles.
 *
 * When nothing is queued, one worker has no units and another holds units
 * it has not started, a check runs every STUCK_MS: a worker whose FINISHED
 * word has not moved for that long is stuck, and the units it has not
 * started are taken back — cancelled there first (the flag-then-STARTED
 * order of protocol.ts makes sure it skips them, so each runs once; a
 * stand-in keeps their place in its order and is answered Skipped) — and
 * queued again at the head for the free workers. A free worker still
 * starting is no better a place: then the check only waits for it to be up.
 */
import { STATE, WorkerState, monoNow } from './protocol.js';
import { UnitState, type TaskQueue, type Unit } from './task-queue.js';
import type { WorkerHandle } from './worker-handle.js';

/** How long a worker holding units may answer nothing before they move. */
const STUCK_MS = 10;

export class Balancer {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly workers: ReadonlySet<WorkerHandle>,
    private readonly queue: TaskQueue,
    private readonly dispatch: () => void,
  ) {}

  /** Starts the checks when moving units may help (after a dispatch round left nothing queued). */
  watch(): void {
    if (this.timer === null && this.worthIt(false)) this.arm();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * Whether a worker holds units it has not started while another has
   * none; with `ready`, only a worker that finished starting counts as free.
   */
  private worthIt(ready: boolean): boolean {
    let free = false;
    let movable = false;
    for (const w of this.workers) {
      if (w.inFlight > 1 || (w.inFlight === 1 && !w.isRunning(w.front()!))) movable = true;
      else if (w.inFlight === 0 && !w.blocked && !w.stopping && !w.dead && w.budget > 0) {
        if (!ready || Atomics.load(w.ints, STATE) === WorkerState.Ready) free = true;
      }
    }
    return free && movable;
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.check();
    }, STUCK_MS);
    // The pending answers keep the process alive, not this.
    this.timer.unref();
  }

  private check(): void {
    if (this.queue.size > 0 || !this.worthIt(false)) return;
    if (!this.worthIt(true)) {
      this.arm();
      return;
    }
    const now = monoNow();
    const moved: Unit[] = [];
    for (const w of this.workers) {
      if (w.dead || w.inFlight === 0 || !w.stuckSince(now, STUCK_MS)) continue;
      for (const unit of w.unanswered()) {
        if (unit.state !== UnitState.Handed || unit.call.settled || w.cancel(unit)) continue;
        w.takeBack(unit);
        moved.push(unit);
      }
    }
    if (moved.length === 0) {
      this.arm();
      return;
    }
    this.queue.pushFront(moved);
    this.dispatch();
  }
}
