/**
 * The receiving half of the wire format (see encode.ts): find the handle
 * markers in a cloned value and revive them as live shared objects.
 *
 * Kept apart from `encode` so a child that receives no shared object never
 * loads the shared-object classes at all (a faster start).
 */
import { MARKER, reviveShared, type SharedHandle } from './shared.js';
import { isLeaf } from './leaf.js';

/** Whether `value` holds any shared-object marker (so the kinds must be loaded before `decode`). */
export function hasShared(value: unknown): boolean {
  const seen = new Set<object>();
  const visit = (v: unknown): boolean => {
    if (typeof v !== 'object' || v === null || seen.has(v) || isLeaf(v)) return false;
    seen.add(v);
    if (MARKER in v) return true;
    const children = v instanceof Map ? [...v.keys(), ...v.values()] : v instanceof Set ? [...v] : Object.values(v);
    return children.some(visit);
  };
  return visit(value);
}

/** Revives the handle markers that `encode` left in a (cloned) value. */
export function decode(value: unknown): unknown {
  return unwalk(value, new Map());
}

function unwalk(value: unknown, seen: Map<object, unknown>): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) return seen.get(value);
  if (Array.isArray(value)) {
    seen.set(value, value);
    for (let i = 0; i < value.length; i++) value[i] = unwalk(value[i], seen);
    return value;
  }
  if (value instanceof Map) {
    seen.set(value, value);
    const entries = [...value];
    value.clear();
    for (const [k, v] of entries) value.set(unwalk(k, seen), unwalk(v, seen));
    return value;
  }
  if (value instanceof Set) {
    seen.set(value, value);
    const items = [...value];
    value.clear();
    for (const v of items) value.add(unwalk(v, seen));
    return value;
  }
  if (isLeaf(value)) return value;
  const record = value as Record<string, unknown>;
  if (MARKER in record) {
    const revived = reviveShared(record[MARKER] as SharedHandle);
    seen.set(value, revived);
    return revived;
  }
  seen.set(value, value);
  for (const key of Object.keys(record)) record[key] = unwalk(record[key], seen);
  return value;
}
