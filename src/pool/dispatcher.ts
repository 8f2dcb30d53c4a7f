/**
 * The pool's engine, in the parent: it keeps `processes` workers, hands
 * queued units to them in batches, reads their answers, enforces time
 * limits, and deals with workers that die.
 *
 * Dispatch. Each worker may hold a *window* of units handed over and not
 * answered: one running, the rest waiting in its task ring, so it never
 * waits for a round trip to the parent between tasks and nobody is woken
 * per task. The window adapts to the mean run time of a unit: about
 * QUEUED_MS of queued work per worker (at least 2 units, at most
 * MAX_WINDOW), enough to hide a wake-up of the parent yet small enough
 * that the last units of a map do not pile up behind one worker while
 * another idles. Queued units are spread evenly over the workers with
 * room, fewest in flight first; a worker's share goes out as one batch.
 *
 * Answers. While a worker has units in flight, one async loop drains its
 * result ring (no wait while items are there; a spin and an async futex
 * wait when not), settles the calls, and refills the windows. That pending
 * wait is what keeps the process alive while work is outstanding; an idle
 * pool keeps nothing alive (the workers are daemons, as Python's).
 *
 * Workers alive. At most `processes` workers are alive at any time: a
 * worker retired by `maxtasksperchild` keeps its slot until it has exited
 * (as in Python), and only then does its replacement start. It is told to
 * stop once it has answered its last unit, not in the batch that hands it
 * over: a unit handed and then moved to another worker (balancer.ts), or
 * skipped, gives its place in the budget back, so each worker runs
 * exactly `maxtasksperchild` units unless it dies or the pool ends. A
 * worker the pool is ending on purpose (a time limit, an abort) gives its
 * slot up at once: it can start nothing more (its gate is closed,
 * protocol.ts), and a thread stuck in a blocking native call ends only
 * when that call returns.
 *
 * Deaths. When a worker ends unasked, its answers are drained first; then
 * the unit it had started (its control block says which) fails with
 * WorkerLostError, and the units behind it, handed over but never
 * started, go back to the head of the queue for the other workers. A
 * replacement starts. A worker the pool ends on purpose is dealt with the
 * same way when the kill is sent, not when it has exited (`release`): its
 * unit fails with the TimeoutError or the abort reason, so a caller is
 * not held by a worker slow to die. A worker that dies before answering
 * anything and without a task to blame (its initializer threw or crashed,
 * importing a task function killed it) counts toward STARTUP_FAILURES in
 * a row, and then the pool breaks with BrokenPoolError instead of
 * respawning forever. A worker killed from outside (SIGKILL, SIGTERM…)
 * while it starts is not its own failure: it is replaced, and only
 * STARTUP_KILLS of those in a row (the kernel's OOM killer ending each
 * new worker, say) break the pool.
 *
 * Lazy answers. When units run for a while (SPIN_RUN_MS) and are all of
 * calls that want their results only all at once (`Call.bulk`: a map
 * without `onProgress`), each worker takes its whole share of the queue at
 * once, and the reader sleeps until the answer it needs: the last one
 * handed, or, while units are queued, the one that leaves half a window
 * (protocol.ts WAKE_AT). The answers before it wait in the ring (a ring a
 * quarter full wakes the reader too). So a map of n chunks on k workers
 * wakes the parent about k times, not n: each wake (the futex wait's
 * registration and delivery) takes a core from the workers for about
 * 0.1 ms. A worker that runs out first takes units back from another
 * (balancer.ts), woken by its own last answer. An error answer, or one
 * spilled to a file, wakes the reader at once (the first error settles
 * the map and its handed units are skipped; spill files must not pile up
 * in /dev/shm), and a sleep lasts LAZY_SLICE_MS at most, so `stats()` lags
 * by no more. Units with a time limit, and units over LARGE_UNIT_BYTES
 * (their payloads are spilled), keep windows and eager reads.
 *
 * Time limits are time-limits.ts; moving units away from a stuck worker is
 * balancer.ts.
 */
import { constants } from 'node:os';
import { BrokenPoolError, SerializationError, StateError, ValueError, WorkerLostError } from '../errors.js';
import { NOTHING } from '../channel/channel.js';
import { restated } from '../errno.js';
import { holdingWakes, resumeHeldWakes, suspendHeldWakes } from '../sync/futex.js';
import { decode } from '../serialize/decode.js';
import { EVERY_KIND } from '../serialize/shared.js';
import type { StartMethod } from '../process/start-method.js';
import type { TargetSpec } from '../process/target.js';
import { ITEM, LARGE_UNIT_BYTES, LOADING, MAX_WINDOW, Op, STARTED, STATE, Status, WorkerState, isUnit, reached, spillPart, monoNow, serializer, timeSlot } from './protocol.js';
import { spillFsBytes } from '../channel/spill.js';
import { fromRecord, type ErrorRecord } from './remote-error.js';
import { Histogram, type PoolStats } from './stats.js';
import { TaskQueue, UnitState, releaseUndecoded, releaseUnit, unitLabel, type Call, type Unit } from './task-queue.js';
import type { TaskFunction } from './functions.js';
import type { PackedChunk } from './calls.js';
import { WorkerHandle } from './worker-handle.js';
import { TimeLimits } from './time-limits.js';
import { Balancer } from './balancer.js';


