/**
 * The first module of every child, under both start methods: receive the
 * spec, make sure the child cannot outlive its parent, run the target.
 * A warm spare (spares.ts) does all it can before its spec comes, then
 * waits for it as a message.
 * (No top-level await: the bundle ships this module as CommonJS.)
 */
import { native } from '../native/addon.js';
import { PROCESS_CHILD_FLAG, SPARE_FLAG, type ChildSpec, type SpareData } from './popen.js';
import { workerThreads } from '../builtins.js';
import { prepareTs, runChild } from './child.js';

interface Received {
  readonly spec: ChildSpec;
  /** A spare's preparation, begun before the spec came. */
  readonly prepared?: Promise<void>;
}

/**
 * A spare (or a thread launched before its spec, popen.ts `Launch`) readies
 * TypeScript while it waits, under tsx; a failure is reported by runChild,
 * under the child's name.
 */
function prepareSpare(method: 'process' | 'thread', tsxApi: string | null): Promise<void> {
  const prepared = prepareTs(method, tsxApi);
  prepared.catch(() => {});
  return prepared;
}

async function receiveThread(): Promise<Received> {
  const { workerData, parentPort } = workerThreads();
  const spare = (workerData as Partial<SpareData>).spare;
  if (!spare) return { spec: workerData as ChildSpec };
  // Listening first: the spec may be posted while the hooks are being registered.
  const message = new Promise<ChildSpec>((resolve) => parentPort!.once('message', resolve));
  const prepared = prepareSpare('thread', spare.tsxApi);
  return { spec: await message, prepared };
}

/**
 * The signals a terminal or a service manager sends a whole process group
 * (Ctrl-C, Ctrl-\\, hang-up, a group SIGTERM). An idle spare is in its
 * parent's group but is nobody's child yet: the parent, which may handle
 * them and start a child, must not find its spare dead. It still ends by
 * SIGKILL, its parent-death signal, or its channel closing.
 */
const GROUP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/** Until `spec` settles, a spare ignores its group's signals; then a child, it has their defaults again. */
function shieldSpare(spec: Promise<unknown>): void {
  const ignore = () => {};
  for (const signal of GROUP_SIGNALS) process.on(signal, ignore);
  const orphaned = () => process.exit(1);
  process.once('disconnect', orphaned);
  void spec.then(() => {
    for (const signal of GROUP_SIGNALS) process.off(signal, ignore);
    process.off('disconnect', orphaned);
  });
  // Tells the parent it may be taken (popen-process.ts).
  process.send!('ready');
}

async function receiveProcess(): Promise<Received> {
  const spare = process.argv[3] === SPARE_FLAG ? { tsxApi: process.argv[4]!, parentPid: Number(process.argv[5]) } : null;
  process.argv.splice(2, spare ? 4 : 1);
  const message = new Promise<ChildSpec>((resolve) => process.once('message', resolve as (m: unknown) => void));
  if (spare) shieldSpare(message);
  // An OS process: die with the parent, even when it is SIGKILLed. A thread
  // needs nothing: it lives inside its parent's process.
  native()?.setParentDeathSignal(9);
  let prepared: Promise<void> | undefined;
  if (spare) {
    if (process.ppid !== spare.parentPid) process.exit(1); // parent died before the signal was armed
    prepared = prepareSpare('process', spare.tsxApi);
  }
  const spec = await message;
  process.channel?.unref();
  if (process.ppid !== spec.identity.parent.pid) process.exit(1); // parent died before the signal was armed
  return { spec, prepared };
}

void (async () => {
  const { spec, prepared } = await (process.argv[2] === PROCESS_CHILD_FLAG ? receiveProcess() : receiveThread());
  await runChild(spec, prepared);
})();
