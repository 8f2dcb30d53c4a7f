/**
 * Equality and order of stored values, as a managed list's `index`,
 * `remove`, `count`, `includes` and `sort` and a managed dict's keys need
 * them.
 *
 * Values arrive as copies, so identity (`===`) would never find an array
 * that was appended: equality is structural, as Python's `==` is for lists
 * and tuples (`records.index(['Sam', 10])` finds the record). A stored proxy
 * (`Ref`) equals another only when both name the same object.
 */
import { isDeepStrictEqual } from 'node:util';
import { v8 } from '../../builtins.js';
import { describe } from '../../describe.js';
import { Ref } from '../object-table.js';

/** Structural equality (primitives as `Object.is`, but `0` equals `-0`). */
export function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Ref || b instanceof Ref) return a instanceof Ref && b instanceof Ref && a.entry === b.entry;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return Number.isNaN(a) && Number.isNaN(b);
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => equal(x, b[i]));
  if (Array.isArray(b)) return false;
  if (Object.getPrototypeOf(a) === Object.prototype && Object.getPrototypeOf(b) === Object.prototype) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && equal((a as any)[k], (b as any)[k]));
  }
  return isDeepStrictEqual(a, b);
}

/**
 * Python's `<` for what `sort()` meets: numbers and bigints by value,
 * strings by code unit, booleans as 0/1, arrays element by element (as
 * tuples); anything else, or two kinds that Python does not order, is a
 * TypeError (Python's too).
 */
export function compare(a: unknown, b: unknown): number {
  const na = numeric(a);
  const nb = numeric(b);
  if (na !== null && nb !== null) return na < nb ? -1 : na > nb ? 1 : 0;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (Array.isArray(a) && Array.isArray(b)) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      if (equal(a[i], b[i])) continue;
      return compare(a[i], b[i]);
    }
    return a.length - b.length;
  }
  throw new TypeError(`'<' is not supported between ${describe(a)} and ${describe(b)}; sort() orders numbers, strings and arrays of them`);
}

function numeric(v: unknown): number | bigint | null {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return null;
}

/**
 * The keys of a dict: Map semantics for primitives (`1` and `'1'` differ,
 * `0` and `-0` are one key, `NaN` finds `NaN`), and an object key found by
 * its content, as `equal` compares (an array `[1, 2]` finds the entry stored
 * under an equal array, as a tuple key does in Python; a plain object
 * whatever the order of its properties; a Map or Set whatever the order of
 * its entries; `[0]` and `[-0]` are one key, as `0` and `-0` are). Such a
 * key stands in the Map as a box, one per content, made when an entry is
 * stored under it and dropped with its entry. A proxy cannot be a key.
 */
export class KeyBoxes {
  readonly #boxes = new Map<string, object>();

  /** The Map key for `key` to store under (a box is made for a new object key). */
  forWrite(key: unknown): unknown {
    const text = contentOf(key);
    if (text === null) return key;
    let box = this.#boxes.get(text);
    if (!box) {
      box = Object.freeze({ text });
      this.#boxes.set(text, box);
    }
    return box;
  }

  /** The Map key for `key` to look up; a `NONE` for an object key nothing is stored under. */
  forRead(key: unknown): unknown {
    const text = contentOf(key);
    return text === null ? key : (this.#boxes.get(text) ?? NONE);
  }

  /** The entry under `mapKey` was removed. */
  removed(mapKey: unknown): void {
    if (typeof mapKey === 'object' && mapKey !== null) this.#boxes.delete((mapKey as { text: string }).text);
  }

  clear(): void {
    this.#boxes.clear();
  }
}

/** A Map key under which nothing is ever stored. */
const NONE = Object.freeze({});

/**
 * The most values one object key may hold. A key is read whole, and one
 * that holds the same object in many places is read in each of them: a
 * few bytes on the wire could otherwise cost the server minutes.
 */
export const MAX_KEY_VALUES = 100_000;

/** An object key's content as a string (equal keys give the same one), or null for a primitive key (the Map's own semantics). */
function contentOf(key: unknown): string | null {
  if (typeof key !== 'object' || key === null) return null;
  return new KeyText().of(key);
}

/**
 * Writes a value's content so that values `equal` calls equal write the
 * same text and others do not: each part says what it is and where it ends
 * (a string is its length and its code units), a plain object's properties
 * are sorted, a Map's entries and a Set's items are sorted by their text,
 * and a value inside itself is the distance to the ancestor it repeats.
 */
class KeyText {
  /** The objects being written, outermost first (a cycle points back into them). */
  readonly #path: object[] = [];
  #count = 0;

  of(value: unknown): string {
    if (++this.#count > MAX_KEY_VALUES) {
      throw new RangeError(`a dict key holds more than ${MAX_KEY_VALUES} values; use a smaller key (e.g. a string naming what it stands for)`);
    }
    switch (typeof value) {
      case 'undefined':
        return 'u';
      case 'boolean':
        return value ? 't' : 'f';
      case 'number':
        // -0 as 0 (a Map's SameValueZero); String() tells every other number apart, NaN included.
        return `n${value === 0 ? 0 : value};`;
      case 'bigint':
        return `b${value};`;
      case 'string':
        return `s${value.length}:${value}`;
      case 'object':
        break;
      default:
        throw new TypeError(`a dict key cannot hold ${describe(value)}`);
    }
    if (value === null) return 'z';
    if (value instanceof Ref) throw new TypeError('a proxy cannot be (or be inside) a dict key; use its data, or a name for it');
    const up = this.#path.lastIndexOf(value);
    if (up >= 0) return `^${this.#path.length - up};`;
    this.#path.push(value);
    try {
      return this.#object(value);
    } finally {
      this.#path.pop();
    }
  }

  #object(value: object): string {
    if (Array.isArray(value)) {
      let text = `a${value.length}:`;
      for (let i = 0; i < value.length; i++) text += i in value ? this.of(value[i]) : 'h';
      return text;
    }
    if (value instanceof Map) {
      const entries = Array.from(value, ([k, v]) => this.of(k) + this.of(v)).sort();
      return `m${entries.length}:${entries.join('')}`;
    }
    if (value instanceof Set) {
      const items = Array.from(value, (v) => this.of(v)).sort();
      return `e${items.length}:${items.join('')}`;
    }
    if (value instanceof Date) return `d${value.getTime()};`;
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      const keys = Object.keys(value).sort();
      let text = `o${keys.length}:`;
      for (const k of keys) text += `${k.length}:${k}${this.of((value as Record<string, unknown>)[k])}`;
      return text;
    }
    // What else V8's deserializer makes (typed arrays, RegExps, Errors, boxed primitives…): its bytes.
    const bytes = Buffer.from(v8().serialize(value)).toString('latin1');
    return `x${bytes.length}:${bytes}`;
  }
}
