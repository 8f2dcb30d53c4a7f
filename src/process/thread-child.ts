/**
 * A thread child's start: receive its spec, then run it (child.ts). The
 * bootstrap does this for every thread it starts; a module that a thread
 * is launched on instead of the bootstrap (a pool worker's entry,
 * pool/worker-entry.ts) does it itself, the same way.
 *
 * A thread launched before its spec existed (a warm spare, or a child
 * launched early: popen.ts `Launch`) gets the spec as a message and
 * readies TypeScript meanwhile; any other gets it as its workerData.
 */
import { workerThreads } from '../builtins.js';
import type { ChildSpec, SpareData } from './popen.js';
import { prepareTs, runChild } from './child.js';

/** A spec as received, with a spare's preparation, begun before the spec came. */
export interface Received {
  readonly spec: ChildSpec;
  readonly prepared?: Promise<void>;
}

/**
 * TypeScript readied while the spec is on its way (under tsx); a failure is
 * reported by runChild, under the child's name.
 */
export function prepareSpare(method: 'process' | 'thread', tsxApi: string | null): Promise<void> {
  const prepared = prepareTs(method, tsxApi);
  prepared.catch(() => {});
  return prepared;
}

export async function receiveThread(): Promise<Received> {
  const { workerData, parentPort } = workerThreads();
  const spare = (workerData as Partial<SpareData>).spare;
  if (!spare) return { spec: workerData as ChildSpec };
  // Listening first: the spec may be posted while the hooks are being registered.
  const message = new Promise<ChildSpec>((resolve) => parentPort!.once('message', resolve));
  const prepared = prepareSpare('thread', spare.tsxApi);
  return { spec: await message, prepared };
}

/** The whole life of a thread child: its spec, then its target. */
export async function runThreadChild(): Promise<void> {
  const { spec, prepared } = await receiveThread();
  await runChild(spec, prepared);
}

/**
 * Whether this isolate is a thread launched on the calling module to wait
 * for its spec (see `launchThread`'s `entry`), with nothing started in it
 * yet. False in the main thread and in any child the bootstrap started
 * (which is a child before it imports anything of the target's).
 */
export function awaitsSpecHere(isChild: boolean): boolean {
  if (isChild) return false;
  const { isMainThread, workerData } = workerThreads();
  return !isMainThread && typeof (workerData as Partial<SpareData> | undefined)?.spare === 'object';
}
