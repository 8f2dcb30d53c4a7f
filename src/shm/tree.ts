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
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { childProcess, randomHex } from '../builtins.js';
import { runtime } from '../runtime.js';

/** Where POSIX shared memory lives on Linux. */
export const SHM_ROOT = '/dev/shm';

const REAPER_SCRIPT = [
  "trap '' INT TERM HUP QUIT",
  'cat >/dev/null',
  'for f in "$1"/names/*; do [ -e "$f" ] && rm -f "/dev/shm/${f##*/}"; done',
  'rm -rf "$1"',
].join('\n');

/** Held so the pipe stays open for as long as this process lives. */
let reaper: ChildProcess | null = null;

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
  startReaper(dir);
  state.treeDir = dir;
  return dir;
}

function startReaper(dir: string): void {
  try {
    reaper = childProcess().spawn('/bin/sh', ['-c', REAPER_SCRIPT, 'mpts-reaper', dir], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
  } catch {
    reaper = null;
  }
  if (!reaper?.stdin) {
    // Without a reaper, clean what a normal exit lets us clean.
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return;
  }
  reaper.on('error', () => {});
  reaper.stdin.on('error', () => {});
  reaper.unref();
  // The pipe must not keep this process alive; it only has to exist.
  (reaper.stdin as unknown as { unref(): void }).unref();
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
