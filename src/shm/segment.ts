/**
 * Segments: the shared memory under every shared object.
 *
 * A segment is a file in the tree's directory (see tree.ts), mapped with
 * MAP_SHARED and seen by JavaScript as a real SharedArrayBuffer, so the same
 * bytes are visible to every process and thread that maps it. A handle (the
 * path and size) is all a child needs to map it too.
 *
 * Layout: a 64-byte header, then the payload.
 *   header[0] (int32) `refs`: the number of live mappings in all isolates plus
 *                     handles in flight. The one who drops it to 0 removes
 *                     the file; the tree's reaper removes whatever crashed
 *                     processes leave behind.
 *
 * Reference protocol (keeps "free when the last user is gone" without ever
 * freeing a segment someone is about to attach):
 *   - create:   refs = 1 (this mapping).
 *   - encode:   refs += 1 for the handle in flight (`toHandle()`).
 *   - attach:   a new mapping takes over the in-flight reference; attaching a
 *               path this isolate maps already gives back the one reference
 *               (while a pool worker decodes a unit's arguments, the mapping
 *               keeps it instead, and gives it back when it goes: ledger.ts).
 *   - release:  when the Segment object is garbage-collected or the isolate
 *               exits, refs -= 1.
 * A child also logs what it takes and gives back in its ledger (ledger.ts),
 * so that its parent can give back what it held when it is killed or
 * terminated, which skips the exit hook (settle.ts, `dropOwed`).
 *
 * Names are `s<random>.<n>`: a random prefix per isolate plus a counter, and
 * a fresh prefix if the file exists already (left by a killed process whose
 * pid or thread id this one reuses), since creation is exclusive (O_EXCL).
 *
 * Without the native addon a segment is a plain SharedArrayBuffer and its
 * handle carries the buffer itself (threads only; the GC frees it).
 */
import { unlinkSync } from 'node:fs';
import { native, nativeMissingHint } from '../native/addon.js';
import { FileNotFoundError, NativeUnavailableError } from '../errors.js';
import { ExitStage, atExit } from '../finalize.js';
import { noteDropping, noteDroppingThen, noteTaken, takingOverUnit, unitTakingOver } from './ledger.js';
import { dropCounted, type DropCounter } from './drop-progress.js';
import { treeDir } from './tree.js';

/** Bytes before the payload; a cache line, so the header never shares one with data. */
export const SEGMENT_HEADER = 64;

/** What travels to another isolate to name a segment. */
export interface SegmentHandle {
  /** Payload size in bytes. */
  readonly size: number;
  /** The file, when the segment is a file mapping. */
  readonly path?: string;
  /** The buffer itself, when there is no addon (thread children only). */
  readonly sab?: SharedArrayBuffer;
}

let counter = 0;
let namePrefix = '';

/** A new prefix for this isolate's segment names (Math.random: no crypto load in a child's start). */
function renamePrefix(): void {
  namePrefix = Math.floor(Math.random() * 36 ** 8).toString(36);
}

/** The file name inside the tree directory, which ledgers record. */
function nameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * A reference put in flight by a `toHandle()` call: a segment's or an arena
 * block's (arena.ts). What a transfer owes if it never arrives, and what a
 * child's ledger starts with.
 */
export interface InFlight {
  /** The name a ledger records for it; null for a plain SharedArrayBuffer. */
  readonly ledgerName: string | null;
  /** Gives the reference back (its handle will never be attached). */
  abandon(): void;
  /**
   * The child whose start-up arguments held it has ended. A kind that no
   * ledger accounts for (a manager proxy's ticket) gives back here what
   * that child did not take over; segments leave this to the ledger.
   */
  readonly receiverEnded?: () => void;
}

/** The list `collectHandles` is filling, if any. */
let collecting: InFlight[] | null = null;

/** Records a reference that `toHandle()` put in flight, for the running `collectHandles`. */
export function noteInFlight(ref: InFlight): void {
  collecting?.push(ref);
}

