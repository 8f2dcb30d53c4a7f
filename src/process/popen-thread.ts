/**
 * The `'thread'` start method: a worker thread with its own isolate, globals
 * and module instances, in this OS process. Cheaper to start than a process;
 * same API. `terminate()`/`kill()` end the thread and report -15/-9, so code
 * reads exit codes the same way under both start methods.
 */
import { workerThreads } from '../builtins.js';
import { BOOTSTRAP_URL, type ChildSpec, type Popen } from './popen.js';

export function popenThread(spec: ChildSpec): Popen {
  const worker = new (workerThreads().Worker)(BOOTSTRAP_URL, { workerData: spec });
  let forcedCode: number | null = null;
  const exited = new Promise<number>((resolve) => {
    worker.once('exit', (code) => resolve(forcedCode ?? code));
  });
  worker.on('error', (err) => {
    // Errors of the target are reported by the bootstrap; this is anything else.
    process.stderr.write(`Process ${spec.identity.name}:\n${(err as Error)?.stack ?? String(err)}\n`);
  });
  const end = (code: number) => {
    forcedCode ??= code;
    void worker.terminate();
  };
  return {
    pid: process.pid,
    threadId: worker.threadId,
    exited,
    terminate: () => end(-15),
    kill: () => end(-9),
    setRef: (ref) => (ref ? worker.ref() : worker.unref()),
  };
}
