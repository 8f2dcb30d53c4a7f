/**
 * Who holds a lock: the OS thread id of the holder's thread.
 *
 * Linux thread ids are unique across the whole system while the thread
 * lives, so one int32 names the holder whether it is a process's main thread
 * or a worker thread, and `tgkill(pid, tid, 0)` tells whether it still
 * lives. That is how a lock held by a killed child is recovered.
 */
import { workerThreads } from '../builtins.js';
import { native } from '../native/addon.js';

let tid = 0;

/** This thread's id as stored in lock words (never 0). */
export function selfTid(): number {
  return (tid ||= native()?.gettid() ?? workerThreads().threadId + 1);
}

/** This process's id, stored next to the tid to check liveness precisely. */
export const SELF_PID: number = process.pid;

/** Whether the thread `tid` of process `pid` still exists. Unknowable without the addon: assume alive. */
export function ownerAlive(pid: number, tid: number): boolean {
  const addon = native();
  return addon ? addon.threadAlive(pid, tid) : true;
}
