/**
 * The server's `dict` (Map semantics for keys: `1` and `'1'` differ, `0`
 * and `-0` are one; an object key finds an entry stored under an equal one,
 * as a tuple does in Python: compare.ts `KeyBoxes`) and `Namespace` (string
 * names).
 */
import { describe } from '../../describe.js';
import { KeyError, ValueError } from '../../errors.js';
import { Managed, type Caller } from './base.js';
import { KeyBoxes } from './compare.js';

interface Slot {
  readonly key: unknown;
  value: unknown;
}

/** Marks "no default given" (a default may be undefined). */
const NO_DEFAULT = Symbol('no default');

export class ManagedDict extends Managed {
  static override readonly exposed: readonly string[] = [
    'get', 'set', 'has', 'delete', 'keys', 'values', 'items', 'len', 'update', 'pop', 'popitem', 'setdefault', 'clear',
    'copy', 'toObject',
  ];

  readonly #slots = new Map<unknown, Slot>();
  readonly #boxes = new KeyBoxes();

  constructor(initial?: unknown) {
    super();
    if (initial !== undefined && initial !== null) this.#update(initial, 'dict()');
  }

  /** The value under `key`, or `fallback` (undefined by default) when there is none. */
  get(_: Caller, key: unknown, fallback?: unknown): unknown {
    const slot = this.#slots.get(this.#boxes.forRead(key));
    return slot ? slot.value : fallback;
  }

  set(_: Caller, key: unknown, value: unknown): void {
    this.#set(key, value);
  }

  has(_: Caller, key: unknown): boolean {
    return this.#slots.has(this.#boxes.forRead(key));
  }

  /** Removes `key`; whether it was there (Map's `delete`). */
  delete(_: Caller, key: unknown): boolean {
    return this.#remove(this.#boxes.forRead(key)) !== null;
  }

  keys(): unknown[] {
    return Array.from(this.#slots.values(), (s) => s.key);
  }

  values(): unknown[] {
    return Array.from(this.#slots.values(), (s) => s.value);
  }

  items(): Array<[unknown, unknown]> {
    return Array.from(this.#slots.values(), (s) => [s.key, s.value]);
  }

  len(): number {
    return this.#slots.size;
  }

  /** Adds the entries of an object, a Map, or an array of `[key, value]` pairs. */
  update(_: Caller, entries: unknown): void {
    this.#update(entries, 'update()');
  }

  /** Removes `key` and returns its value, or `fallback`; `KeyError` without one. */
  pop(_: Caller, key: unknown, ...fallback: unknown[]): unknown {
    const slot = this.#remove(this.#boxes.forRead(key));
    if (slot) return slot.value;
    if (fallback.length > 0) return fallback[0];
    throw new KeyError(`pop(${describe(key)}): no such key`);
  }

  /** Removes and returns the last entry as `[key, value]` (Python's LIFO order). */
  popitem(): [unknown, unknown] {
    let last: unknown = NO_DEFAULT;
    for (const mapKey of this.#slots.keys()) last = mapKey;
    if (last === NO_DEFAULT) throw new KeyError('popitem(): the dict is empty');
    const slot = this.#remove(last)!;
    return [slot.key, slot.value];
  }

  /** The value under `key`; when there is none, stores `fallback` (undefined by default) and returns it. */
  setdefault(_: Caller, key: unknown, fallback?: unknown): unknown {
    const slot = this.#slots.get(this.#boxes.forRead(key));
    if (slot) return slot.value;
    this.#set(key, fallback);
    return fallback;
  }

  clear(): void {
    this.#slots.clear();
    this.#boxes.clear();
  }

  /** The entries as a Map (Python's `d.copy()`; keys keep their types). */
  copy(): Map<unknown, unknown> {
    return new Map(Array.from(this.#slots.values(), (s) => [s.key, s.value]));
  }

  /** The entries as a plain object; keys become strings as `Object.fromEntries` makes them. */
  toObject(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const { key, value } of this.#slots.values()) {
      Object.defineProperty(out, String(key), { value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  #set(key: unknown, value: unknown): void {
    const mapKey = this.#boxes.forWrite(key);
    const slot = this.#slots.get(mapKey);
    if (slot) slot.value = value;
    else this.#slots.set(mapKey, { key, value });
  }

  #remove(mapKey: unknown): Slot | null {
    const slot = this.#slots.get(mapKey);
    if (!slot) return null;
    this.#slots.delete(mapKey);
    this.#boxes.removed(mapKey);
    return slot;
  }

  #update(entries: unknown, call: string): void {
    if (entries instanceof Map) {
      for (const [k, v] of entries) this.#set(k, v);
    } else if (Array.isArray(entries)) {
      entries.forEach((pair, i) => {
        if (!Array.isArray(pair) || pair.length !== 2) {
          throw new ValueError(`${call}: item ${i} of the array is ${describe(pair)}, not a [key, value] pair`);
        }
        this.#set(pair[0], pair[1]);
      });
    } else if (typeof entries === 'object' && entries !== null && !ArrayBuffer.isView(entries)) {
      for (const k of Object.keys(entries)) this.#set(k, (entries as Record<string, unknown>)[k]);
    } else {
      throw new ValueError(`${call} takes an object, a Map or an array of [key, value] pairs, not ${describe(entries)}`);
    }
  }
}

/** The server's `Namespace`: named values (Python sets them as attributes). */
export class ManagedNamespace extends Managed {
  static override readonly exposed: readonly string[] = ['get', 'set', 'has', 'delete', 'toObject'];

  readonly #values = new Map<string, unknown>();

  constructor(initial?: unknown) {
    super();
    if (initial === undefined || initial === null) return;
    if (typeof initial !== 'object' || Array.isArray(initial)) {
      throw new ValueError(`Namespace() takes an object of initial values, not ${describe(initial)}`);
    }
    for (const k of Object.keys(initial)) this.#values.set(k, (initial as Record<string, unknown>)[k]);
  }

  /** The value of `name`, or undefined when it is not set. */
  get(_: Caller, name: unknown): unknown {
    return this.#values.get(nameOf(name, 'get'));
  }

  set(_: Caller, name: unknown, value: unknown): void {
    this.#values.set(nameOf(name, 'set'), value);
  }

  has(_: Caller, name: unknown): boolean {
    return this.#values.has(nameOf(name, 'has'));
  }

  delete(_: Caller, name: unknown): boolean {
    return this.#values.delete(nameOf(name, 'delete'));
  }

  toObject(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, value] of this.#values) Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
    return out;
  }
}

function nameOf(name: unknown, call: string): string {
  if (typeof name !== 'string') throw new ValueError(`Namespace ${call}() takes a name (a string), not ${describe(name)}`);
  return name;
}
