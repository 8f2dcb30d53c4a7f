/**
 * The pool under a small /dev/shm: what its spill files take stays
 * bounded (a real tmpfs mounted in a private mount namespace; needs root
 * and unshare, as CI has). See README "A small /dev/shm".
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as mp from '../src/index.js';
import { METHODS, fixture, run } from './helpers.js';

const canMount =
  process.getuid?.() === 0 && spawnSync('unshare', ['--mount', 'true']).status === 0 ? false : 'needs root and unshare --mount';

async function underSmallShm(what: string, method: mp.StartMethod, size = '16m'): Promise<void> {
  const script = `mount -t tmpfs -o size=${size} tmpfs /dev/shm && exec "$0" "$1" "$2"`;
  const r = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, process.execPath, fixture('pool-shm.js'), what], {
    env: { MULTIPROCESSING_TS_START_METHOD: method },
    timeoutMs: 60_000,
  });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.code, 0, `the parent died: ${r.stderr.slice(0, 2000)}`);
  const out = JSON.parse(r.stdout) as { ok: boolean; detail: string | null };
  assert.equal(out.detail, null);
  assert.equal(out.ok, true);
}

describe('a pool under a small /dev/shm', { skip: mp.nativeAvailable() ? canMount : 'needs the native addon' }, () => {
  for (const method of METHODS) {
    it(`16 MiB: 40 results of 1 MiB while the parent's event loop is busy for a second: the workers wait for it, none fails (${method})`, async () => {
      await underSmallShm('untaken', method);
    });

    it(`64 MiB: a task with a 40 MiB argument runs, on a pool of 2 whose other worker is free (the balancer leaves a unit on its way where it is) (${method})`, async () => {
      await underSmallShm('large', method, '64m');
    });

    it(`16 MiB: a map of 120 arguments of 1 MiB with the default chunksize (15) completes: chunks are cut at 1 MiB of arguments (${method})`, async () => {
      await underSmallShm('chunks', method);
    });

    it(`16 MiB: a map whose chunks answer 10 MiB each (80 results of 1 MiB, default chunksize, a 400 ms limit per task, the parent busy for a second) completes, each result in its place: chunks answer in parts (${method})`, async () => {
      await underSmallShm('parts', method);
    });

    it(`16 MiB: a task that does not fit while another runs fails with ENOSPC once that one's worker dies (no answer to wait for), and the task behind it runs (${method})`, async () => {
      await underSmallShm('dies', method);
    });

    it(`16 MiB: an initializer whose error does not fit still breaks its pool with BrokenPoolError (${method})`, async () => {
      await underSmallShm('init', method);
    });

    it(`16 MiB: rounds of 1 MiB arguments on 4 workers, then an idle second: no round fails (what workers read is not left mapped) (${method})`, async () => {
      await underSmallShm('rounds', method);
    });
  }
});
