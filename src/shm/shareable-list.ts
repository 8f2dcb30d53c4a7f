/**
 * `ShareableList`: a fixed-length list of scalars in a SharedMemory block,
 * Python's `multiprocessing.shared_memory.ShareableList`.
 *
 * Block layout (little-endian):
 *   [0, 8)          int32 item count, int32 layout version
 *   [8, 8 + 16n)    one descriptor per item: uint32 data offset, uint32
 *                   capacity (bytes reserved, fixed at creation), uint8 tag,
 *                   3 bytes padding, uint32 byte length (strings and bytes)
 *   then the data:  8 bytes per number/boolean/null, the encoded length
 *                   rounded up to 8 for strings and bytes.
 * An item may change type, as in Python, as long as it fits its capacity.
 * Like Python's, the list is not synchronized: guard concurrent writers.
 */
import { ValueError, IndexError } from '../errors.js';
import { SHARED, registerShared, reviveShared, type SharedHandle } from '../serialize/shared.js';
import { SharedMemory } from './shared-memory.js';
import { describe } from '../describe.js';

/** What a ShareableList item can be. */
export type ShareableItem = number | boolean | string | Uint8Array | null;

const enum Tag {
  Null = 0,
  Int = 1,
  Float = 2,
  Bool = 3,
  Str = 4,
  Bytes = 5,
}

/** Options key (module-private) by which a revived list reuses the block its handle attached. */
const ATTACHED = Symbol('attached');

const HEADER = 8;
const DESCRIPTOR = 16;
const VERSION = 1;

const round8 = (n: number) => Math.max(8, (n + 7) & ~7);

function tagOf(value: unknown, where: string): Tag {
  if (value === null || value === undefined) return Tag.Null;
  if (typeof value === 'boolean') return Tag.Bool;
  if (typeof value === 'number') return Number.isInteger(value) ? Tag.Int : Tag.Float;
  if (typeof value === 'string') return Tag.Str;
  if (value instanceof Uint8Array) return Tag.Bytes;
  throw new ValueError(`${where} is ${describe(value)}; a ShareableList holds numbers, booleans, strings, Uint8Array bytes and null`);
}

function encoded(value: ShareableItem): Uint8Array | null {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return value;
  return null;
}

interface ShareableListHandle extends SharedHandle {
  readonly shm: SharedHandle;
}

/**
 * A fixed-length list in shared memory, attachable by name.
 * @example
 * ```ts
 * const sl = new mp.ShareableList([1, 'two', 3.5, null]);
 * const same = new mp.ShareableList(null, { name: sl.shm.name });
 * same.set(0, 10); sl.get(0); // 10
 * ```
 */
export class ShareableList {
  /** The block underneath. */
  readonly shm: SharedMemory;
  private readonly data: DataView;

  constructor(sequence: Iterable<ShareableItem> | null, options: { name?: string; [ATTACHED]?: SharedMemory } = {}) {
    if (sequence === null || sequence === undefined) {
      if (options.name === undefined) throw new ValueError('ShareableList(null) needs { name } of an existing list to attach');
      this.shm = options[ATTACHED] ?? new SharedMemory({ name: options.name });
      this.data = new DataView(this.shm.buf.buffer, 0, this.shm.size);
      if (this.data.getInt32(4, true) !== VERSION) {
        throw new ValueError(`shared memory '${options.name}' does not hold a ShareableList`);
      }
      return;
    }
    const items = [...sequence];
    const capacities = items.map((item, i) => {
      tagOf(item, `sequence[${i}]`);
      return round8(encoded(item)?.length ?? 8);
    });
    const dataStart = HEADER + DESCRIPTOR * items.length;
    const size = dataStart + capacities.reduce((a, b) => a + b, 0);
    this.shm = new SharedMemory({ create: true, size, ...(options.name !== undefined ? { name: options.name } : {}) });
    this.data = new DataView(this.shm.buf.buffer, 0, size);
    this.data.setInt32(0, items.length, true);
    this.data.setInt32(4, VERSION, true);
    let offset = dataStart;
    items.forEach((item, i) => {
      const d = HEADER + DESCRIPTOR * i;
      this.data.setUint32(d, offset, true);
      this.data.setUint32(d + 4, capacities[i]!, true);
      offset += capacities[i]!;
      this.write(i, item);
    });
  }

