/**
 * Facts about the running isolate that every layer needs: whether it is a
 * child started by this package, the process tree's shared-memory directory,
 * and the identity of the current process object.
 *
 * Kept on `globalThis` under a registered symbol rather than in module state,
 * because a child may load this package twice (once through the bootstrap's
 * relative import, once through the user's `import 'multiprocessing-ts'`
 * resolved elsewhere) and both copies must agree.
 */

/** What a parent tells a child about the family it was born into. */
export interface ChildIdentity {
  readonly name: string;
  /** Python's `_identity`: the child's position in the tree, e.g. [1, 2] for 'Process-1:2'. */
  readonly identity: readonly number[];
  readonly daemon: boolean;
  /** The parent's `name`, `pid` and `threadId`, for `parentProcess()`. */
  readonly parent: { readonly name: string; readonly pid: number; readonly threadId: number };
  readonly startMethod: 'process' | 'thread';
  /** `/dev/shm/mpts-…` of the tree, or null when the tree has none yet. */
  readonly treeDir: string | null;
  /** The id of the child's ledger in `<treeDir>/ledgers/` (shm/ledger.ts), or null for none. */
  readonly ledger: string | null;
  /** The file the tree's main script was run as (its `process.argv[1]`). */
  readonly entryPath: string | null;
  /** Path of tsx's ESM API when the tree runs under tsx (threads must register it). */
  readonly tsxApi: string | null;
  /** The parent's `process.argv` after the executable: the child sees the same, as Python's spawn copies `sys.argv`. */
  readonly argv: readonly string[];
  /** The child's `authkey` as base64 (Python's: its parent's unless set on the Process); the default key of managers. */
  readonly authkey?: string;
}

/** Mutable per-isolate runtime state. */
export interface RuntimeState {
  child: ChildIdentity | null;
  /** True while a child's bootstrap is importing the entry module. */
  importingEntry: boolean;
  /** The tree's shared-memory directory, once known. */
  treeDir: string | null;
  /** Counts `Process-N` names, per isolate as in Python (per process). */
  processCounter: number;
  /** In a child running a `Process` subclass, the rebuilt instance: `currentProcess()` is it, as in Python. */
  currentProcess?: object;
  /** This process's authkey (`currentProcess().authkey`), once read or set. */
  authkey?: Uint8Array;
}

const KEY = Symbol.for('multiprocessing-ts.runtime');

type WithRuntime = typeof globalThis & { [KEY]?: RuntimeState };

/** The one runtime state of this isolate. */
export function runtime(): RuntimeState {
  const g = globalThis as WithRuntime;
  let state = g[KEY];
  if (!state) {
    state = { child: null, importingEntry: false, treeDir: null, processCounter: 0 };
    g[KEY] = state;
  }
  return state;
}
