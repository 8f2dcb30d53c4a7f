/**
 * A started child, whatever runs it: the small strategy interface behind
 * `Process` (Python's `popen_spawn_posix` / `popen_fork`). One strategy per
 * start method: popen-process.ts (an OS process) and popen-thread.ts (a
 * worker thread).
 */
import type { ChildIdentity } from '../runtime.js';
import type { ReferenceSpec, TargetSpec } from './target.js';
import type { DeferredPreload } from './ts-children.js';

/** Everything a child needs to run its target. */
export interface ChildSpec {
  readonly identity: ChildIdentity;
  /** null: a subclass's `run()` runs, and the instance has no target. */
  readonly target: TargetSpec | null;
  /**
   * The encoded `args`: for a thread the encoded value itself (workerData
   * clones it); for a process the bytes of v8.serialize as base64, or null
   * for no arguments, because the spec travels as JSON over the IPC channel
   * (V8 serialization there would cost every child the v8 module's load).
   */
  readonly args: unknown;
  /** A `Process` subclass whose `run()` the child calls (subclass.ts); null for a plain target. */
  readonly instance: InstanceSpec | null;
  /** A `'thread'` child's preload files, run after its TypeScript hooks (ts-children.ts deferFilePreloads). */
  readonly preloads?: readonly DeferredPreload[];
}

/** A subclass instance in transit: its class by reference, its own fields encoded as `args` are. */
export interface InstanceSpec {
  readonly cls: ReferenceSpec;
  readonly fields: unknown;
}

export interface Popen {
  readonly pid: number;
  readonly threadId: number;
  /** Settles with the exit code (negative signal number when killed). */
  readonly exited: Promise<number>;
  /** Sends SIGTERM (a thread: ends it with exit code -15). */
  terminate(): void;
  /** Sends SIGKILL (a thread: ends it with exit code -9). */
  kill(): void;
  /** Whether the child keeps this process alive (daemons do not, except while joined). */
  setRef(ref: boolean): void;
}

/** Limits a starter applies to the child it starts (set by the pool: process.ts `limitHeap`). */
export interface ChildLimits {
  /** V8's old-generation heap limit, in MiB. */
  readonly heapLimitMb?: number;
}

/** The bootstrap's argument that says it runs as an OS process (checking `isMainThread` would cost loading worker_threads). */
export const PROCESS_CHILD_FLAG = '--multiprocessing-ts-child';

/**
 * The bootstrap's argument, after PROCESS_CHILD_FLAG, that says it is a warm
 * spare (spares.ts); then come tsx's ESM API and the parent's pid.
 */
export const SPARE_FLAG = '--multiprocessing-ts-spare';

/**
 * The `workerData` of a thread whose spec comes later, as a message: a warm
 * spare, or a child launched early (`Launch`). What it may prepare
 * meanwhile: TypeScript hooks, under tsx.
 */
export interface SpareData {
  readonly spare: { readonly tsxApi: string | null };
}

/**
 * A child launched before its spec exists, so that it boots while the
 * parent makes what the spec will hold (the pool's workers: their shared
 * memory, the tree's directory and reaper on first use). It is a cold start
 * begun early, or a ready warm spare: the spec reaches it as it would reach
 * a spare (a message to a thread; over IPC to a process, as for every
 * process child). Until `start()` hands it its spec it keeps nobody alive.
 */
export interface Launch {
  readonly method: 'process' | 'thread';
  readonly limits: ChildLimits | undefined;
  /** Ends it, if no spec was handed to it; once handed, it is the child's and this does nothing. */
  end(): void;
}

/** Set by the bundler: the bundled bootstrap is CommonJS (see scripts/bundle.mjs). */
declare const __MPTS_BOOTSTRAP_FILE__: string | undefined;

/** Where both strategies start their children. */
export const BOOTSTRAP_URL = new URL(
  typeof __MPTS_BOOTSTRAP_FILE__ === 'string' ? __MPTS_BOOTSTRAP_FILE__ : './bootstrap.js',
  import.meta.url,
);