  /** The number of items (fixed). */
  get length(): number {
    return this.data.getInt32(0, true);
  }

  /** Python's struct format of the items, e.g. `q8sd`: `q` integer, `d` float, `?` boolean, `Ns` text/bytes, `x` null. */
  get format(): string {
    let out = '';
    for (let i = 0; i < this.length; i++) {
      const d = HEADER + DESCRIPTOR * i;
      const tag = this.data.getUint8(d + 8) as Tag;
      out += ['x', 'q', 'd', '?', 's', 's'][tag] === 's' ? `${this.data.getUint32(d + 4, true)}s` : ['x', 'q', 'd', '?'][tag];
    }
    return out;
  }

  private slot(i: number): number {
    const n = this.length;
    if (!Number.isInteger(i)) throw new IndexError(`index ${String(i)} is not an integer`);
    const j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) throw new IndexError(`index ${i} is out of range for a ShareableList of length ${n}`);
    return j;
  }

  /** The item at `i` (negative counts from the end). */
  get(i: number): ShareableItem {
    const d = HEADER + DESCRIPTOR * this.slot(i);
    const offset = this.data.getUint32(d, true);
    switch (this.data.getUint8(d + 8) as Tag) {
      case Tag.Null:
        return null;
      case Tag.Bool:
        return this.data.getUint8(offset) !== 0;
      case Tag.Int:
      case Tag.Float:
        return this.data.getFloat64(offset, true);
      case Tag.Str:
      case Tag.Bytes: {
        const len = this.data.getUint32(d + 12, true);
        const bytes = new Uint8Array(this.data.buffer, offset, len);
        return this.data.getUint8(d + 8) === Tag.Str ? Buffer.from(bytes).toString('utf8') : bytes.slice();
      }
    }
  }

  /** Replaces the item at `i`; text and bytes must fit the room the list was made with. */
  set(i: number, value: ShareableItem): void {
    this.write(this.slot(i), value);
  }

  private write(j: number, value: ShareableItem): void {
    const d = HEADER + DESCRIPTOR * j;
    const tag = tagOf(value, `value for index ${j}`);
    const offset = this.data.getUint32(d, true);
    const capacity = this.data.getUint32(d + 4, true);
    const bytes = encoded(value);
    if (bytes) {
      if (bytes.length > capacity) {
        throw new ValueError(
          `${tag === Tag.Str ? 'text' : 'bytes'} of ${bytes.length} bytes exceeds the ${capacity} bytes of item ${j}; ` +
            `a ShareableList item cannot grow past its original size`,
        );
      }
      new Uint8Array(this.data.buffer, offset, capacity).set(bytes);
      this.data.setUint32(d + 12, bytes.length, true);
    } else if (tag === Tag.Bool) {
      this.data.setUint8(offset, value ? 1 : 0);
    } else if (tag !== Tag.Null) {
      this.data.setFloat64(offset, value as number, true);
    }
    this.data.setUint8(d + 8, tag);
  }

  /** How many items equal `value`. */
  count(value: ShareableItem): number {
    let n = 0;
    for (const item of this) if (same(item, value)) n++;
    return n;
  }

  /** The first index of `value`; a ValueError when absent. */
  index(value: ShareableItem): number {
    let i = 0;
    for (const item of this) {
      if (same(item, value)) return i;
      i++;
    }
    throw new ValueError(`${describe(value)} is not in the ShareableList`);
  }

  *[Symbol.iterator](): IterableIterator<ShareableItem> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }

  /** A private copy of the items. */
  toArray(): ShareableItem[] {
    return [...this];
  }

  toString(): string {
    return `ShareableList(${JSON.stringify(this.toArray())}, name='${this.shm.name}')`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** JSON shows the items. */
  toJSON(): ShareableItem[] {
    return this.toArray();
  }

  /** @internal */
  [SHARED](): ShareableListHandle {
    return { kind: 'ShareableList', shm: this.shm[SHARED]() };
  }
}

function same(a: ShareableItem, b: ShareableItem): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.compare(a, b) === 0;
  return a === b;
}

registerShared('ShareableList', (h) => {
  const shm = reviveShared((h as ShareableListHandle).shm) as SharedMemory;
  return new ShareableList(null, { name: shm.name, [ATTACHED]: shm });
});
