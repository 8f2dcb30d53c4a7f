/**
 * The parent's side of one pool worker: the child (a daemon `Process` of the
 * pool's start method), its two channels and control block, and the units
 * handed to it and not yet answered, in the order it runs them.
 */
import { Process, adoptLaunch, launchChild, limitHeap, offerSpares, takenOverBy, watchEnd } from '../process/process.js';
import type { Launch } from '../process/popen.js';
import { processClassFor } from '../process/context.js';
import type { StartMethod } from '../process/start-method.js';
import type { TargetSpec } from '../process/target.js';
import { SimpleQueue } from '../queue/queue.js';
import { Segment, type InFlight } from '../shm/segment.js';
import { BATCHES_READ, CLOSED, CONTROL_DOUBLES, FINISHED, GATE, LARGE_UNIT_BYTES, NOTIFY, STARTED, TAKEN, TAKEN_WAITER, WAKE_AT, cancelledMark, controlViews, decideUnit, gateWord, isUnit, reached, serializer, startedMark } from './protocol.js';
import { waitAsync, wake } from '../sync/futex.js';
import { UnitState, type Unit } from './task-queue.js';
import { runWorker, type WorkerConfig } from './worker-loop.js';

/** Set by the bundler: the worker's entry is a file of the bundle (scripts/bundle.mjs). */
declare const __MPTS_POOL_WORKER_FILE__: string | undefined;

/**
 * The module that exports the worker's target, `runWorker`, by reference
 * (worker-entry.ts: what a worker loads, a fraction of the package), and
 * that a `'thread'` worker is launched on. Named as `module`, it is not
 * read in the parent: the child finds the export by its fingerprint.
 */
const WORKER_ENTRY = new URL(
  typeof __MPTS_POOL_WORKER_FILE__ === 'string' ? __MPTS_POOL_WORKER_FILE__ : './worker-entry.js',
  import.meta.url,
);

export interface WorkerOptions {
  readonly method: StartMethod;
  readonly initializer: TargetSpec | null;
  readonly initargs: unknown[];
  /** Units it may run before it is replaced (maxtasksperchild), or Infinity. */
  readonly budget: number;
  readonly heapLimitMb: number | undefined;
  /** Its units are numbered from this + 1 (protocol.ts FIRST_UNIT). */
  readonly firstUnit: number;
  /**
   * Bytes of its spilled answers not yet taken past which the worker waits
   * (protocol.ts `spillPart`). Asked for once the child is launched: on a
   * program's first pool it makes the tree's directory and starts its
   * reaper (~2.5 ms), which the child's boot then overlaps.
   */
  readonly untakenLimit: () => number;
}

/** Why the pool ended a worker on purpose: the unit it meant to end, and what that unit fails with. */
export interface Deliberate {
  readonly seq: number;
  readonly error: unknown;
}

export class WorkerHandle {
  readonly process: Process;
  readonly tasks: SimpleQueue<Uint8Array>;
  readonly results: SimpleQueue<unknown>;
  readonly ints: Int32Array;
  readonly floats: Float64Array;
  /** Settles with the exit code when the child has ended. */
  readonly ended: Promise<number>;
  readonly method: StartMethod;
  /** The memory of the control block. */
  private readonly controlSegment: Segment;
  private readonly outstanding: Unit[] = [];
  private head = 0;
  /** The last seq handed over. */
  private sentSeq = 0;
  /** Task function ids it has been sent. */
  readonly defined = new Set<number>();
  /** Units it may still be handed (maxtasksperchild): one answered Skipped, never run, gives its place back (dispatcher `take`). */
  budget: number;
  /** Stop was sent: it takes no more units. */
  stopping = false;
  dead = false;
  /** A batch is waiting for room in its task ring: send nothing else meanwhile. */
  blocked = false;
  /** Its results are being read. */
  reading = false;
  /** Set when the pool ends it on purpose (a timeout, an abort, terminate). */
  deliberate: Deliberate | null = null;
  /** Being ended on purpose, its units dealt with already: it holds no slot and takes nothing (dispatcher `release`). */
  released = false;
  /** Units handed to it that carry a timeout. */
  timed = 0;
  /** Payload bytes of the units over LARGE_UNIT_BYTES it holds (a stand-in counts until answered). */
  largeInFlight = 0;
  /** The initializer's error, when it sent one. */
  initError: unknown = undefined;
  /** It answered at least one unit. */
  answered = false;
  completed = 0;
  failed = 0;
  busyMs = 0;

