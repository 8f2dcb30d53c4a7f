/**
 * The one traversal of an object graph that every pass of the wire format
 * uses (encode, decode, hasShared, and locating what a clone refused).
 *
 * It knows the containers (arrays, Maps with their keys, Sets, and any other
 * object's own enumerable properties, which is what structured clone copies),
 * visits each reachable value once (cycles and shared references keep their
 * shape), and keeps the trail to the value being visited (path.ts turns it
 * into text for messages). What happens at each value is the visitor's
 * business.
 *
 * Part of every child's bootstrap (decode uses it): keep it small and free
 * of imports.
 */

/** What `Visitor.enter` returns to have a container's children walked. */
export const DESCEND: unique symbol = Symbol('descend');

/**
 * What a walk does at each value. It sees objects, functions and symbols;
 * other primitives stand for themselves and are not shown to it (the cost
 * of a walk is then per object, not per number).
 */
export interface Visitor {
  /** What stands for `value` in the result; `DESCEND` for a container whose children are to be walked. */
  enter(value: unknown, walk: Walk): unknown;
  /** Called after a container's children were walked (post-order). */
  leave?(value: object, walk: Walk): void;
}

/** How a step of the trail was taken (path.ts spells each). */
export const enum StepKind {
  Index,
  Key,
  MapKey,
  MapValue,
  SetItem,
}

/** One walk over one value. */
export class Walk {
  /** From the root to the value being visited, three entries a step: how, key, position. */
  readonly trail: unknown[] = [];
  private readonly seen = new Map<object, unknown>();
  private stopped = false;

  /**
   * @param copy build new containers from the children's results (encode), or
   *   replace changed children in place (decode; a visitor that changes
   *   nothing only looks).
   */
  private constructor(
    readonly root: string,
    private readonly visitor: Visitor,
    private readonly copy: boolean,
  ) {}

  /**
   * Walks `value` and returns what it becomes.
   * @param root how the value is named in paths, e.g. `args`.
   */
  static run(value: unknown, root: string, visitor: Visitor, copy: boolean): unknown {
    return new Walk(root, visitor, copy).visit(value);
  }

  /** Ends the walk early (a search that has its answer). */
  stop(): void {
    this.stopped = true;
  }

  private visit(value: unknown): unknown {
    const isObject = typeof value === 'object' && value !== null;
    if (isObject && this.seen.has(value)) return this.seen.get(value);
    const result = this.visitor.enter(value, this);
    if (result !== DESCEND) {
      if (isObject) this.seen.set(value, result);
      return result;
    }
    const out = Array.isArray(value)
      ? this.array(value)
      : value instanceof Map || value instanceof Set
        ? this.collection(value)
        : this.record(value as Record<string, unknown>);
    if (!this.stopped) this.visitor.leave?.(value as object, this);
    return out;
  }

  private step(kind: StepKind, key: unknown, position: number, value: unknown): unknown {
    if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol')) return value;
    this.trail.push(kind, key, position);
    // No try/finally: a throw ends the whole walk, and a visitor reads the
    // trail before it throws.
    const result = this.visit(value);
    this.trail.length -= 3;
    return result;
  }

  private array(array: unknown[]): unknown[] {
    const out = this.copy ? [] : array;
    this.seen.set(array, out);
    const length = array.length;
    for (let i = 0; i < length && !this.stopped; i++) {
      const item = array[i];
      // A hole: the array may be sparse (`new Array(2 ** 30)` is a few
      // bytes on the wire), so the rest goes by its own keys, not by index.
      if (item === undefined && !(i in array)) {
        this.holey(array, out, i);
        break;
      }
      const result = this.step(StepKind.Index, i, i, item);
      if (this.copy || result !== item) out[i] = result;
    }
    return out;
  }

  /** The items of a holey array from index `from` on; a copy keeps the holes (as structured clone does) and the length. */
  private holey(array: unknown[], out: unknown[], from: number): void {
    const length = array.length;
    for (const key of Object.keys(array)) {
      if (this.stopped) break;
      // Index keys come first, in order; the first other key ends them.
      const i = Number(key);
      if (!(i < length) || String(i) !== key) break;
      if (i < from) continue;
      const item = array[i];
      const result = this.step(StepKind.Index, i, i, item);
      if (this.copy || result !== item) out[i] = result;
    }
    if (this.copy && !this.stopped) out.length = length;
  }

  /** A Map (keys are walked too) or a Set; rebuilt in order when anything changed. */
  private collection(source: Map<unknown, unknown> | Set<unknown>): object {
    const isMap = source instanceof Map;
    const out = this.copy ? (isMap ? new Map() : new Set()) : source;
    this.seen.set(source, out);
    const entries: Array<[unknown, unknown]> = [];
    let changed = this.copy;
    let i = 0;
    for (const [key, value] of source.entries()) {
      if (this.stopped) break;
      const k = this.step(isMap ? StepKind.MapKey : StepKind.SetItem, key, i, key);
      const v = isMap ? this.step(StepKind.MapValue, key, i, value) : k;
      entries.push([k, v]);
      changed ||= k !== key || v !== value;
      i++;
    }
    if (changed) {
      out.clear();
      for (const [k, v] of entries) isMap ? (out as Map<unknown, unknown>).set(k, v) : (out as Set<unknown>).add(k);
    }
    return out;
  }

  private record(record: Record<string, unknown>): object {
    const out: Record<string, unknown> = this.copy ? {} : record;
    this.seen.set(record, out);
    for (const key of Object.keys(record)) {
      if (this.stopped) break;
      const value = record[key];
      const result = this.step(StepKind.Key, key, 0, value);
      if (this.copy && key === '__proto__') {
        // Assigning it would set the copy's prototype instead.
        Object.defineProperty(out, key, { value: result, writable: true, enumerable: true, configurable: true });
      } else if (this.copy || result !== value) {
        out[key] = result;
      }
    }
    return out;
  }
}
