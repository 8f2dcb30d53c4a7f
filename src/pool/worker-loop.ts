/**
 * The pool worker's side: what a worker child runs (its target is
 * `runWorker`, by reference to worker-entry.ts).
 *
 * It runs the initializer, then takes batches from its task channel and
 * runs their units one at a time, in order, answering each with one item on
 * its result channel (protocol.ts). Before a unit runs, the control block
 * says which one (STARTED, then ITEM per item of a chunk), so the parent can
 * tell, if this worker dies, which unit was running and which were only
 * handed over. Sync task functions run back to back with no await between
 * them; an async one is awaited. Waiting for work never blocks the event
 * loop (a short spin, then an async futex wait), and a long run of sync
 * units yields to it every YIELD_MS, so timers of a task's async work are
 * served.
 *
 * An error that escapes from a task's async work (an uncaught exception
 * in a timer or callback, a rejection nobody handles) would end a Node
 * process or thread, and with it the task running then, reported as a
 * WorkerLostError without the error. Instead it fails the async task being
 * awaited when it fires (UncaughtError, the escaped error its cause); with
 * none, it is written to stderr and the worker goes on, as Python's
 * worker reports an error of a thread a task left behind and goes on.
 */
import { restated } from '../errno.js';
import { SerializationError, UncaughtError } from '../errors.js';
import { NOTHING, type Channel } from '../channel/channel.js';
import { preparedSpillBytes } from '../channel/codec.js';
import { encode, abandon, cloneError, type Encoded } from '../serialize/encode.js';
import { decode } from '../serialize/decode.js';
import { EVERY_KIND, MARKER } from '../serialize/shared.js';
import type { SimpleQueue } from '../queue/queue.js';
import { resolveTarget } from '../process/child.js';
import { currentProcess } from '../process/current.js';
import type { TargetSpec } from '../process/target.js';
import { waitAsync, wake } from '../sync/futex.js';
import { takingOverFor } from '../shm/ledger.js';
import { cutDown, toRecord } from './remote-error.js';
import {
  CLOSED,
  FINISHED,
  GATE,
  ITEM,
  ITEM_START,
  LOADING,
  NOTIFY,
  Op,
  STARTED,
  STATE,
  Status,
  TAKEN,
  TAKEN_WAITER,
  BATCHES_READ,
  WorkerState,
  cancelledMark,
  decideUnit,
  startedMark,
  gateWord,
  reached,
  controlViews,
  monoNow,
  serializer,
  timeSlot,
  WAKE_AT,
} from './protocol.js';


/** What a worker child is started with (its only argument). */
export interface WorkerConfig {
  readonly tasks: SimpleQueue<Uint8Array>;
  readonly results: SimpleQueue<unknown>;
  /** The control block (protocol.ts). */
  readonly control: Float64Array;
  readonly initializer: TargetSpec | null;
  readonly initargs: unknown[];
  /** Bytes of spilled answers not yet taken past which it waits (protocol.ts `spillPart`). */
  readonly untakenLimit: number;
  /** Its units are numbered from this + 1 (protocol.ts FIRST_UNIT; the parent set the words to it). */
  readonly firstUnit: number;
}

/**
 * The key of a shared-object marker as V8 writes it (a one-byte string):
 * found in a batch's bytes, some task's arguments hold a shared object.
 */
const MARKER_BYTES = Buffer.from(MARKER, 'latin1');

/**
 * Whether this worker loaded the package for its tasks' arguments. It
 * starts with its entry's kinds only (worker-entry.ts); a shared object of
 * another kind in a task's arguments needs its class's module first, and
 * decoding is synchronous, so a batch that may hold one waits for the
 * package before its units run (a string that merely contains the marker
 * costs a needless load, nothing else).
 */
let packageLoaded = false;

/** Whether a batch's bytes hold the marker key (then some task's arguments may hold a shared object). */
function carriesShared(batch: Uint8Array): boolean {
  return Buffer.from(batch.buffer, batch.byteOffset, batch.byteLength).indexOf(MARKER_BYTES) >= 0;
}

async function loadPackage(): Promise<void> {
  await import('../index.js');
  packageLoaded = true;
}