  constructor(options: WorkerOptions) {
    this.method = options.method;
    // Its child is launched first: it boots while the parent makes what the
    // spec will hold (the shared memory below; on a program's first pool
    // the tree's directory and its reaper too), instead of after. Workers
    // are made one after the other, so the next one's child boots while
    // this one's is already on its way (launching all first measured no
    // better: the children then compete with each other and the parent's
    // set-up for the two cores).
    const launch = WorkerHandle.launch(options);
    try {
      this.tasks = new SimpleQueue<Uint8Array>();
      this.results = new SimpleQueue<unknown>();
      // Answers are copied out as they are taken (dispatcher `take`): a mapped spill file would only stay pinned.
      this.results.channel.mapsSpills = false;
      // A plain view of a segment, not a RawArray: a worker then needs no
      // shared-array classes to revive it (worker-entry.ts), ~40 KB less
      // to parse at its start. The segment is held here for the worker's life.
      this.controlSegment = Segment.create(CONTROL_DOUBLES * 8);
      const control = new Float64Array(this.controlSegment.sab, this.controlSegment.base, CONTROL_DOUBLES);
      ({ ints: this.ints, floats: this.floats } = controlViews(control));
      // The words name unit firstUnit as entered, started and answered (all 0 by default).
      this.sentSeq = options.firstUnit;
      Atomics.store(this.ints, GATE, gateWord(options.firstUnit));
      Atomics.store(this.ints, STARTED, options.firstUnit | 0);
      Atomics.store(this.ints, FINISHED, options.firstUnit | 0);
      this.budget = options.budget;
      const Cls = processClassFor(options.method);
      const config: WorkerConfig = {
        tasks: this.tasks,
        results: this.results,
        control,
        initializer: options.initializer,
        initargs: options.initargs,
        untakenLimit: options.untakenLimit(),
        firstUnit: options.firstUnit,
      };
      this.process = new Cls({ target: runWorker, args: [config], daemon: true, module: WORKER_ENTRY });
      // Python's names: SpawnPoolWorker-N there, PoolWorker-N here.
      this.process.name = this.process.name.replace('Process', 'PoolWorker');
      if (options.heapLimitMb) limitHeap(this.process, options.heapLimitMb);
      if (launch) adoptLaunch(this.process, launch);
      this.process.start();
    } catch (err) {
      launch?.end();
      throw err;
    }

    // Watching its end must not keep this process alive: pending results do that.
    const watch = watchEnd(this.process);
    watch.done();
    this.ended = watch.ended.then(() => this.process.exitCode ?? 1);
  }

  get name(): string {
    return this.process.name;
  }

  /**
   * A child for a worker of these options, launched now; null where none
   * could be (the worker's own start then fails as it would have, with its
   * error).
   */
  private static launch(options: WorkerOptions): Launch | null {
    try {
      return launchChild(options.method, options.heapLimitMb, WORKER_ENTRY);
    } catch {
      return null;
    }
  }

  /** Stand-ins of units taken back (takeBack), not yet answered Skipped. */
  private standIns = 0;

  /** Units handed over and not answered (stand-ins included: they hold a place in the window). */
  get inFlight(): number {
    return this.outstanding.length - this.head;
  }

  /** Tasks it really holds: `inFlight` without stand-ins. */
  get tasksInFlight(): number {
    return this.inFlight - this.standIns;
  }

  /** The oldest unanswered unit: the running one, or the next to run. */
  front(): Unit | undefined {
    return this.head < this.outstanding.length ? this.outstanding[this.head] : undefined;
  }

  /** The seq of the last unit handed over. */
  get lastHanded(): number {
    return this.sentSeq;
  }

  /** Whether every unit it holds unanswered is of a call that wants its results only all at once (`Call.bulk`). */
  onlyBulkInFlight(): boolean {
    for (let i = this.head; i < this.outstanding.length; i++) if (!this.outstanding[i]!.call.bulk) return false;
    return true;
  }

