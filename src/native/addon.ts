/**
 * Loads the native addon (`build/Release/mpts_native.node`) once per isolate.
 *
 * The addon gives us the two things the platform lacks: a SharedArrayBuffer
 * over a file mapping (so memory crosses process boundaries), and futex
 * waits on such memory (V8's `Atomics.wait` does not cross processes).
 * Without it the package still works for `'thread'` children on plain
 * SharedArrayBuffers; `nativeLoadError()` says why it is missing.
 *
 * Loaded on first use: a child that never touches shared memory (a no-op
 * target, a pure computation) starts without paying for `dlopen` and the
 * addon's per-isolate set-up.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Result codes shared by the blocking and async futex waits. */
export const enum WaitResult {
  Ok = 0,
  NotEqual = 1,
  TimedOut = 2,
}

/** The addon's exported functions (see native/src). */
export interface NativeAddon {
  readonly version: number;
  openSegment(path: string, size: number, create: boolean): SharedArrayBuffer;
  /**
   * A plain ArrayBuffer over the memory of `sab` (keeping it mapped), for
   * bulk copies at memcpy speed where the caller alone uses the bytes it
   * copies (see native/src/segment.cc). Never handed to user code.
   */
  aliasSegment(sab: SharedArrayBuffer): ArrayBuffer;
  /** A whole regular file mapped (MAP_SHARED) as a plain ArrayBuffer, for its only reader (see native/src/segment.cc). */
  mapFile(path: string): ArrayBuffer;
  /**
   * Bytes of `mapFile` mappings in this process (every thread) not yet
   * unmapped: those of ArrayBuffers V8 has not collected yet included.
   * Absent from builds made before it (same ABI).
   */
  mappedFileBytes?(): number;
  /**
   * Blocks while the word holds `expected`. `timeoutMs` <= 0 only checks;
   * NaN, Infinity and anything too large for a 64-bit nanosecond deadline
   * (about 292 years) wait forever. Wakers must change the word before
   * waking (see src/sync/futex.ts).
   */
  futexWait(sab: SharedArrayBuffer, byteOffset: number, expected: number, timeoutMs: number): WaitResult;
  futexWake(sab: SharedArrayBuffer, byteOffset: number, count: number): number;
  /** `futexWait` on a waiter thread; settles on wake, on a changed word, or on timeout. */
  futexWaitAsync(sab: SharedArrayBuffer, byteOffset: number, expected: number, timeoutMs: number): Promise<WaitResult>;
  gettid(): number;
  setParentDeathSignal(signal: number): boolean;
  /** The frame V8 carries along promise chains (see src/async-context.ts). */
  asyncContextGet(): unknown;
  /** Makes `frame` current and returns the previous one. */
  asyncContextSwap(frame: unknown): unknown;
  /**
   * Sets TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT on a TCP socket's
   * fd; false when it refused. Absent from builds made before it (same ABI).
   */
  tuneTcpKeepalive?(fd: number, intervalSeconds: number, probes: number, userTimeoutMs: number): boolean;
  /**
   * Starts `file` with `argv` (its name first) in a session of its own, in
   * `cwd`, with a new pipe as its standard input and /dev/null for the rest;
   * returns its pid and the pipe's write end (close-on-exec). posix_spawn:
   * unlike a fork, it does not copy this process's page tables (see
   * native/src/spawn.cc). Nothing reaps the child. Absent from builds made
   * before it (same ABI).
   * @throws an fs-style error (`code`) when the program cannot be started.
   */
  spawnDetached?(file: string, argv: string[], cwd: string): { pid: number; stdin: number };
  /**
   * Watches child `pid` of this thread (a pidfd): if this thread's
   * environment ends before `unwatchChild(pid)`, the child is reaped by a
   * thread of the addon once it exits, instead of staying a zombie (see
   * native/src/children.cc). Call right after spawning it. False when it
   * cannot be watched.
   */
  watchChild(pid: number): boolean;
  /** Forgets child `pid`: its exit was seen here. */
  unwatchChild(pid: number): void;
  /**
   * Adds `count` to the word at `progressByteOffset` of `progressSab`, then
   * subtracts it from the word at `byteOffset` of `sab` if that holds at
   * least `count`; returns that word as it was. One call, so a worker
   * thread's terminate never falls between the two (see
   * native/src/refcount.cc, src/shm/drop-progress.ts).
   */
  dropCounted(sab: SharedArrayBuffer, byteOffset: number, count: number, progressSab: SharedArrayBuffer, progressByteOffset: number): number;
}

/** The addon's `version` this code is written against (native/src/addon.cc kAbiVersion). */
const ABI_VERSION = 5;

function load(): { addon: NativeAddon | null; error: Error | null } {
  if (process.env['MULTIPROCESSING_TS_NO_NATIVE'] === '1') {
    return { addon: null, error: new Error('disabled by MULTIPROCESSING_TS_NO_NATIVE=1') };
  }
  const require = createRequire(import.meta.url);
  // The package root is two levels above the bundle (dist/bundle/) and three
  // above the per-module build (dist/src/native/).
  let error: Error | null = null;
  for (const up of ['../../', '../../../']) {
    const path = fileURLToPath(new URL(`${up}build/Release/mpts_native.node`, import.meta.url));
    if (!existsSync(path)) continue;
    try {
      const addon = require(path) as NativeAddon;
      if (addon.version !== ABI_VERSION) {
        error = new Error(`${path} is a stale build (ABI ${addon.version}, this package needs ${ABI_VERSION}); run \`npm rebuild multiprocessing-ts\``);
        continue;
      }
      return { addon, error: null };
    } catch (err) {
      error = err as Error;
    }
  }
  return { addon: null, error: error ?? new Error('build/Release/mpts_native.node was not built') };
}

let loaded: { addon: NativeAddon | null; error: Error | null } | null = null;

/** The addon, or `null` when it cannot be loaded. */
export function native(): NativeAddon | null {
  return (loaded ??= load()).addon;
}

/** Why the addon is missing (null when it loaded). */
export function nativeLoadError(): Error | null {
  return (loaded ??= load()).error;
}

/** A message for users who need the addon and do not have it. */
export function nativeMissingHint(): string {
  return (
    `the native addon of multiprocessing-ts is not available (${nativeLoadError()?.message ?? 'unknown'}); ` +
    `rebuild it with \`npm rebuild multiprocessing-ts\` (needs python3, make and g++), ` +
    `or use the 'thread' start method, which works on plain SharedArrayBuffers`
  );
}
