/**
 * `ShareableList`: a fixed-length list of scalars in a SharedMemory block,
 * Python's `multiprocessing.shared_memory.ShareableList`, in Python's own
 * block layout so either side can create a list and the other attach it.
 *
 * Layout of Python 3.9–3.13 (all native byte order; n items):
 *   [0, 8)                      int64 n
 *   [8, 8 + 8(n+1))             int64 offsets of the items from the data
 *                               start, the first 0, the last the data's size
 *   data at 8(n+2)              8 bytes per number, boolean or null; a
 *                               string or bytes item 8·(⌊len/8⌋+1) bytes
 *   formats after the data      8 bytes per item: its struct format, NUL-padded
 *                               ('q', 'd', 'xxxxxxx?', 'xxxxxx?x', 'Ns')
 *   codes after the formats     1 int8 per item: 0 number/boolean, 1 str,
 *                               2 bytes, 3 None
 * Python 3.8 wrote the n item *sizes* instead of the n+1 offsets (data at
 * 8(n+1)); a list made by 3.8 is recognised on attach (its first size is
 * never 0, the later layout's first offset always is) and used as it is.
 *
 * No length is stored for text and bytes: the slot is NUL-padded and a
 * reader strips trailing NULs, as Python does, so an item ending in NUL
 * loses those NULs. An item may change type, as in Python, as long as it
 * fits its capacity. Like Python's, the list is not synchronized: guard
 * concurrent writers.
 */
import { endianness } from 'node:os';
import { inspect } from 'node:util';
import { ValueError, IndexError } from '../errors.js';
import { SHARED, registerShared, reviveShared, type SharedHandle } from '../serialize/shared.js';
import { SharedMemory } from './shared-memory.js';
import { describe } from '../describe.js';

/** What a ShareableList item can be: a bigint is Python's int beyond 2^53. */
export type ShareableItem = number | bigint | boolean | string | Uint8Array | null;

/** Options key (module-private) by which a revived list reuses the block its handle attached. */
const ATTACHED = Symbol('attached');

/** Python packs with struct's native mode: the machine's byte order. */
const LE = endianness() === 'LE';
const WORD = 8;
/** Python's struct format of each kind of item, as stored in its 8-byte format field. */
const FORMAT = { int: 'q', float: 'd', bool: 'xxxxxxx?', none: 'xxxxxx?x' } as const;
/** Python's back-transform codes: how the unpacked value becomes the item. */
const enum Code {
  Plain = 0,
  Str = 1,
  Bytes = 2,
  None = 3,
}
/** A format field holds 8 characters, so 'Ns' has at most 7 digits: 9999992 is the largest multiple of 8. */
const MAX_TEXT = 9_999_991;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Python's room for text or bytes: the next multiple of 8 strictly above the length. */
const capacityFor = (length: number) => WORD * (Math.floor(length / WORD) + 1);

type Packed =
  | { kind: 'int'; value: bigint }
  | { kind: 'float'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'none' }
  | { kind: 'str' | 'bytes'; bytes: Uint8Array };

function pack(value: unknown, where: string): Packed {
  if (value === null || value === undefined) return { kind: 'none' };
  if (typeof value === 'boolean') return { kind: 'bool', value };
  if (typeof value === 'number') {
    // Only a safe integer is surely an int (and reads back equal); -0, NaN
    // and integers past 2^53 (already rounded) go as Python floats.
    return Number.isSafeInteger(value) && !Object.is(value, -0) ? { kind: 'int', value: BigInt(value) } : { kind: 'float', value };
  }
  if (typeof value === 'bigint') {
    if (value < INT64_MIN || value > INT64_MAX) {
      throw new ValueError(`${where} is ${describe(value)}, outside Python's 'q' (signed 64-bit) range of a ShareableList integer; store it as a string`);
    }
    return { kind: 'int', value };
  }
  const kind = typeof value === 'string' ? 'str' : value instanceof Uint8Array ? 'bytes' : undefined;
  if (kind === undefined) {
    throw new ValueError(`${where} is ${describe(value)}; a ShareableList holds numbers, bigints, booleans, strings, Uint8Array bytes and null`);
  }
  const bytes = kind === 'str' ? Buffer.from(value as string, 'utf8') : (value as Uint8Array);
  if (bytes.length > MAX_TEXT) {
    throw new ValueError(
      `${where} is ${bytes.length} bytes; a ShareableList item holds at most ${MAX_TEXT} (Python's format field '<N>s' has 8 characters): use a SharedMemory block for it`,
    );
  }
  return { kind, bytes };
}

