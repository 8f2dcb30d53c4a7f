/**
 * How an idle pool worker waits (worker-loop.ts `idleWait`): with nothing of
 * a task's in its event loop it blocks its thread in a futex wait, which
 * the parent's next batch ends; nothing it owes the loop is held up by
 * that, and nothing that ends it waits for the slice to run out. The
 * worker's wait is read from /proc (wchan); the slice is ten minutes for
 * the cases that would hang if a wake were missing.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as mp from '../src/index.js';
import { METHODS, fixture, run } from './helpers.js';

const TEN_MINUTES = String(10 * 60_000);

async function idleCase(what: string, method: mp.StartMethod, sliceMs?: string): Promise<void> {
  const r = await run(process.execPath, [fixture('pool-idle.js'), what], {
    env: { MULTIPROCESSING_TS_START_METHOD: method, ...(sliceMs ? { MULTIPROCESSING_TS_IDLE_SLICE_MS: sliceMs } : {}) },
    timeoutMs: 30_000,
  });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.code, 0, `the program failed: ${r.stderr.slice(0, 2000)}`);
  const out = JSON.parse(r.stdout) as { ok: boolean; detail: string | null };
  assert.equal(out.detail, null);
  assert.equal(out.ok, true);
}

describe('an idle pool worker', { skip: existsSync('/proc/thread-self/wchan') ? false : 'needs /proc/<pid>/task/<tid>/wchan' }, () => {
  for (const method of METHODS) {
    it(`blocks its thread in a futex wait once idle with nothing in its event loop, and the next task wakes it (${method})`, async () => {
      await idleCase('blocks', method);
    });

    it(`runs a sync task's process.nextTick callback before it blocks (ten-minute slice) (${method})`, async () => {
      await idleCase('ticks', method, TEN_MINUTES);
    });

    it(`blocked, is ended by terminate() and join() without waiting out its ten-minute slice (${method})`, async () => {
      await idleCase('terminate', method, TEN_MINUTES);
    });

    it(`blocked, does not hold the exit of a program that returns with its pool running for its ten-minute slice (${method})`, async () => {
      await idleCase('exit', method, TEN_MINUTES);
    });

    it(`blocked, does not hold process.exit() for its ten-minute slice (${method})`, async () => {
      await idleCase('process-exit', method, TEN_MINUTES);
    });
  }
});