/** Units per worker before any run time is known. */
const INITIAL_WINDOW = 4;
/** About this much queued work (ms) per worker once run times are known. */
const QUEUED_MS = 2;
/** A batch stops growing past this many bytes (a frame an eighth of the ring or more is spilled to a file). */
const BATCH_BYTES = 32 * 1024;
/** Workers in a row that die before answering anything, with no task to blame, before the pool breaks. */
export const STARTUP_FAILURES = 3;
/** Workers in a row killed from outside while they start (see OUTSIDE_SIGNALS) before the pool breaks. */
export const STARTUP_KILLS = 10;
/** Signals other processes send (SIGHUP, SIGINT, SIGKILL, SIGTERM): a worker they end while it starts did not fail on its own. */
const OUTSIDE_SIGNALS: ReadonlySet<number> = new Set([1, 2, 9, 15]);
/** A drain that finds answers for this long yields to the event loop. */
const YIELD_MS = 10;
/**
 * Units that run longer than this on average (ms): the reader sleeps
 * without spinning first, and a map's units go out in whole shares and are
 * read lazily (see "Lazy answers").
 */
const SPIN_RUN_MS = 0.5;
/**
 * The longest one lazy sleep on a worker's answers lasts: the reader then
 * takes what has come, so `stats()` and `onProgress`-less maps' counts lag
 * by at most this.
 */
const LAZY_SLICE_MS = 100;

export const enum PoolState {
  Running = 0,
  Closed = 1,
  Terminated = 2,
  Broken = 3,
}

export interface DispatcherOptions {
  readonly processes: number;
  readonly method: StartMethod;
  readonly initializer: TargetSpec | null;
  readonly initargs: unknown[];
  readonly maxtasksperchild: number | undefined;
  readonly heapLimitMb: number | undefined;
  /** Each worker's units are numbered from this + 1 (protocol.ts FIRST_UNIT). */
  readonly firstUnit: number;
}

/** What a call that pulls its input lazily (imap) needs to hear from the pool. */
export interface Source {
  /** The pool was terminated or broke: fail with `error`. */
  stop(error: unknown): void;
  /** join() waits for it: pull the rest of the input as the workers answer, whatever the consumer takes. */
  drain(): void;
}

function signalName(n: number): string {
  const entry = Object.entries(constants.signals).find(([, v]) => v === n);
  return entry ? entry[0] : `signal ${n}`;
}

export class Dispatcher {
  state = PoolState.Running;
  readonly processes: number;
  private readonly options: DispatcherOptions;
  private readonly queue = new TaskQueue();
  /** Workers that take units. */
  private readonly active: WorkerHandle[] = [];
  /** Every worker not yet ended (active, and those told to stop). */
  private readonly all = new Set<WorkerHandle>();
  /** Calls still pulling input (close() waits for them). */
  private readonly sources = new Set<Source>();
  private startupFailures = 0;
  private startupKills = 0;
  private meanRunMs = NaN;
  private dispatchQueued = false;
  private dispatching = false;
  /**
   * Workers handed units in this dispatch round whose readers start when
   * the round ends: a reader decides how long it may sleep (lazyWakeAt)
   * from what is still queued, and a reader started before the round had
   * shared out the rest would see it queued and wake needlessly early.
   */
  private readonly toRead: WorkerHandle[] = [];
  private readonly timeLimits: TimeLimits;
  private readonly balancer: Balancer;
  private brokenError: Error | null = null;
  // Counters for stats().
  private readonly runTimes = new Histogram();
  private readonly waitTimes = new Histogram();
  private completed = 0;
  private failed = 0;
  /** A batch found /dev/shm full while units were in flight: large units wait for the next answer (see `unsent`). */
  private spillWait = false;
  private workersStarted = 0;
  private workersLost = 0;
  private endedBusyMs = 0;
  private readonly createdAt = monoNow();

  constructor(options: DispatcherOptions) {
    this.options = options;
    this.processes = options.processes;
    this.timeLimits = new TimeLimits(this.all, (w, unit, error) => this.endFor(w, unit, error));
    this.balancer = new Balancer(this.all, this.queue, () => this.dispatch());
    this.ensureWorkers();
  }

  // ---------------------------------------------------------------------------
  // Calls

  /** @throws ValueError after close()/terminate(), BrokenPoolError once broken. */
  checkRunning(label: string): void {
    if (this.state === PoolState.Running) return;
    if (this.state === PoolState.Broken) throw this.brokenError!;
    throw new ValueError(`${label}: the pool is not running (it was ${this.state === PoolState.Closed ? 'closed' : 'terminated'})`);
  }

  /** Whether units may still be submitted (a call made before close() may go on). */
  get accepting(): boolean {
    return this.state === PoolState.Running || this.state === PoolState.Closed;
  }

  /** What a call that may no longer submit fails with (the pool was terminated, or broke). */
  get endError(): Error {
    return this.brokenError ?? terminatedError();
  }

