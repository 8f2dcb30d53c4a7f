/**
 * The channel: a multi-producer, multi-consumer ring of framed messages in
 * one shared segment — the transport under Queue, SimpleQueue,
 * JoinableQueue and Pipe (connection/pipe-transport.ts).
 *
 * Layout (int32 words of the payload; each group on a cache line of its
 * own, so producers and consumers do not pull each other's lines):
 *
 *   0 MAGIC, 1 CAPACITY (ring bytes, a power of two), 2 MAXSIZE (0: none)
 *   producers' line
 *   16 TAIL        bytes ever committed (mod 2^32). Only the WRITER holder
 *                  stores it, after the frame is written: a frame is
 *                  readable exactly when TAIL has passed it. Consumers
 *                  sleep on it (a sequence word: every commit changes it).
 *   17 PUTS        items ever committed (mod 2^32); qsize = PUTS − GETS.
 *   18 WRITER      the producers' slot: 0 or the holder's id (mutex.ts).
 *   19 NEXT_TAIL   the commit in progress: written before PUTS and TAIL,
 *   20 NEXT_PUTS   so that whoever takes the slot from a dead holder can
 *                  tell a half-done commit (see "Crashes").
 *   consumers' line
 *   32 HEAD        bytes ever consumed; producers sleep on it for room.
 *   33 GETS        items ever taken.
 *   34 READER      the consumers' slot.
 *   35 NEXT_HEAD, 36 NEXT_GETS   the take in progress, as above.
 *   48 GET_WAITERS, 49 PUT_WAITERS   registrations to sleep on TAIL / HEAD
 *                  since the last wake (may count some that did not
 *                  sleep): a commit makes a wake syscall only when
 *                  GET_WAITERS > 0, and takes it back to 0.
 *   64 DONE        JoinableQueue: `taskDone()` calls so far. The unfinished
 *                  tasks are PUTS − DONE: derived, not counted apart, so a
 *                  producer killed mid-put cannot leave them one too high.
 *   65 JOIN_SEQ    bumped each time the unfinished tasks reach 0; `join()` sleeps on it.
 *   66 JOIN_WAITERS
 *   then the ring: CAPACITY bytes of frames (codec.ts), 8-aligned; a Wrap
 *   header sends readers back to the start when a frame does not fit
 *   before the end.
 *
 * Put: reserve → write → commit. A producer prepares the item first (fast
 * tags, or the serializer; a refused item never reaches the ring), reserves
 * by taking the WRITER slot (a compare-exchange of its id into the word),
 * checks room (HEAD is cached; re-read only when the cache says no), writes
 * the frame after TAIL, and commits: NEXT_PUTS, NEXT_TAIL, then PUTS, then
 * TAIL (the publication), then gives the slot back and wakes one consumer
 * if any sleeps. Get is the mirror: take READER, read the frame at HEAD
 * (copied out of the ring), NEXT_GETS, NEXT_HEAD, GETS, HEAD, give READER,
 * wake producers if any sleep; then, outside the slot, revive shared
 * objects and read spill files. Producers serialize on WRITER only for the
 * copy of one small frame (large payloads are written to a spill file
 * before the slot is taken); consumers likewise.
 *
 * A Skip frame (`poke`) carries no item: it moves TAIL (and counts as a
 * put and a get, so the crash repairs below need no case of their own) to
 * wake consumers that watch something besides the ring (a Pipe's peer end
 * closing); consumers drop it.
 *
 * Waiting: spin a few µs (looking at the words), then register in
 * GET_WAITERS/PUT_WAITERS, look again, and futex-sleep on TAIL/HEAD with the
 * value seen (the register-then-look order against the waker's
 * store-then-exchange makes lost wakes impossible; a producer sleeps on the
 * HEAD it read before its failed attempt, so a take in between is seen). The waker takes the
 * whole count with an exchange and wakes every sleeper on the word at once
 * (`wakeRegistered`), so a burst of commits while a woken consumer is
 * being scheduled pays one syscall, not one each. Sleeps are cut into
 * slices all the same, as a guard.
 * Async forms sleep with `waitAsync` and never block the event loop.
 *
 * Crashes:
 * - A producer killed before TAIL moved left nothing readable; the next
 *   producer finds its dead id in WRITER after a sleep slice, takes the
 *   slot over, and, if the dead one had stored PUTS but not TAIL
 *   (NEXT_TAIL ≠ TAIL, PUTS = NEXT_PUTS), takes the count back: the
 *   reservation is reclaimed and its item lost. Killed after TAIL, the
 *   item is in.
 * - A consumer killed before HEAD moved took nothing: the next consumer
 *   takes the slot over, undoes a stored GETS, and reads the same frame. One
 *   killed after HEAD moved, before the item was revived, loses that item
 *   (and a spill file or shared-object references it carried stay until
 *   the tree ends).
 * - A sleeper killed leaves GET_WAITERS/PUT_WAITERS one too high until
 *   the next wake: one needless syscall, nothing worse.
 * - A producer or consumer stopped (SIGSTOP) inside its slot holds it until
 *   it runs again, and is not dead, so nobody takes over: a put or get with
 *   a timeout (or nowait) gives up at its deadline; one without waits.
 * - A JoinableQueue producer killed after counting PUTS and before TAIL
 *   leaves one unfinished task until the next producer repairs PUTS (which
 *   wakes `join()` if that was the last); a consumer killed before
 *   `taskDone()` leaves `join()` waiting, as Python's does.
 */