  /**
   * Sleeps until the worker answers unit `wakeAt`, its result ring fills,
   * or `interruptSleep()`, without being woken by the answers before it
   * (protocol.ts WAKE_AT); at most `sliceMs`. Returns at once when that
   * answer is in already.
   */
  async sleepUntilAnswer(wakeAt: number, sliceMs: number): Promise<void> {
    const ints = this.ints;
    const seen = Atomics.load(ints, NOTIFY);
    // A unit whose word is 0 (once in 2^32) would read as "none": the one before it wakes this instead.
    if ((wakeAt | 0) === 0) wakeAt--;
    Atomics.store(ints, WAKE_AT, wakeAt);
    try {
      // Nor while the worker waits for it to take answers (TAKEN_WAITER): it stores that and then reads WAKE_AT.
      if (this.dead || this.released || reached(Atomics.load(ints, FINISHED), wakeAt) || this.results.channel.filling() || Atomics.load(ints, TAKEN_WAITER) !== 0) return;
      await waitAsync(ints, NOTIFY, seen, sliceMs);
    } finally {
      Atomics.store(ints, WAKE_AT, 0);
    }
  }

  /** Ends a `sleepUntilAnswer` now (the worker ended, or is being ended). */
  interruptSleep(): void {
    Atomics.add(this.ints, NOTIFY, 1);
    wake(this.ints, NOTIFY, 1 << 30);
  }

  /** Records `unit` as handed over; its seq follows the last. */
  hand(unit: Unit): void {
    unit.seq = ++this.sentSeq;
    unit.state = UnitState.Handed;
    this.outstanding.push(unit);
    this.budget--;
    if (unit.call.timeout !== undefined) this.timed++;
    // In the batch `send` commits next.
    unit.batch = (this.batchesSent + 1) | 0;
    if (unit.size > LARGE_UNIT_BYTES) this.largeInFlight += unit.size;
  }

  /** Batches committed (or being committed) to its task ring, modulo 2^32: the worker counts them likewise (protocol.ts BATCHES_READ). */
  private batchesSent = 0;

  /**
   * Whether `unit`, a large one (over LARGE_UNIT_BYTES), is in the batch the
   * worker has taken from its ring and is reading now (protocol.ts
   * BATCHES_READ): it runs it without the parent. Moved then, a unit of
   * tens of MiB went back and forth between two workers for ever, never
   * started, each move writing its payload to /dev/shm again, since
   * reading it took longer than the balancer waited. One still in the ring
   * may move (its worker may not be taking anything: its event loop busy
   * with a task's leftover timer, say), and so may a small unit any time.
   */
  inTransit(unit: Unit): boolean {
    if (unit.size <= LARGE_UNIT_BYTES) return false;
    // BATCHES_READ first: a batch read between the two loads then reads as in transit, the safe side.
    const read = Atomics.load(this.ints, BATCHES_READ);
    return this.tasks.channel.taken() === unit.batch && read !== unit.batch;
  }

  /** Answer items taken from its result ring (protocol.ts TAKEN). */
  private itemsTaken = 0;
  /** Values of Part answers of the unit it is running (protocol.ts Status.Part), or why one could not be read. */
  private parts: unknown[] = [];
  private partsUnreadable: unknown = undefined;

  /** Values a Part answer brought for the unit it is running, or why they could not be read. */
  addPart(values: unknown[] | null, unreadable?: unknown): void {
    if (values === null) this.partsUnreadable ??= unreadable;
    else for (const v of values) this.parts.push(v);
  }

  /** What Part answers brought for the unit just answered (null: none), then none. */
  takeParts(): { values: unknown[]; unreadable: unknown } | null {
    if (this.parts.length === 0 && this.partsUnreadable === undefined) return null;
    const out = { values: this.parts, unreadable: this.partsUnreadable };
    this.parts = [];
    this.partsUnreadable = undefined;
    return out;
  }

  /** Records that the parent took one more answer item, and wakes the worker if it waits for that (protocol.ts TAKEN). */
  taken(): void {
    const ints = this.ints;
    this.itemsTaken = (this.itemsTaken + 1) | 0;
    Atomics.store(ints, TAKEN, this.itemsTaken);
    if (Atomics.load(ints, TAKEN_WAITER) === 0) return;
    Atomics.store(ints, TAKEN_WAITER, 0);
    wake(ints, TAKEN, 1);
  }