  /** A unit of a map's or an imap's call: one chunk of its items. */
  unit(call: Call, op: Op.Map | Op.Star, fn: TaskFunction, chunk: PackedChunk): Unit {
    const { payload, size, refs, refEnds, index } = chunk;
    return { call, op, fn, payload, size, refs, refEnds, index, count: payload.length, submitted: monoNow(), state: UnitState.Queued, seq: 0, worker: null, batch: 0 };
  }

  /** Queues a unit (while `accepting`). */
  submit(unit: Unit): void {
    this.queue.push(unit);
    // After close(), with every worker gone, a call made before it still gets workers.
    if (this.state === PoolState.Closed) this.ensureWorkers();
    if (!this.dispatchQueued) {
      this.dispatchQueued = true;
      queueMicrotask(() => {
        this.dispatchQueued = false;
        this.dispatch();
      });
    }
  }

  /**
   * Drops units of a call that no longer wants them: queued ones leave the
   * queue, handed ones are skipped by their worker. With `kill`, a unit
   * already running ends with its worker (which is replaced), failing with `kill.error`.
   */
  drop(units: Iterable<Unit>, kill?: { error: unknown }): void {
    for (const unit of units) {
      if (unit.state === UnitState.Queued) {
        this.queue.drop(unit);
      } else if (unit.state === UnitState.Handed && unit.worker) {
        const w = unit.worker;
        if (w.cancel(unit) && kill) this.endFor(w, unit, kill.error);
      }
    }
    this.stopIdle();
  }

  addSource(source: Source): void {
    this.sources.add(source);
  }

  removeSource(source: Source): void {
    this.sources.delete(source);
    if (this.sources.size === 0) this.sourcesGone();
    this.stopIdle();
  }

  /** What join() calls await while calls still pull input; settled once none does. */
  private sourcesEmpty: { promise: Promise<void>; resolve: () => void } | null = null;