import { native } from '../native/addon.js';
import { Segment, type SegmentHandle } from '../shm/segment.js';
import { WaitResult, releaseHeldWakes, remaining, waitAsync, waitSync, wakeSoon } from '../sync/futex.js';
import {
  Pending,
  SKIPPED,
  Tag,
  finish,
  frameBytes,
  keepPrepared,
  prepare,
  prepareSkip,
  preparedSize,
  readFrame,
  readSpillTag,
  readValue,
  discardPrepared,
  restorePrepared,
  writeFrame,
  type Prepared,
  type Views,
} from './codec.js';
import { Taken, give, spinPause, takeAsync, takeSync, tryTake } from './mutex.js';

const MAGIC_WORD = 0;
const CAPACITY = 1;
const MAXSIZE = 2;
const TAIL = 16;
const PUTS = 17;
const WRITER = 18;
const NEXT_TAIL = 19;
const NEXT_PUTS = 20;
const HEAD = 32;
const GETS = 33;
const READER = 34;
const NEXT_HEAD = 35;
const NEXT_GETS = 36;
const GET_WAITERS = 48;
const PUT_WAITERS = 49;
const DONE = 64;
const JOIN_SEQ = 65;
const JOIN_WAITERS = 66;
const HEADER_BYTES = 80 * 4;

const MAGIC = 0x6d707463; // 'mptc'

/** @internal Word indices, for tests that play a producer or consumer killed inside its slot. */
export const WORDS = { TAIL, PUTS, WRITER, NEXT_TAIL, NEXT_PUTS, HEAD, GETS, READER, NEXT_HEAD, NEXT_GETS } as const;

/** Default ring size: 64k small-int frames, or 500 items of 1 KiB, before a put waits for a reader. */
export const DEFAULT_CAPACITY = 512 * 1024;

/** Sleep slice: a sleeper looks again at least this often (see "Waiting"). */
const SLICE_MS = 200;
/** Spin before sleeping, in pause steps (a few µs). */
const SPIN_STEPS = 6_000;

/** What a get returns when there was nothing. */
export const NOTHING: unique symbol = Symbol('nothing');

