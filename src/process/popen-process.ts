/**
 * The `'process'` start method: a fresh Node.js process (Python's spawn).
 *
 * The child runs with the parent's `execArgv`, so loaders such as tsx carry
 * over, minus the options that would make it something else than our
 * bootstrap (`-e`, `--inspect`, `--test`…: exec-argv.ts) and tsx's own
 * (the child registers lighter hooks: ts-children.ts), and receives its
 * spec over the IPC channel. Under tsx it may be a warm spare, started
 * before (spares.ts). Its stdin is /dev/null
 * (as Python's children), stdout and stderr are the parent's.
 */
import type { ChildProcess } from 'node:child_process';
import { childProcess } from '../builtins.js';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { childExecArgv } from './exec-argv.js';
import { withoutTsx } from './ts-children.js';
import { tsxApi } from './tsx.js';
import { BOOTSTRAP_URL, PROCESS_CHILD_FLAG, SPARE_FLAG, type ChildLimits, type ChildSpec, type Launch, type Popen } from './popen.js';
import { forget, offerSpare, readied, takeSpare, type Spare } from './spares.js';
import { reapAfterThisThread } from './thread-children.js';

const BOOTSTRAP_PATH = fileURLToPath(BOOTSTRAP_URL);

/** Exit code of a child that ended by `signal`: minus its number, as Python. */
function signalExitCode(signal: NodeJS.Signals): number {
  return -(constants.signals[signal] ?? 1);
}

let execArgv: string[] | undefined;

function childExecArgvOnce(): string[] {
  if (!execArgv) {
    const inherited = childExecArgv();
    // Under tsx the child registers our lighter hooks instead (ts-children.ts).
    execArgv = (tsxApi() && withoutTsx(inherited)) || inherited;
  }
  return execArgv;
}

function spawnBootstrap(extra: readonly string[], limits?: ChildLimits): ChildProcess {
  // After the inherited options: V8 takes the last of a repeated flag.
  const limitArgs = limits?.heapLimitMb ? [`--max-old-space-size=${limits.heapLimitMb}`] : [];
  const child = childProcess().spawn(process.execPath, [...childExecArgvOnce(), ...limitArgs, BOOTSTRAP_PATH, PROCESS_CHILD_FLAG, ...extra], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  reapAfterThisThread(child);
  return child;
}

/** An OS process that waits for its spec; it keeps nobody alive until taken. */
interface ProcessSpare extends Spare {
  readonly child: ChildProcess;
  /** Stops watching it as a spare: it is a child now. */
  adopt(): void;
}

function makeSpare(settings: string): ProcessSpare {
  const child = spawnBootstrap([SPARE_FLAG, tsxApi()!, String(process.pid)]);
  child.unref();
  child.channel?.unref();
  let ended = false;
  let ready = false;
  const onEnd = () => {
    ended = true;
    forget('process', spare);
  };
  // Its bootstrap says when it shields itself from its process group's signals (bootstrap.ts).
  const onReady = () => {
    ready = true;
    readied('process');
  };
  child.once('exit', onEnd);
  child.once('error', onEnd);
  child.once('message', onReady);
  const spare: ProcessSpare = {
    settings,
    id: child.pid ?? -1,
    child,
    alive: () => !ended && child.pid !== undefined && child.exitCode === null && child.signalCode === null,
    ready: () => ready,
    end: () => {
      // A spare we may no longer signal (this process dropped its
      // privileges since) ends when its channel closes.
      if (!child.kill('SIGKILL') && child.connected) child.disconnect();
    },
    adopt() {
      child.off('exit', onEnd);
      child.off('error', onEnd);
      child.off('message', onReady);
      child.ref();
    },
  };
  return spare;
}

/** Makes a spare process for later starts, under tsx (spares.ts), up to the capacity. */
export function offerProcessSpare(): void {
  offerSpare('process', childExecArgvOnce(), makeSpare);
}

/** A process launched before its spec (popen.ts `Launch`). */
export interface ProcessLaunch extends Launch {
  readonly method: 'process';
  /** Takes it over for its spec: it is a child now. */
  take(): ChildProcess;
}

/**
 * Launches a process child now (a ready spare, or a cold spawn, which waits
 * for its spec over IPC as every process child does); `popenProcess` sends
 * it its spec. A child with `limits` never takes a spare.
 */
export function launchProcess(limits?: ChildLimits): ProcessLaunch {
  const spare = limits ? null : takeSpare<ProcessSpare>('process', childExecArgvOnce());
  const child = spare?.child ?? spawnBootstrap([], limits);
  if (!spare) {
    // Until it has its spec it keeps nobody alive; if it never gets one, it
    // exits when its channel closes (or by its parent-death signal).
    child.unref();
    child.channel?.unref();
  }
  let taken = false;
  return {
    method: 'process',
    limits,
    take() {
      taken = true;
      if (spare) spare.adopt();
      else child.ref();
      return child;
    },
    end() {
      if (taken) return;
      taken = true;
      if (spare) return spare.end();
      // Nobody listens to it any more: a failed spawn's 'error' must not be an uncaught one.
      child.on('error', () => {});
      child.kill('SIGKILL');
    },
  };
}

/**
 * `spawned(pid)` runs once the child exists and before it can receive its
 * spec. A child with `limits` is started cold: a spare was launched without
 * them. `launched`: begun before (launchProcess).
 */
export function popenProcess(
  spec: ChildSpec,
  spawned?: (pid: number | undefined) => void,
  limits?: ChildLimits,
  launched?: ProcessLaunch,
): Popen {
  const spare = launched || limits ? undefined : takeSpare<ProcessSpare>('process', childExecArgvOnce());
  spare?.adopt();
  const child = launched?.take() ?? spare?.child ?? spawnBootstrap([], limits);
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
  // A child launched ahead (the pool's) offers none: its launcher does, once the spare no longer competes with its start.
  if (!launched) offerProcessSpare();
  return {
    pid: child.pid ?? -1,
    threadId: 0,
    exited,
    terminate: () => void child.kill('SIGTERM'),
    kill: () => void child.kill('SIGKILL'),
    setRef: (ref) => (ref ? child.ref() : child.unref()),
  };
}
