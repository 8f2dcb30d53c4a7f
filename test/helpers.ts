/** Shared helpers of the test suite: start methods, bounded waits, child scripts. */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';

export const METHODS: mp.StartMethod[] = mp.getAllStartMethods();

/** A fixture script's path (compiled JS next to this file). */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Polls `check` until it holds or `ms` passes; for states no event announces (a foreign process's death). */
export async function eventually(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until a shared value becomes `expected` (a child's signal), bounded. */
export async function waitForValue(v: mp.SynchronizedValue, expected: number, ms = 20_000): Promise<void> {
  await eventually(() => v.value === expected, ms, `a child to set the value to ${expected}`);
}

/** The entries of /dev/shm the package makes: named blocks (`psm_…`) and trees' directories (`mpts-<pid>-…`). */
export function shmEntries(): Set<string> {
  return new Set(readdirSync('/dev/shm').filter((name) => name.startsWith('psm_') || name.startsWith('mpts-')));
}

/**
 * Waits (bounded) until a run whose main process was `pid` has left nothing
 * in /dev/shm: no directory of its tree (`mpts-<pid>-…`, where every segment
 * it made lives) and no named block beyond those in `before` (taken before
 * the run). The tree's reaper removes them just after the main process ends.
 */
export async function nothingLeftInShm(pid: number, before: Set<string>, what: string): Promise<void> {
  const left = () => [...shmEntries()].filter((name) => (name.startsWith('psm_') ? !before.has(name) : name.startsWith(`mpts-${pid}-`)));
  await eventually(() => left().length === 0, 10_000, `${what}: its /dev/shm entries to go`).catch((err: Error) => {
    throw new Error(`${err.message}; left: ${left().join(', ')}`);
  });
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (bounded), collecting its output. */
export function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish in ${options.timeoutMs ?? 60_000} ms\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * The shared memory under a Value, RawValue, Lock or RLock as the tests see
 * it: the file it lives in (an arena, or a segment of its own) and its own
 * reference count (its arena block's, or its segment header's).
 */
export function regionOf(obj: object): { file: string; refs: () => number } {
  const inner = obj instanceof mp.SynchronizedValue ? obj.getObj() : obj;
  const region = (inner as { segment: unknown }).segment as
    | { map: { path: string; words: Int32Array }; offset: number }
    | { path: string; refs: Int32Array };
  if ('map' in region) {
    const { map, offset } = region;
    return { file: map.path, refs: () => Atomics.load(map.words, offset >> 2) };
  }
  return { file: region.path, refs: () => Atomics.load(region.refs, 0) };
}

/**
 * CPython's `_TestConnection.test_sendbytes` on a connected pair `a` → `b`
 * (any transport): offsets and sizes count bytes, out-of-range ones are a
 * ValueError. The view-offset case differs per form (async, sync), so the
 * callers keep it.
 */
export async function checkSendBytesRanges(a: mp.Connection, b: mp.Connection): Promise<void> {
  const msg = new TextEncoder().encode('abcdefghijklmnopqrstuvwxyz');
  const cases: Array<[number | undefined, number | undefined, string]> = [
    [undefined, undefined, 'abcdefghijklmnopqrstuvwxyz'],
    [5, undefined, 'fghijklmnopqrstuvwxyz'],
    [7, 8, 'hijklmno'],
    [26, undefined, ''],
    [26, 0, ''],
  ];
  for (const [offset, size, expected] of cases) {
    await a.sendBytes(msg, offset, size);
    assert.equal(new TextDecoder().decode(await b.recvBytes()), expected);
  }
  for (const [offset, size] of [[27, undefined], [22, 5], [26, 1], [-1, undefined], [4, -1], [1.5, undefined]] as const) {
    await assert.rejects(a.sendBytes(msg, offset, size), mp.ValueError);
  }
}
