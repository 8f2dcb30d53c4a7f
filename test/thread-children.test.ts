/**
 * Processes a worker thread started are reaped once the thread has ended
 * (src/process/thread-children.ts, native/src/children.cc), instead of
 * staying zombies of the process until it exits.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { fixture, run } from './helpers.js';

for (const how of ['terminate', 'return'] as const) {
  it(`the processes a worker thread started (a Process, a 'process' Pool, a Manager, its tree's reaper) leave no zombie once the thread ${how === 'terminate' ? 'is terminated' : 'has ended on its own'}`, { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, async () => {
    const r = await run(process.execPath, [fixture('thread-children.js'), how], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { started: number; stale: number[]; left: string[] };
    assert.ok(out.started >= 5, `the thread had ${out.started} children running (a Process, 2 pool workers, a manager, a reaper)`);
    assert.deepEqual(out.stale, [], 'pidfds kept for children whose exit the thread saw');
    assert.deepEqual(out.left, [], 'children left behind (Z: zombies)');
  });
}
