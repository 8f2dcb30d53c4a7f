/**
 * Preparing values to cross into another isolate.
 *
 * `encode` walks a value once: shared objects become handle markers, and
 * what structured clone would refuse (functions, symbols, weak collections,
 * promises) is refused here, with the path of the offending value. The result
 * is structured-cloneable; `decode` (decode.ts) walks it back and revives
 * the markers.
 */
import { v8 } from '../builtins.js';
import { SerializationError } from '../errors.js';
import { Segment, type SegmentHandle } from '../shm/segment.js';
import { MARKER, SHARED, isShareable } from './shared.js';
import { isLeaf } from './leaf.js';


const UNCLONEABLE: ReadonlyArray<[Function | undefined, string]> = [
  [WeakMap, 'a WeakMap'],
  [WeakSet, 'a WeakSet'],
  [globalThis.WeakRef, 'a WeakRef'],
  [Promise, 'a Promise (await it first)'],
];

/**
 * Replaces shared objects inside `value` by handle markers.
 * @param path how the value is named in error messages, e.g. `args`.
 * @throws SerializationError naming the path of a value that cannot travel.
 */
export function encode(value: unknown, path: string): unknown {
  const seen = new Map<object, unknown>();
  try {
    return walk(value, path, seen);
  } catch (err) {
    abandon([...seen.values()]);
    throw err;
  }
}

/**
 * Gives back the segment references that the handles inside an encoded value
 * hold, when that value will never reach a receiver (a failed transfer):
 * nothing is leaked by a refused `start()`.
 */
export function abandon(encoded: unknown): void {
  const visit = (v: unknown, seen: Set<object>): void => {
    if (typeof v !== 'object' || v === null || seen.has(v)) return;
    seen.add(v);
    if (typeof (v as SegmentHandle).path === 'string' && typeof (v as SegmentHandle).size === 'number') {
      Segment.abandon(v as SegmentHandle);
      return;
    }
    const children = v instanceof Map ? [...v.keys(), ...v.values()] : v instanceof Set ? [...v] : Object.values(v);
    for (const child of children) visit(child, seen);
  };
  visit(encoded, new Set());
}

function walk(value: unknown, path: string, seen: Map<object, unknown>): unknown {
  switch (typeof value) {
    case 'function':
      throw new SerializationError(
        `${path} is a function, which cannot be copied to another process; ` +
          `pass data, or a shared object, and give the child the function as its target`,
      );
    case 'symbol':
      throw new SerializationError(`${path} is a symbol, which cannot be copied to another process`);
    case 'object':
      break;
    default:
      return value;
  }
  if (value === null) return value;
  if (seen.has(value)) return seen.get(value);
  if (isShareable(value)) {
    const marker = { [MARKER]: value[SHARED]() };
    seen.set(value, marker);
    return marker;
  }
  for (const [ctor, what] of UNCLONEABLE) {
    if (ctor && value instanceof ctor) {
      throw new SerializationError(`${path} is ${what}, which cannot be copied to another process`);
    }
  }
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (let i = 0; i < value.length; i++) out.push(walk(value[i], `${path}[${i}]`, seen));
    return out;
  }
  if (value instanceof Map) {
    const out = new Map();
    seen.set(value, out);
    for (const [k, v] of value) {
      const keyName = typeof k === 'string' ? JSON.stringify(k) : String(k);
      out.set(walk(k, `${path} key ${keyName}`, seen), walk(v, `${path}.get(${keyName})`, seen));
    }
    return out;
  }
  if (value instanceof Set) {
    const out = new Set();
    seen.set(value, out);
    let i = 0;
    for (const v of value) out.add(walk(v, `${path} item ${i++}`, seen));
    return out;
  }
  if (isLeaf(value)) return value;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value; // class instances: clone decides
  const out: Record<string, unknown> = {};
  seen.set(value, out);
  for (const key of Object.keys(value)) {
    out[key] = walk((value as Record<string, unknown>)[key], `${path}.${key}`, seen);
  }
  return out;
}


/**
 * V8's serializer over an `encode`d value (for a process child). A value the
 * serializer still refuses is located and named, and the handles inside are
 * abandoned.
 */
export function toBytes(encoded: unknown, path: string): Uint8Array {
  try {
    return v8().serialize(encoded);
  } catch (err) {
    abandon(encoded);
    throw cloneError(encoded, path, err as Error);
  }
}

/** Turns a DataCloneError about `root` into a SerializationError with a path. */
export function cloneError(root: unknown, path: string, err: Error): SerializationError {
  const where = findUncloneable(root, path, new Set()) ?? path;
  return new SerializationError(`${where} cannot be copied to another process: ${err.message}`, { cause: err });
}

function findUncloneable(value: unknown, path: string, seen: Set<object>): string | null {
  if (typeof value !== 'object' || value === null || seen.has(value)) return null;
  seen.add(value);
  const children: Array<[unknown, string]> = [];
  if (Array.isArray(value)) value.forEach((v, i) => children.push([v, `${path}[${i}]`]));
  else if (value instanceof Map) for (const [k, v] of value) children.push([v, `${path}.get(${String(k)})`]);
  else if (value instanceof Set) for (const v of value) children.push([v, `${path} item`]);
  else if (!isLeaf(value)) for (const k of Object.keys(value)) children.push([(value as any)[k], `${path}.${k}`]);
  for (const [child, childPath] of children) {
    const found = findUncloneable(child, childPath, seen);
    if (found) return found;
  }
  try {
    v8().serialize(value);
    return null;
  } catch {
    const name = (value as object).constructor?.name;
    return name && name !== 'Object' ? `${path} (a ${name})` : path;
  }
}
