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

/**
 * Which kinds of handle a transfer may carry: every registered kind, or
 * only those named.
 *
 * Reviving a handle maps the memory it names (any path the handle gives)
 * and may compile code (a Barrier's action by source) or import a module
 * (an action by reference): only a sender that is part of this process
 * tree may choose that. Process args, Pipes and Queues come from the tree
 * (they travel through its shared memory, reached only through handles it
 * gave out), so they carry `EVERY_KIND`. A Listener/Client socket carries
 * `NO_KIND`: anyone who can connect can write to it, authkey or not (no
 * authkey is the default). A later layer that speaks over sockets and has
 * handles of its own (managers' proxies, which hold only data: an address
 * and an id) passes a set of exactly those kinds, to `encode` (its `only`
 * option) and to `decode`, and must never add a kind that names memory,
 * code or a channel (Queue, Pipe: their spill files are found in the
 * reader's own tree directory, see channel/spill.ts). The list judges each
 * handle in the value; what an allowed kind's reviver revives inside its
 * own handle is that kind's business, so such a kind must hold no other.
 */
export type HandleKinds = typeof EVERY_KIND | ReadonlySet<string>;

/** Every registered kind: for transfers within the process tree. */
export const EVERY_KIND: unique symbol = Symbol('every shared-object kind');

/** No kind at all: for transfers from outside the tree (a socket). */
export const NO_KIND: ReadonlySet<string> = new Set();

/** Whether `kinds` lets a handle of `kind` through. */
export function allowsKind(kinds: HandleKinds, kind: unknown): boolean {
  return kinds === EVERY_KIND || (typeof kind === 'string' && kinds.has(kind));
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

/** Whether objects of `kind` can be revived here (the module of their class has loaded). */
export function isRegistered(kind: unknown): boolean {
  return typeof kind === 'string' && revivers.has(kind);
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
