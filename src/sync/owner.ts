/**
 * Who holds a lock: the OS thread id of the holder's thread.
 *
 * Linux thread ids are unique across the whole system while the thread
 * lives, so one int32 names the holder whether it is a process's main thread
 * or a worker thread. `kill(tid, 0)` finds any thread by its id (not only a
 * process's main thread), so it tells whether the holder still lives. That
 * is how a lock held by a killed child is recovered.
 */
import { workerThreads } from '../builtins.js';
import { native } from '../native/addon.js';

let tid = 0;

/** This thread's id as stored in lock words (never 0). */
export function selfTid(): number {
  // Without the addon there is no OS id to be had; threads of one process
  // are told apart by worker id, and liveness is unknowable.
  return (tid ||= native()?.gettid() ?? workerThreads().threadId + 1);
}

/** Whether the thread `tid` still exists. Unknowable without the addon: assume alive. */
export function ownerAlive(tid: number): boolean {
  if (!native()) return true;
  try {
    process.kill(tid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