/** A chunk of small integers up to this long travels as a Float64Array (see `asFloats`). */
const FLOATS_SMALL_INTS = 1024;

/** Wakes every waiter of a word. */
const WAKE_ALL = 0x7fffffff;

/**
 * A long run of sync units yields to the event loop after this long (for
 * timers and callbacks a task's async work left behind; a thread's
 * `terminate()` interrupts sync code by itself). Each yield is a turn of the
 * event loop, ~80 µs after a long unit has left the caches cold: at 10 ms
 * it cost a map of 13 ms chunks ~0.6% of its run.
 */
const YIELD_MS = 50;


/**
 * `toRecord`, never throwing: a thrown object whose getters throw (a Proxy,
 * a `constructor` getter) must fail its task, not kill the worker.
 */
function safeRecord(thrown: unknown, held: Encoded[] = []): ReturnType<typeof toRecord> {
  try {
    return toRecord(thrown, held);
  } catch (err) {
    for (const encoded of held.splice(0)) abandon(encoded);
    let why: string;
    try {
      why = String((err as Error)?.message ?? err);
    } catch {
      why = 'unknown';
    }
    return { kind: 'opaque', text: `[a thrown value that could not be described: ${why}]` };
  }
}

/** How long a stopped worker may linger on handles its tasks left open before it exits. */
const STOPPED_GRACE_MS = 500;

/** The V8 bytes of an Ok envelope of `value`; throws a SerializationError naming `path` when it cannot travel. */
/**
 * The V8 bytes of `[status, value]`, and what encoding `value` holds (the
 * references in flight of its shared objects: the bytes carry them, and
 * bytes never sent must give them back with `abandon`).
 */
function envelope(status: Status, value: unknown, path: string): { bytes: Uint8Array; encoded: Encoded } {
  const encoded = encode(value, path, { crossProcess: true });
  let bytes: Uint8Array;
  try {
    bytes = serializer().serialize([status, encoded.value]);
  } catch (err) {
    abandon(encoded);
    throw cloneError(encoded.value, path, err as Error);
  }
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), encoded };
}

/** Throws what `envelope` would for `value`, keeping nothing (its references are given back). */
function checkTravels(value: unknown, path: string): void {
  const encoded = encode(value, path, { crossProcess: true });
  try {
    serializer().serialize(encoded.value);
  } catch (err) {
    throw cloneError(encoded.value, path, err as Error);
  } finally {
    abandon(encoded);
  }
}

function asSerializationError(err: unknown): SerializationError {
  return err instanceof SerializationError ? err : new SerializationError(String((err as Error)?.message ?? err), { cause: err });
}

/** How an escaped error is shown on stderr, never throwing. */
function describeEscaped(err: unknown): string {
  try {
    return err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  } catch {
    return '(a value that could not be described)';
  }
}

/** A copy in a buffer of its own (a Buffer's `slice` would be a view). */
function copyBytes(bytes: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes);
}

/**
 * A value of unit `seq` as the parent packed it (task-payload.ts): a
 * primitive as is, else V8 bytes of its encoding. The references in flight
 * its shared objects take over are marked as that unit's in the ledger, so
 * that if this worker dies in it, the pool gives back exactly the others
 * (ledger.ts). Without the package loaded, no shared object can be in it
 * (see `packageLoaded`), and nothing is marked.
 */
