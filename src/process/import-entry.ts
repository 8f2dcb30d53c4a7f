/**
 * A child's import of its entry module, marked so that `start()` can tell
 * the code that import started from the child's target.
 *
 * The entry module runs again in every child (that is how a by-reference
 * target is found). Its top-level code may start work that outlives the
 * import — an unguarded `async function main() { await io(); p.start(); }
 * main();` — and such work must not start grandchildren, or a script
 * without the `isMainProcess()` guard becomes a fork bomb. So the import
 * runs in a frame marked `fromImport` (async-context.ts): its awaits and
 * `.then`s carry the mark, and, while the import runs, so do the callbacks
 * of timers, `setImmediate`, `process.nextTick` and `queueMicrotask` it
 * schedules. `start()` refuses to run in such a frame.
 */
import timers from 'node:timers';
import { currentFrame, isFromImport, openImport, runInFrame, type Frame } from '../async-context.js';

type Scheduler = (callback: (...args: any[]) => unknown, ...rest: any[]) => unknown;

/** The callback schedulers whose callbacks would otherwise start with no frame. */
const SCHEDULERS: Array<[object, string]> = [
  [globalThis, 'setTimeout'],
  [globalThis, 'setInterval'],
  [globalThis, 'setImmediate'],
  [globalThis, 'queueMicrotask'],
  [process, 'nextTick'],
  [timers, 'setTimeout'],
  [timers, 'setInterval'],
  [timers, 'setImmediate'],
];

/** Makes each scheduler pass on the frame it was called in; returns the undo. */
function carryFramesThroughCallbacks(): () => void {
  const originals = SCHEDULERS.map(([owner, key]) => (owner as Record<string, Scheduler>)[key]!);
  SCHEDULERS.forEach(([owner, key], i) => {
    const original = originals[i]!;
    (owner as Record<string, Scheduler>)[key] = function scheduleInFrame(this: unknown, callback, ...rest) {
      const frame: Frame | null = currentFrame();
      if (frame === null || typeof callback !== 'function') return original.call(this, callback, ...rest);
      return original.call(this, (...args: unknown[]) => runInFrame(frame, () => callback(...args)), ...rest);
    };
  });
  return () => SCHEDULERS.forEach(([owner, key], i) => ((owner as Record<string, Scheduler>)[key] = originals[i]!));
}

/** Imports the entry module (or `module`) in a frame marked as the import's. */
export async function importEntry(url: string): Promise<Record<string, unknown>> {
  const restore = carryFramesThroughCallbacks();
  try {
    return await runInFrame(openImport(), () => import(url));
  } finally {
    restore();
  }
}

/** Whether the running code was started by the child's import of its entry module. */
export function startedByImport(): boolean {
  return isFromImport(currentFrame());
}
