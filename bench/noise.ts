/**
 * Foreign CPU load: how much CPU *other* processes used while a sample ran.
 *
 * The machine has 2 cores and is shared, so a slow sample may be our code or
 * somebody's build. We measure, per sample,
 *
 *   foreign cores = (system busy CPU from /proc/stat − our own CPU) / wall
 *
 * where "our own CPU" is this process (all its threads, so thread children
 * count) plus every child it has reaped (/proc/self/stat cutime + cstime,
 * which getrusage(RUSAGE_CHILDREN) reports too; it covers process children
 * and the Python anchor with the children *it* reaped), plus our live
 * descendants (a `'process'` pool's workers live across samples: their CPU
 * counted as foreign made every sample of those rows look loaded, and the
 * retry then kept the attempt with the least of it, the slowest), plus CPU
 * a helper reports that nobody reaps (Python's forkserver and resource
 * tracker). Anything left is load we did not cause.
 *
 * Resolution: /proc/stat counts in clock ticks (10 ms), so a sample shorter
 * than ~0.2 s reads with ±0.05 cores of quantisation noise.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Clock ticks per second of /proc/stat and /proc/<pid>/stat (USER_HZ). */
const TICKS_PER_S: number = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100; // USER_HZ is 100 on every mainstream Linux build
  }
})();

/** Busy CPU seconds of the whole machine since boot (all cores summed). */
function machineBusyS(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  // cpu  user nice system idle iowait irq softirq steal …; idle, iowait and
  // steal are time nobody on this guest ran, so they are not busy.
  const [user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq!) / TICKS_PER_S;
}

/** CPU seconds of children this process has waited for (cutime + cstime). */
function reapedChildrenS(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // The command name (field 2) may contain spaces and ')', so split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); cutime and cstime are fields 16 and 17.
  return (Number(fields[13]) + Number(fields[14])) / TICKS_PER_S;
}

/**
 * CPU seconds of this process's live descendants (theirs and what they
 * reaped), found by their parent pids in /proc. A descendant reaped during
 * a sample moves its CPU into its parent's (or our) reaped total, so the
 * sum stays continuous.
 */
function liveDescendantsS(): number {
  const parents = new Map<number, { ppid: number; cpu: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // f[1] ppid (field 4); utime, stime, cutime, cstime are fields 14–17.
    parents.set(Number(name), { ppid: Number(f[1]), cpu: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
  }
  let total = 0;
  for (const [pid, { cpu }] of parents) {
    for (let p = parents.get(pid)?.ppid; p !== undefined && p > 1; p = parents.get(p)?.ppid) {
      if (p === process.pid) {
        total += cpu;
        break;
      }
    }
  }
  return total / TICKS_PER_S;
}

/** CPU seconds of this process, all threads (worker-thread children included). */
function selfS(): number {
  const u = process.resourceUsage();
  return (u.userCPUTime + u.systemCPUTime) / 1e6;
}

export interface Load {
  /** Cores' worth of CPU used by other processes during the sample. */
  readonly foreignCores: number;
  /** Cores' worth of CPU used by the sample itself (us, children, helpers). */
  readonly ownCores: number;
  readonly wallS: number;
}

/** A running measurement; `stop()` ends it. */
export interface LoadProbe {
  /** @param untrackedOwnS CPU seconds of our own helpers that were never reaped. */
  stop(untrackedOwnS?: number): Load;
}

/** Starts measuring foreign load now. */
export function startLoadProbe(): LoadProbe {
  const busy0 = machineBusyS();
  const own0 = selfS() + reapedChildrenS() + liveDescendantsS();
  const t0 = performance.now();
  return {
    stop(untrackedOwnS = 0): Load {
      const wallS = (performance.now() - t0) / 1e3;
      const busy = machineBusyS() - busy0;
      const own = selfS() + reapedChildrenS() + liveDescendantsS() - own0 + untrackedOwnS;
      return {
        foreignCores: wallS > 0 ? Math.max(0, busy - own) / wallS : 0,
        ownCores: wallS > 0 ? own / wallS : 0,
        wallS,
      };
    },
  };
}