/** What a commit attempt found. */
const enum Commit {
  Done,
  /** The ring has no room for the frame now. */
  NoRoom,
  /** `maxsize` items are in. */
  Full,
  /** The WRITER slot stayed held until the deadline (its holder stopped, or still busy). */
  Busy,
}

/** What travels to name a channel. */
export interface ChannelHandle {
  readonly segment: SegmentHandle;
}

export class Channel {
  /** @internal */ readonly segment: Segment;
  /** @internal The header words. */
  readonly w: Int32Array;
  private readonly views: Views;
  /** Byte offset of the ring inside the mapping. */
  private readonly ring: number;
  private readonly capacity: number;
  private readonly mask: number;
  /** Frames whose payload is larger go to spill files. */
  private readonly spillAbove: number;
  readonly maxsize: number;
  /** HEAD as last seen by this producer (an underestimate of the room, refreshed when short). */
  private seenHead = 0;
  /** TAIL as last seen by this consumer. */
  private seenTail = 0;
  /** TAIL as this producer's last put left it (NaN: none yet); `seenHead` is trusted only while TAIL still is this. */
  private lastTail = NaN;
  /** HEAD as this consumer's last take left it (NaN: none yet); `seenTail` is trusted only while HEAD still is this. */
  private lastHead = NaN;
  /**
   * Whether this consumer may map a spill file rather than read it (see
   * spill.ts). A consumer that copies every item it takes anyway (the
   * pool's two sides) turns it off: mapping would only leave the file's
   * pages pinned in /dev/shm until a collection, saving no copy.
   * @internal
   */
  mapsSpills = true;
  /** Wakes this object's pending async waits (close). */
  private readonly interrupters = new Set<() => void>();
  /** `interrupt()` was called: this object's async puts and gets wait no more (sticky: a put between two sleeps would miss it). */
  private interrupted = false;

  private constructor(segment: Segment) {
    this.segment = segment;
    const sab = segment.sab;
    this.w = new Int32Array(sab, segment.base, HEADER_BYTES / 4);
    this.views = {
      i32: new Int32Array(sab),
      u8: new Uint8Array(sab),
      bulk: new Uint8Array(native()?.aliasSegment(sab) ?? sab),
      buf: Buffer.from(sab),
      dv: new DataView(sab),
    };
    if (Atomics.load(this.w, MAGIC_WORD) !== MAGIC) throw new TypeError('not a queue channel segment');
    this.capacity = this.w[CAPACITY]!;
    this.mask = this.capacity - 1;
    this.maxsize = this.w[MAXSIZE]!;
    this.ring = segment.base + HEADER_BYTES;
    this.spillAbove = Math.min(this.capacity >> 3, 1 << 22);
  }

  /** A new channel with a ring of `capacity` bytes (a power of two ≥ 1 KiB). */
  static create(maxsize: number, capacity = DEFAULT_CAPACITY): Channel {
    const segment = Segment.create(HEADER_BYTES + capacity);
    const w = new Int32Array(segment.sab, segment.base, HEADER_BYTES / 4);
    w[CAPACITY] = capacity;
    w[MAXSIZE] = maxsize;
    Atomics.store(w, MAGIC_WORD, MAGIC);
    return new Channel(segment);
  }

  /** Maps the channel a handle names (taking over its reference). */
  static attach(handle: ChannelHandle): Channel {
    return new Channel(Segment.attach(handle.segment));
  }

  /** A handle for another isolate (one reference in flight). */
  toHandle(): ChannelHandle {
    return { segment: this.segment.toHandle() };
  }

  // -------------------------------------------------------------------------
  // Producers

