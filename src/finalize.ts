/**
 * Exit-time work, in one ordered list (as CPython's `multiprocessing.util`
 * finalizers with their exit priorities).
 *
 * Several layers have something to do when an isolate exits normally, and
 * the order matters: daemonic children are ended first (while everything
 * they might still use exists), then this isolate gives back its segment
 * references (logging them in its ledger if it is a child), and last the
 * tree's directory is removed (only where no reaper will). One 'exit'
 * listener runs them by stage; within a stage, the most recently
 * registered first. A finalizer that throws is reported on stderr and does
 * not stop the others.
 *
 * None of this runs when an isolate is killed or terminated: what must
 * survive that is the parent's ledger settlement (shm/settle.ts) and the
 * tree's reaper (shm/tree.ts).
 */

/** When a finalizer runs at exit: lower stages first. */
export const ExitStage = {
  /** End daemonic children (Python terminates them at exit). */
  Children: 10,
  /** Give back this isolate's references on shared segments. */
  Segments: 20,
  /** Remove the tree's directory, when no reaper does it. */
  Tree: 30,
} as const;

interface Finalizer {
  readonly stage: number;
  readonly seq: number;
  readonly run: () => void;
}

interface Registry {
  readonly pending: Set<Finalizer>;
  seq: number;
  listening: boolean;
}

/**
 * On `globalThis` under a registered symbol: the bootstrap and the package
 * are bundled apart, and one isolate must have one list, run once, in one
 * order.
 */
const KEY = Symbol.for('multiprocessing-ts.finalizers');

function registry(): Registry {
  const g = globalThis as typeof globalThis & { [KEY]?: Registry };
  return (g[KEY] ??= { pending: new Set(), seq: 0, listening: false });
}

/**
 * Runs `run` when this isolate exits normally, at `stage` (see `ExitStage`).
 * Returns a function that cancels it.
 */
export function atExit(stage: number, run: () => void): () => void {
  const reg = registry();
  const finalizer: Finalizer = { stage, seq: reg.seq++, run };
  reg.pending.add(finalizer);
  if (!reg.listening) {
    reg.listening = true;
    process.once('exit', runFinalizers);
  }
  return () => void reg.pending.delete(finalizer);
}

/** Runs (once) every pending finalizer in order. */
function runFinalizers(): void {
  const reg = registry();
  const order = [...reg.pending].sort((a, b) => a.stage - b.stage || b.seq - a.seq);
  reg.pending.clear();
  for (const { run } of order) {
    try {
      run();
    } catch (err) {
      process.stderr.write(`multiprocessing-ts: an exit-time cleanup failed: ${(err as Error)?.stack ?? String(err)}\n`);
    }
  }
}
