/**
 * The first module of every child, under both start methods: receive the
 * spec, make sure the child cannot outlive its parent, run the target.
 * A warm spare (spares.ts) does all it can before its spec comes, then
 * waits for it as a message.
 * (No top-level await: the bundle ships this module as CommonJS.)
 */
import { native } from '../native/addon.js';
import { PROCESS_CHILD_FLAG, SPARE_FLAG, type ChildSpec } from './popen.js';
import { runChild } from './child.js';
import { prepareSpare, receiveThread, type Received } from './thread-child.js';

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
