/**
 * The pool's lazy reads (a map of long chunks without onProgress
 * goes out in whole shares and the parent sleeps until a share's last
 * answer): what a caller must still see promptly.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as mp from '../src/index.js';
import * as fx from './fixtures/pool-lazy-targets.js';
import { METHODS, eventually, fixture, run } from './helpers.js';

const module = fx.POOL_LAZY_TARGETS;

function ended(t: TestContext, pool: mp.Pool): mp.Pool {
  t.after(async () => {
    pool.terminate();
    await pool.join();
  });
  return pool;
}

const canMount = process.getuid?.() === 0 && spawnSync('unshare', ['--mount', 'true']).status === 0 ? false : 'needs root and unshare --mount';

for (const method of METHODS) {
  describe(`a map of long chunks read lazily (${method})`, () => {
    it('a map whose first task throws rejects at once, and the rest of its tasks do not run', async (t) => {
      const pool = ended(t, new mp.Pool(2, { context: method, module }));
      await pool.map(fx.spin, [2, 2, 2, 2], 1);
      const counts = mp.RawArray('i', 2);
      const items: [number, Int32Array][] = [[-1, counts], ...Array.from({ length: 59 }, () => [20, counts] as [number, Int32Array])];
      const mapping = pool.starmap(fx.countOrThrow, items, 1);
      await assert.rejects(mapping, RangeError);
      // Python's map (and this pool's docs) settle on the first error and drop the queued tasks.
      const finished = Atomics.load(counts, 1);
      assert.ok(finished < 20, `${finished} of the 59 other 20 ms tasks had run to their end when the map rejected`);
    });

    it('stats() counts the tasks of a running map as they complete', async (t) => {
      const pool = ended(t, new mp.Pool(2, { context: method, module }));
      await pool.map(fx.spin, [2, 2, 2, 2], 1);
      const before = pool.stats().completed;
      const counts = mp.RawArray('i', 2);
      const mapping = pool.starmap(fx.countOrThrow, Array.from({ length: 60 }, () => [20, counts] as [number, Int32Array]), 1);
      // Half the tasks have ended in the workers (about 300 ms of the map's 600).
      await eventually(() => Atomics.load(counts, 1) >= 30, 20_000, 'half the tasks to end');
      const seenEnded = Atomics.load(counts, 1);
      await eventually(() => pool.stats().completed - before >= seenEnded / 2, 150, `stats() to count at least ${seenEnded / 2} completed tasks (it says ${pool.stats().completed - before})`);
      await mapping;
    });

    for (const what of ['payloads', 'results', 'bigints'] as const) {
      it(`a map moving 100-150 MiB of ${what} in 1 MiB chunks works under a 32-48 MiB /dev/shm (what a worker holds unread stays bounded)`, { skip: mp.nativeAvailable() ? canMount : 'needs the native addon' }, async () => {
        // Bigints: a smaller /dev/shm, since their answers only sometimes piled up past 48 MiB before.
        const script = `mount -t tmpfs -o size=${what === 'bigints' ? 32 : 48}m tmpfs /dev/shm && exec "$0" "$1" "$2" "$3"`;
        const r = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, process.execPath, fixture('pool-lazy-shm.js'), what, method], { timeoutMs: 60_000 });
        assert.equal(r.signal, null, r.stderr);
        assert.equal(r.code, 0, `the parent died: ${r.stderr.slice(0, 2000)}`);
        const out = JSON.parse(r.stdout) as { ok: boolean; error: string | null };
        assert.equal(out.error, null);
        assert.equal(out.ok, true);
      });
    }
  });
}