/**
 * Runs `fn` and returns the segments whose `toHandle()` it called, one entry
 * per reference put in flight: what a transfer owes if it never arrives (see
 * `Segment.abandonAll`) and what a child holds on its parent's account. If
 * `fn` throws, those references are given back before the error propagates.
 */
export function collectHandles<T>(fn: () => T): { result: T; segments: InFlight[] } {
  const outer = collecting;
  const mine: InFlight[] = [];
  collecting = mine;
  try {
    return { result: fn(), segments: mine };
  } catch (err) {
    Segment.abandonAll(mine);
    mine.length = 0;
    throw err;
  } finally {
    collecting = outer;
    outer?.push(...mine);
  }
}

/**
 * What each mapping of this isolate is, for `Segment.of`. The Segment is
 * held weakly: its collection is what gives back this isolate's reference,
 * and `held` keeps the buffer alive until then, so a strong link from the
 * buffer would keep both forever.
 */
const byBuffer = new WeakMap<SharedArrayBuffer, { segment: WeakRef<Segment>; size: number; path: string | null }>();

/** Live segments of this isolate by path, so one path is mapped once. */
const mapped = new Map<string, WeakRef<Segment>>();

/**
 * The references this isolate holds on each path, until given back (one per
 * mapping: a path can be mapped anew while a collected mapping of it awaits
 * its finalizer). Kept apart from `mapped` because such a finalizer may not
 * have run when the isolate exits; its reference must be given back then.
 */
const held = new Map<string, { refs: Int32Array; count: number }>();

/**
 * The references a mapping gives back when it is collected: its own, and
 * the surplus ones of pool units' arguments kept with it (`Segment.attach`).
 */
interface Hold {
  readonly path: string;
  refs: number;
}

const collector = new FinalizationRegistry<Hold>((hold) => {
  const cached = mapped.get(hold.path);
  if (cached && cached.deref() === undefined) mapped.delete(hold.path);
  const n = hold.refs;
  // Zeroed first: surplus kept for a unit (`giveBackKept`) must not be given back twice.
  hold.refs = 0;
  for (let k = n; k > 0; k--) release(hold.path);
});

/** The unit whose surplus references the mappings keep (`keepsSurplus`), and the holds kept so far, one entry per reference. */
let keptFor = 0;
let kept: Hold[] = [];
/** Surplus references of earlier units kept before they are given back, together. */
const KEPT_BATCH = 64;

/** Gives back the surplus references kept for earlier units (logged first, as every drop, in one write). */
function giveBackKept(): void {
  const old = kept;
  kept = [];
  for (const hold of old) {
    // Its mapping's collection or the exit gave it back already.
    if (hold.refs <= 1 || !held.has(hold.path)) continue;
    hold.refs--;
    release(hold.path);
  }
}

/** Gives back this isolate's reference on `path` (logged first: see ledger.ts). */
function release(path: string): void {
  const entry = held.get(path);
  if (!entry) return;
  if (--entry.count === 0) held.delete(path);
  noteDroppingThen(nameOf(path), false, (counter) => dropReference(path, entry.refs, counter));
}

let refusals = 0;
/** Reports (once per isolate, never throwing: this runs in finalizers and at exit) a drop refused because it would take a count below 0. */
function refuse(path: string, why: string): void {
  if (refusals++ === 0) {
    process.emitWarning(`multiprocessing-ts: refused to drop a reference on shared segment ${path}: ${why} (a reference was dropped twice somewhere; the count is left as it was)`);
  }
}

/**
 * Drops `count` references on `path` (never below 0; logged ones are
 * counted on `counter`: drop-progress.ts); the last removes its file.
 */
function dropReference(path: string, refs: Int32Array, counter: DropCounter = null, count = 1): void {
  const before = dropCounted(refs, 0, count, counter);
  if (before < count) refuse(path, `it has ${before} reference(s), not ${count}`);
  else if (before === count) {
    try {
      unlinkSync(path);
    } catch {
      // Already gone: the reaper or another last user removed it.
    }
  }
}

