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
import { isLeaf } from '../../serialize/leaf.js';
import { DESCEND, Walk } from '../../serialize/walk.js';

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
 * The keys of a dict: Map semantics for primitives (`1` and `'1'`
 * differ), and an object key found by its content (an array `[1, 2]` finds
 * the entry stored under an equal array, as a tuple key does in Python):
 * such a key stands in the Map as a box, one per content, made when an
 * entry is stored under it and dropped with its entry. A proxy cannot be a
 * key.
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

function contentOf(key: unknown): string | null {
  if (typeof key !== 'object' || key === null) return null;
  Walk.run(
    key,
    'key',
    {
      enter(value) {
        if (value instanceof Ref) throw new TypeError('a proxy cannot be (or be inside) a dict key; use its data, or a name for it');
        return typeof value === 'object' && value !== null && !isLeaf(value) ? DESCEND : value;
      },
    },
    false,
  );
  return Buffer.from(v8().serialize(key)).toString('latin1');
}