  private whenSourcesGone(): Promise<void> {
    if (!this.sourcesEmpty) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.sourcesEmpty = { promise, resolve };
    }
    return this.sourcesEmpty.promise;
  }

  private sourcesGone(): void {
    const empty = this.sourcesEmpty;
    this.sourcesEmpty = null;
    empty?.resolve();
  }

  // ---------------------------------------------------------------------------
  // Workers

  private wantsWorkers(): boolean {
    if (this.state === PoolState.Running) return true;
    return this.state === PoolState.Closed && (this.queue.size > 0 || this.sources.size > 0);
  }

  /** Workers that hold a slot: those taking units and those retiring, not those the pool is ending (released). */
  private occupied(): number {
    let n = 0;
    for (const w of this.all) if (!w.released) n++;
    return n;
  }

  private ensureWorkers(): void {
    while (this.occupied() < this.processes && this.wantsWorkers()) this.spawn();
  }

  private spawn(): void {
    const { method, initializer, initargs, maxtasksperchild, heapLimitMb, firstUnit } = this.options;
    let w: WorkerHandle;
    try {
      w = new WorkerHandle({
        method,
        initializer,
        initargs,
        budget: maxtasksperchild ?? Infinity,
        heapLimitMb,
        firstUnit,
        untakenLimit: () => spillPart(spillFsBytes(), this.processes),
      });
    } catch (err) {
      // The first start failing (a pool made where children may not be started) is the constructor's error.
      if (this.workersStarted === 0) throw err;
      this.startupFailed(`a worker could not be started (${(err as Error)?.message ?? String(err)})`, err);
      return;
    }
    this.workersStarted++;
    this.active.push(w);
    this.all.add(w);
    void w.ended.then((code) => this.onExit(w, code));
  }

  /** Takes a worker out of service: it runs what it holds, then returns (Stop); its replacement starts once it has exited. */
  private retire(w: WorkerHandle): void {
    w.stopping = true;
    const at = this.active.indexOf(w);
    if (at >= 0) this.active.splice(at, 1);
  }

  /** After close(), once nothing is left to do, idle workers are told to stop. */
  private stopIdle(): void {
    if (this.state !== PoolState.Closed || this.queue.size > 0 || this.sources.size > 0) return;
    for (const w of [...this.active]) {
      if (w.inFlight > 0 || w.blocked) continue;
      this.retire(w);
      w.send([Op.Stop], () => {});
    }
  }

  // ---------------------------------------------------------------------------
  // Dispatch

  private window(): number {
    const mean = this.meanRunMs;
    if (!(mean >= 0)) return INITIAL_WINDOW;
    return Math.max(2, Math.min(MAX_WINDOW, 1 + Math.ceil(QUEUED_MS / Math.max(mean, 0.001))));
  }

  /** Hands queued units to workers with room in their windows. */
  dispatch(): void {
    // Not reentrant: a fill starts a reader, which dispatches when it finds nothing yet.
    if (this.state >= PoolState.Terminated || this.dispatching) return;
    this.dispatching = true;
    // The workers are woken last, once their readers wait (holdingWakes).
    holdingWakes(() => {
      try {
        // Again when a round handed units and some are left: a worker with less room than its share left them to others.
        for (let handed = 1; handed > 0 && this.queue.size > 0; ) handed = this.shareOut();
      } finally {
        this.dispatching = false;
      }
      for (let w = this.toRead.pop(); w; w = this.toRead.pop()) if (!w.reading) void this.read(w);
      if (this.queue.size === 0) this.balancer.watch();
      this.stopIdle();
    });
  }

  /**
   * The window of a dispatch round: a map's chunks that run for a while,
   * with no progress callback and no time limit, go out as whole shares
   * (see "Lazy answers").
   */
  private shareWindow(): number {
    const window = this.window();
    const next = this.queue.peek();
    // Large payloads go to spill files in /dev/shm: those are handed out a window at a time, not a share.
    if (!(this.meanRunMs > SPIN_RUN_MS) || !next?.call.bulk || next.call.timeout !== undefined || next.size > LARGE_UNIT_BYTES || this.active.length === 0) return window;
    let inFlight = 0;
    for (const w of this.active) inFlight += w.inFlight;
    return Math.min(MAX_WINDOW, Math.max(window, Math.ceil((this.queue.size + inFlight) / this.active.length)));
  }

  /**
   * The answer of `w` the reader may sleep until (0: wake at each answer):
   * see "Lazy answers".
   */
  private lazyWakeAt(w: WorkerHandle): number {
    if (!(this.meanRunMs > SPIN_RUN_MS) || w.timed > 0 || !w.onlyBulkInFlight()) return 0;
    const last = w.lastHanded;
    if (this.queue.size === 0) return last;
    return Math.max(last - w.inFlight + 1, last - Math.floor(this.window() / 2));
  }

  /** One round of dispatch: the queue shared evenly among workers with room, fewest in flight first; how many were handed. */
  private shareOut(): number {
    const window = this.shareWindow();
    const order = this.active.length > 1 ? [...this.active].sort((a, b) => a.inFlight - b.inFlight) : [...this.active];
    const open = (w: WorkerHandle) => !w.blocked && !w.stopping && !w.dead && w.inFlight < window && w.budget > 0;
    let left = order.filter(open).length;
    let handed = 0;
    for (const w of order) {
      if (this.queue.size === 0 || left === 0) break;
      if (!open(w)) continue;
      const share = Math.ceil(this.queue.size / left--);
      handed += this.fill(w, Math.min(window - w.inFlight, w.budget, share));
    }
    return handed;
  }

  /**
   * Hands up to `room` queued units to `w`, in one batch; how many it
   * handed. Large units stop the batch while `w` holds its part of them,
   * or while they wait for room (`spillWait`). A batch that cannot be sent
   * (its spill file does not fit in /dev/shm) leaves `w` as it was, and
   * its units to `unsent`.
   */
  private fill(w: WorkerHandle, room: number): number {
    const entries: unknown[] = [];
    const units: Unit[] = [];
    const defined: number[] = [];
    let bytes = 0;
    // Payloads in spill files are the parent's to bound: the worker frees them as it reads its batches.
    const largeLimit = spillPart(spillFsBytes(), this.processes);
    while (units.length < room && bytes < BATCH_BYTES) {
      const next = this.queue.peek();
      if (!next) break;
      if (next.size > LARGE_UNIT_BYTES && (this.spillWait || (w.largeInFlight > 0 && w.largeInFlight + next.size > largeLimit))) break;
      const unit = this.queue.shift()!;
      if (!w.defined.has(unit.fn.id)) {
        entries.push(Op.Define, unit.fn.id, unit.fn.spec);
        w.defined.add(unit.fn.id);
        defined.push(unit.fn.id);
      }
      entries.push(unit.op, unit.fn.id, unit.payload);
      unit.worker = w;
      w.hand(unit);
      units.push(unit);
      bytes += unit.size;
    }
    if (entries.length > 0) {
      try {
        w.send(entries, () => this.dispatch());
      } catch (err) {
        w.unhand(units);
        for (const id of defined) w.defined.delete(id);
        this.unsent(units, err);
        return 0;
      }
    }
    for (const unit of units) if (unit.call.timeout !== undefined) this.timeLimits.watch(monoNow() + unit.call.timeout);
    if (units.length > 0 && !w.reading) this.toRead.push(w);
    return units.length;
  }

  /**
   * Deals with units whose batch could not be sent: its spill file did not
   * fit in /dev/shm (nothing else is known to fail there).
   *
   * While units of this pool are in flight, the files of their batches and
   * answers take part of /dev/shm, and each answer taken frees some: the
   * units go back to the head of the queue, and large ones are not tried
   * again before the next answer (`spillWait`). With nothing in flight,
   * nothing of ours will free space: the units that made the batch spill
   * (those larger than a batch; if none is, the largest) fail with the
   * reason, and are not queued again (a map retrying forever is a hang);
   * the small ones beside them go back to the queue.
   */
  private unsent(units: readonly Unit[], err: unknown): void {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    let inFlight = false;
    for (const w of this.all) if (w.inFlight > 0 && !w.dead && !w.released) inFlight = true;
    let failing: readonly Unit[] = [];
    if (!(inFlight && (code === 'ENOSPC' || code === 'EDQUOT'))) {
      failing = units.filter((unit) => unit.size > BATCH_BYTES);
      if (failing.length === 0) failing = [units.reduce((a, b) => (b.size > a.size ? b : a))];
    } else {
      // Larger than the whole file system: no answer will make room for it.
      failing = units.filter((unit) => unit.size > spillFsBytes());
      this.spillWait = true;
    }
    const again = units.filter((unit) => !failing.includes(unit));
    for (const unit of again) unit.state = UnitState.Queued;
    this.queue.pushFront(again);
    // A callback below may submit work while this dispatch round runs, and a round that hands nothing ends: look again.
    queueMicrotask(() => this.dispatch());
    const held = suspendHeldWakes();
    try {
      for (const unit of failing) {
        unit.state = UnitState.Over;
        releaseUnit(unit);
        this.failed++;
        if (!unit.call.settled) unit.call.unitFailed(unit, unsentError(unit, err));
      }
    } finally {
      resumeHeldWakes(held);
    }
  }

  /** Whether some worker that takes units has half its window or more free while units are queued. */
  private refillDue(): boolean {
    if (this.queue.size === 0) return false;
    const half = this.window() / 2;
    for (const w of this.active) if (w.inFlight <= half && !w.blocked && !w.stopping && w.budget > 0) return true;
    return false;
  }

  // ---------------------------------------------------------------------------
  // Answers

  /** Drains `w`'s answers while it has units in flight. */
  private async read(w: WorkerHandle): Promise<void> {
    w.reading = true;
    const channel = w.results.channel;
    let since = performance.now();
    try {
      for (;;) {
        if (w.dead || w.released) return;
        const item = channel.getSync(false, 0);
        if (item !== NOTHING) {
          this.take(w, item);
          // Refill before the window runs dry, not only when the ring does.
          if (this.refillDue()) this.dispatch();
          if (performance.now() - since > YIELD_MS) {
            this.dispatch();
            await new Promise((resolve) => setImmediate(resolve));
            since = performance.now();
          }
          continue;
        }
        // Nothing more for now: refill (in batches, once a window is half
        // empty, not a send per answer), or even out / stop workers when
        // nothing is queued.
        if (this.queue.size === 0 || this.refillDue()) this.dispatch();
        if (w.inFlight === 0 || w.dead) return;
        const wakeAt = this.lazyWakeAt(w);
        if (wakeAt > 0) await w.sleepUntilAnswer(wakeAt, LAZY_SLICE_MS);
        // Units that run for milliseconds answer long after a spin's few µs,
        // which would only take a core from the workers producing them.
        else await channel.waitItem(Infinity, undefined, !(this.meanRunMs > SPIN_RUN_MS));
        since = performance.now();
      }
    } finally {
      w.reading = false;
    }
  }

  /**
   * One answer of `w`: settles the unit it is for. An answer that cannot be
   * read here (its bytes, or a shared object in it that cannot be attached)
   * fails that unit with a SerializationError; nothing of it may throw out
   * of the reading loop.
   */
  private take(w: WorkerHandle, item: unknown): void {
    // Taken: its spill file, if it had one, is gone (the worker may be waiting for that).
    w.taken();
    let status = Status.Ok;
    let payload = item;
    let enveloped = false;
    /** The item of a chunk an Unsendable answer is about (-1: none). */
    let at = -1;
    /** Of an Error answer: how many of the unit's items its worker began to decode. */
    let decoded = -1;
    let unreadable: unknown = undefined;
    if (item instanceof Uint8Array) {
      enveloped = true;
      try {
        [status, payload, at, decoded = -1] = serializer().deserialize(Uint8Array.prototype.slice.call(item)) as [Status, unknown, number, number?];
      } catch (err) {
        unreadable = err;
        // A Part must not be taken for its unit's answer: that would shift every later answer onto the wrong unit.
        if (envelopeStatus(item) === Status.Part) {
          w.addPart(null, err);
          return;
        }
      }
      if (status === Status.InitFailed && unreadable === undefined) {
        try {
          w.initError = fromRecord(payload as ErrorRecord);
        } catch (err) {
          w.initError = err;
        }
        return;
      }
      if (status === Status.Part && unreadable === undefined) {
        // The first values of the running chunk: kept until its answer.
        this.spillWait = false;
        try {
          w.addPart(decode(payload, EVERY_KIND) as unknown[]);
        } catch (err) {
          w.addPart(null, err);
        }
        return;
      }
    }
    const parts = w.takeParts();
    const unit = w.answer();
    if (!unit) return;
    // An answer taken frees its spill file, if it had one, and its batch's was read: large units may try again.
    this.spillWait = false;
    unit.state = UnitState.Over;
    unit.worker = null;
    this.startupFailures = 0;
    this.startupKills = 0;
    if (status === Status.Skipped) {
      // It never ran: it does not count toward maxtasksperchild.
      w.budget++;
      releaseUnit(unit);
      this.retireIfSpent(w);
      return;
    }
    // Failed before all its items were decoded (one threw, its function could not be loaded): the others' references come back.
    if (status === Status.Error) releaseUndecoded(unit, decoded);
    const slot = timeSlot(unit.seq);
    const start = w.floats[slot]!;
    const run = Math.max(0, w.floats[slot + 1]! - start);
    this.runTimes.record(run);
    this.waitTimes.record(start - unit.submitted);
    w.busyMs += run;
    this.meanRunMs = Number.isNaN(this.meanRunMs) ? run : this.meanRunMs * 0.875 + run * 0.125;
    let value: unknown;
    let error: unknown;
    if (unreadable === undefined && parts?.unreadable !== undefined) unreadable = parts.unreadable;
    if (unreadable === undefined) {
      try {
        if (status === Status.Ok) {
          // A chunk of one item answers with its bare value, a chunk of numbers with a Float64Array (protocol.ts).
          value = enveloped
            ? decode(payload, EVERY_KIND)
            : unit.op === Op.Apply
              ? payload
              : payload instanceof Float64Array
                ? Array.from(payload)
                : [payload];
          // A chunk answered in parts: theirs are its first values.
          if (parts) value = parts.values.concat(value as unknown[]);
        } else if (!unit.call.settled) {
          error = fromRecord(payload as ErrorRecord);
        }
      } catch (err) {
        unreadable = err;
      }
    }
    if (unreadable !== undefined) {
      error = unreadableError(unit, status === Status.Ok ? 'result' : 'error', unreadable);
    } else if (status === Status.Unsendable && error instanceof Error) {
      // A result that could not travel back: name the task it belongs to (the item of a chunk, by its index in the call).
      const refused = error as Error;
      const message = `${unitLabel(unit, at)}: ${refused.message}`;
      refused.stack = refused.stack?.replace(refused.message, message);
      refused.message = message;
    }
    // A call's settling runs the user's callbacks (AsyncResult's, onProgress): no wake may wait for them.
    const held = suspendHeldWakes();
    try {
      if (status === Status.Ok && unreadable === undefined) {
        w.completed++;
        this.completed++;
        if (!unit.call.settled) unit.call.unitDone(unit, value);
      } else {
        w.failed++;
        this.failed++;
        if (!unit.call.settled) unit.call.unitFailed(unit, error);
      }
    } finally {
      resumeHeldWakes(held);
    }
    this.retireIfSpent(w);
  }

  /**
   * Retires `w` once it has run its `maxtasksperchild` units: when its
   * last is answered, not when it is handed, since a unit handed may still
   * be taken back (balancer.ts) or skipped, and then gives its place in the
   * budget back (a Stop sent with it would make the worker exit short).
   */
  private retireIfSpent(w: WorkerHandle): void {
    if (w.budget > 0 || w.inFlight > 0 || w.stopping || w.dead || w.released || this.state >= PoolState.Terminated) return;
    this.retire(w);
    w.send([Op.Stop], () => {});
    // Its replacement starts when it has exited: until then nothing else may keep this process alive.
    w.holdUntilEnd();
  }

  // ---------------------------------------------------------------------------
  // Deaths

  /**
   * Ends `w` because of `unit` (its time limit, an abort) if `w` is still
   * in that unit — the gate (protocol.ts) makes sure the kill cannot land
   * on a later one — and deals with it at once (`release`). False when it
   * had moved on or finished the unit: then it is left alone.
   */
  private endFor(w: WorkerHandle, unit: Unit, error: unknown): boolean {
    if (!w.endIn(unit.seq, error)) return false;
    this.release(w);
    return true;
  }

  /**
   * A worker being ended on purpose, dealt with now rather than at its
   * exit (a thread stuck in a blocking native call exits only when that
   * call returns): what it answered counts, its unit fails with the
   * reason, the units it held and never started go to other workers, and
   * its replacement starts. Its gate is closed: it starts nothing more.
   */
  private release(w: WorkerHandle): void {
    w.released = true;
    w.stopping = true;
    const at = this.active.indexOf(w);
    if (at >= 0) this.active.splice(at, 1);
    w.results.channel.interrupt();
    w.interruptSleep();
    w.tasks.channel.interrupt();
    this.drainAnswers(w);
    this.disown(w, w.deliberate!.seq, -1);
    // No answer of its will free a spill file now: large units decide again (`unsent`).
    this.spillWait = false;
    this.ensureWorkers();
    this.dispatch();
  }

  /** Takes what `w` answered so far from its result ring. */
  private drainAnswers(w: WorkerHandle): void {
    const channel = w.results.channel;
    for (let item = channel.getSync(false, 0); item !== NOTHING; item = channel.getSync(false, 0)) this.take(w, item);
  }

  /**
   * The units `w` held unanswered, now that it is gone (or going): the one
   * it was running (seq `running`) fails — with the reason the pool ended
   * it for, or WorkerLostError (exit `code`) —, the others go back to the
   * head of the queue. Whether one was blamed.
   */
  private disown(w: WorkerHandle, running: number, code: number): boolean {
    const units = w.takeUnanswered();
    const over = this.state >= PoolState.Terminated;
    const deliberate = w.deliberate;
    const requeue: Unit[] = [];
    let blamed = false;
    for (const unit of units) {
      // A unit moved to another worker left a stand-in here (balancer.ts).
      if (unit.state !== UnitState.Handed) continue;
      unit.worker = null;
      const isRunning = isUnit(running, unit.seq);
      // The unit it was running, cut short: a failure, whose run counts —
      // also when its call has settled already (an abort settles it first;
      // a running task keeps its time limit after its map failed).
      const cut = isRunning && !over && (!deliberate || deliberate.seq === unit.seq);
      if (cut) {
        this.recordCut(w, unit);
        w.failed++;
        this.failed++;
      }
      if (!isRunning) releaseUnitIf(unit, unit.call.settled || over);
      // The running unit's references: those the worker took over its ledger gives back, the others the handle does, once the worker has ended.
      else if (cut || unit.call.settled || over) w.leaveRunning(unit);
      if (unit.call.settled || over) {
        unit.state = UnitState.Over;
        if (!unit.call.settled) unit.call.unitFailed(unit, this.brokenError ?? terminatedError());
        continue;
      }
      if (cut) {
        unit.state = UnitState.Over;
        blamed = true;
        unit.call.unitFailed(unit, deliberate ? deliberate.error : this.lostError(w, unit, code));
        continue;
      }
      // Handed over but not started (or cut short by terminate()'s kill): another worker runs it.
      unit.state = UnitState.Queued;
      unit.seq = 0;
      requeue.push(unit);
    }
    this.queue.pushFront(requeue);
    return blamed;
  }

  /**
   * The times of a unit that was running when its worker was ended (its
   * time limit, an abort) or died: it ran from its start (its time slot,
   * written before STARTED: protocol.ts) until now, and that counts in
   * the run times, the wait times and its worker's busy time, as an
   * answered unit's does.
   */
  private recordCut(w: WorkerHandle, unit: Unit): void {
    if (!reached(Atomics.load(w.ints, STARTED), unit.seq)) return;
    const start = w.floats[timeSlot(unit.seq)]!;
    const run = Math.max(0, monoNow() - start);
    this.runTimes.record(run);
    this.waitTimes.record(start - unit.submitted);
    w.busyMs += run;
  }

  private onExit(w: WorkerHandle, code: number): void {
    w.dead = true;
    w.results.channel.interrupt();
    w.interruptSleep();
    w.tasks.channel.interrupt();
    this.all.delete(w);
    const at = this.active.indexOf(w);
    if (at >= 0) this.active.splice(at, 1);
    // What it answered before it ended counts.
    this.drainAnswers(w);
    if (!w.released) {
      const started = Atomics.load(w.ints, STARTED);
      const held = w.inFlight;
      const over = this.state >= PoolState.Terminated;
      const expected = w.deliberate !== null || over || (w.stopping && code === 0 && held === 0);
      if (!expected) this.workersLost++;
      const blamed = this.disown(w, started, code);
      if (!expected && !blamed && !w.answered) this.diedStarting(w, code);
    }
    // After its last answers and its cut task (drainAnswers, disown) have added theirs.
    this.endedBusyMs += w.busyMs;
    // Its ledger has been replayed (process.ts settles it before `ended`).
    w.giveBackUntaken();
    // No answer of its will free a spill file now: large units decide again (`unsent`).
    this.spillWait = false;
    this.ensureWorkers();
    this.dispatch();
  }

  /** `w` died before it answered anything, with no task to blame. */
  private diedStarting(w: WorkerHandle, code: number): void {
    if (code < 0 && OUTSIDE_SIGNALS.has(-code)) {
      // Killed from outside: not a failure of its own; replaced, unless every new worker is.
      this.startupKills++;
      if (this.startupKills >= STARTUP_KILLS) {
        this.breakPool(
          new BrokenPoolError(
            `the pool's workers keep being killed before they finish a task (${this.startupKills} in a row, the last: ${w.name} ${this.death(code)}), ` +
              `so it stopped starting new ones (the system's OOM killer ending each new worker, say)`,
          ),
        );
      }
      return;
    }
    const loading = Atomics.load(w.ints, LOADING);
    const state = Atomics.load(w.ints, STATE) as WorkerState;
    const doing =
      w.initError !== undefined
        ? `its initializer threw ${describeError(w.initError)}`
        : state !== WorkerState.Ready
          ? `it ${this.death(code)} before its initializer finished`
          : loading !== 0
            ? `it ${this.death(code)} while importing a task function`
            : `it ${this.death(code)} before it finished a task`;
    this.startupFailed(`${w.name}: ${doing}`, w.initError);
  }

  /** How a worker ended, for messages. */
  private death(code: number): string {
    if (code === -6) {
      const limit = this.options.heapLimitMb;
      // SIGABRT: what V8 raises when the heap is exhausted, but also process.abort() or a native crash.
      return `was aborted (SIGABRT, most likely out of memory${limit ? `: its heap limit is heapLimitMb: ${limit}` : ''})`;
    }
    if (code < 0) return `was killed by ${signalName(-code)}`;
    return `exited with code ${code}`;
  }

  private lostError(w: WorkerHandle, unit: Unit, code: number): WorkerLostError {
    const where = w.process.threadId ? `thread ${w.process.threadId} of pid ${w.process.pid}` : `pid ${w.process.pid}`;
    const err = new WorkerLostError(
      `${unitLabel(unit, Atomics.load(w.ints, ITEM))} was running in ${w.name} (${where}) when the worker ${this.death(code)}; ` +
        `the pool replaces the worker and goes on with the other tasks`,
    );
    Object.assign(err, { worker: w.name, pid: w.process.pid, threadId: w.process.threadId, exitCode: code });
    return err;
  }

  private startupFailed(why: string, cause: unknown): void {
    this.startupFailures++;
    if (this.startupFailures < STARTUP_FAILURES) return;
    this.breakPool(
      new BrokenPoolError(
        `the pool's workers keep dying before they finish a task (${this.startupFailures} in a row), so it stopped starting new ones; ` +
          `the last: ${why}`,
        cause === undefined ? undefined : { cause },
      ),
    );
  }

  /** No more work: every call still waiting fails with `error`, every worker is ended. */
  private breakPool(error: Error): void {
    if (this.state >= PoolState.Terminated) return;
    this.state = PoolState.Broken;
    this.brokenError = error;
    this.shutDown(error);
  }

  private shutDown(error: unknown): void {
    this.balancer.stop();
    this.timeLimits.stop();
    for (const unit of this.queue.drain()) {
      unit.state = UnitState.Over;
      releaseUnit(unit);
      if (!unit.call.settled) unit.call.unitFailed(unit, error);
    }
    for (const w of this.all) {
      for (const unit of w.unanswered()) if (!unit.call.settled) unit.call.unitFailed(unit, error);
      w.end(-1, error);
    }
    for (const source of [...this.sources]) source.stop(error);
    this.sources.clear();
    this.sourcesGone();
  }

  // ---------------------------------------------------------------------------
  // Lifecycle

  close(): void {
    if (this.state !== PoolState.Running) return;
    this.state = PoolState.Closed;
    this.stopIdle();
  }

  terminate(): void {
    if (this.state >= PoolState.Terminated) return;
    this.state = PoolState.Terminated;
    this.shutDown(terminatedError());
  }

  /** Resolves once every worker has ended. */
  async join(): Promise<void> {
    if (this.state === PoolState.Running) {
      throw new ValueError('join() of a running pool: call close() (or terminate()) first, as in Python');
    }
    // A call still pulling input (an imap not consumed to its end) would
    // hold its workers for ever if nobody reads it: from now on it pulls
    // the rest as its workers answer, keeping the results for its
    // consumer, as Python's imap, which takes its whole input at the call.
    for (const source of [...this.sources]) source.drain();
    while (this.sources.size > 0 || this.all.size > 0) {
      if (this.sources.size > 0) {
        // Its chunks may yet need workers (after every worker ended, submit() starts more).
        await this.whenSourcesGone();
        continue;
      }
      await Promise.all(
        [...this.all].map(async (w) => {
          await w.process.join();
          await w.ended;
        }),
      );
    }
  }

  stats(): PoolStats {
    let inFlight = 0;
    let busy = this.endedBusyMs;
    const workers = [...this.all].map((w) => {
      inFlight += w.tasksInFlight;
      busy += w.busyMs;
      return {
        name: w.name,
        pid: w.process.pid,
        threadId: w.process.threadId,
        completed: w.completed,
        failed: w.failed,
        inFlight: w.tasksInFlight,
        busyMs: w.busyMs,
        ending: w.deliberate !== null,
      };
    });
    const elapsed = Math.max(1e-3, monoNow() - this.createdAt);
    return {
      processes: this.processes,
      completed: this.completed,
      failed: this.failed,
      queued: this.queue.size,
      inFlight,
      runTime: this.runTimes.summary(),
      waitTime: this.waitTimes.summary(),
      utilization: Math.min(1, busy / (elapsed * this.processes)),
      workersStarted: this.workersStarted,
      workersLost: this.workersLost,
      workers,
    };
  }
}

