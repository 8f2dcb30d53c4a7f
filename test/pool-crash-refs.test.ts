/**
 * The shared objects in the arguments of the unit a pool worker was running
 * when it was killed, under both start methods: each reference in flight
 * to it is given back exactly once — by the worker's ledger if it had taken
 * it over, by the pool if not (ledger.ts `+name #seq`, dispatcher.ts
 * `disown`). A segment (RawArray) and an arena block (Value) travel in
 * every unit.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import * as mp from '../src/index.js';
import { treeDir } from '../src/shm/tree.js';
import * as fx from './fixtures/pool-targets.js';
import * as rf from './fixtures/pool-refused-in-workers.js';
import { METHODS, eventually, regionOf } from './helpers.js';

const module = fx.POOL_TARGETS;
const gc = (globalThis as { gc?: () => void }).gc;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The files of the tree's directory that are segments (not ledgers or name markers). */
function segmentFiles(): string[] {
  return readdirSync(treeDir()).filter((name) => name !== 'names' && name !== 'ledgers').sort();
}

/** The reference count in a RawArray's segment header. */
function arrayRefs(array: Int32Array): number {
  return Atomics.load(new Int32Array(array.buffer, 0, 1), 0);
}

/** Ends `pool`, and waits until its workers are gone and the shared objects are back to the test's own reference. */
async function endedAndSettled(pool: mp.Pool, array: Int32Array, value: mp.SynchronizedValue): Promise<void> {
  pool.terminate();
  await pool.join();
  // Bounded; the caller's assertions then say what was left.
  await eventually(() => {
    gc!();
    return arrayRefs(array) <= 1 && regionOf(value).refs() <= 1;
  }, 5_000, 'the references in flight to be given back').catch(() => {});
}

for (const method of METHODS) {
  describe(`References of a killed pool worker's running unit (${method})`, { skip: gc ? false : 'run node with --expose-gc' }, () => {
    it('a worker killed mid-chunk: the references of the items it had reached go back through its ledger, those of the items after through the pool, each once', async (t) => {
      const where = mp.RawArray('i', 3);
      const value = mp.Value('i', 0);
      const pool = new mp.Pool(1, { context: method, module });
      t.after(() => pool.terminate());
      // One chunk of 8: items 0–2 return at once (the first maps the array,
      // the next two bring surplus references), item 3 waits; items 4–7 are
      // never decoded.
      const map = pool.starmap(fx.reportAtItem, range(8).map((i) => [i, 3, where, value, 60_000] as const), 8);
      map.catch(() => {});
      await eventually(() => Atomics.load(where, 2) === 1, 20_000, 'item 3 to start');
      const worker = mp.activeChildren().find((p) => p.name.startsWith('PoolWorker-'));
      assert.ok(worker, 'the worker is among the children');
      worker.kill();
      await assert.rejects(map, mp.WorkerLostError);
      await endedAndSettled(pool, where, value);
      assert.equal(arrayRefs(where), 1, 'the RawArray is back to its one reference');
      assert.equal(regionOf(value).refs(), 1, "the Value's block is back to its one reference");
    });

    it('workers killed again and again mid-batch: each shared object ends at exactly its one reference, and no segment of the pool is left', async (t) => {
      const array = mp.RawArray('i', 3);
      const value = mp.Value('i', 0);
      const before = segmentFiles();
      const pool = new mp.Pool(2, { context: method, module });
      t.after(() => pool.terminate());
      const outcomes: Promise<unknown>[] = [];
      let lost = 0;
      const kills = 8;
      for (let round = 0; round < kills; round++) {
        for (let k = 0; k < 40; k++) outcomes.push(pool.apply(fx.spinWith, [array, value, 0.2]).catch((err) => {
          if (!(err instanceof mp.WorkerLostError)) throw err;
          lost++;
        }));
        // A worker that has answered (so the pool does not take it for one that cannot start), killed a random number of answers later.
        const target = pool.stats().completed + 1 + Math.floor(Math.random() * 12);
        await eventually(() => pool.stats().completed >= target, 20_000, 'answers before the kill');
        const victim = pool.stats().workers.find((w) => w.completed > 0 && !w.ending);
        mp.activeChildren().find((p) => p.name === victim?.name)?.kill();
      }
      await Promise.all(outcomes);
      assert.ok(pool.stats().workersStarted > 2, 'workers were killed and replaced');
      await endedAndSettled(pool, array, value);
      const counts = `RawArray ${arrayRefs(array)}, Value ${regionOf(value).refs()} (${lost} tasks lost)`;
      // Below 1 a reference was dropped twice (the memory freed while the test holds it); above, one was lost.
      assert.ok(arrayRefs(array) >= 1 && regionOf(value).refs() >= 1, `a reference was dropped twice: ${counts}`);
      assert.ok(arrayRefs(array) === 1 && regionOf(value).refs() === 1, `a reference was lost: ${counts}`);
      await eventually(() => {
        gc!();
        return segmentFiles().every((name) => before.includes(name));
      }, 10_000, "the pool's segments to be removed");
    });
  });
}

