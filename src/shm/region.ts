/**
 * Regions: the shared bytes one shared object lives in, whatever holds them.
 *
 * A small object (a Value, a Lock) gets a block of an arena (arena.ts): many
 * objects share one file and one mapping, so a process can hold millions of
 * them. A large one (an Array) gets a segment of its own (segment.ts), whose
 * views can travel on their own. Both count references across processes
 * the same way and appear in the same ledgers; the objects above see only
 * this interface.
 */
import { native } from '../native/addon.js';
import { Block, SMALLEST_ARENA_PAYLOAD, type BlockHandle } from './arena.js';
import { Segment, type SegmentHandle } from './segment.js';

/** Where a shared object's bytes are, in this isolate. */
export interface Region {
  /** The mapping the bytes are in (shared with other regions for a block). */
  readonly sab: SharedArrayBuffer;
  /** Offset of the region's first byte inside `sab`. */
  readonly base: number;
  /** Bytes the region holds from `base`. */
  readonly size: number;
  /**
   * A name for this allocation, unique in the tree for as long as it lives
   * (a reused block gets a new one): what per-isolate records of a lock
   * word are keyed by. Null for a plain SharedArrayBuffer (no addon).
   */
  readonly key: string | null;
  /** A handle for another isolate; accounts one reference in flight (call once per transfer). */
  toHandle(): RegionHandle;
}

/** What travels to name a region. */
export type RegionHandle = SegmentHandle | BlockHandle;

/** Payloads up to this size live in an arena block. */
export const SMALL_REGION = SMALLEST_ARENA_PAYLOAD;

/** New zero-filled shared bytes: an arena block when small (and the addon is there), else a segment. */
export function allocateRegion(size: number): Region {
  if (size <= SMALL_REGION && native()) return Block.allocate(size);
  return Segment.create(size);
}

/** The region a handle names, in this isolate (taking over the handle's reference). */
export function attachRegion(handle: RegionHandle): Region {
  return 'block' in handle ? Block.attach(handle) : Segment.attach(handle);
}
