/**
 * What `pool.stats()` reports, and the histograms behind its percentiles.
 *
 * Times come from the workers' control blocks (when each unit started and
 * ended, on a clock all processes share) and from the parent (when it was
 * submitted), so measuring costs no message. A histogram has 8 buckets per
 * doubling from 1 µs (an error under 9%), in a fixed array: recording is
 * a logarithm and an increment, whatever the number of tasks.
 */

/** Percentiles of a duration, in milliseconds (0 while nothing was measured). */
export interface Percentiles {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** One worker, as `pool.stats()` lists it. */
export interface WorkerStats {
  readonly name: string;
  readonly pid: number | null;
  readonly threadId: number | null;
  /** Tasks it answered with a value. */
  readonly completed: number;
  /** Tasks that failed in it (their function threw, they ran past their time limit or were aborted, or the worker died running them). */
  readonly failed: number;
  /** Tasks handed to it and not yet answered. */
  readonly inFlight: number;
  /** Milliseconds it spent running tasks (a task cut short counts until it was ended). */
  readonly busyMs: number;
  /**
   * The pool is ending it: a task of its ran past its time limit or was
   * aborted (or the pool was terminated). It runs nothing more and holds
   * no slot among `processes` (its replacement may be running already),
   * and it leaves `workers` once it has exited: at once for a process,
   * for a thread when the task's current synchronous code (a blocking
   * native call, say) lets it stop.
   */
  readonly ending: boolean;
}

/**
 * The pool's counters. A *task* is one `apply` or one chunk of a
 * `map`/`starmap`/`imap` (what `maxtasksperchild` counts, as in Python).
 */
export interface PoolStats {
  /** The number of workers the pool keeps. */
  readonly processes: number;
  /** Tasks answered with a value. */
  readonly completed: number;
  /** Tasks that failed: their function threw, they ran past their time limit or were aborted, or their worker died running them. */
  readonly failed: number;
  /** Tasks waiting in the parent for a worker. */
  readonly queued: number;
  /** Tasks handed to workers and not yet answered (running, or next in a worker's queue). */
  readonly inFlight: number;
  /**
   * Run time of each task that started, from its start in its worker to
   * its end; a task cut short (its time limit, an abort, its worker's
   * death) ran until then.
   */
  readonly runTime: Percentiles;
  /** Wait of each task, from its submission to its start in a worker. */
  readonly waitTime: Percentiles;
  /**
   * The share of the workers' time spent running tasks since the pool
   * started (0–1): the busy time of every worker it had (those that have
   * exited too, tasks cut short included) over `processes` times the time
   * since it was made.
   */
  readonly utilization: number;
  /** Workers started in all (replacements included). */
  readonly workersStarted: number;
  /** Workers that died without being asked to stop (killed, crashed, out of memory). */
  readonly workersLost: number;
  /**
   * The workers alive now: those taking tasks, those retiring (their
   * `maxtasksperchild` spent, or the pool closed) until they have exited,
   * and those the pool is ending (`ending`) until they have exited. The
   * ones not `ending` are `processes` at most; with `ending` ones the list
   * may be longer for a while. A worker's counts leave with it (the pool's
   * own counters keep them).
   */
  readonly workers: readonly WorkerStats[];
}

const PER_DOUBLING = 8;
const BUCKETS = 40 * PER_DOUBLING;

export class Histogram {
  private readonly counts = new Float64Array(BUCKETS);
  private count = 0;
  private sum = 0;
  private max = 0;

  record(ms: number): void {
    if (!(ms >= 0)) ms = 0;
    const us = ms * 1000;
    const i = us < 1 ? 0 : Math.min(BUCKETS - 1, 1 + Math.floor(Math.log2(us) * PER_DOUBLING));
    this.counts[i]!++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** The middle (geometric) of the bucket holding the p-th fraction, capped at the maximum. */
  private percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil(p * this.count);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        if (i === 0) return Math.min(this.max, 0.0005);
        const us = 2 ** ((i - 0.5) / PER_DOUBLING);
        return Math.min(this.max, us / 1000);
      }
    }
    return this.max;
  }

  summary(): Percentiles {
    return {
      count: this.count,
      mean: this.count === 0 ? 0 : this.sum / this.count,
      p50: this.percentile(0.5),
      p90: this.percentile(0.9),
      p99: this.percentile(0.99),
      max: this.max,
    };
  }
}