/** Closes `pool`, waits for it to end, and (bounded) for `array` to be back to the test's own reference. */
async function closedAndSettled(pool: mp.Pool, array: Int32Array): Promise<void> {
  pool.close();
  await pool.join();
  // Bounded; the caller's assertion then says what was left.
  await eventually(() => {
    gc!();
    return arrayRefs(array) <= 1;
  }, 5_000, 'the references to be given back').catch(() => {});
}

for (const method of METHODS) {
  describe(`References of a pool unit's shared arguments, workers alive (${method})`, { skip: gc ? false : 'run node with --expose-gc' }, () => {
    // Its error answer says how many items the worker began to decode (worker-loop.ts `decodeBegun`); the pool gives back the rest.
    it('a chunk whose item throws or rejects: the items after it, never run, still give their references back', async (t) => {
      for (const rejects of [false, true]) {
        const where = mp.RawArray('i', 3);
        const pool = new mp.Pool(1, { context: method, module });
        t.after(() => pool.terminate());
        // One chunk of 8; item 3 fails, so items 4-7 are answered without being decoded.
        await assert.rejects(pool.starmap(fx.failAtItem, range(8).map((i) => [where, i, 3, rejects] as const), 8), /item 3 (fails|rejects)/);
        await closedAndSettled(pool, where);
        assert.equal(arrayRefs(where), 1, `the RawArray is back to its one reference (item 3 ${rejects ? 'rejects' : 'throws'})`);
      }
    });

    it('a chunk failed by an error escaping from its async work: the items after the running one are never decoded nor run, and give their references back', async (t) => {
      const where = mp.RawArray('i', 3);
      const ran = mp.RawArray('i', 2);
      const pool = new mp.Pool(1, { context: method, module });
      t.after(() => pool.terminate());
      // One chunk of 8; item 3 leaks a rejection, which fails the chunk while item 3 still runs.
      await assert.rejects(pool.starmap(fx.leakAtItem, range(8).map((i) => [where, ran, i, 3, 100] as const), 8), mp.UncaughtError);
      await eventually(() => Atomics.load(ran, 1) === 1, 10_000, 'item 3 to return');
      // A unit after it: the chunk's own async continuation, had it gone on, ran before this one.
      assert.equal(await pool.apply(fx.square, [3]), 9);
      assert.equal(Atomics.load(ran, 0), 4, 'items 0-3 ran, none after');
      await closedAndSettled(pool, where);
      assert.equal(arrayRefs(where), 1, 'the RawArray is back to its one reference (below: dropped twice)');
    });

    it('a chunk whose task function cannot be loaded in the worker: none of its items is decoded, all give their references back', async (t) => {
      const where = mp.RawArray('i', 3);
      const pool = new mp.Pool(1, { context: method, module: rf.REFUSED_IN_WORKERS });
      t.after(() => pool.terminate());
      await assert.rejects(pool.starmap(rf.passThrough, range(8).map((i) => [where, i] as const), 8), /loads only in the main process/);
      await closedAndSettled(pool, where);
      assert.equal(arrayRefs(where), 1, 'the RawArray is back to its one reference');
    });

    it('a shared object a worker keeps for its life, passed to every task: its reference count stays bounded (not one more per task)', async (t) => {
      const where = mp.RawArray('i', 3);
      const pool = new mp.Pool(1, { context: method, module, initializer: fx.keepShared, initargs: [where] });
      t.after(() => pool.terminate());
      await pool.starmap(fx.failAtItem, range(3_000).map((i) => [where, i, -1, false] as const), 10);
      // Its own, the worker's mapping, and the surplus references kept with it: earlier units' given back 64 at a time, and the last chunk's 10.
      assert.ok(arrayRefs(where) <= 2 + 64 + 10, `${arrayRefs(where)} references after 3,000 tasks`);
      pool.close();
      await pool.join();
      assert.equal(arrayRefs(where), 1);
    });
  });
}