/** Where an item lives: its data in the block and the room it has. */
interface Slot {
  readonly at: number;
  readonly capacity: number;
}

interface Layout {
  readonly slots: readonly Slot[];
  readonly formatsAt: number;
  readonly codesAt: number;
}

/** The block's size for these item capacities: header, data, formats, codes (Python's calcsize of them). */
function blockSize(capacities: readonly number[]): number {
  const n = capacities.length;
  return WORD * (n + 2) + capacities.reduce((a, b) => a + b, 0) + WORD * n + n;
}

function layoutOf(capacities: readonly number[], dataAt: number): Layout {
  let at = dataAt;
  const slots = capacities.map((capacity) => {
    const slot = { at, capacity };
    at += capacity;
    return slot;
  });
  return { slots, formatsAt: at, codesAt: at + WORD * capacities.length };
}

/** Reads an existing list's header, either Python's 3.9+ offsets or 3.8's sizes. */
function readLayout(view: DataView, name: string): Layout {
  const bad = (why: string) => new ValueError(`shared memory '${name}' does not hold a ShareableList (${why})`);
  const size = view.byteLength;
  const word = (at: number) => {
    if (at + WORD > size) throw bad(`its header runs past its ${size} bytes`);
    const v = view.getBigInt64(at, LE);
    if (v < 0n || v > BigInt(size)) throw bad(`a header word is ${v}`);
    return Number(v);
  };
  const n = word(0);
  // Bounds before reading n words: each item takes at least its header word,
  // 8 bytes of data, an 8-byte format and a code byte (3.8's header is a word shorter).
  if (17 * n + WORD > size) throw bad(`${n} items need more than its ${size} bytes`);
  // Python 3.8's empty list is its count alone.
  if (n === 0 && size < 2 * WORD) return layoutOf([], WORD);
  const words = Array.from({ length: n }, (_, i) => word(WORD * (i + 1)));
  let layout: Layout;
  if (n === 0 || words[0] === 0) {
    const offsets = [...words, word(WORD * (n + 1))];
    const capacities = offsets.slice(1).map((end, i) => end - offsets[i]!);
    if (capacities.some((c) => c < 0)) throw bad('its item offsets decrease');
    layout = layoutOf(capacities, WORD * (n + 2));
  } else {
    layout = layoutOf(words, WORD * (n + 1)); // Python 3.8: the words are sizes
  }
  if (layout.codesAt + n > size) throw bad(`${n} items need more than its ${size} bytes`);
  return layout;
}

interface ShareableListHandle extends SharedHandle {
  readonly shm: SharedHandle;
}

