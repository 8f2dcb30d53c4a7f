/**
 * Child processes for the cluster objects tests: each runs a target of the
 * cluster-objects fixture, and must end by itself (its connections may not
 * keep it alive once its work is done).
 */
import * as mp from '../src/index.js';
import * as fx from './fixtures/cluster-objects.js';

/** Starts a child of `method` running `target(...args)` from the cluster-objects fixture. */
export function child(method: mp.StartMethod, target: (...a: any[]) => unknown, args: unknown[]): mp.Process {
  const p = new (mp.getContext(method).Process)({ target, args, module: fx.CLUSTER_OBJECTS });
  p.start();
  return p;
}

/** Its exit code; a child still alive after `ms` (a socket kept it?) is killed and fails the test. */
export async function joined(p: mp.Process, ms = 30_000): Promise<number | null> {
  await p.join(ms);
  if (p.isAlive()) {
    p.kill();
    await p.join(5000);
    throw new Error(`child ${p.name} did not end within ${ms} ms`);
  }
  return p.exitCode;
}
