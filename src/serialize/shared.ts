/**
 * The contract between shared objects and the wire format.
 *
 * A shared object (Value, Array, Lock, SharedMemory…) is a place in shared
 * memory plus a class that reads it. To travel it turns into a plain handle
 * (`{ kind, … }`) through `[SHARED]()`; the receiver hands the handle to the
 * reviver registered for that kind, which maps the same memory and wraps it.
 */

/** The key of a marker object `{ [MARKER]: handle }` standing for a shared object on the wire. */
export const MARKER = '__multiprocessing_ts_shared__';

/** Method that turns a shared object into its handle. */
export const SHARED: unique symbol = Symbol.for('multiprocessing-ts.shared') as any;

/** A shared object's portable description. */
export interface SharedHandle {
  readonly kind: string;
}

/** Where a handle is going, for the kinds that care (a manager proxy carries its key only to a child being started). */
export interface ShareContext {
  /** The handle is part of a child's `args` (or a subclass's fields), not a message through a Queue, Pipe or socket. */
  readonly spawning?: boolean;
}

/** Anything that can travel live to another process. */
export interface Shareable {
  [SHARED](context?: ShareContext): SharedHandle;
}

type Reviver = (handle: SharedHandle) => unknown;

/**
 * Kinds by name. On `globalThis` under a registered symbol, like the runtime
 * state: a child's bootstrap is bundled apart from the package (one file
 * fewer to load before the target runs) and must see the registrations the
 * package makes when it loads.
 */
const REVIVERS = Symbol.for('multiprocessing-ts.revivers');
const revivers: Map<string, Reviver> = ((globalThis as { [REVIVERS]?: Map<string, Reviver> })[REVIVERS] ??= new Map());

/** Registers how to rebuild objects of `kind` on the receiving side. */
export function registerShared(kind: string, revive: Reviver): void {
  revivers.set(kind, revive);
}

/** Rebuilds a shared object from its handle. */
export function reviveShared(handle: SharedHandle): unknown {
  const revive = revivers.get(handle.kind);
  if (!revive) throw new TypeError(`unknown shared object kind '${handle.kind}'`);
  return revive(handle);
}

export function isShareable(value: unknown): value is Shareable {
  return typeof value === 'object' && value !== null && typeof (value as any)[SHARED] === 'function';
}

/**
 * Asynchronous work a reviver started (a Barrier importing its action by
 * reference) that a child finishes before its target runs, so synchronous
 * calls on what it revived work from the target's first line. On
 * `globalThis` for the same reason as the revivers.
 */
const PENDING = Symbol.for('multiprocessing-ts.revive-pending');
const pending: Array<Promise<unknown>> = ((globalThis as { [PENDING]?: Array<Promise<unknown>> })[PENDING] ??= []);

/** Registers work a revived object finishes in the background (its own errors are its to report). */
export function reviveLater(work: Promise<unknown>): void {
  pending.push(work);
}

/** Waits for the work revivers started so far. */
export async function settleRevived(): Promise<void> {
  while (pending.length > 0) await Promise.allSettled(pending.splice(0));
}