let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  atExit(ExitStage.Segments, () => {
    const entries = [...held];
    held.clear();
    mapped.clear();
    // One ledger write for all of them, before any is dropped.
    const names = entries.flatMap(([path, entry]) => Array<string>(entry.count).fill(nameOf(path)));
    const logged = noteDropping(names);
    if (!logged) return;
    for (const [path, entry] of entries) for (let n = entry.count; n > 0; n--) dropReference(path, entry.refs, logged.counter);
  });
}

/**
 * Gives back `count` references that a dead isolate held on `path` (its
 * ledger said so; see settle.ts), removing the file if they were the last.
 */
export function dropOwed(path: string, count: number): void {
  let refs = held.get(path)?.refs;
  if (!refs) {
    const addon = native();
    if (!addon) return;
    try {
      // The whole file, so V8 counts its size and collects this mapping
      // (which keeps the file's pages) as soon as memory matters.
      refs = new Int32Array(addon.openSegment(path, 0, false), 0, 1);
    } catch {
      return; // removed already
    }
  }
  dropReference(path, refs, null, count);
}

/** A mapped segment: `sab` holds the header and then `size` payload bytes. */
export class Segment {
  /** The whole mapping, header included. */
  readonly sab: SharedArrayBuffer;
  /** Payload bytes (after the header). */
  readonly size: number;
  /** The backing file, or null for a plain SharedArrayBuffer. */
  readonly path: string | null;
  /** The header's reference count. */
  readonly refs: Int32Array;
  /** Its name for lock records (see `Region.key`): the path, unique in the tree while the file lives. */
  readonly key: string | null;

  private constructor(sab: SharedArrayBuffer, size: number, path: string | null) {
    this.sab = sab;
    this.size = size;
    this.path = path;
    this.refs = new Int32Array(sab, 0, 1);
    this.key = path;
    byBuffer.set(sab, { segment: new WeakRef(this), size, path });
  }

  /** Offset of the payload inside `sab`. */
  get base(): number {
    return SEGMENT_HEADER;
  }

