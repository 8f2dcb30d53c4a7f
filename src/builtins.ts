/**
 * Node built-ins that only some processes need, loaded on first use.
 *
 * Every child loads this package before running its target; `child_process`,
 * `crypto`, `v8` and (in a process's main thread) `worker_threads` together
 * add several milliseconds to that, yet a thread child never spawns, a
 * process child rarely needs its thread id, and most children never name a
 * block. `require` keeps first use synchronous.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const childProcess = (): typeof import('node:child_process') => require('node:child_process');
export const crypto = (): typeof import('node:crypto') => require('node:crypto');
export const v8 = (): typeof import('node:v8') => require('node:v8');
export const workerThreads = (): typeof import('node:worker_threads') => require('node:worker_threads');

/** `bytes` random bytes as hex. */
export function randomHex(bytes: number): string {
  return crypto().randomBytes(bytes).toString('hex');
}
