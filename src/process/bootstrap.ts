/**
 * The first module of every child, under both start methods: receive the
 * spec, make sure the child cannot outlive its parent, run the target.
 */
import { isMainThread, workerData } from 'node:worker_threads';
import { native } from '../native/addon.js';
import type { ChildSpec } from './popen.js';
import { runChild } from './child.js';
// Every shared-object kind registers its reviver when its module loads.
import '../index.js';

async function receiveSpec(): Promise<ChildSpec> {
  if (!isMainThread) return workerData as ChildSpec;
  // An OS process: die with the parent, even when it is SIGKILLed. A thread
  // needs nothing: it lives inside its parent's process.
  native?.setParentDeathSignal(9);
  const spec = await new Promise<ChildSpec>((resolve) => process.once('message', resolve as (m: unknown) => void));
  process.channel?.unref();
  if (process.ppid !== spec.identity.parent.pid) process.exit(1); // parent died before the signal was armed
  return spec;
}

await runChild(await receiveSpec());
