/**
 * Arenas: many small shared objects in one file and one mapping.
 *
 * A segment per object costs a file, a mapping and a 4 KiB page; Linux caps
 * mappings per process (`vm.max_map_count`, 65,530 by default), and Node
 * dies near that cap. An arena is one segment file cut into equal blocks
 * (one size class per arena: 32, 64, 128 or 256 bytes); a Value and its lock
 * take one 32-byte block. An isolate maps an arena once, however many of its
 * blocks it holds or receives.
 *
 * File layout (byte offsets; int32 words):
 *   0   refs       the arena's references: one per block in use, plus one
 *                  while its owner may still allocate from it (the owner's
 *                  hold). Whoever drops it to 0 removes the file, exactly as
 *                  for a segment (segment.ts), so ledgers, settlement and the
 *                  tree's reaper treat an arena like any segment.
 *   4   freeHead   offset of the newest freed block not yet taken back by
 *                  the owner; 0 when none. A stack: any process pushes (a
 *                  compare-exchange loop), only the owner pops, and it takes
 *                  the whole stack at once with an exchange — with a single
 *                  popper no ABA can occur.
 *   8   blockSize  bytes per block (header included).
 *   12  blockCount blocks in the file.
 *   64  the blocks.
 * Block layout:
 *   0   refs       references on this block in all isolates plus handles in
 *                  flight; 0 while free. The one who drops it to 0 frees it.
 *   4   gen        bumped by each allocation of the block. Handles and ledger
 *                  names carry it, so a reference can only ever be dropped
 *                  on the allocation it was taken on: a stale drop (which a
 *                  bug elsewhere could cause) is refused instead of freeing
 *                  a block another object lives in.
 *   8   payload    zeroed at allocation. While free, its first word links
 *                  the free stack.
 *
 * Only the creating isolate (the owner) allocates from an arena. Blocks
 * freed anywhere go on its free stack, and the owner reuses them before
 * carving new ones. An empty arena (refs down to the owner's hold) is given
 * back by its owner unless it is the one it currently carves from: at
 * once when the owner frees its last block, and by a sweep every few
 * seconds (an unref'd timer, while the owner has more than one arena) when
 * other processes freed the last ones. One whose owner has exited goes when
 * its last block is freed.
 *
 * Reference protocol per block: that of segments (create: 1; a handle in
 * flight: +1, taken over by the receiver's attach; collection of the object
 * or exit: -1), logged in a child's ledger under `<arena>@<offset>`, so a
 * killed child's blocks are given back by its parent (settle.ts). Names
 * carry the block's generation: `<arena>@<offset>#<gen>`.
 */
import { unlinkSync } from 'node:fs';
import { FileNotFoundError, NativeUnavailableError, StateError } from '../errors.js';
import { ExitStage, atExit } from '../finalize.js';
import { native, nativeMissingHint } from '../native/addon.js';
import { flushLedger, keepsLedger, noteDropping, noteDroppingThen, noteTaken } from './ledger.js';
import { dropCounted, type DropCounter } from './drop-progress.js';
import { noteInFlight } from './segment.js';
import { treeDir } from './tree.js';

const REFS = 0;
const FREE_HEAD = 1;
const BLOCK_SIZE = 2;
const BLOCK_COUNT = 3;
/** Bytes before the first block: a cache line of header. */
const ARENA_HEADER = 64;
/** Bytes before a block's payload: its refs and gen words. */
const BLOCK_HEADER = 8;
/** Block sizes, one class per arena. */
const CLASSES = [32, 64, 128, 256] as const;

/** The largest payload an arena block holds; larger objects get a segment of their own. */
export const SMALLEST_ARENA_PAYLOAD = CLASSES[CLASSES.length - 1] - BLOCK_HEADER;

/** A class's first arena is small (a process with one Value commits 64 KiB), later ones double up to 1 MiB. */
const FIRST_ARENA_BYTES = 64 * 1024;
const MAX_ARENA_BYTES = 1024 * 1024;

/** What travels to name a block. */
export interface BlockHandle {
  /** Payload size in bytes. */
  readonly size: number;
  /** The arena file. */
  readonly path: string;
  /** The block's offset in the arena. */
  readonly block: number;
  /** The allocation it names (the block's `gen`): checked on attach. */
  readonly gen: number;
}