/**
 * A fixed-length list in shared memory, attachable by name, from this
 * package or from Python's `shared_memory.ShareableList(name=…)`.
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
  private readonly layout: Layout;

  constructor(sequence: Iterable<ShareableItem> | null, options: { name?: string; [ATTACHED]?: SharedMemory } = {}) {
    if (sequence === null || sequence === undefined) {
      if (options.name === undefined) throw new ValueError('ShareableList(null) needs { name } of an existing list to attach');
      this.shm = options[ATTACHED] ?? new SharedMemory({ name: options.name });
      this.data = new DataView(this.shm.buf.buffer, 0, this.shm.size);
      this.layout = readLayout(this.data, options.name);
      return;
    }
    const items = [...sequence].map((item, i) => pack(item, `sequence[${i}]`));
    const capacities = items.map((p) => ('bytes' in p ? capacityFor(p.bytes.length) : WORD));
    const size = blockSize(capacities);
    this.shm = new SharedMemory({ create: true, size, ...(options.name !== undefined ? { name: options.name } : {}) });
    this.data = new DataView(this.shm.buf.buffer, 0, size);
    this.layout = layoutOf(capacities, WORD * (items.length + 2));
    this.data.setBigInt64(0, BigInt(items.length), LE);
    let offset = 0;
    this.data.setBigInt64(WORD, 0n, LE);
    capacities.forEach((capacity, i) => {
      offset += capacity;
      this.data.setBigInt64(WORD * (i + 2), BigInt(offset), LE);
    });
    items.forEach((p, i) => this.write(i, p));
  }

  /** The number of items (fixed). */
  get length(): number {
    return this.layout.slots.length;
  }

  /**
   * Python's struct format of the items, exactly as Python's `.format`
   * reports it: `q` integer, `d` float, `xxxxxxx?` boolean, `xxxxxx?x` null,
   * `Ns` text or bytes with N its capacity.
   */
  get format(): string {
    let out = '';
    for (let i = 0; i < this.length; i++) out += this.formatOf(i);
    return out;
  }

  private formatOf(j: number): string {
    const field = new Uint8Array(this.data.buffer, this.layout.formatsAt + WORD * j, WORD);
    return Buffer.from(withoutTrailingNuls(field)).toString('latin1');
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
    const j = this.slot(i);
    const { at } = this.layout.slots[j]!;
    const code = this.data.getInt8(this.layout.codesAt + j);
    const format = this.formatOf(j);
    if (code === Code.None) return null;
    if (code === Code.Str || code === Code.Bytes) {
      const width = /^(\d+)s$/.exec(format);
      if (!width || at + Number(width[1]) > this.data.byteLength) throw this.unreadable(j, format, code);
      const bytes = withoutTrailingNuls(new Uint8Array(this.data.buffer, at, Number(width[1])));
      return code === Code.Str ? Buffer.from(bytes).toString('utf8') : bytes.slice();
    }
    if (code === Code.Plain) {
      if (format === FORMAT.int) {
        const v = this.data.getBigInt64(at, LE);
        return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      if (format === FORMAT.float) return this.data.getFloat64(at, LE);
      if (format === FORMAT.bool) return this.data.getUint8(at + 7) !== 0;
    }
    throw this.unreadable(j, format, code);
  }

  private unreadable(j: number, format: string, code: number): ValueError {
    return new ValueError(`item ${j} of ShareableList '${this.shm.name}' has format '${format}' and code ${code}, which no ShareableList writes`);
  }

  /** Replaces the item at `i`; text and bytes must fit the room the list was made with. */
  set(i: number, value: ShareableItem): void {
    const j = this.slot(i);
    this.write(j, pack(value, `the value for index ${j}`));
  }

  private write(j: number, p: Packed): void {
    const { at, capacity } = this.layout.slots[j]!;
    const bytes = new Uint8Array(this.data.buffer, at, capacity);
    let format: string;
    let code = Code.Plain;
    if (p.kind === 'str' || p.kind === 'bytes') {
      if (p.bytes.length > capacity) {
        throw new ValueError(
          `item ${j} holds ${capacity} bytes and the ${p.kind === 'str' ? 'string given is' : 'bytes given are'} ${p.bytes.length}` +
            `${p.kind === 'str' ? ' in UTF-8' : ''}; a ShareableList item cannot grow past its original size: ` +
            `create the list with a placeholder of at least ${p.bytes.length} bytes at index ${j}`,
        );
      }
      format = `${capacity}s`;
      code = p.kind === 'str' ? Code.Str : Code.Bytes;
    } else {
      format = FORMAT[p.kind];
      if (p.kind === 'none') code = Code.None;
    }
    // As Python: the format and code first, then the value. The format field
    // goes in one 8-byte store, and only when it changes: a reader in
    // another process never sees it half written (or blanked) by a write of
    // the same type.
    const packed = new Uint8Array(WORD);
    packed.set(Buffer.from(format, 'latin1'));
    const fieldWord = new BigInt64Array(this.data.buffer, this.layout.formatsAt + WORD * j, 1);
    const wanted = new BigInt64Array(packed.buffer)[0]!;
    if (Atomics.load(fieldWord, 0) !== wanted) Atomics.store(fieldWord, 0, wanted);
    this.data.setInt8(this.layout.codesAt + j, code);
    switch (p.kind) {
      case 'int':
        this.data.setBigInt64(at, p.value, LE);
        break;
      case 'float':
        this.data.setFloat64(at, p.value, LE);
        break;
      case 'bool':
        bytes.fill(0, 0, WORD);
        bytes[7] = p.value ? 1 : 0;
        break;
      case 'none':
        bytes.fill(0, 0, WORD);
        break;
      default:
        bytes.fill(0).set(p.bytes);
    }
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
    return `ShareableList(${inspect(this.toArray(), { breakLength: Infinity })}, name='${this.shm.name}')`;
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

/** Python's `rstrip(b'\x00')`: what a reader does to a NUL-padded field. */
function withoutTrailingNuls(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return bytes.subarray(0, end);
}

function same(a: ShareableItem, b: ShareableItem): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.compare(a, b) === 0;
  return a === b;
}

registerShared('ShareableList', (h) => {
  const shm = reviveShared((h as ShareableListHandle).shm) as SharedMemory;
  return new ShareableList(null, { name: shm.name, [ATTACHED]: shm });
});
