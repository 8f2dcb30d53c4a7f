/**
 * The receiving half of the wire format (see encode.ts): find the handle
 * markers in a cloned value and revive them as live shared objects.
 *
 * Kept apart from `encode` so a child that receives no shared object never
 * loads the shared-object classes at all (a faster start): this module and
 * what it imports are part of every child's bootstrap.
 */
import { MARKER, reviveShared, type SharedHandle } from './shared.js';
import { isLeaf } from './leaf.js';
import { DESCEND, Walk } from './walk.js';

/** A marker `{ [MARKER]: handle }` left by `encode`. */
function isMarker(value: object): value is { [MARKER]: SharedHandle } {
  return Object.hasOwn(value, MARKER);
}

/** Whether `value` holds any shared-object marker (so the kinds must be loaded before `decode`). */
export function hasShared(value: unknown): boolean {
  let found = false;
  Walk.run(
    value,
    'args',
    {
      enter(v, walk) {
        if (typeof v !== 'object' || v === null || isLeaf(v)) return v;
        if (!isMarker(v)) return DESCEND;
        found = true;
        walk.stop();
        return v;
      },
    },
    false,
  );
  return found;
}

/** Revives, in place, the handle markers that `encode` left in a (cloned) value. */
export function decode(value: unknown): unknown {
  return Walk.run(
    value,
    'args',
    {
      enter(v) {
        if (typeof v !== 'object' || v === null || isLeaf(v)) return v;
        return isMarker(v) ? reviveShared(v[MARKER]) : DESCEND;
      },
    },
    false,
  );
}
