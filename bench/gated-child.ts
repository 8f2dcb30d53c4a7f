/**
 * A 'process' child that signals ready and then waits at a gate the parent
 * holds, so that its start-up is outside the clock (the shape of the
 * Python anchors' producers). The target takes `gate` and `ready` as its
 * last two arguments.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as mp from 'multiprocessing-ts';
import { TARGETS_URL } from './targets.js';

/**
 * Starts `target(...args, gate, ready)` and resolves once the child waits
 * at the gate; `afterStart` runs right after `start()` (e.g. closing the
 * parent's copy of what the child took). `open()` lets the child go.
 */
export async function startGated(
  target: (...args: any[]) => unknown,
  args: unknown[],
  role: string,
  afterStart?: () => void,
): Promise<{ child: mp.Process; open: () => void }> {
  const gate = new mp.Lock();
  const ready = mp.RawArray('i', 1);
  gate.acquireSync();
  const child = new (mp.getContext('process').Process)({ target, args: [...args, gate, ready] as never, module: TARGETS_URL });
  try {
    child.start();
    afterStart?.();
    while (Atomics.load(ready, 0) === 0) {
      if (child.exitCode !== null) throw new Error(`${role} exited with ${child.exitCode} before it was ready`);
      await sleep(1);
    }
  } catch (err) {
    gate.release();
    if (child.isAlive()) child.kill();
    throw err;
  }
  return { child, open: () => gate.release() };
}