  /** The unit its next answer is for, taken off the list. */
  answer(): Unit | undefined {
    if (this.head >= this.outstanding.length) return undefined;
    const unit = this.outstanding[this.head]!;
    this.outstanding[this.head++] = undefined as unknown as Unit;
    if (this.head === this.outstanding.length) {
      this.outstanding.length = 0;
      this.head = 0;
    } else if (this.head > 256 && this.head * 2 > this.outstanding.length) {
      this.outstanding.splice(0, this.head);
      this.head = 0;
    }
    if (unit.call.timeout !== undefined) this.timed--;
    if (unit.size > LARGE_UNIT_BYTES) this.largeInFlight -= unit.size;
    if (unit.state === UnitState.Over) this.standIns--;
    if (!this.answered) {
      this.answered = true;
      // Up and answering: spares for later starts (under tsx) no longer compete with its start (process.ts launchChild).
      offerSpares(this.method);
    }
    return unit;
  }

  /**
   * Takes back a unit it holds and has been told to skip (cancel() said it
   * had not started it): a stand-in keeps its place in the order, answered
   * Skipped; the unit itself is free to go to another worker.
   */
  takeBack(unit: Unit): void {
    const at = this.outstanding.indexOf(unit, this.head);
    if (at < 0) return;
    this.outstanding[at] = { ...unit, state: UnitState.Over, refs: [], worker: null };
    this.standIns++;
    unit.state = UnitState.Queued;
    unit.seq = 0;
    unit.batch = 0;
    unit.worker = null;
  }

  /** Every unanswered unit, in order, emptying the list (the worker is gone). */
  takeUnanswered(): Unit[] {
    this.takeParts();
    const rest = this.outstanding.slice(this.head);
    this.outstanding.length = 0;
    this.head = 0;
    this.timed = 0;
    this.largeInFlight = 0;
    this.standIns = 0;
    return rest;
  }

  /** The references in flight of the unit it was running when it was disowned, until it has ended (`giveBackUntaken`). */
  private runningRefs: { seq: number; refs: InFlight[] } | null = null;

  /**
   * Keeps the references in flight of `unit`, which it was running when
   * the pool let go of it (dispatcher `disown`): it may have taken some
   * over, and may still be taking them (a worker being ended on purpose is
   * released before it exits), so what to give back is known only once it
   * has ended.
   */
  leaveRunning(unit: Unit): void {
    if (unit.refs.length === 0) return;
    this.runningRefs = { seq: unit.seq, refs: unit.refs };
    unit.refs = [];
  }

  /**
   * Once it has ended and its ledger has been replayed (which gave back
   * what it took over): gives back the references of the unit it was
   * running that the ledger does not mark as taken over from that unit's
   * arguments (ledger.ts `+name #seq`). With no ledger replayed nothing is
   * known, and they stay counted until the tree ends (never freed early);
   * so do those no ledger accounts for (a manager's ticket), as before.
   */
  giveBackUntaken(): void {
    const left = this.runningRefs;
    this.runningRefs = null;
    if (!left) return;
    const takenOver = takenOverBy(this.process);
    if (takenOver === undefined) return;
    const taken = takenOver?.seq === left.seq ? new Map(takenOver.names) : new Map<string, number>();
    for (const ref of left.refs) {
      if (ref.ledgerName === null) continue;
      const n = taken.get(ref.ledgerName) ?? 0;
      if (n > 0) taken.set(ref.ledgerName, n - 1);
      else ref.abandon();
    }
  }

  /** Every unanswered unit, in order (a look, for the watchdog and aborts). */
  unanswered(): readonly Unit[] {
    return this.outstanding.slice(this.head);
  }

  /** FINISHED as last seen, and when it was seen to change. */
  private progress = { finished: 0, at: 0 };

  /**
   * Whether it has answered nothing for `ms` while holding units: a long
   * task, or a worker still starting. (Its FINISHED word, not the parent's
   * reading, tells progress, so a busy parent does not make it look stuck.)
   */
  stuckSince(now: number, ms: number): boolean {
    const finished = Atomics.load(this.ints, FINISHED);
    if (finished !== this.progress.finished || this.progress.at === 0) {
      this.progress = { finished, at: now };
      return false;
    }
    return now - this.progress.at >= ms;
  }