/** One arena as this isolate maps it. */
class ArenaMap {
  /** Number naming this map in finalizer tokens (`token()`); unique in this isolate. */
  readonly id: number;
  /** The arena file. */
  readonly path: string;
  /** Its name in the tree directory, which ledgers record. */
  readonly name: string;
  readonly sab: SharedArrayBuffer;
  /** The whole file as int32 words. */
  readonly words: Int32Array;
  readonly blockSize: number;
  readonly blockCount: number;
  /** References this isolate holds on each block (by index); their sum is `heldHere`. */
  readonly held: Uint32Array;
  heldHere = 0;
  /** True while this isolate owns the arena and holds its hold: it alone allocates from it. */
  owned = false;
  /** Owner only: blocks never handed out start at this index. */
  carved = 0;
  /** Owner only: the free blocks it took off the shared stack, linked the same way; 0 when none. */
  localFree = 0;

  constructor(path: string, sab: SharedArrayBuffer) {
    this.id = ++mapCounter;
    this.path = path;
    this.name = path.slice(path.lastIndexOf('/') + 1);
    this.sab = sab;
    this.words = new Int32Array(sab);
    this.blockSize = this.words[BLOCK_SIZE]!;
    this.blockCount = this.words[BLOCK_COUNT]!;
    this.held = new Uint32Array(this.blockCount);
  }

  indexOf(offset: number): number {
    return (offset - ARENA_HEADER) / this.blockSize;
  }

  /** A block's name in ledgers: arena, offset and generation. */
  blockName(offset: number): string {
    return `${this.name}@${offset}#${this.genOf(offset)}`;
  }

  /** The block's current generation (stable while a reference on it is held). */
  genOf(offset: number): number {
    return Atomics.load(this.words, (offset >> 2) + 1);
  }
}

let mapCounter = 0;

/**
 * Arenas this isolate maps, by path, held weakly: a mapping goes when no
 * block of it is held here and this isolate does not own it.
 */
const byPath = new Map<string, WeakRef<ArenaMap>>();
/** Maps with blocks held here or owned here, by id: kept alive, and given back at exit. */
const active = new Map<number, ArenaMap>();
/** Owner side: this isolate's arenas per size class, the one it carves from last. */
const owned: ArenaMap[][] = CLASSES.map(() => []);

/** Finalizer tokens are numbers (no object per block): map id × 2^21 + block offset (< 1 MiB). */
const OFFSET_BITS = 2 ** 21;
function token(map: ArenaMap, offset: number): number {
  return map.id * OFFSET_BITS + offset;
}

const collector = new FinalizationRegistry<number>((t) => {
  const map = active.get(Math.floor(t / OFFSET_BITS));
  if (map) releaseHere(map, t % OFFSET_BITS);
});

/**
 * A block of an arena, as one object holds it. Implements `Region`
 * (region.ts): the bytes are `sab[base, base + size)`.
 */
export class Block {
  /** @internal */ readonly map: ArenaMap;
  /** The block's offset in the arena. */
  readonly offset: number;
  readonly size: number;

  private constructor(map: ArenaMap, offset: number, size: number) {
    this.map = map;
    this.offset = offset;
    this.size = size;
    map.held[map.indexOf(offset)]!++;
    if (map.heldHere++ === 0) active.set(map.id, map);
    collector.register(this, token(map, offset));
    installExitHook();
  }

  get sab(): SharedArrayBuffer {
    return this.map.sab;
  }

  get base(): number {
    return this.offset + BLOCK_HEADER;
  }

  /** The block's name and generation: unique in the tree while this object's allocation lives. */
  get key(): string {
    return `${this.map.path}@${this.offset}#${this.map.genOf(this.offset)}`;
  }

  /** Accounts one reference in flight, which the receiver's `attach` takes over. */
  toHandle(): BlockHandle {
    Atomics.add(this.map.words, this.offset >> 2, 1);
    noteInFlight(this);
    return { size: this.size, path: this.map.path, block: this.offset, gen: this.map.genOf(this.offset) };
  }

  /** @internal The name a ledger records for a reference on this block. */
  get ledgerName(): string {
    return this.map.blockName(this.offset);
  }

  /** @internal Gives back a reference in flight whose handle will never be attached. */
  abandon(): void {
    dropBlockReferences(this.map.words, this.offset, this.map.path, 1);
  }

