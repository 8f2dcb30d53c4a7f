/**
 * Whether a lock's holder lives (liveness.ts): real processes and threads,
 * and a waiter that cannot read /proc because it is out of file descriptors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import * as mp from '../src/index.js';
import { holderIdOf, isAlive } from '../src/liveness.js';
import { METHODS, eventually, fixture, run } from './helpers.js';

/** Descriptors the fixture may have in all: enough for Node and its children's pipes, few enough to use up fast. */
const FILE_LIMIT = 256;

describe('holder liveness', () => {
  it('a live process is alive; once killed it is dead within a second, even right after it was seen alive', async () => {
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => sleeper.once('spawn', resolve));
      const id = holderIdOf(sleeper.pid!);
      assert.notEqual(id, 0);
      assert.equal(isAlive(id), true);
      assert.equal(isAlive(id), true, 'asked again at once');
      const exited = new Promise((resolve) => sleeper.once('exit', resolve));
      sleeper.kill('SIGKILL');
      await eventually(() => !isAlive(id), 1_000, 'the killed process to count as dead');
      await exited;
      assert.equal(isAlive(id), false, 'reaped');
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('a live worker thread (not a process) is alive; once it has ended it is dead', async () => {
    const worker = new Worker(
      "const { parentPort } = require('node:worker_threads'); parentPort.postMessage(require('node:fs').readlinkSync('/proc/thread-self')); setInterval(() => {}, 1000);",
      { eval: true },
    );
    try {
      const path = await new Promise<string>((resolve) => worker.once('message', resolve));
      const tid = Number(path.split('/').pop());
      assert.notEqual(tid, Number(readlinkSync('/proc/thread-self').split('/').pop()), 'another thread than ours');
      const id = holderIdOf(tid);
      assert.equal(isAlive(id), true);
      await worker.terminate();
      await eventually(() => !isAlive(id), 1_000, 'the ended thread to count as dead');
    } finally {
      await worker.terminate();
    }
  });
});

describe('liveness without /proc', { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, () => {
  it(`a waiter out of file descriptors does not take live holders' locks (${METHODS.join(', ')}), and still takes an ended holder's`, async () => {
    const r = await run('/bin/sh', ['-c', `ulimit -n ${FILE_LIMIT} && exec "$0" "$1"`, process.execPath, fixture('fd-exhausted-main.js')], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      descriptors: number;
      procError: string;
      live: { method: string; sync: boolean; tryLock: boolean; async: boolean; ownerDied: boolean }[];
      gateKept: boolean;
      orphan: { taken: boolean; ownerDied: boolean; ms: number };
      exitCodes: Record<string, number | null>;
    };
    assert.ok(out.descriptors > 0);
    assert.equal(out.procError, 'EMFILE', 'the waiter really could not read /proc');
    assert.deepEqual(
      out.live,
      METHODS.map((method) => ({ method, sync: false, tryLock: false, async: false, ownerDied: false })),
      'no live holder was taken for dead',
    );
    assert.equal(out.gateKept, true, 'the thread child waiting for the gate did not take it from this live thread');
    assert.deepEqual(
      out.exitCodes,
      Object.fromEntries(METHODS.map((method) => [method, 0])),
      "each holder's own release worked: its lock was not taken from it",
    );
    assert.equal(out.orphan.taken, true, 'the ended holder was taken for dead');
    assert.equal(out.orphan.ownerDied, true);
    assert.ok(out.orphan.ms < 1_000, `recovered in ${out.orphan.ms} ms`);
  });
});
