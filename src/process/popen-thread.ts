/**
 * The `'thread'` start method: a worker thread with its own isolate, globals
 * and module instances, in this OS process. Cheaper to start than a process;
 * same API. `terminate()`/`kill()` end the thread and report -15/-9, so code
 * reads exit codes the same way under both start methods. Under tsx it may
 * be a warm spare, started before (spares.ts), handed its spec as a message.
 */
import type { ResourceLimits, Worker, WorkerOptions } from 'node:worker_threads';
import { v8, workerThreads } from '../builtins.js';
import { nodeOptionTokens } from './preloads.js';
import { threadExecArgv, withoutOptions } from './exec-argv.js';
import { deferFilePreloads, withoutTsx, type DeferredPreload } from './ts-children.js';
import { tsxApi } from './tsx.js';
import { BOOTSTRAP_URL, type ChildLimits, type ChildSpec, type Launch, type Popen, type SpareData } from './popen.js';
import { forget, offerSpare, takeSpare, type Spare } from './spares.js';

/** undefined: the Worker inherits our execArgv (see threadExecArgv). */
let execArgv: string[] | undefined | null = null;
/** Preload files the child runs itself, after its TypeScript hooks (deferFilePreloads). */
let deferred: readonly DeferredPreload[] = [];

function workerExecArgv(): string[] | undefined {
  if (execArgv === null) {
    execArgv = threadExecArgv();
    if (tsxApi()) {
      // A Worker runs our --import preloads: tsx's would load tsx again, where
      // the child registers lighter hooks (ts-children.ts).
      const all = execArgv ?? process.execArgv;
      const light = withoutTsx(all);
      const split = light ? null : deferFilePreloads(all);
      if (light) execArgv = light;
      else if (split) ({ execArgv, preloads: deferred } = split);
    }
  }
  return execArgv;
}

/** The spec with the preloads this child must run itself, if any. */
function withPreloads(spec: ChildSpec): ChildSpec {
  workerExecArgv();
  return deferred.length > 0 ? { ...spec, preloads: deferred } : spec;
}

/** V8's options that set every isolate's heap limit, and the MiB they give, from our `execArgv` and `NODE_OPTIONS`. */
function processHeapOptions(): { names: string[]; mb: number } | null {
  const tokens = [...nodeOptionTokens(process.env['NODE_OPTIONS'] ?? ''), ...process.execArgv];
  const found = new Map<string, number>();
  for (let i = 0; i < tokens.length; i++) {
    const match = /^--(max[-_]old[-_]space[-_]size|max[-_]heap[-_]size)(?:=(.*))?$/.exec(tokens[i]!);
    if (!match) continue;
    const mb = Number(match[2] ?? tokens[++i]);
    if (mb > 0) found.set(match[1]!.replace(/_/g, '-'), mb);
  }
  if (found.size === 0) return null;
  return { names: [...found.keys()], mb: found.get('max-old-space-size') ?? found.get('max-heap-size')! };
}

/** The heap limit (MiB) threads without one of their own keep, once the process's option was cleared (null: not cleared). */
let processHeapMb: number | null = null;
let heapOptionsRead = false;

/**
 * A thread's `resourceLimits`. V8 lets `--max-old-space-size` (and
 * `--max-heap-size`), options of the whole process, override the limits
 * of every Worker made while they are set, so a `heapLimitMb` would be
 * ignored. The first thread with a limit of its own clears them (the
 * process's own heap was sized at its start); threads made after that
 * without one are given the process's limit explicitly, as before.
 */
function threadResourceLimits(heapLimitMb: number | undefined): ResourceLimits | undefined {
  if (heapLimitMb && !heapOptionsRead) {
    heapOptionsRead = true;
    const options = processHeapOptions();
    if (options) {
      for (const name of options.names) v8().setFlagsFromString(`--${name}=0`);
      processHeapMb = options.mb;
    }
  }
  if (heapLimitMb) return { maxOldGenerationSizeMb: heapLimitMb };
  return processHeapMb === null ? undefined : { maxOldGenerationSizeMb: processHeapMb };
}

/** A Worker running `main` (default: the bootstrap). */
function newWorker(workerData: ChildSpec | SpareData, limits?: ChildLimits, main: URL = BOOTSTRAP_URL): Worker {
  const { Worker } = workerThreads();
  const resourceLimits = threadResourceLimits(limits?.heapLimitMb);
  const options = (): WorkerOptions => ({ workerData, execArgv: workerExecArgv(), resourceLimits });
  try {
    return new Worker(main, options());
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code !== 'ERR_WORKER_INVALID_EXEC_ARGV' || !execArgv) throw err;
    // A Worker refuses, by name, process-wide options (V8's, --title…) in an
    // explicit list; they are in effect for every thread of the process anyway.
    const refused = /flags: (.*)$/.exec((err as Error).message)?.[1]?.split(', ') ?? [];
    execArgv = withoutOptions(execArgv, new Set(refused));
    return new Worker(main, options());
  }
}

