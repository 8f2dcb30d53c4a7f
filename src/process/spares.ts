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
 * environment, tsx); otherwise, or when it died, it is ended and the start
 * goes cold. Then a new spare is made.
 *
 * A spare runs no user module, owns no ledger (the parent writes one when it
 * takes it, as for a cold start), is not an active child, never keeps this
 * process alive, and is ended when this isolate exits (or dies with it:
 * the parent-death signal, or the threads of a process). Cost: one idle
 * process or thread per start method used. `MULTIPROCESSING_TS_SPARES=0`
 * turns spares off.
 */
import { ExitStage, atExit } from '../finalize.js';
import type { StartMethod } from './start-method.js';
import { tsxApi } from './tsx.js';

/** A child started ahead of its spec, as a popen strategy made it. */
export interface Spare {
  /** The launch settings it was started with (`launchSettings`). */
  readonly settings: string;
  /** Its pid (a process) or threadId (a thread), for the counters. */
  readonly id: number;
  /** False once it is known to have ended. */
  alive(): boolean;
  /** Ends it; it was not taken. */
  end(): void;
}

/**
 * What tests (and the curious) can read on `globalThis` under
 * `Symbol.for('multiprocessing-ts.spares')`: how many spares this isolate
 * made, took and discarded, and the id of the one idle per start method.
 */
export interface SpareStats {
  made: number;
  taken: number;
  discarded: number;
  readonly idle: { process?: number; thread?: number };
}

const STATS = Symbol.for('multiprocessing-ts.spares');

function stats(): SpareStats {
  const g = globalThis as typeof globalThis & { [STATS]?: SpareStats };
  return (g[STATS] ??= { made: 0, taken: 0, discarded: 0, idle: {} });
}

const idle = new Map<StartMethod, Spare>();
const scheduled = new Set<StartMethod>();
/** Start methods whose spare could not be made: not tried again. */
const failed = new Set<StartMethod>();
let endAtExit = false;

/** True when this isolate's children would profit from spares: the tree runs under tsx, and they are not turned off. */
function wanted(): boolean {
  return tsxApi() !== null && process.env['MULTIPROCESSING_TS_SPARES'] !== '0';
}

/**
 * Everything, besides the spec, that makes a child what it is at the time
 * it is launched: a spare launched under other settings is not used. The
 * environment is read whole (~40 µs): a child sees the environment of its
 * launch, and `process.env` may have changed since.
 */
export function launchSettings(execArgv: readonly string[] | undefined): string {
  let env = '';
  for (const key in process.env) env += `${key}=${process.env[key]}\0`;
  return [process.cwd(), (execArgv ?? ['(inherited)', ...process.execArgv]).join('\0'), tsxApi(), env].join('\u0001');
}

/**
 * The idle spare of `method`, if it still lives and was launched with the
 * `settings()` a start would use now; a spare that does not fit is ended. Null: start cold.
 */
export function takeSpare<S extends Spare>(method: StartMethod, settings: () => string): S | null {
  const spare = idle.get(method);
  if (!spare) return null;
  forget(method, spare);
  if (spare.alive() && spare.settings === settings()) {
    stats().taken++;
    return spare as S;
  }
  stats().discarded++;
  spare.end();
  return null;
}

/** The strategy's `make(settings)` starts a spare; `settings()` says what a start would use now. */
export function offerSpare(method: StartMethod, settings: () => string, make: (settings: string) => Spare): void {
  if (idle.has(method) || scheduled.has(method) || failed.has(method) || !wanted()) return;
  scheduled.add(method);
  // After the start that offered it, not inside it; and never what keeps us running.
  setImmediate(() => {
    scheduled.delete(method);
    if (idle.has(method)) return;
    let spare: Spare;
    try {
      spare = make(settings());
    } catch {
      failed.add(method); // a spare is an optimisation: starts stay cold
      return;
    }
    stats().made++;
    idle.set(method, spare);
    stats().idle[method] = spare.id;
    if (!endAtExit) {
      endAtExit = true;
      atExit(ExitStage.Children, () => {
        for (const [m, s] of idle) {
          forget(m, s);
          s.end();
        }
      });
    }
  }).unref();
}

/** A spare that ended while idle is no longer offered. */
export function forget(method: StartMethod, spare: Spare): void {
  if (idle.get(method) !== spare) return;
  idle.delete(method);
  delete stats().idle[method];
}
