/**
 * Where a child may start children: only from its target's chain.
 *
 * The entry module runs again in every child (that is how a by-reference
 * target is found). Its top-level code may start work that outlives the
 * import — an unguarded `async function main() { await io(); p.start(); }
 * main();` — and such work must not start grandchildren, or a script
 * without the `isMainProcess()` guard becomes a fork bomb. So the child
 * imports the module in an import frame and runs the target in a target
 * frame (async-context.ts); awaits, `.then`, timers and ticks carry the
 * frame, and `start()` in a child runs only in the target's.
 */
import { FrameKind, currentFrame, openRoot, rootKind, runInFrame } from '../async-context.js';

/** Imports the entry module (or `module`) in the import's frame. */
export function importEntry(url: string): Promise<Record<string, unknown>> {
  return runInFrame(openRoot(FrameKind.Import), () => import(url));
}

/** Calls the target in the target's frame. */
export function runTarget(fn: Function, args: unknown[]): unknown {
  return runInFrame(openRoot(FrameKind.Target), () => fn(...args));
}

/** Where the running code of a child stands: in its target's chain, in its import's, or neither. */
export function childChain(): 'target' | 'import' | 'outside' {
  const kind = rootKind(currentFrame());
  return kind === FrameKind.Target ? 'target' : kind === FrameKind.Import ? 'import' : 'outside';
}
