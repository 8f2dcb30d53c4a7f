/**
 * Thread identity and liveness, as the kernel sees them. The one place that
 * reads `/proc/<pid>/stat` (locks, `parentProcess()`, and the ledgers'
 * owner checks all ask here).
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
 * Liveness asks `kill(tid, 0)` first: ESRCH means no such thread, at the
 * cost of one syscall and no file. A thread that answers may still be dead
 * for our purposes, so `/proc/<tid>/stat` is read next: a process that was
 * killed but not yet reaped (a zombie, state `Z`, or `X` while it is being
 * removed) still answers `kill`, yet holds nothing any more, and reaping it
 * may need the very event loop a blocked waiter is holding; and a thread
 * that reuses a dead holder's id answers too, but has another start time.
 *
 * Only a missing thread is dead. When /proc cannot be read (this process is
 * out of descriptors, /proc is mounted hidepid or is unreadable), the thread
 * that answers `kill` counts as alive, its zombie state and start time
 * unchecked: taking a live holder's lock breaks mutual exclusion, while
 * waiting on a dead one only waits until /proc can be read again, or until
 * the zombie is reaped and `kill` fails.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { native } from './native/addon.js';

const TID_BITS = 22;
const TID_MASK = (1 << TID_BITS) - 1;

/** State letter (as a char code) and start time (clock ticks since boot) of a thread, from its /proc entry. */
interface Stat {
  readonly state: number;
  readonly start: number;
}

/** /proc has no entry, and `kill` finds no such thread. */
const GONE = 'gone';
/** /proc cannot tell (unreadable or hidden), and `kill` finds the thread. */
const UNKNOWN = 'unknown';

/** Whether a thread or process `tid` exists (a zombie does): `kill(tid, 0)` fails with ESRCH only when it does not. */
function exists(tid: number): boolean {
  try {
    process.kill(tid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, and belongs to someone we may not signal.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** What /proc/<tid>/stat says about `tid`; `kill` decides when it cannot be read. */
function look(tid: number): Stat | typeof GONE | typeof UNKNOWN {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${tid}/stat`, 'latin1');
  } catch {
    // ENOENT: gone, unless hidepid hides another user's process from us
    // (then `kill` says EPERM). EMFILE, ENFILE, EACCES…: says nothing about
    // the thread. Either way `kill` knows whether it exists.
    return exists(tid) ? UNKNOWN : GONE;
  }
  // "tid (comm) S ppid …": comm may hold spaces and parentheses; fields resume after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
  return { state: rest[0]!.charCodeAt(0), start: Number(rest[19]) };
}

function isZombie(stat: Stat): boolean {
  return stat.state === 0x5a /* Z */ || stat.state === 0x58 /* X */;
}

/** A tag in 1..255 from a start time. */
function tagOf(start: number): number {
  return (Math.imul(start | 0, 0x9e3779b1) >>> 24) % 255 + 1;
}

/**
 * This isolate's holder id, on `globalThis` (versioned key) so that every
 * copy of the package in the isolate writes the same id into lock words.
 */
const SELF = Symbol.for('multiprocessing-ts.holder-id.v1');
type WithSelf = typeof globalThis & { [SELF]?: number };

/** This copy's cache of the shared holder id. */
let self = 0;

/**
 * The calling thread's holder id: its kernel thread id with the tag of its
 * start time (never 0; untagged if /proc could not be read).
 */
export function selfTid(): number {
  if (self !== 0) return self;
  const g = globalThis as WithSelf;
  // Without the addon /proc still knows: /proc/thread-self -> "<pid>/task/<tid>".
  if (g[SELF] === undefined) {
    const tid = native()?.gettid() ?? Number(readlinkSync('/proc/thread-self').split('/').pop());
    g[SELF] = holderIdOf(tid) || tid;
  }
  return (self = g[SELF]);
}

/** The holder id of the live thread `tid` (0 when /proc has no readable entry for it). */
export function holderIdOf(tid: number): number {
  const stat = look(tid);
  return typeof stat === 'object' ? tid | (tagOf(stat.start) << TID_BITS) : 0;
}

/** The thread id part of a holder id. */
export function threadIdOf(id: number): number {
  return id & TID_MASK;
}

/**
 * How long an "alive" verdict is trusted. A waiter looks at the holder after
 * every failed try-lock and every 100 ms sleep slice; without this each look
 * costs a signal probe and a read and parse of /proc, while the holder is
 * almost always alive. Trusting it for a few ms delays noticing a death by
 * at most that much, far within the promise to recover within a second.
 * "Dead" is never remembered: a dead verdict is acted on at once (the lock
 * is taken over, and the dead id leaves the lock word), and a stale one
 * would be harmful, where a stale "alive" only delays.
 */
const ALIVE_TRUSTED_MS = 25;
/** More distinct holders than this at once are rare; the memo is then simply started afresh. */
const ALIVE_MEMO_MAX = 64;
/** Holder id -> until when (performance.now()) it is known alive. Per isolate. */
const aliveUntil = new Map<number, number>();

/**
 * Whether the thread (or process) `id` names exists and has not ended:
 * false when `kill` finds no such thread, for a zombie, and for a thread
 * that reuses the id of the one `id` was tagged with. True when the thread
 * exists but /proc cannot be read (the zombie state and tag then go
 * unchecked; see above). An "alive" answer may be up to 25 ms old.
 */
export function isAlive(id: number): boolean {
  const until = aliveUntil.get(id);
  if (until !== undefined && performance.now() < until) return true;
  return isAliveNow(id);
}

/**
 * `isAlive` without trusting an earlier verdict: for decisions that a
 * death a few ms ago must change (a Condition's notify handing a wake to a
 * waiter), where `isAlive`'s memo would count a waiter killed just now.
 */
export function isAliveNow(id: number): boolean {
  const tid = id & TID_MASK;
  if (tid === 0) return false;
  const now = performance.now();
  if (!exists(tid)) return forget(id);
  const stat = look(tid);
  if (stat === GONE) return forget(id);
  if (stat !== UNKNOWN) {
    if (isZombie(stat)) return forget(id);
    const tag = id >>> TID_BITS;
    if (tag !== 0 && tag !== tagOf(stat.start)) return forget(id);
  }
  if (aliveUntil.size >= ALIVE_MEMO_MAX) aliveUntil.clear();
  aliveUntil.set(id, now + ALIVE_TRUSTED_MS);
  return true;
}

function forget(id: number): false {
  aliveUntil.delete(id);
  return false;
}

/**
 * The start time of process `pid` (field 22 of its /proc stat, clock ticks
 * since boot), telling it from a later process under the same pid; null
 * when /proc cannot tell.
 */
export function startTimeOf(pid: number | 'self'): number | null {
  const stat = look(pid === 'self' ? process.pid : pid);
  return typeof stat === 'object' && Number.isFinite(stat.start) ? stat.start : null;
}

/**
 * Whether process `pid`, which had start time `start` (from `startTimeOf`),
 * is surely gone: no such process, a zombie, or another process under a
 * reused pid. False whenever it cannot be told (/proc unreadable, and a
 * process with that pid exists).
 */
export function processGone(pid: number, start: number): boolean {
  const stat = look(pid);
  if (stat === GONE) return true;
  if (stat === UNKNOWN) return false;
  return isZombie(stat) || stat.start !== start;
}
