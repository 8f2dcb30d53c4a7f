/**
 * Warm spare children, for trees that run under tsx (as Python's forkserver
 * keeps a warm server, for the same reason: a cold start is expensive).
 *
 * A TypeScript child pays for its module hooks before it runs anything: on
 * Node 20 they need Node's loader thread, which alone costs about a whole
 * Worker's start. So once this isolate has started a child of a start
 * method, it starts one spare of that method in the background: a process
 * or Worker that loads the bootstrap, registers our hooks (a process also
 * arms its parent-death signal, as every child) and waits for its spec as a
 * message. The next start of that method takes it, if it was launched with
 * the settings that start would use (execArgv, working directory,
 * environment, tsx; for a process also its credentials and umask) and is
 * ready (a process: its bootstrap runs and shields it from the signals of
 * its parent's process group); otherwise, or when it died, it is ended (a
 * spare still booting is kept) and the start goes cold. Then a new spare is
 * made. A method whose spares were discarded unfit at two starts in a row
 * (a parent that changes `process.env` before each start) makes no more.
 * Each method keeps two: a spare boots in about twice the time a warm child
 * takes to start and end, so with one, back-to-back starts would each find
 * their spare still booting; with two, each has two starts' time to get ready.
 *
 * A spare runs no user module (no spare is made while the children's
 * execArgv or NODE_OPTIONS preload anything but tsx), owns no ledger (the
 * parent writes one when it takes it, as for a cold start), is not an
 * active child, never keeps this process alive, and is ended when this
 * isolate exits (or dies with it: the parent-death signal, or the threads
 * of a process). Cost, at most: two idle processes (~55 MB each) and two
 * idle threads (~20 MB each). `MULTIPROCESSING_TS_SPARES=0` turns spares off.
 */
import { readFileSync } from 'node:fs';
import { ExitStage, atExit } from '../finalize.js';
import type { StartMethod } from './start-method.js';
import { tsxApi } from './tsx.js';
import { PRELOADS, nodeOptionTokens } from './preloads.js';

/** A child started ahead of its spec, as a popen strategy made it. */
export interface Spare {
  /** The launch settings it was started with (`launchSettings`). */
  readonly settings: string;
  /** Its pid (a process) or threadId (a thread), for the counters. */
  readonly id: number;
  /** False once it is known to have ended. */
  alive(): boolean;
  /** False while it boots and could not yet receive a spec safely: it is skipped (kept), the start goes cold. */
  ready(): boolean;
  /** Ends it; it was not taken. */
  end(): void;
}

/**
 * What tests (and the curious) can read on `globalThis` under
 * `Symbol.for('multiprocessing-ts.spares')`: how many spares this isolate
 * made, took and discarded, and per start method the id of the idle spare
 * the next start would take (once it is ready).
 */
export interface SpareStats {
  made: number;
  taken: number;
  discarded: number;
  readonly idle: { process?: number; thread?: number };
  /** How many spares are idle per start method, ready or still booting. */
  readonly ready: { process?: number; thread?: number };
}

const STATS = Symbol.for('multiprocessing-ts.spares');

function stats(): SpareStats {
  const g = globalThis as typeof globalThis & { [STATS]?: SpareStats };
  return (g[STATS] ??= { made: 0, taken: 0, discarded: 0, idle: {}, ready: {} });
}

/** How many spares each start method keeps ready (see the module comment). */
const CAPACITY: Record<StartMethod, number> = { process: 2, thread: 2 };

/** Idle spares per start method, oldest (next taken) first. */
const idle = new Map<StartMethod, Spare[]>();
/** Spares per start method whose launch is scheduled but not made yet. */
const scheduled = new Map<StartMethod, number>();
/** Start methods whose spare could not be made, or whose spares kept being unfit: not tried again. */
const failed = new Set<StartMethod>();
/** Starts in a row, per start method, that discarded idle spares as unfit and took none. */
const misses = new Map<StartMethod, number>();
/** After this many such starts in a row, a method makes no more spares: the parent changes their settings before every start. */
const MAX_MISSES = 2;
let endAtExit = false;

/** True when this isolate's children would profit from spares: the tree runs under tsx, and they are not turned off. */
function wanted(): boolean {
  return tsxApi() !== null && process.env['MULTIPROCESSING_TS_SPARES'] !== '0';
}

/**
 * Everything, besides the spec, that makes a child what it is at the time
 * it is launched: a spare launched under other settings is not used. The
 * environment is read whole (~40 µs): a child sees the environment of its
 * launch, and `process.env` may have changed since. A process also has the
 * credentials and umask of its launch (a thread shares its process's).
 */
export function launchSettings(method: StartMethod, execArgv: readonly string[] | undefined): string {
  let env = '';
  for (const key in process.env) env += `${key}=${process.env[key]}\0`;
  const own = method === 'process' ? processCredentials() : '';
  return [process.cwd(), (execArgv ?? ['(inherited)', ...process.execArgv]).join('\0'), tsxApi(), own, env].join('\u0001');
}