  /**
   * Commits the prepared item, holding WRITER (the caller took it; this
   * gives it back).
   */
  private commitHeld(taken: Taken, joinable: boolean): Commit {
    const w = this.w;
    if (taken === Taken.FromDead && Atomics.load(w, TAIL) !== w[NEXT_TAIL] && w[PUTS] === w[NEXT_PUTS]) {
      // The dead producer counted an item it never published.
      Atomics.store(w, PUTS, (w[NEXT_PUTS]! - 1) | 0);
      if (joinable) this.wakeJoinersIfIdle();
    }
    const puts = w[PUTS]!;
    if (this.maxsize > 0 && ((puts - Atomics.load(w, GETS)) | 0) >= this.maxsize) {
      give(w, WRITER);
      return Commit.Full;
    }
    const tail = w[TAIL]!;
    const off = tail & this.mask;
    const frame = (8 + preparedSize() + 7) & ~7;
    const toEnd = this.capacity - off;
    const need = toEnd < frame ? toEnd + frame : frame;
    // The cached HEAD is only trusted while TAIL is where this object left
    // it: after others wrote, 32-bit differences with an old cache can wrap
    // (2 GiB through the ring) and would show room that is not there.
    if (tail !== this.lastTail || this.capacity - ((tail - this.seenHead) | 0) < need) {
      this.seenHead = Atomics.load(w, HEAD);
      if (this.capacity - ((tail - this.seenHead) | 0) < need) {
        give(w, WRITER);
        return Commit.NoRoom;
      }
    }
    let start = tail;
    if (toEnd < frame) {
      this.views.i32[(this.ring + off) >> 2] = Tag.Wrap;
      start = (tail + toEnd) | 0;
    }
    let written: number;
    try {
      written = writeFrame(this.views, this.ring + (start & this.mask));
    } catch (err) {
      // Nothing was published (TAIL is where it was): the slot goes back, so the ring goes on.
      give(w, WRITER);
      throw err;
    }
    const next = (start + written) | 0;
    w[NEXT_PUTS] = (puts + 1) | 0;
    Atomics.store(w, NEXT_TAIL, next);
    Atomics.store(w, PUTS, (puts + 1) | 0);
    Atomics.store(w, TAIL, next);
    this.lastTail = next;
    give(w, WRITER);
    wakeRegistered(w, GET_WAITERS, TAIL);
    return Commit.Done;
  }

  /**
   * One commit attempt of the prepared item, taking WRITER by blocking (it
   * is held only briefly) up to `deadline`: a holder stopped inside (SIGSTOP)
   * makes a put with a timeout give up at its deadline, not wait for good.
   */
  private commitSync(joinable: boolean, deadline: number): Commit {
    const taken = tryTake(this.w, WRITER) ? Taken.Yes : takeSync(this.w, WRITER, deadline);
    if (taken === Taken.No) return Commit.Busy;
    return this.commitHeld(taken, joinable);
  }

  private async commitAsync(joinable: boolean, kept: Prepared, deadline: number): Promise<Commit> {
    if (tryTake(this.w, WRITER)) {
      restorePrepared(kept);
      return this.commitHeld(Taken.Yes, joinable);
    }
    const taken = await takeAsync(this.w, WRITER, deadline);
    if (taken === Taken.No) return Commit.Busy;
    restorePrepared(kept);
    return this.commitHeld(taken, joinable);
  }

