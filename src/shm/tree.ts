/**
 * The process tree's private directory in /dev/shm, and its reaper.
 *
 * Every segment a tree creates lives as a file in `/dev/shm/mpts-<pid>-<rand>/`
 * (named SharedMemory blocks live at `/dev/shm/<name>`, as in Python, with a
 * marker in `names/` of that directory). Crash safety comes from one tiny
 * `sh` process started by the tree's main process: it reads a pipe whose only
 * writer is the main process, so it sees end-of-file exactly when the main
 * process is gone (normal exit, exception or SIGKILL alike), then removes the
 * marked names and the directory. It runs in its own session so a Ctrl-C to
 * the terminal's process group cannot stop it before it has cleaned up.
 *
 * The main thread starts the reaper with the native addon's posix_spawn
 * (`spawnDetached`), not `child_process.spawn`: a fork copies this
 * process's page tables under its memory map's lock, stalling the page
 * faults of every other thread meanwhile, and the tree is usually made
 * while a pool's first workers boot (measured: 3–5 ms of a first pool's
 * start to its first result). Elsewhere (a Worker of the program's own
 * that makes a tree: its reaper must see the end of that isolate, which
 * closes its pipe) and with an addon built before `spawnDetached`,
 * `child_process.spawn` starts it as before.
 *
 * If the reaper cannot run (no shell), or if it dies, the main process
 * removes the same things itself when it exits normally. Through the addon
 * a failed start throws at once, and a reaper that died is found at exit
 * (nothing reaps it, so it stays a zombie until then). Through
 * `child_process` a failed spawn is reported asynchronously, by an 'error'
 * event after `spawn()` has returned a child with pipes; so that cleanup is
 * armed from the start and disarmed once the reaper has spawned, and an
 * exit before the spawn is known to have worked is covered too.
 *
 * `ledgers/` holds the children's ledgers (ledger.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { childProcess, randomHex } from '../builtins.js';
import { ExitStage, atExit } from '../finalize.js';
import { processGone, startTimeOf } from '../liveness.js';
import { native } from '../native/addon.js';
import { runtime } from '../runtime.js';
import { reapAfterThisThread } from '../process/thread-children.js';

/** Where POSIX shared memory lives on Linux. */
export const SHM_ROOT = '/dev/shm';

const REAPER_SCRIPT = [
  // (Its spawn sets the directory too, but not with a glibc older than 2.29: see native/src/spawn.cc.)
  'cd /',
  "trap '' INT TERM HUP QUIT",
  'cat >/dev/null',
  'for f in "$1"/names/*; do [ -e "$f" ] && rm -f "/dev/shm/${f##*/}"; done',
  'rm -rf "$1"',
].join('\n');

/**
 * The shell the reaper runs. MULTIPROCESSING_TS_REAPER_SHELL names another
 * POSIX shell, for systems without /bin/sh; a path that cannot run makes the
 * tree fall back to cleaning up at its main process's exit (which the tests
 * use to check that fallback).
 */
function reaperShell(): string {
  return process.env['MULTIPROCESSING_TS_REAPER_SHELL'] || '/bin/sh';
}

/** Held so the pipe stays open for as long as this process lives. */
let reaper: ChildProcess | null = null;
/** The write end of a reaper's pipe started through the addon: never closed, so it closes with this process. */
let reaperPipe: number | null = null;

/**
 * The tree's directory, created (with its reaper) on first use in the main
 * process; children receive it from their parent.
 */
export function treeDir(): string {
  const state = runtime();
  if (state.treeDir) return state.treeDir;
  if (state.child?.treeDir) {
    state.treeDir = state.child.treeDir;
    return state.treeDir;
  }
  const dir = `${SHM_ROOT}/mpts-${process.pid}-${randomHex(4)}`;
  mkdirSync(`${dir}/names`, { recursive: true, mode: 0o700 });
  mkdirSync(`${dir}/ledgers`, { mode: 0o700 });
  startReaper(dir);
  state.treeDir = dir;
  return dir;
}

function startReaper(dir: string): void {
  const addon = native();
  // The main thread's id is the pid: only its pipe lasts as long as the process.
  if (addon?.spawnDetached && addon.gettid() === process.pid) {
    spawnReaper(addon.spawnDetached, dir);
    return;
  }
  // Without a reaper, clean what a normal exit lets us clean.
  let disarm: (() => void) | null = atExit(ExitStage.Tree, () => removeTree(dir));
  const rearm = () => void (disarm ??= atExit(ExitStage.Tree, () => removeTree(dir)));
  try {
    reaper = childProcess().spawn(reaperShell(), ['-c', REAPER_SCRIPT, 'mpts-reaper', dir], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
      // It lives as long as the tree: it must not keep the user's directory busy.
      cwd: '/',
    });
  } catch {
    reaper = null;
  }
  if (reaper) reapAfterThisThread(reaper);
  if (!reaper?.stdin) return;
  reaper.once('spawn', () => {
    disarm?.();
    disarm = null;
  });
  reaper.on('error', rearm);
  reaper.once('exit', rearm); // killed by someone: nobody is left to clean after us
  reaper.stdin.on('error', () => {});
  reaper.unref();
  // The pipe must not keep this process alive; it only has to exist.
  (reaper.stdin as unknown as { unref(): void }).unref();
}

/** Starts the reaper through the addon; at exit, cleans up itself when it could not, or when the reaper is gone. */
function spawnReaper(spawnDetached: NonNullable<ReturnType<typeof native>>['spawnDetached'] & {}, dir: string): void {
  const shell = reaperShell();
  let pid: number;
  try {
    ({ pid, stdin: reaperPipe } = spawnDetached(shell, [shell, '-c', REAPER_SCRIPT, 'mpts-reaper', dir], '/'));
  } catch (err) {
    // Without a reaper, a SIGKILL of this process would leave the tree's shared memory behind.
    process.emitWarning(`multiprocessing-ts: could not start the shared-memory reaper (${shell}): ${(err as Error)?.message ?? err}; /dev/shm is cleaned at a normal exit only`);
    atExit(ExitStage.Tree, () => removeTree(dir));
    return;
  }
  const start = startTimeOf(pid);
  atExit(ExitStage.Tree, () => {
    // Killed by someone (a zombie now), or unknown to /proc: nobody is left to clean after us.
    if (start === null || processGone(pid, start)) removeTree(dir);
  });
}

/** What the reaper does, for a tree without one: the marked top-level names, then the directory. */
function removeTree(dir: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(`${dir}/names`);
  } catch {
    // No names marked.
  }
  for (const name of names) rmSync(`${SHM_ROOT}/${name}`, { force: true });
  rmSync(dir, { recursive: true, force: true });
}

/** Records that this tree created the top-level name `/dev/shm/<name>`. */
export function markNameOwned(name: string): void {
  writeFileSync(`${treeDir()}/names/${name}`, '');
}

/** Forgets a top-level name (after it was unlinked explicitly). */
export function unmarkName(name: string): void {
  const dir = runtime().treeDir ?? runtime().child?.treeDir;
  if (dir) rmSync(`${dir}/names/${name}`, { force: true });
}
