/**
 * Units (one apply, or one chunk of a map) and the parent's queue of those
 * not yet handed to a worker.
 */
import type { InFlight } from '../shm/segment.js';
import { Segment } from '../shm/segment.js';
import { Op } from './protocol.js';
import type { TaskFunction } from './functions.js';
import type { WorkerHandle } from './worker-handle.js';

/** What a unit belongs to: a call that collects its units' outcomes. */
export interface Call {
  /** For messages: `pool.map(square)`. */
  readonly label: string;
  /** Per-task time limit in ms, or undefined. */
  readonly timeout: number | undefined;
  /** Settled calls ignore further outcomes; their remaining units are dropped. */
  readonly settled: boolean;
  /**
   * Its results are wanted only all at once (a `map` without `onProgress`):
   * the pool may hand its units out in larger shares and hear of their
   * answers late (dispatcher.ts, lazy wakes).
   */
  readonly bulk?: boolean;
  unitDone(unit: Unit, value: unknown): void;
  unitFailed(unit: Unit, error: unknown): void;
}

export const enum UnitState {
  Queued = 0,
  /** In a worker's hands (its ring, or running). */
  Handed = 1,
  /** Answered, failed, or dropped. */
  Over = 2,
}

export interface Unit {
  readonly call: Call;
  readonly op: Op.Apply | Op.Map | Op.Star;
  readonly fn: TaskFunction;
  /** The packed args (Apply), items (Map) or tuples (Star): task-payload.ts. */
  readonly payload: unknown;
  /** Rough size in a batch. */
  readonly size: number;
  /** References in flight in the payload's handles: given back if it never reaches a worker (a moved unit hands them on). */
  refs: InFlight[];
  /**
   * Where each item's references end in `refs` (item k's are
   * `refs[refEnds[k - 1] ?? 0, refEnds[k])`); null for an apply, whose
   * arguments are its one item, and for a chunk without references.
   */
  readonly refEnds: readonly number[] | null;
  /** Index of its first item in the call (0 for an apply). */
  readonly index: number;
  /** Items in it (1 for an apply). */
  readonly count: number;
  /** When it was submitted (protocol.ts `monoNow`). */
  readonly submitted: number;
  state: UnitState;
  /** Its number in its worker's sequence, while handed. */
  seq: number;
  /** The worker holding it, while handed. */
  worker: WorkerHandle | null;
  /**
   * The number of the batch that carries it to its worker, while handed
   * (0 otherwise): the balancer leaves it where it is while that batch is
   * being read (protocol.ts BATCH_READING).
   */
  batch: number;
}

/** Gives back the references a unit's payload holds (it will never be attached). */
export function releaseUnit(unit: Unit): void {
  if (unit.refs.length > 0) {
    Segment.abandonAll(unit.refs);
    unit.refs.length = 0;
  }
}

/**
 * After a unit's error answer: gives back the references of the items its
 * worker never began to decode (`decoded` of them it did: worker-loop.ts
 * `decodeBegun`, which none after the answer ever is). Those of the items
 * it began are its worker's.
 */
export function releaseUndecoded(unit: Unit, decoded: number): void {
  if (unit.refs.length === 0 || !(decoded >= 0) || decoded >= unit.count) return;
  const from = decoded === 0 ? 0 : unit.refEnds?.[decoded - 1];
  // A chunk with references and no ends: not made by packChunks; left counted rather than guessed.
  if (from === undefined) return;
  Segment.abandonAll(unit.refs.slice(from));
  unit.refs.length = 0;
}

/** How a unit is named in errors: `pool.map(square) item 12` or `items 8–15`. */
export function unitLabel(unit: Unit, item = -1): string {
  if (unit.op === Op.Apply) return unit.call.label;
  if (item >= 0 && unit.count > 1) return `${unit.call.label} item ${unit.index + item} (of the chunk of items ${unit.index}–${unit.index + unit.count - 1})`;
  return unit.count === 1 ? `${unit.call.label} item ${unit.index}` : `${unit.call.label} items ${unit.index}–${unit.index + unit.count - 1}`;
}

/**
 * FIFO of queued units. A unit dropped while queued stays in the array
 * until it reaches the head (dropping is O(1)); `size` counts live ones.
 */
export class TaskQueue {
  private items: Unit[] = [];
  private head = 0;
  size = 0;

  push(unit: Unit): void {
    this.items.push(unit);
    this.size++;
  }

  /** Puts units back at the head, in their order (a dead worker's unstarted units go first). */
  pushFront(units: Unit[]): void {
    if (units.length === 0) return;
    this.items = units.concat(this.items.slice(this.head));
    this.head = 0;
    this.size += units.length;
  }

  /** The next live unit, left in place, or undefined (dropped ones before it leave the queue). */
  peek(): Unit | undefined {
    while (this.head < this.items.length) {
      const unit = this.items[this.head]!;
      if (unit.state === UnitState.Queued) return unit;
      this.advance();
    }
    return undefined;
  }

  /** The next live unit, or undefined. */
  shift(): Unit | undefined {
    while (this.head < this.items.length) {
      const unit = this.items[this.head]!;
      this.advance();
      if (unit.state === UnitState.Queued) {
        this.size--;
        return unit;
      }
    }
    return undefined;
  }

  /** Moves the head past its unit, letting go of it; compacts once the dead head is most of the array. */
  private advance(): void {
    this.items[this.head++] = undefined as unknown as Unit;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** Marks a queued unit dropped (it is skipped when it reaches the head). */
  drop(unit: Unit): void {
    if (unit.state !== UnitState.Queued) return;
    unit.state = UnitState.Over;
    this.size--;
    releaseUnit(unit);
  }

  /** Every live unit, emptying the queue. */
  drain(): Unit[] {
    const live = this.items.slice(this.head).filter((u) => u.state === UnitState.Queued);
    this.items = [];
    this.head = 0;
    this.size = 0;
    return live;
  }
}