function unpack(packed: unknown, seq: number): unknown {
  if (!(packed instanceof Uint8Array)) return packed;
  if (!packageLoaded) return decode(serializer().deserialize(copyBytes(packed)), EVERY_KIND);
  takingOverFor(seq);
  try {
    return decode(serializer().deserialize(copyBytes(packed)), EVERY_KIND);
  } finally {
    takingOverFor(0);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Results the channel carries by hand: no envelope, no serializer. */
function isBare(value: unknown): boolean {
  const t = typeof value;
  return t === 'number' || t === 'string' || t === 'boolean' || t === 'undefined' || t === 'bigint' || value === null;
}

class Worker {
  private readonly tasks: Channel;
  private readonly results: Channel;
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;
  /** Task functions by id, or why one could not be had. */
  private readonly fns = new Map<number, Function | { failed: unknown }>();
  private seq = 0;
  /** Batches taken from the task ring and deserialized, modulo 2^32 (protocol.ts BATCHES_READ). */
  private batchesRead = 0;
  private lastYield = performance.now();
  /**
   * Answer items that went to spill files and that the parent may not have
   * taken yet, oldest first from `untakenHead`: their number (`itemsPut`
   * once committed), bytes, number, bytes… (see TAKEN).
   */
  private untaken: number[] = [];
  private untakenHead = 0;
  private untakenBytes = 0;
  /** Answer items committed to the result ring, modulo 2^32 (what TAKEN counts on the parent's side). */
  private itemsPut = 0;
  /** `put` is sending the stand-in for an answer that could not be sent. */
  private restating = false;
  /** Fails the async unit being awaited (an error escaped from async work); null when none is. */
  private failRunning: ((error: unknown) => void) | null = null;
  /**
   * How many items of the running unit it has begun to decode (an apply's
   * arguments are its one item). Those after them are never decoded once
   * the unit is answered (`lastAnswered`), so its error answer tells the
   * parent whose references in flight to give back (dispatcher `take`).
   */
  private decodeBegun = 0;
  /** The last unit answered. */
  private lastAnswered = 0;

  constructor(private readonly config: WorkerConfig) {
    this.seq = config.firstUnit;
    this.lastAnswered = config.firstUnit;
    this.tasks = config.tasks.channel;
    // Batches are copied out as they are taken (`copyBytes`): a mapped spill file would only stay pinned.
    this.tasks.mapsSpills = false;
    this.results = config.results.channel;
    ({ ints: this.ints, floats: this.floats } = controlViews(config.control));
  }

  async run(): Promise<void> {
    process.on('uncaughtException', (err) => this.escaped(err, 'an uncaught exception'));
    process.on('unhandledRejection', (reason) => this.escaped(reason, 'an unhandled promise rejection'));
    if (!(await this.initialize())) return;
    Atomics.store(this.ints, STATE, WorkerState.Ready);
    // The parent may be waiting for this worker to be up, to hand it units another still starting holds (balancer.ts).
    wake(this.ints, STATE, WAKE_ALL);
    for (;;) {
      let item = this.tasks.getSync(false, 0);
      if (item === NOTHING) {
        item = await this.tasks.get(true, Infinity);
        // The event loop ran while this worker waited: no yield is due yet.
        this.lastYield = performance.now();
      }
      if (!(item instanceof Uint8Array)) continue;
      if (!packageLoaded && carriesShared(item)) await loadPackage();
      const batch = serializer().deserialize(copyBytes(item)) as unknown[];
      this.batchesRead = (this.batchesRead + 1) | 0;
      Atomics.store(this.ints, BATCHES_READ, this.batchesRead);
      for (let i = 0; i < batch.length; ) {
        const op = batch[i++] as Op;
        if (op === Op.Stop) {
          Atomics.store(this.ints, STATE, WorkerState.Stopped);
          // A task may have left a handle open (a timer, a socket, an
          // agent's keep-alive): a stopped worker must end all the same, or
          // join() and maxtasksperchild would wait on it forever. Its
          // answers are in shared memory already; the grace lets the child's
          // own end of run (ledger, references) finish first.
          setTimeout(() => process.exit(0), STOPPED_GRACE_MS).unref();
          return;
        }
        const id = batch[i++] as number;
        const payload = batch[i++];
        if (op === Op.Define) {
          await this.define(id, payload as TargetSpec);
          continue;
        }
        const pending = this.unit(op, id, payload);
        if (pending) await pending;
      }
    }
  }

  /** An error that escaped from async work: it fails the async unit being awaited, or is reported. */
  private escaped(error: unknown, what: string): void {
    const fail = this.failRunning;
    if (fail) {
      this.failRunning = null;
      fail(
        new UncaughtError(
          `${what} escaped from async work (a timer, a callback or a promise nobody awaited) while this task ran; ` +
            `the task fails with it as its cause, and the worker goes on`,
          { cause: error },
        ),
      );
      return;
    }
    process.stderr.write(
      `${currentProcess().name}: ${what} escaped from async work of a task that had ended (a timer, a callback or a promise nobody awaited); ` +
        `no task was running to fail with it, so the worker goes on:\n${describeEscaped(error)}\n`,
    );
  }

  /** Runs the initializer; false (after telling the parent why) when it failed. */
  private async initialize(): Promise<boolean> {
    const { initializer, initargs } = this.config;
    if (!initializer) return true;
    try {
      const init = await resolveTarget(initializer);
      const done = init(...initargs);
      if (isThenable(done)) await done;
      return true;
    } catch (err) {
      this.postError(Status.InitFailed, err, -1);
      Atomics.store(this.ints, STATE, WorkerState.InitFailed);
      return false;
    }
  }

  private async define(id: number, spec: TargetSpec): Promise<void> {
    Atomics.store(this.ints, LOADING, id);
    try {
      this.fns.set(id, await resolveTarget(spec));
    } catch (err) {
      this.fns.set(id, { failed: err });
    }
    Atomics.store(this.ints, LOADING, 0);
  }

  /**
   * Runs one unit. Returns a promise only when something had to be awaited
   * (an async task, or a pause for the event loop): sync units then cost
   * no promise and no microtask each.
   */
  private unit(op: Op, id: number, payload: unknown): Promise<void> | undefined {
    const seq = ++this.seq;
    const ints = this.ints;
    // The gate first (protocol.ts): CLOSED only while the parent decides to
    // end this worker for the unit before; it opens the gate again or kills.
    const before = gateWord(seq - 1);
    while (Atomics.compareExchange(ints, GATE, before, gateWord(seq)) !== before) Atomics.wait(ints, GATE, CLOSED, 20);
    // Then whether it runs at all: a unit the parent cancelled first is
    // skipped, and never named by STARTED (a worker that dies before its
    // Skipped answer has then cut nothing short).
    const started = startedMark(seq);
    if (decideUnit(ints, seq, started, cancelledMark(seq)) !== started) {
      this.post(Status.Skipped, null, 0);
      Atomics.store(ints, FINISHED, seq);
      this.wakeParent(seq);
      return undefined;
    }
    // ITEM_START and the unit's start before STARTED: a parent that sees
    // this unit started reads its start, not an earlier one's (a time
    // limit; the stats of a unit ended while it runs).
    const start = monoNow();
    this.floats[ITEM_START] = start;
    this.floats[timeSlot(seq)] = start;
    Atomics.store(ints, ITEM, 0);
    Atomics.store(ints, STARTED, seq);
    const fn = this.fns.get(id);
    let value: unknown;
    this.decodeBegun = 0;
    try {
      if (typeof fn !== 'function') throw fn ? fn.failed : new Error(`the pool sent no task function ${id}; please report this`);
      if (op === Op.Apply) {
        this.decodeBegun = 1;
        value = fn(...(unpack(payload, seq) as unknown[]));
      } else value = this.items(fn, payload as unknown[], op === Op.Star, seq);
    } catch (err) {
      return this.answer(seq, op, false, err);
    }
    if (isThenable(value)) return this.settle(seq, op, value);
    return this.answer(seq, op, true, value);
  }

  private async settle(seq: number, op: Op, pending: PromiseLike<unknown>): Promise<void> {
    let ok = true;
    let value: unknown;
    try {
      // An escaped error (see `escaped`) settles it too; the task's own outcome, if it ever comes, is then ignored.
      value = await new Promise((resolve, reject) => {
        this.failRunning = reject;
        pending.then(resolve, reject);
      });
    } catch (err) {
      ok = false;
      value = err;
    }
    this.failRunning = null;
    return this.answer(seq, op, ok, value);
  }

  /** Records the end, sends the answer, and now and then lets the event loop run. */
  private answer(seq: number, op: Op, ok: boolean, value: unknown): Promise<void> | undefined {
    this.floats[timeSlot(seq) + 1] = monoNow();
    // A chunk of one item answers with its value alone, bare when it can be
    // (the parent knows the chunk's size); a chunk of numbers, as a
    // Float64Array (protocol.ts: no envelope, no serializer on either side).
    if (ok && op !== Op.Apply && (value as unknown[]).length === 1 && isBare((value as unknown[])[0])) this.put((value as unknown[])[0]);
    else if (ok && op !== Op.Apply && this.asFloats(value as unknown[])) this.put(Float64Array.from(value as number[]));
    else if (ok) {
      const whole = this.postValue(value, op !== Op.Apply);
      if (whole) return this.answerInParts(seq, value as unknown[], whole.bytes.byteLength);
    } else this.postError(Status.Error, value, Atomics.load(this.ints, ITEM));
    return this.answered(seq);
  }

  /** After a unit's answer: FINISHED, the parent woken if it asked, a wait while too much is untaken, and now and then a yield. */
  private answered(seq: number): Promise<void> | undefined {
    this.lastAnswered = seq;
    Atomics.store(this.ints, FINISHED, seq);
    this.wakeParent(seq);
    if (this.tooMuchUntaken()) return this.awaitTaken();
    if (performance.now() - this.lastYield <= YIELD_MS) return undefined;
    return this.yieldToLoop();
  }

  /** Whether its spilled answers not yet taken pass its part of /dev/shm. */
  private tooMuchUntaken(): boolean {
    if (this.untakenBytes <= this.config.untakenLimit) return false;
    this.forgetTaken();
    return this.untakenBytes > this.config.untakenLimit;
  }

  /**
   * Answers a chunk whose whole answer (`wholeBytes` long) is larger than
   * its part of /dev/shm: in Part answers of as many of its values as fit
   * by their mean size (one at least; halved while one does not), each
   * followed by a wait while too much is untaken, then the answer of the
   * rest (protocol.ts Status.Part). Its items are done: no time limit runs
   * while it answers (ITEM_START is Infinity), since the waits are the
   * parent's. A value that no longer travels (changed by leftover async
   * work meanwhile) makes the answer an Unsendable one.
   */
  private async answerInParts(seq: number, values: unknown[], wholeBytes: number): Promise<void> {
    this.floats[ITEM_START] = Infinity;
    const limit = this.config.untakenLimit;
    const perPart = Math.max(1, Math.floor((limit * values.length) / wholeBytes));
    let start = 0;
    for (;;) {
      let n = Math.min(perPart, values.length - start);
      let part: { bytes: Uint8Array; encoded: Encoded };
      try {
        for (;;) {
          part = envelope(start + n === values.length ? Status.Ok : Status.Part, values.slice(start, start + n), 'the results');
          if (part.bytes.byteLength <= limit || n === 1) break;
          abandon(part.encoded);
          n = Math.ceil(n / 2);
        }
      } catch (err) {
        this.post(Status.Unsendable, safeRecord(asSerializationError(err)), -1);
        break;
      }
      const sent = this.put(part.bytes);
      if (!sent) abandon(part.encoded);
      // The last, or a part that did not fit (then answered Unsendable): nothing more of it.
      if (start + n === values.length || !sent) break;
      this.wakeParent(seq);
      if (this.tooMuchUntaken()) await this.awaitTaken();
      start += n;
    }
    await this.answered(seq);
  }

  /**
   * Waits, without blocking the thread, until the parent has taken enough
   * of this worker's spilled answers that those left untaken are within
   * its share of /dev/shm. The parent takes a spilled answer at once
   * (it is urgent, see `urgent`), so this waits only while the parent
   * lags (its event loop busy with other work), and then bounds the files
   * that pile up in /dev/shm.
   */
  private async awaitTaken(): Promise<void> {
    const ints = this.ints;
    for (;;) {
      const taken = this.forgetTaken();
      if (this.untakenBytes <= this.config.untakenLimit) break;
      Atomics.store(ints, TAKEN_WAITER, 1);
      // A parent asleep on these answers lazily may not know they are in (a Part is no unit's answer): it must take them.
      if (Atomics.load(ints, WAKE_AT) !== 0) {
        Atomics.add(ints, NOTIFY, 1);
        wake(ints, NOTIFY, 1);
      }
      if (Atomics.load(ints, TAKEN) !== taken) continue;
      await waitAsync(ints, TAKEN, taken, Infinity);
    }
    // Not waiting any more: a lazily reading parent may sleep again (worker-handle.ts `sleepUntilAnswer`).
    Atomics.store(ints, TAKEN_WAITER, 0);
    // The event loop ran while this worker waited: no yield is due yet.
    this.lastYield = performance.now();
  }

  /** Drops from `untaken` the answers the parent has taken (TAKEN); returns TAKEN as read. */
  private forgetTaken(): number {
    const taken = Atomics.load(this.ints, TAKEN);
    const list = this.untaken;
    let head = this.untakenHead;
    while (head < list.length && ((taken - list[head]!) | 0) >= 0) {
      this.untakenBytes -= list[head + 1]!;
      head += 2;
    }
    if (head === list.length) {
      this.untaken = [];
      head = 0;
    } else if (head > 1024 && head * 2 > list.length) {
      this.untaken = list.slice(head);
      head = 0;
    }
    this.untakenHead = head;
    return taken;
  }

  /**
   * Lets the event loop run its due timers and callbacks. Units run inside
   * a callback of the poll phase (the wait for a batch) or of another
   * phase; an immediate queued there runs in the same turn's check phase,
   * before any timer, so a second one is what passes a timers phase (with
   * one, a leftover timer waited two yields).
   */
  private async yieldToLoop(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.lastYield = performance.now();
  }

  /** A chunk's values, in order; a promise once an item's value is one. */
  private items(fn: Function, items: unknown[], star: boolean, seq: number): unknown[] | Promise<unknown[]> {
    const out = new Array<unknown>(items.length);
    for (let k = 0; k < items.length; k++) {
      const r = this.item(fn, items[k], star, k, seq);
      if (isThenable(r)) return this.itemsAsync(fn, items, star, out, k, r, seq);
      out[k] = r;
    }
    return out;
  }

  private async itemsAsync(fn: Function, items: unknown[], star: boolean, out: unknown[], k: number, pending: PromiseLike<unknown>, seq: number): Promise<unknown[]> {
    out[k] = await pending;
    for (let j = k + 1; j < items.length; j++) {
      // Answered already (an error escaped from its async work failed it):
      // its other items are never decoded, so the parent gives their
      // references back (`decodeBegun`), and never run.
      if (this.lastAnswered >= seq) return out;
      out[j] = await this.item(fn, items[j], star, j, seq);
    }
    return out;
  }

  private item(fn: Function, packed: unknown, star: boolean, k: number, seq: number): unknown {
    if (k > 0) {
      Atomics.store(this.ints, ITEM, k);
      this.floats[ITEM_START] = monoNow();
    }
    this.decodeBegun = k + 1;
    const arg = unpack(packed, seq);
    return star ? fn(...(arg as unknown[])) : fn(arg);
  }

  /**
   * Whether a chunk's values travel as a Float64Array: all numbers, and no
   * larger that way than in the envelope. V8 writes a small integer in 1–5
   * bytes, so a long chunk of them would cost 8 per item and cross the
   * ring's spill threshold sooner (a spill file each answer); other
   * numbers take 9 bytes in V8's format.
   */
  private asFloats(values: unknown[]): boolean {
    let small = true;
    for (let k = 0; k < values.length; k++) {
      const v = values[k];
      if (typeof v !== 'number') return false;
      if (small && (v | 0) !== v) small = false;
    }
    return !small || values.length <= FLOATS_SMALL_INTS;
  }

  /**
   * Answers with a value (a chunk's: the array of its items' values): bare
   * when the channel carries it by hand, else in an envelope. One that
   * cannot travel is answered Unsendable with the item of the chunk it is
   * (the parent names the task by its index in the whole call) and the
   * path inside that item's result.
   */
  private postValue(value: unknown, chunk: boolean): { bytes: Uint8Array; encoded: Encoded } | null {
    if (isBare(value)) {
      this.put(value);
      return null;
    }
    let sent: { bytes: Uint8Array; encoded: Encoded };
    try {
      sent = envelope(Status.Ok, value, chunk ? 'the results' : 'the result');
    } catch (err) {
      let refused = err;
      let item = -1;
      if (chunk) {
        const values = value as unknown[];
        for (let k = 0; k < values.length && item < 0; k++) {
          try {
            checkTravels(values[k], 'the result');
          } catch (itemErr) {
            refused = itemErr;
            item = k;
          }
        }
      }
      this.post(Status.Unsendable, safeRecord(asSerializationError(refused)), item);
      return null;
    }
    // Too large for its part of /dev/shm: the caller sends it in parts.
    if (chunk && (value as unknown[]).length > 1 && sent.bytes.byteLength > this.config.untakenLimit) {
      abandon(sent.encoded);
      return sent;
    }
    if (!this.put(sent.bytes)) abandon(sent.encoded);
    return null;
  }

  /**
   * Wakes a parent that sleeps on the answers lazily (protocol.ts WAKE_AT)
   * when it asked to hear of answer `seq`, or when the result ring fills.
   * (A parent that reads eagerly is woken by the ring's own commit.)
   */
  private wakeParent(seq: number): void {
    const ints = this.ints;
    const urgent = this.urgent;
    this.urgent = false;
    const at = Atomics.load(ints, WAKE_AT);
    if (at === 0 || (!reached(seq, at) && !urgent && !this.results.filling())) return;
    if (Atomics.compareExchange(ints, WAKE_AT, at, 0) !== at) return;
    Atomics.add(ints, NOTIFY, 1);
    wake(ints, NOTIFY, 1);
  }

  /**
   * The answer just sent must reach a lazily sleeping parent now: an error
   * (the first error settles its call, whose other units are then dropped)
   * or one spilled to a file (files the parent has not read would pile up
   * in /dev/shm while the ring stays nearly empty).
   */
  private urgent = false;

  private post(status: Status, payload: unknown, item: number): boolean {
    if (status !== Status.Ok) this.urgent = true;
    // A unit's error says how many of its items it began to decode: the parent gives back the references of the others.
    const bytes = serializer().serialize(status === Status.Error ? [status, payload, item, this.decodeBegun] : [status, payload, item]);
    return this.put(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), status, payload);
  }

  /** Answers with the record of `thrown`; what it holds in flight (shared objects in its properties) is given back if it was not sent. */
  private postError(status: Status, thrown: unknown, item: number): void {
    const held: Encoded[] = [];
    if (!this.post(status, safeRecord(thrown, held), item)) for (const encoded of held) abandon(encoded);
  }

  /**
   * Commits a result. The ring is full only while the parent is not
   * reading; then it waits, blocking this thread (a few slices at most in
   * practice: the parent drains whenever its event loop turns).
   */
  private put(item: unknown, status = Status.Ok, record?: unknown): boolean {
    try {
      this.results.putSync(item, true, Infinity, false);
    } catch (err) {
      // Already the small stand-in answer: nothing smaller to send.
      if (this.restating) throw err;
      // Nothing was committed. The one failure a prepared answer meets is
      // its spill file not fitting in /dev/shm: the answer says that
      // instead, small enough for the ring (were that to fail too, the
      // worker would die, and the unit fail with WorkerLostError). A
      // result becomes Unsendable, which the parent names by its task; an
      // error keeps its status (an initializer's still breaks the pool),
      // and its class, name and the start of its message and stack
      // (`cutDown`), with why as its cause.
      const what = status === Status.Ok ? 'the result' : status === Status.InitFailed ? "the initializer's error" : "the task's error";
      const error = restated(`${what} could not be sent back to the pool: ${(err as Error)?.message ?? String(err)}`, err);
      this.restating = true;
      try {
        const why = safeRecord(error);
        const item = Atomics.load(this.ints, ITEM);
        if (status === Status.Ok) this.post(Status.Unsendable, why, -1);
        else {
          try {
            this.post(status, cutDown(record, why), item);
          } catch {
            // Even the cut-down error did not go: why alone, smaller still.
            this.post(status, why, item);
          }
        }
      } finally {
        this.restating = false;
      }
      return false;
    }
    this.itemsPut = (this.itemsPut + 1) | 0;
    const spilled = preparedSpillBytes();
    if (spilled > 0) {
      this.urgent = true;
      this.untaken.push(this.itemsPut, spilled);
      this.untakenBytes += spilled;
    }
    return true;
  }
}

/** A worker child's whole life, from the initializer to Stop. */
export async function runWorker(config: WorkerConfig): Promise<void> {
  await new Worker(config).run();
}
