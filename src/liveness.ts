/**
 * Thread identity and liveness, as the kernel sees them.
 *
 * Linux thread ids are unique across the whole system while the thread
 * exists, so one int32 names a lock's holder whether it is a process's main
 * thread or a worker thread, and a process id is its main thread's id.
 *
 * Liveness reads `/proc/<tid>/stat` rather than `kill(tid, 0)`: a process
 * that was killed but not yet reaped (a zombie) still answers `kill`, yet
 * holds nothing any more, and reaping it may need the very event loop a
 * blocked waiter is holding. A zombie's state is `Z` (or `X` while it is
 * being removed); a thread that ended has no `/proc` entry at all.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { native } from './native/addon.js';

let tid = 0;

/** The calling thread's kernel id (never 0). */
export function selfTid(): number {
  // Without the addon /proc still knows: /proc/thread-self -> "<pid>/task/<tid>".
  return (tid ||= native()?.gettid() ?? Number(readlinkSync('/proc/thread-self').split('/').pop()));
}

/**
 * Whether the thread (or process) `id` exists and has not ended: false for
 * an id with no `/proc` entry and for a zombie.
 */
export function isAlive(id: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${id}/stat`, 'latin1');
  } catch {
    return false;
  }
  // "pid (comm) S …": comm may hold spaces and parentheses, the state follows the last ')'.
  const state = stat.charCodeAt(stat.lastIndexOf(')') + 2);
  return state !== 0x5a /* Z */ && state !== 0x58 /* X */;
}