  /** A zero-filled block with room for `size` payload bytes, from an arena this isolate owns. */
  static allocate(size: number): Block {
    if (exited) throw new StateError('shared objects cannot be made once this process or thread is exiting (its shared memory has been given back)');
    const cls = CLASSES.findIndex((c) => c - BLOCK_HEADER >= size);
    if (cls < 0) throw new RangeError(`an arena block holds at most ${SMALLEST_ARENA_PAYLOAD} bytes, not ${size}`);
    let map: ArenaMap | undefined;
    let offset = 0;
    const mine = owned[cls]!;
    const current = mine[mine.length - 1];
    if (current) offset = takeFree(current);
    if (offset !== 0) map = current;
    else {
      // The current arena is full: reuse another's freed blocks, else carve a new arena.
      for (let i = mine.length - 2; i >= 0 && offset === 0; i--) {
        offset = takeFree(mine[i]!);
        if (offset !== 0) {
          map = mine[i]!;
          // It becomes the one to carve from.
          mine.splice(i, 1);
          mine.push(map);
        }
      }
      if (offset === 0) {
        map = createArena(CLASSES[cls]!, mine.length);
        mine.push(map);
        offset = takeFree(map);
        if (mine.length >= 2) startSweeping();
      }
    }
    const words = map!.words;
    const at = offset >> 2;
    Atomics.add(words, at + 1, 1);
    words.fill(0, at + 2, at + map!.blockSize / 4);
    Atomics.store(words, at, 1);
    Atomics.add(words, REFS, 1);
    noteTaken(map!.blockName(offset), false);
    return new Block(map!, offset, size);
  }

  /** Maps the arena a handle names (once per isolate) and takes over the handle's reference. */
  static attach(handle: BlockHandle): Block {
    const map = mapArena(handle.path);
    const gen = map.genOf(handle.block);
    if (gen !== handle.gen) {
      // The handle's reference should have kept this allocation alive: a bug, never silently another object.
      throw new StateError(
        `shared block ${map.blockName(handle.block)} is not the allocation this handle names (generation ${handle.gen}); ` +
          'its reference was dropped too early. Please report this with how the object travelled',
      );
    }
    noteTaken(map.blockName(handle.block), true);
    return new Block(map, handle.block, handle.size);
  }
}

/** The next free block of an arena this isolate owns, or 0 when it is full. */
function takeFree(map: ArenaMap): number {
  const words = map.words;
  let offset = map.localFree;
  if (offset === 0) offset = Atomics.exchange(words, FREE_HEAD, 0);
  if (offset !== 0) {
    map.localFree = Atomics.load(words, (offset >> 2) + 2);
    return offset;
  }
  if (map.carved < map.blockCount) return ARENA_HEADER + map.carved++ * map.blockSize;
  return 0;
}

let counter = 0;
let namePrefix = '';

function createArena(blockSize: number, ordinal: number): ArenaMap {
  const addon = native();
  if (!addon) throw new NativeUnavailableError(nativeMissingHint());
  const bytes = Math.min(MAX_ARENA_BYTES, FIRST_ARENA_BYTES * 2 ** Math.min(ordinal, 16));
  const dir = treeDir();
  if (!namePrefix) namePrefix = Math.floor(Math.random() * 36 ** 8).toString(36);
  for (let attempt = 1; ; attempt++) {
    const path = `${dir}/a${namePrefix}.${++counter}`;
    let sab: SharedArrayBuffer;
    try {
      sab = addon.openSegment(path, bytes, true);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt === 5) throw err;
      namePrefix = Math.floor(Math.random() * 36 ** 8).toString(36);
      continue;
    }
    const words = new Int32Array(sab);
    words[BLOCK_SIZE] = blockSize;
    words[BLOCK_COUNT] = Math.floor((bytes - ARENA_HEADER) / blockSize);
    Atomics.store(words, REFS, 1);
    const map = new ArenaMap(path, sab);
    map.owned = true;
    byPath.set(path, new WeakRef(map));
    active.set(map.id, map);
    installExitHook();
    noteTaken(map.name, false);
    return map;
  }
}

/** This isolate's mapping of the arena at `path`, made if needed. */
function mapArena(path: string): ArenaMap {
  const known = byPath.get(path)?.deref();
  if (known) return known;
  const addon = native();
  if (!addon) throw new NativeUnavailableError(nativeMissingHint());
  let sab: SharedArrayBuffer;
  try {
    sab = addon.openSegment(path, 0, false);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FileNotFoundError(
        `shared arena ${path} no longer exists: every holder released its objects (or its process tree ended) ` +
          `before this process attached; keep the sender's object alive until the receiver has it`,
      );
    }
    throw err;
  }
  const map = new ArenaMap(path, sab);
  byPath.set(path, new WeakRef(map));
  return map;
}

