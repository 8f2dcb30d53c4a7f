/**
 * Who am I: `currentProcess()`, `parentProcess()`, `isMainProcess()`,
 * `activeChildren()`, `cpuCount()`.
 */
import { availableParallelism } from 'node:os';
import { workerThreads } from '../builtins.js';
import { runtime } from '../runtime.js';
import { isAlive } from '../liveness.js';
import type { Process, ProcessLike } from './process.js';
import { liveChildren } from './registry.js';

/**
 * True in the tree's main process, false in every child this package
 * started: Python's `if __name__ == "__main__":`.
 * @example `if (mp.isMainProcess()) { … start children … }`
 */
export function isMainProcess(): boolean {
  return runtime().child === null;
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
  };
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