  /**
   * Puts `item`, blocking the thread while there is no room (a bounded
   * channel at `maxsize`, or a ring full of unread frames).
   * @param deadline also bounds the wait for the WRITER slot (pass 0 with `block` false: a nowait put).
   * @param giveUp asked after each wait for room (a sleep slice at most): true ends the put (false returned).
   * @returns false when there was still no room at `deadline` (or at once when `block` is false), or the
   *   slot was still held then.
   * @throws SerializationError for an item that cannot travel (nothing is enqueued).
   */
  putSync(item: unknown, block: boolean, deadline: number, joinable: boolean, giveUp?: () => boolean): boolean {
    prepare(item, this.spillAbove);
    // HEAD is read before each commit attempt and slept on: a take between
    // the attempt and the sleep changes it, so its wake cannot be missed.
    let head = Atomics.load(this.w, HEAD);
    let result = this.commitSync(joinable, deadline);
    if (result === Commit.Done) return true;
    const kept = keepPrepared(false);
    for (;;) {
      if (!block || remaining(deadline) === 0) return this.refuse(kept);
      // A full ring (not a full `maxsize`): let the consumers drain a quarter
      // first (awaitRoom). A frame that must wrap may need more than that, so
      // a failed attempt still goes on to the sleep below (and to giveUp).
      if (result === Commit.NoRoom && this.awaitRoom(deadline)) {
        restorePrepared(kept);
        head = Atomics.load(this.w, HEAD);
        result = this.commitSync(joinable, deadline);
        if (result === Commit.Done) return true;
      }
      if (!this.spinWhile(HEAD, head)) this.sleepSync(PUT_WAITERS, HEAD, head, deadline);
      if (giveUp?.()) return this.refuse(kept);
      restorePrepared(kept);
      head = Atomics.load(this.w, HEAD);
      result = this.commitSync(joinable, deadline);
      if (result === Commit.Done) return true;
    }
  }

  /**
   * `putSync` without blocking the event loop; `close()` of this object ends
   * the wait (false). An item that cannot be prepared (it cannot travel, or
   * its spill file cannot be written) throws here, synchronously, before
   * anything is committed: a caller that has already counted the item as
   * sent can take it back at once (the pool's dispatcher does).
   */
  put(item: unknown, block: boolean, deadline: number, joinable: boolean, giveUp?: () => boolean): Promise<boolean> {
    prepare(item, this.spillAbove);
    return this.putPrepared(block, deadline, joinable, giveUp);
  }

  private async putPrepared(block: boolean, deadline: number, joinable: boolean, giveUp?: () => boolean): Promise<boolean> {
    let head = Atomics.load(this.w, HEAD);
    if (tryTake(this.w, WRITER) && this.commitHeld(Taken.Yes, joinable) === Commit.Done) return true;
    const kept = keepPrepared(true);
    for (;;) {
      if ((await this.commitAsync(joinable, kept, deadline)) === Commit.Done) return true;
      if (!block || remaining(deadline) === 0) return this.refuse(kept);
      if (!this.spinWhile(HEAD, head) && !(await this.sleepAsync(PUT_WAITERS, HEAD, head, deadline))) return this.refuse(kept);
      if (giveUp?.()) return this.refuse(kept);
      head = Atomics.load(this.w, HEAD);
    }
  }

  /**
   * Commits a Skip frame (no item) when there is room, so that consumers
   * asleep on TAIL wake and look again at whatever else they watch (a
   * Pipe's peer that closed). Without room the ring holds unread frames, so
   * no consumer sleeps on it. Never waits for room.
   */
  poke(): void {
    prepareSkip();
    this.commitSync(false, Infinity);
  }

  /** Gives back what a refused item holds (spill file, shared-object references). */
  private refuse(kept: Prepared): false {
    discardPrepared(kept);
    return false;
  }

  // -------------------------------------------------------------------------
  // Consumers