/** A Worker that waits for its spec; it keeps nobody alive until taken. */
interface ThreadSpare extends Spare {
  /** Stops watching it as a spare and posts it its spec: it is a child now. */
  hand(spec: ChildSpec): Worker;
}

function makeSpare(settings: string): ThreadSpare {
  const worker = newWorker({ spare: { tsxApi: tsxApi()! } });
  worker.unref();
  let ended = false;
  const onEnd = () => {
    ended = true;
    forget('thread', spare);
  };
  worker.once('exit', onEnd);
  worker.on('error', onEnd);
  const spare: ThreadSpare = {
    settings,
    id: worker.threadId,
    alive: () => !ended,
    ready: () => true,
    end: () => void worker.terminate(),
    hand(spec) {
      try {
        // Throws, as workerData would, what cannot be cloned: then nothing reached the spare, but it is not kept.
        worker.postMessage(spec);
      } catch (err) {
        void worker.terminate();
        throw err;
      }
      worker.off('exit', onEnd);
      worker.off('error', onEnd);
      worker.ref();
      return worker;
    },
  };
  return spare;
}

/** Makes a spare thread for later starts, under tsx (spares.ts), up to the capacity. */
export function offerThreadSpare(): void {
  offerSpare('thread', workerExecArgv(), makeSpare);
}

/** A thread launched before its spec (popen.ts `Launch`). */
export interface ThreadLaunch extends Launch {
  readonly method: 'thread';
  /** Posts it its spec: it is a child now. */
  hand(spec: ChildSpec): Worker;
}

/**
 * Launches a thread child now (a ready spare, or a Worker that boots and
 * waits for its spec as a spare does); `popenThread` hands it its spec.
 * A child with `limits` never takes a spare: spares were launched without them.
 *
 * `entry`: a module that runs `runThreadChild` itself (thread-child.ts) and
 * that the target will be imported from (the pool's worker entry). A cold
 * launch runs it instead of the bootstrap, which would only have loaded it
 * after a CommonJS file of its own. Not under tsx: there the bootstrap
 * must register the TypeScript hooks before anything of the program
 * loads, and the entry may be a `.ts` file.
 */
export function launchThread(limits?: ChildLimits, entry?: URL): ThreadLaunch {
  const spare = limits ? null : takeSpare<ThreadSpare>('thread', workerExecArgv());
  let worker: Worker | null = null;
  if (!spare) {
    const tsx = tsxApi();
    worker = newWorker({ spare: { tsxApi: tsx } }, limits, entry && !tsx ? entry : BOOTSTRAP_URL);
    worker.unref();
  }
  let handed = false;
  return {
    method: 'thread',
    limits,
    hand(spec) {
      handed = true;
      if (spare) return spare.hand(spec);
      try {
        worker!.postMessage(spec);
      } catch (err) {
        // As for a spare: what cannot be cloned throws here, as it would from new Worker.
        void worker!.terminate();
        throw err;
      }
      worker!.ref();
      return worker!;
    },
    end() {
      if (handed) return;
      handed = true;
      if (spare) return spare.end();
      // Nobody listens to it any more: an 'error' of it must not be an uncaught one.
      worker!.on('error', () => {});
      void worker!.terminate();
    },
  };
}

/** A child with `limits` is started cold: a spare was launched without them. `launched`: begun before (launchThread). */
export function popenThread(spec: ChildSpec, limits?: ChildLimits, launched?: ThreadLaunch): Popen {
  spec = withPreloads(spec);
  const worker =
    launched?.hand(spec) ?? (limits ? undefined : takeSpare<ThreadSpare>('thread', workerExecArgv())?.hand(spec)) ?? newWorker(spec, limits);
  let forcedCode: number | null = null;
  const exited = new Promise<number>((resolve) => {
    worker.once('exit', (code) => resolve(forcedCode ?? code));
  });
  worker.on('error', (err) => {
    // Out of heap: V8 aborts a process (SIGABRT, -6); a thread reads the same.
    if ((err as NodeJS.ErrnoException)?.code === 'ERR_WORKER_OUT_OF_MEMORY') forcedCode ??= -6;
    // Errors of the target are reported by the bootstrap; this is anything else.
    process.stderr.write(`Process ${spec.identity.name}:\n${(err as Error)?.stack ?? String(err)}\n`);
  });
  const end = (code: number) => {
    forcedCode ??= code;
    void worker.terminate();
  };
  // A child launched ahead (the pool's) offers none: its launcher does, once the spare no longer competes with its start.
  if (!launched) offerThreadSpare();
  return {
    pid: process.pid,
    threadId: worker.threadId,
    exited,
    terminate: () => end(-15),
    kill: () => end(-9),
    setRef: (ref) => (ref ? worker.ref() : worker.unref()),
  };
}
