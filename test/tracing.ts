/**
 * For tests that stop a real process at a chosen system call: a ptrace
 * tracer in python3 (its ctypes calls ptrace), and reading what such
 * helpers print, line by line, with a bound.
 */
import { type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import * as mp from '../src/index.js';

/** The lines `stream` prints, each awaited with a bound; fails early if the stream ends first. */
export function lineReader(stream: Readable, who: string): (pattern: RegExp, ms: number) => Promise<string> {
  let text = '';
  let ended = false;
  let wake = (): void => {};
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    text += d;
    wake();
  });
  stream.on('end', () => {
    ended = true;
    wake();
  });
  return (pattern, ms) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${who} printed no line matching ${pattern} in ${ms} ms; it printed:\n${text}`)), ms);
      wake = () => {
        const lines = text.split('\n');
        const at = lines.slice(0, -1).findIndex((line) => pattern.test(line));
        if (at >= 0) {
          text = lines.slice(at + 1).join('\n');
          clearTimeout(timer);
          resolve(lines[at]!);
        } else if (ended) {
          clearTimeout(timer);
          reject(new Error(`${who} ended without printing a line matching ${pattern}; it printed:\n${text}`));
        }
      };
      wake();
    });
}

/** Resolves with `child`'s exit code once it exited, bounded. */
export function exitCode(child: ChildProcess, ms: number, who: string): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${who} did not exit in ${ms} ms`)), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** Why a ptrace tracer cannot run here, or false when it can. */
export function tracingUnavailable(): string | false {
  if (!mp.nativeAvailable()) return 'needs the native addon';
  let scope = 0;
  try {
    scope = Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8'));
  } catch {
    // No Yama: the classic rules (same user, or CAP_SYS_PTRACE).
  }
  if (scope >= 3) return 'ptrace is disabled here (kernel.yama.ptrace_scope = 3)';
  // The tracer is no ancestor of the process it traces.
  if (scope >= 1 && process.getuid?.() !== 0) return `kernel.yama.ptrace_scope = ${scope}: only root may trace a process it did not start`;
  const onPath = (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, 'python3')));
  if (!onPath) return 'needs python3 on PATH (its ctypes calls ptrace)';
  return false;
}