/** Gives back one reference this isolate held on a block (its object was collected). */
function releaseHere(map: ArenaMap, offset: number): void {
  map.held[map.indexOf(offset)]!--;
  if (--map.heldHere === 0 && !map.owned) forget(map);
  noteDroppingThen(map.blockName(offset), false, (counter) => {
    dropBlockReferences(map.words, offset, map.path, 1, undefined, counter);
    if (map.owned) returnIfEmpty(map);
  });
}

/** This isolate neither holds blocks of `map` nor owns it: let the mapping go with its last Block. */
function forget(map: ArenaMap): void {
  active.delete(map.id);
  if (byPath.get(map.path)?.deref() === map) byPath.delete(map.path);
}

/**
 * The owner gives back an arena nothing is allocated from any more, unless
 * it is the one it carves from (so a loop that makes and drops one Value
 * does not create and remove a file each time).
 */
function returnIfEmpty(map: ArenaMap): void {
  const mine = owned[CLASSES.indexOf(map.blockSize as (typeof CLASSES)[number])]!;
  if (mine[mine.length - 1] === map || Atomics.load(map.words, REFS) !== 1) return;
  // Only the owner ever raises an arena's refs, so at 1 (its hold alone) nothing can take a block meanwhile.
  mine.splice(mine.indexOf(map), 1);
  map.owned = false;
  if (map.heldHere === 0) forget(map);
  if (owned.every((arenas) => arenas.length < 2)) stopSweeping();
  noteDroppingThen(map.name, false, (counter) => dropArenaReferences(map.words, map.path, 1, counter));
}

/** How often the owner looks for arenas that other processes emptied. */
const SWEEP_MS = 5_000;
let sweeper: ReturnType<typeof setInterval> | null = null;

/** Sweeps while some size class has more than one arena: the newest of a class is never given back, so one needs no sweep. */
function startSweeping(): void {
  if (sweeper) return;
  sweeper = setInterval(sweep, SWEEP_MS);
  // Never what keeps a process alive.
  sweeper.unref();
}

function stopSweeping(): void {
  if (!sweeper) return;
  clearInterval(sweeper);
  sweeper = null;
}

/** Gives back every owned arena, other than the newest of its class, that holds no block any more. @internal exported for tests */
export function sweep(): void {
  for (const mine of owned) for (const map of [...mine]) returnIfEmpty(map);
}

/**
 * Drops `count` references on the block at `offset` of the arena whose
 * words are `words`, if it still is allocation `gen` (when given); the one
 * that reaches 0 frees the block: onto the free stack, and its reference on
 * the arena dropped. A drop of more references than the block has, or on
 * another allocation, is refused and reported: freeing a block an object
 * still lives in would hand its memory to a second object.
 */
export function dropBlockReferences(
  words: Int32Array,
  offset: number,
  path: string,
  count: number,
  gen?: number,
  counter: DropCounter = null,
): void {
  const at = offset >> 2;
  if (gen === undefined) {
    // The caller holds these references: the allocation cannot change under it.
    // Logged ones are counted with the drop (drop-progress.ts).
    const refs = dropCounted(words, at, count, counter);
    if (refs < count) return refuse(path, offset, `it has ${refs} reference(s), not ${count}`);
    if (refs === count) freeBlock(words, offset, path);
    return;
  }
  // Someone else's references (a dead child's): refs and gen change together
  // in one 64-bit compare-exchange (refs is the low word), so the drop lands
  // on allocation `gen` or not at all.
  const pair = new BigInt64Array(words.buffer, words.byteOffset + offset, 1);
  let seen = Atomics.load(pair, 0);
  for (;;) {
    const refs = Number(BigInt.asIntN(32, seen));
    if (Number(BigInt.asIntN(32, seen >> 32n)) !== gen) return refuse(path, offset, 'it was freed and made anew since');
    if (refs < count) return refuse(path, offset, `it has ${refs} reference(s), not ${count}`);
    const next = (seen & ~0xffffffffn) | BigInt(refs - count);
    const was = Atomics.compareExchange(pair, 0, seen, next);
    if (was === seen) {
      if (refs === count) freeBlock(words, offset, path);
      return;
    }
    seen = was;
  }
}