/**
 * The status of an answer envelope read from its first bytes, without
 * deserializing it (-1 when they are not what V8 writes for
 * `[status, …]`): a version header (0xFF, a varint), a dense array
 * ('A', its length), then the status as a zigzag int32 ('I').
 */
function envelopeStatus(bytes: Uint8Array): number {
  let i = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 35 && i < bytes.length; shift += 7) {
      const b = bytes[i++]!;
      value |= (b & 0x7f) << shift;
      if (b < 0x80) return value >>> 0;
    }
    return -1;
  };
  if (bytes[i++] !== 0xff || varint() < 0 || bytes[i++] !== 0x41 || varint() < 0 || bytes[i++] !== 0x49) return -1;
  const zigzag = varint();
  return zigzag < 0 ? -1 : (zigzag >>> 1) ^ -(zigzag & 1);
}

/** Why a unit never reached a worker: its label, then the cause (whose `code`, ENOSPC, it keeps). */
function unsentError(unit: Unit, cause: unknown): Error {
  return restated(`${unitLabel(unit)} could not be handed to a worker: ${(cause as Error)?.message ?? String(cause)}`, cause);
}

function releaseUnitIf(unit: Unit, yes: boolean): void {
  if (yes) releaseUnit(unit);
}

function terminatedError(): StateError {
  return new StateError('the pool was terminated before this task finished');
}

/** A unit's answer that could not be read in the parent. */
function unreadableError(unit: Unit, what: 'result' | 'error', err: unknown): SerializationError {
  const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  const its = unit.count > 1 ? `${what}s` : what;
  return new SerializationError(`${unitLabel(unit)}: the ${its} could not be read here (${why}); the task fails, the worker goes on`, { cause: err });
}

function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