/** uid, gid, groups and umask of this process: what `process.setuid()`, `process.umask()`… change. */
function processCredentials(): string {
  const ids = [process.getuid?.(), process.geteuid?.(), process.getgid?.(), process.getegid?.(), process.getgroups?.().join(',')];
  return `${ids.join(' ')} ${umask()}`;
}

/** The umask, read without setting it (`process.umask()` without an argument is deprecated: it writes it back, racing threads). */
function umask(): string {
  try {
    return /^Umask:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'latin1'))?.[1] ?? '?';
  } catch {
    return '?';
  }
}

/** tsx's own entry points, as `--import tsx` and the tsx CLI name them. */
function isTsx(value: string): boolean {
  return value === 'tsx' || value.startsWith('tsx/') || /[/\\]node_modules[/\\]tsx[/\\]/.test(value);
}

/**
 * True when children started with `execArgv` (undefined: ours) and our
 * NODE_OPTIONS would preload a module other than tsx's: it would run in
 * every spare, taken or not, and see a spare rather than a child.
 */
export function preloadsUserCode(execArgv: readonly string[] | undefined): boolean {
  const nodeOptions = nodeOptionTokens(process.env['NODE_OPTIONS'] ?? '');
  for (const tokens of [nodeOptions, execArgv ?? process.execArgv]) {
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      const eq = token.startsWith('--') ? token.indexOf('=') : -1;
      const name = eq > 0 ? token.slice(0, eq) : token;
      if (!PRELOADS.has(name)) continue;
      const value = eq > 0 ? token.slice(eq + 1) : tokens[++i];
      if (value !== undefined && !isTsx(value)) return true;
    }
  }
  return false;
}

function publish(method: StartMethod): void {
  const queue = idle.get(method) ?? [];
  if (queue[0]?.ready()) stats().idle[method] = queue[0].id;
  else delete stats().idle[method];
  stats().ready[method] = queue.length;
}

/**
 * The oldest idle spare of `method` that still lives, is ready and was
 * launched with the settings a start with `execArgv` would use now; spares
 * that died or do not fit are ended. Null: start cold.
 */
export function takeSpare<S extends Spare>(method: StartMethod, execArgv: readonly string[] | undefined): S | null {
  const queue = idle.get(method);
  if (!queue || queue.length === 0) return null;
  let now: string | null = null;
  let unfit = false;
  let taken: Spare | null = null;
  while (queue.length > 0) {
    const spare = queue[0]!;
    const alive = spare.alive();
    if (alive && spare.settings === (now ??= launchSettings(method, execArgv))) {
      if (spare.ready()) taken = queue.shift()!;
      break; // still booting: kept for a later start
    }
    queue.shift();
    if (alive) unfit = true;
    stats().discarded++;
    spare.end();
  }
  publish(method);
  if (taken) {
    misses.set(method, 0);
    stats().taken++;
  } else if (unfit) {
    const n = (misses.get(method) ?? 0) + 1;
    misses.set(method, n);
    if (n >= MAX_MISSES) failed.add(method);
  }
  return taken as S | null;
}

/** The strategy's `make(settings)` starts a spare for children started with `execArgv`. Fills up to the method's capacity. */
export function offerSpare(method: StartMethod, execArgv: readonly string[] | undefined, make: (settings: string) => Spare): void {
  if (failed.has(method) || !wanted() || preloadsUserCode(execArgv)) return;
  const missing = CAPACITY[method] - (idle.get(method)?.length ?? 0) - (scheduled.get(method) ?? 0);
  if (missing <= 0) return;
  scheduled.set(method, (scheduled.get(method) ?? 0) + 1);
  // After the start that offered it, not inside it; one at a time (the next
  // offer, at the next start, adds another); never what keeps us running.
  setImmediate(() => {
    scheduled.set(method, (scheduled.get(method) ?? 1) - 1);
    const queue = idle.get(method) ?? [];
    if (queue.length >= CAPACITY[method] || failed.has(method)) return;
    let spare: Spare;
    try {
      spare = make(launchSettings(method, execArgv));
    } catch {
      failed.add(method); // a spare is an optimisation: starts stay cold
      return;
    }
    stats().made++;
    queue.push(spare);
    idle.set(method, queue);
    publish(method);
    if (!endAtExit) {
      endAtExit = true;
      atExit(ExitStage.Children, () => {
        for (const [m, spares] of idle) {
          for (const s of [...spares]) {
            forget(m, s);
            s.end();
          }
        }
      });
    }
    // Fill up to capacity, one launch per turn.
    offerSpare(method, execArgv, make);
  }).unref();
}

/** A spare that became ready may be the next one taken. */
export function readied(method: StartMethod): void {
  publish(method);
}

/** A spare that ended while idle is no longer offered. */
export function forget(method: StartMethod, spare: Spare): void {
  const queue = idle.get(method);
  const at = queue ? queue.indexOf(spare) : -1;
  if (at < 0) return;
  queue!.splice(at, 1);
  publish(method);
}