  /** A new zero-filled segment with `size` payload bytes. */
  static create(size: number): Segment {
    const total = SEGMENT_HEADER + Math.max(8, size);
    const addon = native();
    if (!addon) return new Segment(new SharedArrayBuffer(total), size, null);
    const dir = treeDir();
    if (!namePrefix) renamePrefix();
    for (let attempt = 1; ; attempt++) {
      const path = `${dir}/s${namePrefix}.${++counter}`;
      let sab: SharedArrayBuffer;
      try {
        sab = addon.openSegment(path, total, true);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt === 5) throw err;
        renamePrefix();
        continue;
      }
      const seg = new Segment(sab, size, path);
      Atomics.store(seg.refs, 0, 1);
      seg.track();
      noteTaken(nameOf(path), false);
      return seg;
    }
  }

  /** Maps the segment a handle names (taking over the handle's reference). */
  static attach(handle: SegmentHandle): Segment {
    if (handle.sab) return new Segment(handle.sab, handle.size, null);
    if (!handle.path) throw new TypeError('segment handle without path or buffer');
    const cached = mapped.get(handle.path)?.deref();
    if (cached?.keepsSurplus()) {
      // A pool unit's argument: the surplus reference stays with the mapping,
      // logged as taken over by that unit (ledger.ts `takingOverUnit`).
      noteTaken(nameOf(handle.path), true);
      return cached;
    }
    if (cached) {
      // This isolate already holds a reference; the in-flight one is surplus.
      const refs = cached.refs;
      noteDroppingThen(nameOf(handle.path), true, (counter) => dropReference(handle.path!, refs, counter));
      return cached;
    }
    const addon = native();
    if (!addon) throw new NativeUnavailableError(nativeMissingHint());
    let sab: SharedArrayBuffer;
    try {
      sab = addon.openSegment(handle.path, 0, false);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new FileNotFoundError(
          `shared segment ${handle.path} no longer exists: every holder released it (or its process tree ended) ` +
            `before this process attached; keep the sender's object alive until the receiver has it`,
        );
      }
      throw err;
    }
    const seg = new Segment(sab, handle.size, handle.path);
    seg.track();
    noteTaken(nameOf(handle.path), true);
    return seg;
  }

  /**
   * A handle for another isolate. Each call accounts one reference in flight,
   * which the receiver's `attach` takes over: call it once per transfer.
   */
  toHandle(): SegmentHandle {
    if (!this.path) return { size: this.size, sab: this.sab };
    Atomics.add(this.refs, 0, 1);
    noteInFlight(this);
    return { size: this.size, path: this.path };
  }

  /**
   * Gives back the references in flight that `collectHandles` listed, when
   * their handles will never be attached (the transfer failed).
   */
  static abandonAll(refs: readonly InFlight[]): void {
    for (const ref of refs) ref.abandon();
  }

  /** @internal The name a ledger records for a reference on this segment. */
  get ledgerName(): string | null {
    return this.path && nameOf(this.path);
  }

  /** @internal Gives back a reference in flight whose handle will never be attached. */
  abandon(): void {
    if (this.path) dropReference(this.path, this.refs);
  }

  /**
   * The segment whose mapping `buffer` is, or undefined if it is not one (a
   * view of shared memory travels as its segment's handle plus where it
   * looks). A view can outlive the objects that held the Segment; then the
   * mapping gets a Segment anew, with a reference of its own.
   * @throws FileNotFoundError when every holder has released that segment since.
   */
  static of(buffer: SharedArrayBuffer): Segment | undefined {
    const known = byBuffer.get(buffer);
    if (!known) return undefined;
    const live = known.segment.deref();
    if (live) return live;
    if (known.path) {
      // Only while someone still holds it: at 0 the file is gone or going.
      const refs = new Int32Array(buffer, 0, 1);
      let n = Atomics.load(refs, 0);
      while (n > 0) {
        const was = Atomics.compareExchange(refs, 0, n, n + 1);
        if (was === n) break;
        n = was;
      }
      if (n <= 0) {
        throw new FileNotFoundError(
          `the shared segment ${known.path} under this view was released by every holder ` +
            `(the shared object it came from was garbage-collected); keep that object alive while its views travel`,
        );
      }
    }
    const seg = new Segment(buffer, known.size, known.path);
    seg.track();
    return seg;
  }

  /** What its collection gives back (null: not tracked). */
  private hold: Hold | null = null;

  private track(): void {
    if (!this.path) return;
    mapped.set(this.path, new WeakRef(this));
    const entry = held.get(this.path);
    if (entry) entry.count++;
    else held.set(this.path, { refs: this.refs, count: 1 });
    this.hold = { path: this.path, refs: 1 };
    collector.register(this, this.hold);
    installExitHook();
  }

  /**
   * Takes a surplus reference in flight on as its own, given back with this
   * mapping (its collection, or the exit), when a pool unit's arguments are
   * being decoded in an isolate that logs them; false otherwise.
   */
  private keepsSurplus(): boolean {
    const entry = this.path && held.get(this.path);
    if (!entry || !this.hold || !takingOverUnit()) return false;
    // Only the running unit's marks matter to the pool (its worker dying in
    // it): those kept for the units before go back now, so a mapping that
    // lives long does not count (and log) one more reference per task.
    const unit = unitTakingOver();
    if (keptFor !== unit) {
      // In batches: one ledger write for many, not one per unit.
      if (kept.length >= KEPT_BATCH) giveBackKept();
      keptFor = unit;
    }
    this.hold.refs++;
    entry.count++;
    kept.push(this.hold);
    return true;
  }
}
