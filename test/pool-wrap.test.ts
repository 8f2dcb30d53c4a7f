/**
 * Unit numbers past 2^31 and 2^32 (protocol.ts `reached`, `isUnit`,
 * `gateWord`): the control block's words hold them as int32, the two sides
 * count them as exact numbers, and a worker of small tasks passes 2^31
 * units in a few hours. The pool's workers start numbering just before
 * each boundary (FIRST_UNIT), every worker runs past it, and then: results
 * in order, tasks moved away from a worker stuck in a long one, lazy
 * reading (its results; a misread there costs time only), a worker killed
 * in a task and a time limit (each failing its task alone, counted in the
 * run times).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { FIRST_UNIT } from '../src/pool/protocol.js';
import * as fx from './fixtures/pool-targets.js';
import { METHODS, eventually } from './helpers.js';

const module = fx.POOL_TARGETS;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

for (const method of METHODS) {
  describe(`Pool unit numbers past the int32 words' wrap (${method})`, () => {
    for (const boundary of [2 ** 31, 2 ** 32]) {
      it(`units numbered across ${boundary === 2 ** 31 ? '2^31' : '2^32'}: results, moved tasks, lazy reading, a kill and a time limit all still work past it`, async (t) => {
        // `up` counts the workers that ran their initializer (so are up).
        const up = mp.RawArray('i', 1);
        const options = { context: method, module, initializer: fx.slowFirstInitializer, initargs: [up, 0], [FIRST_UNIT]: boundary - 20 } as mp.PoolOptions;
        const pool = new mp.Pool(2, options);
        t.after(() => pool.terminate());
        /** Runs `n` units on each worker, until every worker has passed the boundary (more than 20 units). */
        const passBoundary = async (n: number) => {
          await eventually(() => Atomics.load(up, 0) === pool.stats().workersStarted, 30_000, 'every worker to be up');
          const started = mp.RawArray('i', 1);
          // Async, 2 ms each: both workers take their share.
          assert.equal((await pool.starmap(fx.countAndWait, range(2 * n).map(() => [started, 2] as [Int32Array, number]), 1)).length, 2 * n);
          for (const w of pool.stats().workers) assert.ok(w.completed > 20, `${w.name} ran ${w.completed} units`);
        };
        assert.deepEqual(await pool.map(fx.square, range(200), 1), range(200).map((x) => x * x));
        await passBoundary(40);

        // The first waits for the seven others; those handed to its worker must move to the other one.
        // Both workers have loaded the function: one still loading it would have all its units moved, the long one too.
        const done = mp.RawArray('i', 1);
        await pool.starmap(fx.nameAfterOthers, range(4).map(() => [done, 0] as [Int32Array, number]), 1);
        done[0] = 0;
        const names = await pool.starmap(fx.nameAfterOthers, [[done, 7], ...range(7).map(() => [done, 0] as [Int32Array, number])], 1);
        for (const name of names.slice(1)) assert.notEqual(name, names[0], `the tasks behind the long one ran elsewhere: ${names}`);

        // Tasks long enough for the pool to read their answers lazily (dispatcher.ts `lazyWakeAt`): every result comes.
        assert.deepEqual(await pool.starmap(fx.busy, range(16).map((x) => [x, 3] as [number, number]), 1), range(16));

        // A task cut short counts in the run times (dispatcher.ts `recordCut`, which reads STARTED).
        const runs = () => pool.stats().runTime.count;
        let before = runs();
        const where = mp.RawArray('i', 3);
        const lost = pool.apply(fx.reportAndWait, [where, 60_000]);
        await eventually(() => Atomics.load(where, 2) === 1, 20_000, 'the task to start');
        mp.activeChildren().find((p) => p.name.startsWith('PoolWorker-') && p.pid === where[0] && (method === 'process' || p.threadId === where[1]))!.kill();
        await assert.rejects(lost, mp.WorkerLostError);
        assert.equal(runs(), before + 1, 'the killed task counts in the run times');

        // The killed one's replacement numbers from the start again: past the boundary it goes first.
        await passBoundary(40);
        // (A JavaScript loop: a thread stuck in a native call could not be ended until it returns.)
        before = runs();
        await assert.rejects(pool.apply(fx.busy, [1, 10_000], { timeout: 100 }), mp.TimeoutError);
        assert.equal(runs(), before + 1, 'the task past its time limit counts in the run times');
        assert.equal(await pool.apply(fx.square, [7]), 49, 'a replacement serves after the time limit');
        assert.equal(pool.stats().workersLost, 1);
      });
    }
  });
}