  /** Takes one frame if there is one; NOTHING otherwise. `raw`: a serialized item stays undecoded (`Serialized`). */
  private take(taken: Taken, raw = false): unknown {
    const w = this.w;
    if (taken === Taken.FromDead && Atomics.load(w, HEAD) !== w[NEXT_HEAD] && w[GETS] === w[NEXT_GETS]) {
      // The dead consumer counted a take it never made: the frame is still there.
      Atomics.store(w, GETS, (w[NEXT_GETS]! - 1) | 0);
    }
    let head = w[HEAD]!;
    // Likewise the cached TAIL, while HEAD is where this object left it.
    if (head !== this.lastHead || ((this.seenTail - head) | 0) <= 0) {
      this.seenTail = Atomics.load(w, TAIL);
      if (this.seenTail === head) {
        give(w, READER);
        return NOTHING;
      }
    }
    const i32 = this.views.i32;
    let off = head & this.mask;
    let header = i32[(this.ring + off) >> 2]!;
    if (header === Tag.Wrap) {
      head = (head + this.capacity - off) | 0;
      off = 0;
      header = i32[this.ring >> 2]!;
    }
    let pending: Pending;
    try {
      pending = readFrame(this.views, this.ring + off, header);
    } catch (err) {
      give(w, READER);
      throw err;
    }
    let value = readValue;
    const spillTag = readSpillTag;
    const next = (head + frameBytes(header)) | 0;
    const gets = (w[GETS]! + 1) | 0;
    w[NEXT_GETS] = gets;
    Atomics.store(w, NEXT_HEAD, next);
    Atomics.store(w, GETS, gets);
    Atomics.store(w, HEAD, next);
    this.lastHead = next;
    give(w, READER);
    wakeRegistered(w, PUT_WAITERS, HEAD);
    if (value === SKIPPED) value = NOTHING;
    return pending === Pending.None ? value : finish(pending, value, spillTag, raw, this.mapsSpills);
  }

  /**
   * Gets an item, blocking the thread up to `deadline`; NOTHING if none came.
   * `deadline` also bounds the wait for the READER slot, so a consumer
   * stopped inside it (SIGSTOP) makes this give up at the deadline (0 with
   * `block` false: a nowait get; Infinity with `block` false: take what is
   * there, waiting only for the slot).
   * @param raw hand a serialized item out undecoded, as a `Serialized` (codec.ts).
   */
  getSync(block: boolean, deadline: number, raw = false): unknown {
    for (;;) {
      if (Atomics.load(this.w, TAIL) !== Atomics.load(this.w, HEAD)) {
        const taken = tryTake(this.w, READER) ? Taken.Yes : takeSync(this.w, READER, deadline);
        if (taken === Taken.No) return NOTHING;
        const item = this.take(taken, raw);
        if (item !== NOTHING) return item;
      }
      if (!block || remaining(deadline) === 0) return NOTHING;
      const tail = Atomics.load(this.w, TAIL);
      if (tail !== Atomics.load(this.w, HEAD) || this.spinWhile(TAIL, tail)) continue;
      this.sleepSync(GET_WAITERS, TAIL, tail, deadline);
    }
  }

  /** `getSync` without blocking the event loop; `close()` of this object ends the wait (NOTHING). */
  async get(block: boolean, deadline: number): Promise<unknown> {
    for (;;) {
      if (Atomics.load(this.w, TAIL) !== Atomics.load(this.w, HEAD)) {
        const taken = tryTake(this.w, READER) ? Taken.Yes : await takeAsync(this.w, READER, deadline);
        if (taken === Taken.No) return NOTHING;
        const item = this.take(taken);
        if (item !== NOTHING) return item;
      }
      if (!block || remaining(deadline) === 0) return NOTHING;
      const tail = Atomics.load(this.w, TAIL);
      if (tail !== Atomics.load(this.w, HEAD) || this.spinWhile(TAIL, tail)) continue;
      if (!(await this.sleepAsync(GET_WAITERS, TAIL, tail, deadline))) return NOTHING;
    }
  }

  /**
   * Waits while no frame is committed, up to `deadline` and one sleep slice
   * at most (a short spin first); whether a frame is there. For callers that
   * watch more than the ring between slices (a Pipe watches its peer).
   */
  waitItemSync(deadline: number): boolean {
    const tail = Atomics.load(this.w, TAIL);
    if (tail !== Atomics.load(this.w, HEAD)) return true;
    if (remaining(deadline) > 0 && !this.spinWhile(TAIL, tail)) this.sleepSync(GET_WAITERS, TAIL, tail, deadline);
    return !this.empty();
  }

