/**
 * The receiving half of the wire format (see encode.ts): find the handle
 * markers in a cloned value and revive them as live shared objects.
 *
 * Kept apart from `encode` so a child that receives no shared object never
 * loads the shared-object classes at all (a faster start): this module and
 * what it imports are part of every child's bootstrap.
 */
import { SerializationError } from '../errors.js';
import { EVERY_KIND, MARKER, allowsKind, isRegistered, reviveShared, type HandleKinds, type SharedHandle } from './shared.js';
import { isLeaf } from './leaf.js';
import { pathOf } from './path.js';
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

/**
 * Whether `value` holds a shared-object marker of a kind no loaded module
 * has registered yet (so the package must be loaded before `decode`).
 * Handles are looked into too: a kind's handle may carry another's.
 */
export function hasUnknownKind(value: unknown): boolean {
  let found = false;
  Walk.run(
    value,
    'args',
    {
      enter(v, walk) {
        if (typeof v !== 'object' || v === null || isLeaf(v)) return v;
        if (isMarker(v) && !isRegistered((v[MARKER] as { kind?: unknown } | null)?.kind)) {
          found = true;
          walk.stop();
          return v;
        }
        return DESCEND;
      },
    },
    false,
  );
  return found;
}

/** How a refused handle is named and explained in the error. */
export interface Refusal {
  /** How the value is named in the path, e.g. `obj`. */
  readonly root: string;
  /** Why the receiver takes no such handle, and what to do instead. */
  readonly why: string;
}

/**
 * Revives, in place, the handle markers that `encode` left in a (cloned) value.
 *
 * `kinds` says which handles may be revived (see `HandleKinds` in
 * shared.ts): with anything but `EVERY_KIND`, the whole value is looked
 * through first, and a handle of another kind rejects it before anything
 * is revived (nothing mapped, compiled or imported).
 * @throws SerializationError naming the path and kind of a refused handle.
 */
export function decode(value: unknown, kinds: HandleKinds, refusal?: Refusal): unknown {
  if (kinds !== EVERY_KIND) refuseOtherKinds(value, kinds, refusal);
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

/** Throws at the first handle whose kind `kinds` does not allow. */
function refuseOtherKinds(value: unknown, kinds: ReadonlySet<string>, refusal: Refusal | undefined): void {
  Walk.run(
    value,
    refusal?.root ?? 'value',
    {
      enter(v, walk) {
        if (typeof v !== 'object' || v === null || isLeaf(v)) return v;
        if (!isMarker(v)) return DESCEND;
        const handle: unknown = v[MARKER];
        const kind = typeof handle === 'object' && handle !== null ? (handle as { kind?: unknown }).kind : undefined;
        if (allowsKind(kinds, kind)) return v;
        const named = typeof kind === 'string' ? `'${kind.slice(0, 40)}'` : 'no kind';
        throw new SerializationError(
          `${pathOf(walk)} is a shared-object handle (${named}), refused (nothing in the value was revived)` +
            (refusal ? `: ${refusal.why}` : ''),
        );
      },
    },
    false,
  );
}
