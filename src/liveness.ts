/**
 * Thread identity and liveness, as the kernel sees them.
 *
 * Linux thread ids are unique across the whole system while the thread
 * exists, so one int32 names a lock's holder whether it is a process's main
 * thread or a worker thread (a process id is its main thread's id). Ids are
 * reused once their thread is gone, so a holder's id carries a tag of its
 * thread's start time as well: a new thread that got a dead holder's id has
 * another start time, and is not taken for the holder.
 *
 * Holder id (int32): bits 0–21 the thread id (Linux's pid_max is at most
 * 2^22), bits 22–29 the start-time tag (1–255; 0 means "no tag": a plain
 * pid, checked by existence only). Bits 30–31 are left to the lock word.
 *
 * Liveness reads `/proc/<tid>/stat` rather than `kill(tid, 0)`: a process
 * that was killed but not yet reaped (a zombie) still answers `kill`, yet
 * holds nothing any more, and reaping it may need the very event loop a
 * blocked waiter is holding. A zombie's state is `Z` (or `X` while it is
 * being removed); a thread that ended has no `/proc` entry at all.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { native } from './native/addon.js';

const TID_BITS = 22;
const TID_MASK = (1 << TID_BITS) - 1;

/** State letter and start time (clock ticks since boot) of a thread, or null when it has no /proc entry. */
function readStat(path: string): { state: number; start: number } | null {
  let stat: string;
  try {
    stat = readFileSync(path, 'latin1');
  } catch {
    return null;
  }
  // "tid (comm) S ppid …": comm may hold spaces and parentheses; fields resume after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
  return { state: rest[0]!.charCodeAt(0), start: Number(rest[19]) };
}

/** A tag in 1..255 from a start time. */
function tagOf(start: number): number {
  return (Math.imul(start | 0, 0x9e3779b1) >>> 24) % 255 + 1;
}

let self = 0;

/**
 * The calling thread's holder id: its kernel thread id with the tag of its
 * start time (never 0).
 */
export function selfTid(): number {
  if (self !== 0) return self;
  // Without the addon /proc still knows: /proc/thread-self -> "<pid>/task/<tid>".
  const tid = native()?.gettid() ?? Number(readlinkSync('/proc/thread-self').split('/').pop());
  return (self = holderIdOf(tid) || tid);
}

/** The holder id of the live thread `tid` (0 when it has no /proc entry). */
export function holderIdOf(tid: number): number {
  const stat = readStat(`/proc/${tid}/stat`);
  return stat ? tid | (tagOf(stat.start) << TID_BITS) : 0;
}

/** The thread id part of a holder id. */
export function threadIdOf(id: number): number {
  return id & TID_MASK;
}

/**
 * Whether the thread (or process) `id` names exists and has not ended:
 * false with no `/proc` entry, for a zombie, and for a thread that reuses
 * the id of the one `id` was tagged with.
 */
export function isAlive(id: number): boolean {
  const stat = readStat(`/proc/${id & TID_MASK}/stat`);
  if (stat === null || stat.state === 0x5a /* Z */ || stat.state === 0x58 /* X */) return false;
  const tag = id >>> TID_BITS;
  return tag === 0 || tag === tagOf(stat.start);
}
