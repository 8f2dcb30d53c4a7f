/**
 * Who am I: `currentProcess()`, `parentProcess()`, `isMainProcess()`,
 * `activeChildren()`, `cpuCount()`.
 */
import { availableParallelism } from 'node:os';
import { crypto, workerThreads } from '../builtins.js';
import { runtime } from '../runtime.js';
import { isAlive } from '../liveness.js';
import { ValueError } from '../errors.js';
import { describe } from '../describe.js';
import type { Process, ProcessLike } from './process.js';
import { liveChildren } from './registry.js';

/**
 * True in the tree's main process, false in every child this package
 * started: Python's `if __name__ == "__main__":`.
 * @example `if (mp.isMainProcess()) { … start children … }`
 */
export function isMainProcess(): boolean {
  return runtime().child === null && !importingTaskModule;
}

/**
 * True while a cluster worker imports its task module: that module is the
 * workers' library, not their main program, so its guarded main code must
 * not run there (as Python's workers import a module under another
 * `__name__` than `'__main__'`).
 */
let importingTaskModule = false;

/** @internal Imports `url` with `isMainProcess()` false meanwhile (cluster/pool/worker.ts). */
export async function importAsTaskModule(url: string): Promise<Record<string, unknown>> {
  importingTaskModule = true;
  try {
    return (await import(url)) as Record<string, unknown>;
  } finally {
    importingTaskModule = false;
  }
}

/**
 * This process (or thread child): `name` is 'MainProcess' in the main one.
 * In a child that runs a `Process` subclass it is that subclass's instance,
 * as in Python.
 */
export function currentProcess(): ProcessLike {
  const { child, currentProcess: instance } = runtime();
  if (instance) return instance as ProcessLike;
  return {
    name: child?.name ?? 'MainProcess',
    pid: process.pid,
    threadId: workerThreads().threadId,
    daemon: child?.daemon ?? false,
    exitCode: null,
    isAlive: () => true,
    get authkey() {
      return processAuthkey();
    },
    set authkey(key: Uint8Array) {
      setProcessAuthkey(key);
    },
  };
}

/**
 * This process's authkey, Python's `current_process().authkey`: 32 random
 * bytes made once by the tree's main process and inherited by every child
 * (unless a `Process` was given another), the default key of managers and
 * their proxies. A copy: changing it changes nothing.
 */
export function processAuthkey(): Uint8Array {
  const state = runtime();
  if (!state.authkey) {
    const inherited = state.child?.authkey;
    state.authkey = inherited ? new Uint8Array(Buffer.from(inherited, 'base64')) : new Uint8Array(crypto().randomBytes(32));
  }
  return state.authkey.slice();
}

/** Sets this process's authkey (Python's `current_process().authkey = …`); children started later inherit it. */
export function setProcessAuthkey(key: unknown): void {
  runtime().authkey = checkedAuthkey(key);
}

/** A non-empty Uint8Array (copied), or a ValueError naming what was given instead. */
export function checkedAuthkey(key: unknown): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length === 0) {
    throw new ValueError(`authkey must be a non-empty Uint8Array (bytes), not ${describe(key)}`);
  }
  return key.slice();
}

/** The process that started this one; null in the main process. */
export function parentProcess(): ProcessLike | null {
  const child = runtime().child;
  if (!child) return null;
  const { name, pid, threadId: parentThread } = child.parent;
  // A thread child lives in its parent's process: while it runs, the parent does.
  const alive = () => (child.startMethod === 'thread' ? true : isAlive(pid));
  return {
    name,
    pid,
    threadId: parentThread,
    daemon: false,
    get exitCode() {
      return alive() ? null : 0;
    },
    isAlive: alive,
    // A child inherits its parent's key, as in Python (unless its Process was given another).
    get authkey() {
      return processAuthkey();
    },
  };
}

/** The children of this process that are still running (Python's `active_children()`). */
export function activeChildren(): Process[] {
  return [...liveChildren].filter((c) => c.isAlive()) as Process[];
}

/** The number of CPUs this process may use. */
export function cpuCount(): number {
  return availableParallelism();
}
