/**
 * The server's `list`: a JavaScript array with Python's list methods
 * (negative indices, `IndexError`, `ValueError` for a missing item).
 */
import { describe } from '../../describe.js';
import { IndexError, ValueError } from '../../errors.js';
import { Managed, resolveIndex, type Caller } from './base.js';
import { compare, equal } from './compare.js';

export class ManagedList extends Managed {
  static override readonly exposed: readonly string[] = [
    'get', 'set', 'delete', 'len', 'append', 'extend', 'insert', 'pop', 'remove', 'index', 'count', 'includes',
    'reverse', 'sort', 'slice', 'toArray', 'clear',
  ];

  readonly items: unknown[];

  constructor(initial?: unknown) {
    super();
    this.items = initial === undefined || initial === null ? [] : itemsOf(initial, 'list()');
  }

  get(_: Caller, index: unknown): unknown {
    return this.items[this.#at(index, 'get')];
  }

  set(_: Caller, index: unknown, value: unknown): void {
    this.items[this.#at(index, 'set')] = value;
  }

  /** Python's `del a[i]`. */
  delete(_: Caller, index: unknown): void {
    this.items.splice(this.#at(index, 'delete'), 1);
  }

  len(): number {
    return this.items.length;
  }

  append(_: Caller, value: unknown): void {
    this.items.push(value);
  }

  extend(_: Caller, values: unknown): void {
    const more = itemsOf(values, 'extend()');
    for (const v of more) this.items.push(v);
  }

  insert(_: Caller, index: unknown, value: unknown): void {
    if (typeof index !== 'number' || !Number.isInteger(index)) throw new ValueError(`insert() index must be an integer, not ${describe(index)}`);
    const n = this.items.length;
    const i = index < 0 ? Math.max(0, index + n) : Math.min(index, n);
    this.items.splice(i, 0, value);
  }

  pop(_: Caller, index: unknown = -1): unknown {
    if (this.items.length === 0) throw new IndexError('pop from empty list');
    return this.items.splice(this.#at(index, 'pop'), 1)[0];
  }

  remove(_: Caller, value: unknown): void {
    const i = this.items.findIndex((v) => equal(v, value));
    if (i < 0) throw new ValueError(`list.remove(x): x not in list (x = ${describe(value)})`);
    this.items.splice(i, 1);
  }

  index(_: Caller, value: unknown, start: unknown = 0, stop: unknown = this.items.length): number {
    const [from, to] = bounds(start, stop, this.items.length, 'index()');
    for (let i = from; i < to; i++) if (equal(this.items[i], value)) return i;
    throw new ValueError(`list.index(x): x not in list (x = ${describe(value)})`);
  }

  count(_: Caller, value: unknown): number {
    let n = 0;
    for (const v of this.items) if (equal(v, value)) n++;
    return n;
  }

  /** Python's `x in a`. */
  includes(_: Caller, value: unknown): boolean {
    return this.items.some((v) => equal(v, value));
  }

  reverse(): void {
    this.items.reverse();
  }

  sort(_: Caller, options?: unknown): void {
    if (options !== undefined && (typeof options !== 'object' || options === null)) {
      throw new ValueError(`sort() takes an options object { reverse? }, not ${describe(options)}`);
    }
    const reverse = (options as { reverse?: unknown } | undefined)?.reverse === true;
    // Sorted apart: an error (items Python cannot order) leaves the list as it was, as Python's does.
    const sorted = [...this.items].sort(reverse ? (a, b) => compare(b, a) : compare);
    sorted.forEach((v, i) => (this.items[i] = v));
  }

  /** Python's `a[start:end]`: negative bounds count from the end, out-of-range ones are clamped. */
  slice(_: Caller, start: unknown = 0, end: unknown = this.items.length): unknown[] {
    const [from, to] = bounds(start, end, this.items.length, 'slice()');
    return this.items.slice(from, to);
  }

  toArray(): unknown[] {
    return this.items;
  }

  clear(): void {
    this.items.length = 0;
  }

  #at(index: unknown, call: string): number {
    const i = resolveIndex(index, this.items.length, `${call}()`);
    if (i === null) throw new IndexError(`list index ${String(index)} out of range (length ${this.items.length})`);
    return i;
  }
}

/** Array items of an iterable value (an array, a Set, a Map's entries). */
function itemsOf(value: unknown, call: string): unknown[] {
  if (Array.isArray(value)) return [...value];
  if (value instanceof Set || value instanceof Map) return [...value];
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<unknown>);
  throw new ValueError(`${call} takes an array (or a Set), not ${describe(value)}`);
}

/** Python's slice bounds, clamped to [0, length]. */
function bounds(start: unknown, end: unknown, length: number, call: string): [number, number] {
  const clamp = (v: unknown, name: string): number => {
    if (v === undefined || v === null) return name === 'start' ? 0 : length;
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new ValueError(`${call} ${name} must be an integer, not ${describe(v)}`);
    return v < 0 ? Math.max(0, v + length) : Math.min(v, length);
  };
  return [clamp(start, 'start'), clamp(end, 'end')];
}