/** Puts a block whose last reference was just dropped on its arena's free stack, and drops its reference on the arena. */
function freeBlock(words: Int32Array, offset: number, path: string): void {
  const link = (offset >> 2) + 2;
  for (let head = Atomics.load(words, FREE_HEAD); ; ) {
    Atomics.store(words, link, head);
    const seen = Atomics.compareExchange(words, FREE_HEAD, head, offset);
    if (seen === head) break;
    head = seen;
  }
  dropArenaReferences(words, path, 1);
}

let refusals = 0;
function refuse(path: string, offset: number, why: string): void {
  // Reported, not thrown: this runs in finalizers and at exit. Once per isolate is enough to find the bug.
  if (refusals++ === 0) {
    process.emitWarning(`multiprocessing-ts: refused to drop a reference on shared block ${path}@${offset}: ${why} (a reference was dropped twice somewhere; the block is kept)`);
  }
}

/** Drops `count` references on an arena (never below 0; a logged one counted on `counter`); the last removes its file. */
function dropArenaReferences(words: Int32Array, path: string, count: number, counter: DropCounter = null): void {
  if (dropCounted(words, REFS, count, counter) === count) {
    try {
      unlinkSync(path);
    } catch {
      // Already gone: the reaper removed it.
    }
  }
}

/**
 * Gives back `count` references a dead isolate held (its ledger said so;
 * see settle.ts): on block `offset` of the arena at `path`, or on the arena
 * itself (its owner's hold) when `offset` is null. `mapped` keeps the
 * arenas a settlement mapped, so each is mapped once.
 */
export function dropOwedInArena(
  path: string,
  offset: number | null,
  gen: number | null,
  count: number,
  mapped: Map<string, Int32Array | null> = new Map(),
): void {
  let words = mapped.get(path) ?? byPath.get(path)?.deref()?.words;
  if (words === undefined && !mapped.has(path)) {
    const addon = native();
    try {
      words = addon ? new Int32Array(addon.openSegment(path, 0, false)) : undefined;
    } catch {
      words = undefined; // removed already
    }
    // One mapping per arena for a whole settlement, however many of its blocks the ledger names.
    mapped.set(path, words ?? null);
  }
  if (!words) return;
  if (offset === null) dropArenaReferences(words, path, count);
  else dropBlockReferences(words, offset, path, count, gen ?? undefined);
}

/** Whether a ledger name is a block's (`<arena>@<offset>#<gen>`) or an arena's; and which. */
export function parseArenaName(name: string): { arena: string; offset: number | null; gen: number | null } | null {
  if (name[0] !== 'a') return null;
  const m = /^([^@]+)@(\d+)#(\d+)$/.exec(name);
  if (m) return { arena: m[1]!, offset: Number(m[2]), gen: Number(m[3]) };
  return name.includes('@') ? null : { arena: name, offset: null, gen: null };
}

/** Set when this isolate's exit gave its shared memory back: nothing is allocated after that. */
let exited = false;
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Registered after the segments' hook of the same stage when an arena is
  // made first; order between the two does not matter (independent files).
  atExit(ExitStage.Segments, () => {
    // Drops still waiting for their ledger line first: one may give an arena
    // back, which must happen before the lists below are taken.
    flushLedger();
    exited = true;
    stopSweeping();
    for (const mine of owned) mine.length = 0;
    const maps = [...active.values()];
    active.clear();
    // One ledger write for all of them, before any is dropped (names only
    // where there is a ledger: a main process with a million Values exits fast).
    let counter: DropCounter = null;
    if (keepsLedger()) {
      const names: string[] = [];
      for (const map of maps) {
        const held = map.held;
        for (let i = 0; i < held.length; i++) {
          for (let n = held[i]!; n > 0; n--) names.push(map.blockName(ARENA_HEADER + i * map.blockSize));
        }
        if (map.owned) names.push(map.name);
      }
      const logged = noteDropping(names);
      if (!logged) return;
      counter = logged.counter;
    }
    // In the order of the names logged, each counting itself (drop-progress.ts).
    for (const map of maps) {
      const held = map.held;
      for (let i = 0; i < held.length; i++) {
        const n = held[i]!;
        if (n > 0) {
          held[i] = 0;
          dropBlockReferences(map.words, ARENA_HEADER + i * map.blockSize, map.path, n, undefined, counter);
        }
      }
      map.heldHere = 0;
      if (map.owned) {
        map.owned = false;
        dropArenaReferences(map.words, map.path, 1, counter);
      }
    }
  });
}
