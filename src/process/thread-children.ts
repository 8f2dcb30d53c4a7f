/**
 * Children a worker thread starts, reaped after the thread ends.
 *
 * libuv reaps a child through the loop that spawned it, and a worker
 * thread's loop ends with the thread: the children it started (a pool's or a
 * manager's processes, its tree's reaper) end too, by their parent-death
 * signal or their closed pipe, but stayed zombies until the whole process
 * exited. Each is watched by the addon (native/src/children.cc) until its
 * exit is seen here; what is left when the thread ends, the addon reaps.
 */
import type { ChildProcess } from 'node:child_process';
import { workerThreads } from '../builtins.js';
import { native } from '../native/addon.js';

/** Call right after spawning `child` (before this thread's loop turns). Nothing to do in a main thread. */
export function reapAfterThisThread(child: ChildProcess): void {
  const pid = child.pid;
  const addon = native();
  if (pid === undefined || !addon || workerThreads().isMainThread) return;
  if (!addon.watchChild(pid)) return;
  child.once('exit', () => addon.unwatchChild(pid));
}