  /**
   * `waitItemSync` without blocking the event loop; `close()` of this
   * object ends the wait, as does `stop`. (What either leaves is the native
   * sleep, until its slice or the deadline ends; a wait that runs to its
   * deadline leaves nothing.) `spin: false` skips the short spin, for a
   * caller that knows the next item is far off: the spin would only take
   * a core from whoever is producing it.
   */
  async waitItem(deadline: number, stop?: AbortSignal, spin = true): Promise<boolean> {
    const tail = Atomics.load(this.w, TAIL);
    if (tail !== Atomics.load(this.w, HEAD)) return true;
    if (remaining(deadline) > 0 && !(spin && this.spinWhile(TAIL, tail))) await this.sleepAsync(GET_WAITERS, TAIL, tail, deadline, stop);
    return !this.empty();
  }

  // -------------------------------------------------------------------------
  // Waiting

  /**
   * A producer that found the ring full waits, without sleeping, until a
   * quarter of it is free again, looking at HEAD rarely: a producer that
   * looked at every take would pull the consumers' cache line away from
   * them once per item (and write one frame per take, in lockstep), which
   * on this machine cut a 1 KiB queue's rate to a fifth of what the memory
   * allows. True when that much room came within the spin budget.
   */
  private awaitRoom(deadline: number): boolean {
    releaseHeldWakes();
    const w = this.w;
    const want = this.capacity >> 2;
    const tail = Atomics.load(w, TAIL);
    for (let spent = 0; spent < SPIN_STEPS * 8; spent += 257) {
      if (this.capacity - ((tail - Atomics.load(w, HEAD)) | 0) >= want) return true;
      if (remaining(deadline) === 0) return false;
      spinPause(256);
    }
    return false;
  }

  /** Spins a few µs while word `index` holds `seen`; true when it changed. */
  private spinWhile(index: number, seen: number): boolean {
    releaseHeldWakes();
    const w = this.w;
    let pause = 1;
    for (let spent = 0; spent < SPIN_STEPS; spent += pause + 1) {
      if (Atomics.load(w, index) !== seen) return true;
      spinPause(pause);
      if (pause < 64) pause <<= 1;
    }
    return false;
  }

  /** Sleeps (one slice at most) while word `index` holds `seen`, registered in `waiters`. */
  private sleepSync(waiters: number, index: number, seen: number, deadline: number): void {
    const w = this.w;
    Atomics.add(w, waiters, 1);
    if (Atomics.load(w, index) === seen) waitSync(w, index, seen, Math.min(remaining(deadline), SLICE_MS));
  }

  /**
   * `sleepSync` without blocking; false when this object was interrupted
   * (closed), before or meanwhile, or `stop` aborted meanwhile.
   * @param interruptible false for a wait that `interrupt()` does not end (`join`).
   */
  private async sleepAsync(
    waiters: number,
    index: number,
    seen: number,
    deadline: number,
    stop?: AbortSignal,
    interruptible = true,
  ): Promise<boolean> {
    if (interruptible && this.interrupted) return false;
    const w = this.w;
    Atomics.add(w, waiters, 1);
    if (Atomics.load(w, index) !== seen || stop?.aborted) return true;
    let interrupt: (() => void) | undefined;
    try {
      const woken = waitAsync(w, index, seen, Math.min(remaining(deadline), SLICE_MS));
      const closed = new Promise<WaitResult | null>((resolve) => {
        interrupt = () => resolve(null);
        if (interruptible) this.interrupters.add(interrupt);
        stop?.addEventListener('abort', interrupt, { once: true });
      });
      return (await Promise.race([woken, closed])) !== null;
    } finally {
      if (interrupt) {
        this.interrupters.delete(interrupt);
        stop?.removeEventListener('abort', interrupt);
      }
    }
  }

  /** Ends this object's pending async puts and gets, and any later ones (they return NOTHING / refuse). */
  interrupt(): void {
    this.interrupted = true;
    for (const stop of this.interrupters) stop();
    this.interrupters.clear();
  }

