/**
 * The first module of every child, under both start methods: receive the
 * spec, make sure the child cannot outlive its parent, run the target.
 * (No top-level await: the bundle ships this module as CommonJS.)
 */
import { native } from '../native/addon.js';
import { PROCESS_CHILD_FLAG, type ChildSpec } from './popen.js';
import { workerThreads } from '../builtins.js';
import { runChild } from './child.js';

async function receiveSpec(): Promise<ChildSpec> {
  if (process.argv[2] !== PROCESS_CHILD_FLAG) return workerThreads().workerData as ChildSpec;
  process.argv.splice(2, 1);
  // An OS process: die with the parent, even when it is SIGKILLed. A thread
  // needs nothing: it lives inside its parent's process.
  native()?.setParentDeathSignal(9);
  const spec = await new Promise<ChildSpec>((resolve) => process.once('message', resolve as (m: unknown) => void));
  process.channel?.unref();
  if (process.ppid !== spec.identity.parent.pid) process.exit(1); // parent died before the signal was armed
  return spec;
}

void (async () => runChild(await receiveSpec()))();
