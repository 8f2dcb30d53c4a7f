/**
 * Keeping the workers evenly loaded once nothing is queued: a long task,
 * a worker still starting, or just the last units of a map shared out
 * unevenly must not leave one worker idle while another holds units it has
 * not started.
 *
 * When nothing is queued, one worker has no units and another holds units
 * it has not started, the units are taken back from the holder — cancelled
 * there first (the cancel word of protocol.ts decides once whether it
 * skips them or has started them, so each runs once; a stand-in keeps
 * their place in its order and is answered Skipped) — and queued again at the head for the free
 * workers: the later half of what a worker holds at once, and everything a
 * *stuck* worker holds (its FINISHED word has not moved for STUCK_MS: a long
 * task ahead of them), or one that is not up yet (still starting, or in its
 * initializer). A large unit stays while its worker has taken the batch
 * that carries it and is reading it (`WorkerHandle.inTransit`). A free
 * worker that is still starting is no better a place: then the check waits
 * for it, on its STATE word, which the worker wakes when it is up — so at
 * a pool's start the first task runs on whichever worker is up first, not
 * on the one it was handed to.
 *
 * It looks again only while that can change something: a free worker is
 * still starting, or a holder's one unit not started may become stuck.
 * Otherwise (what a holder keeps is running, a stand-in, or of a call that
 * settled) it stays idle until the next dispatch round asks (`watch`), so a
 * long task running alone arms no timer.
 */
import { waitAsync } from '../sync/futex.js';
import { STATE, WorkerState, monoNow } from './protocol.js';
import { UnitState, type TaskQueue, type Unit } from './task-queue.js';
import type { WorkerHandle } from './worker-handle.js';

/** How long a worker holding units may answer nothing before they move. */
const STUCK_MS = 10;
export class Balancer {
  private timer: NodeJS.Timeout | null = null;
  /** Bumped by every wait for a worker's start and by stop(): a wait that settles after another began, or after stop(), does nothing. */
  private waits = 0;
  private waiting = false;

  constructor(
    private readonly workers: ReadonlySet<WorkerHandle>,
    private readonly queue: TaskQueue,
    private readonly dispatch: () => void,
  ) {}

  /** Starts a check when moving units may help (after a dispatch round left nothing queued). */
  watch(): void {
    if (this.timer !== null || this.waiting || !this.worthIt(false)) return;
    // A ready worker is free: share at once; else wait for it to be up, or for a holder to be stuck.
    if (this.worthIt(true)) this.arm(0);
    else this.awaitStart();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.waits++;
    this.waiting = false;
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
      else if (this.isFree(w)) {
        if (!ready || Atomics.load(w.ints, STATE) === WorkerState.Ready) free = true;
      }
    }
    return free && movable;
  }

  /**
   * Checks again when a free worker that is still starting is up (its
   * STATE word leaves Starting: worker-loop.ts wakes it), or after
   * STUCK_MS, whichever comes first.
   */
  private awaitStart(): void {
    const starting = [...this.workers].filter((w) => this.isFree(w) && Atomics.load(w.ints, STATE) === WorkerState.Starting);
    if (starting.length === 0) {
      this.arm(STUCK_MS);
      return;
    }
    const wait = ++this.waits;
    this.waiting = true;
    // The pending answers keep the process alive anyway; these waits last STUCK_MS at most.
    void Promise.race(starting.map((w) => waitAsync(w.ints, STATE, WorkerState.Starting, STUCK_MS))).then(() => {
      if (wait !== this.waits) return;
      this.waiting = false;
      this.check();
    });
  }

  private isFree(w: WorkerHandle): boolean {
    return w.inFlight === 0 && !w.blocked && !w.stopping && !w.dead && w.budget > 0;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.check();
    }, ms);
    // The pending answers keep the process alive, not this.
    this.timer.unref();
  }

  private check(): void {
    if (this.queue.size > 0 || !this.worthIt(false)) return;
    if (!this.worthIt(true)) {
      this.awaitStart();
      return;
    }
    const now = monoNow();
    const moved: Unit[] = [];
    /** Units left with a holder that is not stuck yet. */
    let waiting = false;
    for (const w of this.workers) {
      if (w.dead || w.inFlight === 0) continue;
      // Not up yet (starting, or in its initializer): it runs nothing before it is, so all it holds may go.
      const stuck = Atomics.load(w.ints, STATE) !== WorkerState.Ready || w.stuckSince(now, STUCK_MS);
      const held = w.unanswered().filter((u) => u.state === UnitState.Handed && !u.call.settled && !w.isRunning(u));
      const arrived = held.filter((u) => !w.inTransit(u));
      // A unit still on its way may be movable once it has arrived: look again then.
      if (arrived.length < held.length) waiting = true;
      // The later ones: the least likely to have started meanwhile.
      const take = stuck ? arrived : arrived.slice(arrived.length - Math.floor(arrived.length / 2));
      if (take.length < arrived.length) waiting = true;
      for (const unit of take) {
        if (w.cancel(unit)) continue;
        w.takeBack(unit);
        moved.push(unit);
      }
    }
    if (moved.length === 0) {
      // A holder of one unit not started, not stuck yet: look again when it may be. Nothing else can move.
      if (waiting) this.arm(STUCK_MS);
      return;
    }
    this.queue.pushFront(moved);
    this.dispatch();
  }
}