  /** Whether the worker is running `unit` now. */
  isRunning(unit: Unit): boolean {
    return isUnit(Atomics.load(this.ints, STARTED), unit.seq) && !reached(Atomics.load(this.ints, FINISHED), unit.seq);
  }

  /**
   * Asks the worker to skip a unit handed over; true when it has started
   * it already (then only ending the worker stops it). Exact: false means
   * the worker will answer it Skipped.
   */
  cancel(unit: Unit): boolean {
    const cancelled = cancelledMark(unit.seq);
    return decideUnit(this.ints, unit.seq, cancelled, startedMark(unit.seq)) !== cancelled;
  }

  /**
   * Commits a batch to the worker's task ring. When the ring has no room
   * (the worker is behind, or still starting) it waits for room without
   * blocking, and nothing else is sent meanwhile; `then` runs after.
   */
  send(entries: unknown[], then: () => void): void {
    const buf = serializer().serialize(entries);
    const item = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    const channel = this.tasks.channel;
    if (channel.putSync(item, false, 0, false)) {
      this.batchesSent = (this.batchesSent + 1) | 0;
      return;
    }
    // A batch that cannot be written (its spill file, on a full /dev/shm)
    // throws from put() itself, synchronously, like putSync above: the
    // caller takes its units back (`unhand`). Past that, nothing of put()
    // is known to fail; if it ever did, the batch would be lost and its
    // units would wait forever, so the worker is ended instead: its units
    // fail with WorkerLostError, and a replacement starts.
    const waiting = channel.put(item, true, Infinity, false, () => this.dead);
    // Committed later, but before any other batch (nothing else is sent meanwhile).
    this.batchesSent = (this.batchesSent + 1) | 0;
    this.blocked = true;
    waiting.then(
      () => {
        this.blocked = false;
        then();
      },
      (err: unknown) => {
        this.blocked = false;
        process.emitWarning(`a pool worker's batch could not be written (${String(err)}); the worker is ended`);
        this.process.kill();
      },
    );
  }

  /**
   * Takes back the units handed last, `units` in the order they were
   * handed: the batch carrying them could not be sent (`send` threw), so
   * the worker never saw them and the seqs they had are its next again.
   */
  unhand(units: readonly Unit[]): void {
    for (let i = units.length - 1; i >= 0; i--) {
      const unit = this.outstanding.pop();
      if (unit !== units[i]) throw new Error('pool: unhand() called with units other than the last handed; please report this');
      this.sentSeq--;
      this.budget++;
      if (unit.call.timeout !== undefined) this.timed--;
      if (unit.size > LARGE_UNIT_BYTES) this.largeInFlight -= unit.size;
      unit.seq = 0;
      unit.batch = 0;
      unit.worker = null;
    }
  }

  /**
   * Ends the worker because of unit `seq` if it is still in it: closes its
   * gate (protocol.ts) so it cannot enter another unit, then kills it —
   * unless the unit finished meanwhile, when the gate opens again. True
   * when it was ended.
   */
  endIn(seq: number, error: unknown): boolean {
    if (this.dead || this.released || this.deliberate) return false;
    const ints = this.ints;
    if (Atomics.compareExchange(ints, GATE, gateWord(seq), CLOSED) !== gateWord(seq)) return false;
    if (reached(Atomics.load(ints, FINISHED), seq)) {
      Atomics.store(ints, GATE, gateWord(seq));
      Atomics.notify(ints, GATE);
      return false;
    }
    this.end(seq, error);
    return true;
  }

  /**
   * Keeps this process alive until the worker has exited. For a worker
   * retired by maxtasksperchild: it holds no unit once it has answered
   * its last, so nothing else would keep the process alive until its
   * replacement starts, and the calls waiting for that would be lost.
   */
  holdUntilEnd(): void {
    const watch = watchEnd(this.process);
    void this.ended.then(() => watch.done());
  }

  /** Ends the worker on purpose; `error` is what `seq`'s unit fails with (the others go to other workers). */
  end(seq: number, error: unknown): void {
    if (this.dead) return;
    this.deliberate ??= { seq, error };
    this.process.kill();
  }
}
