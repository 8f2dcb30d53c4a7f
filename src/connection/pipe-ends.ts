/**
 * Who holds each end of a Pipe, so that a reader knows when its peer is gone.
 *
 * Python's ends are file descriptors: a Connection object closes its
 * process's descriptor, and the peer reads EOF once every descriptor of the
 * other end is closed, which the kernel also does for a process that dies.
 * Here the same rule is kept in a small segment: for each end a table of
 * holders, one slot per isolate (process or worker thread) that holds copies
 * of it, with how many. A copy is one Connection object, or one handle of
 * it in flight (sent in `args`, inside a Queue item or over another Pipe,
 * and not yet revived): the sender's slot counts it until the receiver has
 * revived it and counted its own, as Python's sender keeps a duplicate of
 * the descriptor until the receiver has its own. So the sender closing its
 * copy right after sending breaks nothing.
 *
 * An end is GONE once its table is empty: the last copy was closed (or
 * collected), or its holders died, which a reader finds by asking
 * liveness.ts about them while it waits (`sweep`). GONE is sticky.
 *
 * Layout (int32 words of the payload):
 *   0 MAGIC, 1 LOCK (a mutex.ts slot: table changes are rare and short),
 *   2 GONE of end 0, 3 GONE of end 1,
 *   8… end 0's SLOTS × (holder id, copies), then end 1's.
 * A slot is taken by writing its count before its id, so a holder killed
 * in between leaves a slot with id 0, which is free; one killed elsewhere
 * inside the lock leaves a whole slot, and the next taker of the lock
 * (from the dead) finds the tables consistent.
 */
import { StateError } from '../errors.js';
import { isAlive, selfTid } from '../liveness.js';
import { Segment, noteInFlight, type SegmentHandle } from '../shm/segment.js';
import { give, takeSync } from '../channel/mutex.js';

const MAGIC_WORD = 0;
const LOCK = 1;
const GONE = 2;
const TABLES = 8;
/** Isolates holding one end at once; far more than a pipe is ever shared by. */
export const SLOTS = 32;
const WORDS = TABLES + 2 * SLOTS * 2;
const MAGIC = 0x6d707065; // 'mppe'

export type End = 0 | 1;

export class PipeEnds {
  /** @internal */ readonly w: Int32Array;

  private constructor(readonly segment: Segment) {
    this.w = new Int32Array(segment.sab, segment.base, WORDS);
    if (Atomics.load(this.w, MAGIC_WORD) !== MAGIC) throw new TypeError('not a pipe segment');
  }

  /** New tables, both ends held once by the caller. */
  static create(): PipeEnds {
    const segment = Segment.create(WORDS * 4);
    const w = new Int32Array(segment.sab, segment.base, WORDS);
    Atomics.store(w, MAGIC_WORD, MAGIC);
    const ends = new PipeEnds(segment);
    ends.hold(0);
    ends.hold(1);
    return ends;
  }

  static attach(handle: SegmentHandle): PipeEnds {
    return new PipeEnds(Segment.attach(handle));
  }

  toHandle(): SegmentHandle {
    return this.segment.toHandle();
  }

  /** Whether `end` has no holder left (sticky). */
  gone(end: End): boolean {
    return Atomics.load(this.w, GONE + end) !== 0;
  }

  /** One copy more of `end` held by this isolate. */
  hold(end: End): void {
    this.locked(() => this.add(end, selfTid()));
  }

  /**
   * A handle of `end` put in flight by this isolate: counted as a copy of
   * ours until the receiver revives it (`arrive`), or given back if the
   * transfer fails.
   */
  send(end: End): void {
    const me = selfTid();
    this.locked(() => this.add(end, me));
    noteInFlight({ ledgerName: null, abandon: () => this.letGo(end, me) });
  }

  /**
   * A handle sent by `from` revived here: our copy counted, then the one in
   * flight given back.
   * @throws StateError when the end is gone for good: every holder ended,
   *   the sender included, before this one arrived, and its peer has seen
   *   EOF; a copy revived now would send into a pipe nobody reads.
   */
  arrive(end: End, from: number): void {
    const gone = this.locked(() => {
      if (this.gone(end)) return true;
      this.add(end, selfTid());
      this.remove(end, from);
      return false;
    });
    if (gone) {
      throw new StateError(
        `this Pipe end was closed for good before it arrived: every process or thread that held it, the sender ` +
          `included, ended before this one received it, and its peer has seen EOF. Keep the sending process alive ` +
          `(or holding its own copy) until the receiver has taken the connection`,
      );
    }
  }

  /**
   * One copy fewer of `end` held by `holder` (default: this isolate).
   * @returns whether the end became GONE by it.
   */
  letGo(end: End, holder = selfTid()): boolean {
    return this.locked(() => {
      this.remove(end, holder);
      return this.settle(end);
    });
  }

  /**
   * Forgets holders of `end` that died (their copies closed with them, as a
   * dead process's descriptors).
   * @returns whether the end became GONE by it.
   */
  sweep(end: End): boolean {
    if (this.gone(end)) return false;
    return this.locked(() => {
      const w = this.w;
      for (let s = 0; s < SLOTS; s++) {
        const i = slot(end, s);
        const id = w[i]!;
        if (id !== 0 && !isAlive(id)) Atomics.store(w, i, 0);
      }
      return this.settle(end);
    });
  }

  /** Marks `end` GONE when no slot holds a copy; whether it did now. */
  private settle(end: End): boolean {
    const w = this.w;
    if (w[GONE + end] !== 0) return false;
    for (let s = 0; s < SLOTS; s++) {
      const i = slot(end, s);
      if (w[i] !== 0 && w[i + 1]! > 0) return false;
    }
    Atomics.store(w, GONE + end, 1);
    return true;
  }

  private add(end: End, id: number): void {
    const w = this.w;
    let free = -1;
    for (let s = 0; s < SLOTS; s++) {
      const i = slot(end, s);
      if (w[i] === id) {
        Atomics.store(w, i + 1, w[i + 1]! + 1);
        return;
      }
      if (free < 0 && (w[i] === 0 || w[i + 1]! <= 0)) free = i;
    }
    if (free < 0) {
      // Full: make room from the dead before refusing.
      for (let s = 0; s < SLOTS && free < 0; s++) {
        const i = slot(end, s);
        if (!isAlive(w[i]!)) free = i;
      }
      if (free < 0) {
        throw new StateError(`more than ${SLOTS} processes or threads hold this Pipe end at once; close copies you no longer use`);
      }
    }
    Atomics.store(w, free, 0);
    Atomics.store(w, free + 1, 1);
    Atomics.store(w, free, id);
  }

  private remove(end: End, id: number): void {
    const w = this.w;
    for (let s = 0; s < SLOTS; s++) {
      const i = slot(end, s);
      if (w[i] !== id) continue;
      const left = w[i + 1]! - 1;
      if (left > 0) Atomics.store(w, i + 1, left);
      else Atomics.store(w, i, 0);
      return;
    }
  }

  private locked<T>(fn: () => T): T {
    // A dead holder of LOCK left the tables whole (see the module comment): nothing to repair.
    takeSync(this.w, LOCK, Infinity);
    try {
      return fn();
    } finally {
      give(this.w, LOCK);
    }
  }
}

function slot(end: End, s: number): number {
  return TABLES + (end * SLOTS + s) * 2;
}
