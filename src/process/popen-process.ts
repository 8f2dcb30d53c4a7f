/**
 * The `'process'` start method: a fresh Node.js process (Python's spawn).
 *
 * The child runs with the parent's `execArgv`, so loaders such as tsx carry
 * over, minus the options that would make it something else than our
 * bootstrap (`-e`, `--inspect`, `--test`…: exec-argv.ts) and tsx's own
 * (the child registers lighter hooks: ts-children.ts), and receives its
 * spec over the IPC channel. Its stdin is /dev/null
 * (as Python's children), stdout and stderr are the parent's.
 */
import { childProcess } from '../builtins.js';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { childExecArgv } from './exec-argv.js';
import { withoutTsx } from './ts-children.js';
import { tsxApi } from './tsx.js';
import { BOOTSTRAP_URL, PROCESS_CHILD_FLAG, type ChildSpec, type Popen } from './popen.js';

const BOOTSTRAP_PATH = fileURLToPath(BOOTSTRAP_URL);

/** Exit code of a child that ended by `signal`: minus its number, as Python. */
function signalExitCode(signal: NodeJS.Signals): number {
  return -(constants.signals[signal] ?? 1);
}

let execArgv: string[] | undefined;

/** `spawned(pid)` runs once the child exists and before it can receive its spec. */
export function popenProcess(spec: ChildSpec, spawned?: (pid: number | undefined) => void): Popen {
  if (!execArgv) {
    const inherited = childExecArgv();
    // Under tsx the child registers our lighter hooks instead (ts-children.ts).
    execArgv = (tsxApi() && withoutTsx(inherited)) || inherited;
  }
  const child = childProcess().spawn(process.execPath, [...execArgv, BOOTSTRAP_PATH, PROCESS_CHILD_FLAG], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  spawned?.(child.pid);
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signalExitCode(signal!)));
    child.once('error', (err) => {
      process.stderr.write(`multiprocessing-ts: could not start ${spec.identity.name}: ${err.message}\n`);
      resolve(1);
    });
  });
  child.send(spec, (err) => {
    // The child died before reading its spec; its exit code tells the story.
    if (err) child.kill('SIGKILL');
  });
  // The channel is only for the spec: it must not keep either side alive.
  child.channel?.unref();
  return {
    pid: child.pid ?? -1,
    threadId: 0,
    exited,
    terminate: () => void child.kill('SIGTERM'),
    kill: () => void child.kill('SIGKILL'),
    setRef: (ref) => (ref ? child.ref() : child.unref()),
  };
}
