/**
 * The native addon's own checks (native/smoke.mjs): segments across
 * processes and threads, futex waits and wakes across processes, async waits
 * beyond one futex_waitv batch, worker termination with pending waits, the
 * parent-death signal. Run as a child so a crash there fails one test.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as mp from '../src/index.js';
import { fixture, run } from './helpers.js';

const smoke = fileURLToPath(new URL('../../native/smoke.mjs', import.meta.url));

it('the native addon is built where it is required (CI)', { skip: process.env['CI'] === 'true' ? false : 'not CI' }, () => {
  assert.ok(mp.nativeAvailable(), `no addon in CI: ${mp.nativeLoadError()?.message}`);
});

it('native addon smoke checks pass', { skip: mp.nativeAvailable() ? false : `no addon: ${mp.nativeLoadError()?.message}` }, async () => {
  const r = await run(process.execPath, [smoke, '--no-bench'], { timeoutMs: 90_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /^FAIL/m);
  assert.match(r.stdout, /\d+ passed, 0 failed/);
});

for (const how of ['terminate', 'return'] as const) {
  it(`a worker thread that alone loaded the package (shared memory, an async Queue.get) ends by ${how === 'terminate' ? 'terminate()' : 'returning'} without crashing the process (the addon is never unloaded)`, { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, async () => {
    const r = await run(process.execPath, [fixture('addon-in-worker-only.js'), how], { timeoutMs: 30_000 });
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ended mapped\n');
  });
}