  // -------------------------------------------------------------------------
  // Sizes

  /** Items committed and not yet taken (approximate while others work, as Python's). */
  qsize(): number {
    return Math.max(0, (Atomics.load(this.w, PUTS) - Atomics.load(this.w, GETS)) | 0);
  }

  /**
   * Whether committed, unread frames fill a quarter of the ring or more: a
   * reader that lets answers pile up (the pool's lazy wakes) reads before
   * its producer could block for room.
   */
  filling(): boolean {
    return ((Atomics.load(this.w, TAIL) - Atomics.load(this.w, HEAD)) >>> 0) >= this.capacity >>> 2;
  }

  /**
   * Items ever taken, modulo 2^32 (Skip frames count): stored as a take
   * moves HEAD, before the item is revived or its spill file read.
   */
  taken(): number {
    return Atomics.load(this.w, GETS);
  }

  /** Whether no committed item is waiting (approximate while others work). */
  empty(): boolean {
    return Atomics.load(this.w, TAIL) === Atomics.load(this.w, HEAD);
  }

  // -------------------------------------------------------------------------
  // JoinableQueue

  /** One fewer unfinished task; false when there was none. */
  taskDone(): boolean {
    const w = this.w;
    for (let done = Atomics.load(w, DONE); ; ) {
      if (((Atomics.load(w, PUTS) - done) | 0) <= 0) return false;
      const was = Atomics.compareExchange(w, DONE, done, (done + 1) | 0);
      if (was !== done) {
        done = was;
        continue;
      }
      this.wakeJoinersIfIdle();
      return true;
    }
  }

  /**
   * Items put and not yet marked done. Never below 0: a `taskDone()` that
   * counted a put whose producer died before publishing it (repaired since)
   * is one too many, as Python's would be.
   */
  unfinished(): number {
    return Math.max(0, (Atomics.load(this.w, PUTS) - Atomics.load(this.w, DONE)) | 0);
  }

  /** Wakes `join()`ers when no task is unfinished (a spurious bump only costs them a look). */
  private wakeJoinersIfIdle(): void {
    const w = this.w;
    if (this.unfinished() !== 0) return;
    Atomics.add(w, JOIN_SEQ, 1);
    wakeRegistered(w, JOIN_WAITERS, JOIN_SEQ);
  }

  /** Blocks until every item put has been marked done, or `deadline`; whether it got there. */
  joinSync(deadline: number): boolean {
    for (;;) {
      const seq = Atomics.load(this.w, JOIN_SEQ);
      if (this.unfinished() === 0) return true;
      if (remaining(deadline) === 0) return false;
      this.sleepSync(JOIN_WAITERS, JOIN_SEQ, seq, deadline);
    }
  }

  /** `joinSync` without blocking the event loop. */
  async join(deadline: number): Promise<boolean> {
    for (;;) {
      const seq = Atomics.load(this.w, JOIN_SEQ);
      if (this.unfinished() === 0) return true;
      if (remaining(deadline) === 0) return false;
      await this.sleepAsync(JOIN_WAITERS, JOIN_SEQ, seq, deadline, undefined, false);
    }
  }
}

/**
 * The waker's half of "Waiting": after storing the word sleepers watch,
 * takes the whole registration count and, if anyone registered, wakes
 * every sleeper on `word` with one syscall. Taking the count (rather than
 * each sleeper removing itself when it wakes) is what keeps the hot path
 * free of syscalls: while a woken sleeper is still being scheduled, the
 * next commits find the count at 0 and skip the wake. A sleeper that
 * registered and then did not sleep leaves the count one too high: the
 * next commit pays one needless wake and clears it.
 */
function wakeRegistered(w: Int32Array, waiters: number, word: number): void {
  if (Atomics.load(w, waiters) !== 0 && Atomics.exchange(w, waiters, 0) !== 0) wakeSoon(w, word, 1 << 30);
}
