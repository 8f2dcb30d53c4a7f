/**
 * Pool: CPython's _TestPool, _TestPoolWorkerErrors, _TestPoolWorkerLifetime
 * and TestInitializers (test_pool_initializer) where they apply, under both
 * start methods, plus ours: typed results, errors of custom classes, bad
 * input refused at the call with the pool still serving, stats and
 * progress, 100,000 tasks each answered once, imap over an endless async
 * generator. Crashes, time limits and aborts are in pool-crash.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as fx from './fixtures/pool-targets.js';
import { createHook } from 'node:async_hooks';
import { METHODS, eventually, fixture, run } from './helpers.js';

const gc = (globalThis as { gc?: () => void }).gc;
const module = fx.POOL_TARGETS;

/** Every item of an async iterable. */
async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** `promise`, or a rejection naming `what` once `ms` passed without it settling. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}


for (const method of METHODS) {
  describe(`Pool (${method})`, () => {
    let pool: mp.Pool;
    before(() => {
      pool = new mp.Pool(4, { context: method, module });
    });
    after(async () => {
      pool.terminate();
      await pool.join();
    });

    it('close() then join() ends even when a task left a handle open in its worker (a timer)', async () => {
      const own = new mp.Pool(2, { context: method, module });
      assert.deepEqual(await own.map(fx.leaveTimer, [1, 2, 3, 4], 1), [1, 2, 3, 4]);
      own.close();
      const joined = await Promise.race([own.join().then(() => true), new Promise((r) => setTimeout(r, 15_000, false))]);
      if (!joined) own.terminate();
      assert.equal(joined, true, 'join() settled');
    });

    it('a thrown value that cannot even be looked at fails its task, not the worker', async () => {
      const before = pool.stats().workers.map((w) => w.name);
      await assert.rejects(pool.apply(fx.throwHostile), (err: unknown) => !(err instanceof mp.WorkerLostError));
      assert.equal(await pool.apply(fx.sqr, [3]), 9);
      assert.deepEqual(pool.stats().workers.map((w) => w.name), before, 'no worker was replaced');
    });

    it('test_apply', async () => {
      assert.equal(await pool.apply(fx.sqr, [5]), 25);
      const async = pool.applyAsync(fx.mul, [6, 7]);
      assert.equal(await async, 42, 'an AsyncResult is awaitable');
    });

    it('test_map, test_starmap (with and without chunksize), test_map_async, test_starmap_async', async () => {
      assert.deepEqual(await pool.map(fx.square, range(10)), range(10).map((x) => x * x));
      assert.deepEqual(await pool.map(fx.square, range(100), 20), range(100).map((x) => x * x));
      const tuples = range(10).map((i) => [i, 9 - i] as [number, number]);
      assert.deepEqual(await pool.starmap(fx.mul, tuples), tuples.map(([a, b]) => a * b));
      const more = range(100).map((i) => [i, 99 - i] as [number, number]);
      assert.deepEqual(await pool.starmap(fx.mul, more, 20), more.map(([a, b]) => a * b));
      assert.deepEqual(await pool.starmapAsync(fx.mul, more).get(), more.map(([a, b]) => a * b));
      assert.deepEqual(await pool.mapAsync(fx.square, range(10)).get(), range(10).map((x) => x * x));
    });

    it('a chunk of numbers comes back exactly (-0, NaN, ±Infinity, 2^53 + 2, the smallest subnormal); chunks of other values, typed arrays and bare values are unchanged', async () => {
      const numbers = [-0, NaN, Infinity, -Infinity, 2 ** 53 + 2, 5e-324, 1 / 3, 0, -7];
      const back = await pool.map(fx.identity, numbers, 3);
      assert.equal(back.length, numbers.length);
      back.forEach((v, i) => assert.ok(Object.is(v, numbers[i]), `item ${i}: ${String(v)} is not ${String(numbers[i])}`));
      assert.ok(Array.isArray(back) && back.every((v) => typeof v === 'number'), 'plain numbers in a plain array');
      // A chunk that mixes numbers with other values, and values that are themselves Float64Arrays, take the envelope.
      const mixed = [1, '2', 3, 4n, null, 6];
      assert.deepStrictEqual(await pool.map(fx.identity, mixed, 3), mixed);
      const arrays = [new Float64Array([1, 2]), new Float64Array([3]), new Float64Array(0)];
      assert.deepStrictEqual(await pool.map(fx.identity, arrays, 3), arrays);
      assert.deepStrictEqual(await pool.map(fx.identity, arrays, 1), arrays);
      assert.deepStrictEqual(await pool.apply(fx.identity, [new Float64Array([5, 6])]), new Float64Array([5, 6]));
      assert.deepStrictEqual(await pool.starmap(fx.mul, [[1, 2], [3, 4], [5, -0]], 3), [2, 12, -0]);
      // Long chunks: small integers keep V8's envelope (smaller than floats), other numbers go as floats.
      const ints = range(5000).map((i) => i - 2500);
      assert.deepStrictEqual(await pool.map(fx.identity, ints, 5000), ints);
      const fractions = ints.map((i) => i / 7);
      assert.deepStrictEqual(await pool.map(fx.identity, fractions, 5000), fractions);
    });

    it('test_map_async_callbacks: the callback gets the list, the errorCallback the error, before wait() resolves', async () => {
      const calls: unknown[] = [];
      await pool.mapAsync(fx.square, [1], undefined, { callback: (r) => calls.push(r), errorCallback: (e) => calls.push(e) }).wait();
      assert.deepEqual([...calls], [[1]]);
      await pool.mapAsync(fx.validate, [-1], undefined, { callback: (r) => calls.push(r), errorCallback: (e) => calls.push(e) }).wait();
      assert.equal(calls.length, 2);
      assert.equal((calls[1] as Error).name, 'ValidationError');
    });

    it('test_map_unplicklable: an argument that cannot travel is a SerializationError at the call, naming it; the pool goes on', async () => {
      const items = [1, 2, 3, { cb: () => 1 }, 5];
      await assert.rejects(pool.map(fx.identity, items), (e: Error) => {
        assert.ok(e instanceof mp.SerializationError);
        assert.match(e.message, /pool\.map\(identity\): iterable\[3\]\.cb is a function/);
        return true;
      });
      assert.throws(() => pool.applyAsync(fx.identity, [new WeakMap()]), (e: Error) => e instanceof mp.SerializationError && /args\[0\] is a WeakMap/.test(e.message));
      assert.deepEqual(await pool.map(fx.square, [2, 3]), [4, 9]);
    });

    it('test_map_chunksize, test_empty_iterable: empty input gives [] at once', async () => {
      assert.deepEqual(await pool.mapAsync(fx.square, [], 1).get(1000), []);
      assert.deepEqual(await pool.map(fx.square, []), []);
      assert.deepEqual(await all(pool.imap(fx.square, [])), []);
      assert.deepEqual(await all(pool.imapUnordered(fx.square, [])), []);
      assert.deepEqual(await pool.starmap(fx.mul, []), []);
    });

    it('test_map_handle_iterable_exception: what the iterable throws rejects the call, again and again', async () => {
      for (let i = 0; i < 2; i++) await assert.rejects(pool.map(fx.square, fx.exceptionThrowingGenerator(1, -1), 1), fx.SayWhenError);
      await assert.rejects(pool.map(fx.square, fx.exceptionThrowingGenerator(10, 3), 1), fx.SayWhenError);
      const special = { [Symbol.iterator]: () => ({ next: (): IteratorResult<number> => { throw new fx.SayWhenError('x'); } }) };
      await assert.rejects(pool.map(fx.square, special, 1), fx.SayWhenError);
      await assert.rejects(pool.map(fx.square, (async function* () { yield 1; throw new fx.SayWhenError('async'); })()), fx.SayWhenError);
    });

    it('test_async: get() waits for the task', async () => {
      const res = pool.applyAsync(fx.sqr, [7, 100]);
      assert.equal(res.ready(), false);
      assert.throws(() => res.successful(), mp.ValueError);
      const [value, ms] = await timed(() => res.get());
      assert.equal(value, 49);
      assert.ok(ms >= 80, `get() took ${ms} ms for a 100 ms task`);
      assert.equal(res.ready(), true);
      assert.equal(res.successful(), true);
    });

    it('test_async_timeout: get(timeout) rejects with TimeoutError near the timeout, and the task goes on', async () => {
      const res = pool.applyAsync(fx.sqr, [6, 300]);
      const [, ms] = await timed(() => assert.rejects(res.get(100), mp.TimeoutError));
      assert.ok(ms >= 95 && ms < 400, `get(100) gave up after ${ms} ms`);
      await res.wait(50);
      assert.equal(res.ready(), false, 'wait(50) returned without the result');
      assert.equal(await res.get(), 36);
    });

    it('test_imap: in order, with and without chunks', async () => {
      assert.deepEqual(await all(pool.imap(fx.square, range(10))), range(10).map((x) => x * x));
      const it = pool.imap(fx.square, range(10));
      for (let i = 0; i < 10; i++) assert.deepEqual(await it.next(), { done: false, value: i * i });
      assert.deepEqual(await it.next(), { done: true, value: undefined });
      assert.deepEqual(await all(pool.imap(fx.square, range(1000), 100)), range(1000).map((x) => x * x));
    });

    it('test_imap_handle_iterable_exception: the results of every item before the iterable failed, then its error', async () => {
      for (let i = 0; i < 2; i++) await assert.rejects(pool.imap(fx.square, fx.exceptionThrowingGenerator(1, -1), 1).next(), fx.SayWhenError);
      // Python drops the items of the chunk the error cut short (6 and 4 results); here they are run too (7).
      for (const [total, when, chunksize, before] of [[10, 3, 1, 3], [20, 7, 2, 7], [20, 7, 4, 7]] as const) {
        const it = pool.imap(fx.square, fx.exceptionThrowingGenerator(total, when), chunksize);
        for (let i = 0; i < before; i++) assert.equal((await it.next()).value, i * i);
        await assert.rejects(it.next(), fx.SayWhenError);
      }
    });

    it('test_imap_unordered (and its iterable exception)', async () => {
      assert.deepEqual((await all(pool.imapUnordered(fx.square, range(10)))).sort((a, b) => a - b), range(10).map((x) => x * x));
      assert.deepEqual((await all(pool.imapUnordered(fx.square, range(1000), 100))).sort((a, b) => a - b), range(1000).map((x) => x * x));
      await assert.rejects(pool.imapUnordered(fx.square, fx.exceptionThrowingGenerator(1, -1), 1).next(), fx.SayWhenError);
      const expected = new Set(range(20).map((x) => x * x));
      await assert.rejects(
        (async () => {
          for await (const v of pool.imapUnordered(fx.square, fx.exceptionThrowingGenerator(20, 7), 2)) {
            assert.ok(expected.delete(v), `unexpected or repeated ${v}`);
          }
        })(),
        fx.SayWhenError,
      );
    });

    it('an item of imap that cannot travel: the results of every item before it (its chunk\'s too), then its SerializationError, nothing after it, and the input read no further', async () => {
      const BAD = { cb: () => 1 };
      for (const chunksize of [1, 4]) {
        for (const ordered of [true, false]) {
          let pulled = 0;
          const items = function* (): Generator<number> {
            for (const x of [0, 1, 2, 3, 4, 5, BAD as unknown as number, 7, 8, 9, 10, 11, 12, 13]) {
              pulled++;
              yield x;
            }
          };
          const got: number[] = [];
          const what = `${ordered ? 'imap' : 'imapUnordered'}, chunksize ${chunksize}`;
          await assert.rejects(
            (async () => {
              for await (const v of ordered ? pool.imap(fx.square, items(), chunksize) : pool.imapUnordered(fx.square, items(), chunksize)) got.push(v as number);
            })(),
            (e: Error) => e instanceof mp.SerializationError && /iterable\[6\]\.cb is a function/.test(e.message),
            what,
          );
          const before = [0, 1, 4, 9, 16, 25];
          assert.deepEqual(ordered ? got : got.sort((a, b) => a - b), before, what);
          // Up to the bad item: 7 items one by one, or the two chunks of 4 that reach it.
          assert.equal(pulled, chunksize === 1 ? 7 : 8, `${what}: items pulled`);
        }
      }
    });

    it('an imap whose iterator is dropped without break or return() is let go once collected: its input is closed', { skip: gc ? false : 'run node with --expose-gc' }, async () => {
      const inputs = range(20).map(() => ({ count: 0, closed: false }));
      for (const pulled of inputs) {
        // Read once, then dropped: only this function's frame held the iterator.
        await (async () => {
          const it = pool.imap(fx.square, fx.naturals(pulled), 1);
          assert.equal((await it.next()).value, 0);
        })();
      }
      await eventually(
        () => {
          gc!();
          return inputs.every((pulled) => pulled.closed);
        },
        10_000,
        'the dropped imaps\' inputs to be closed',
      );
      assert.ok(inputs.every((pulled) => pulled.count <= 8 * pool.processes + 2), `each pulled within its bound: ${inputs.map((p) => p.count)}`);
      // A dropped iterator whose next() is still awaited (its task takes 200 ms) gets that value first.
      const late = { count: 0, closed: false };
      const first = pool.imap(fx.slowSquare, fx.naturals(late), 1).next();
      for (let k = 0; k < 5; k++) {
        gc!();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.deepEqual(await first, { done: false, value: 0 });
      await eventually(
        () => {
          gc!();
          return late.closed;
        },
        10_000,
        'the input of an imap dropped with a next() pending to be closed',
      );
      // Its tasks already running finish on their own: the pool is shared with the tests after this one.
      await eventually(() => pool.stats().inFlight === 0, 10_000, 'the dropped imaps\' running tasks to end');
    });

    it('a task error in imap comes after the results before it; in map it rejects the call', async () => {
      const chunks = pool.imap(fx.validate, [0, 1, -2, 3], 1);
      assert.equal((await chunks.next()).value, 0);
      assert.equal((await chunks.next()).value, 1);
      await assert.rejects(chunks.next(), (e: Error) => e.name === 'ValidationError');
      assert.deepEqual(await chunks.next(), { done: true, value: undefined }, 'the iteration ends after its error');
      await assert.rejects(pool.starmap(fx.failAt, range(50).map((x) => [x, 37] as [number, number]), 10), /item 37 is bad/);
    });

    it('test_traceback, errors of custom classes: class name, message, own properties and the worker stack arrive', async () => {
      await assert.rejects(pool.apply(fx.validate, [-5]), (e: Error & { field?: string; details?: unknown }) => {
        assert.equal(e.name, 'ValidationError');
        assert.equal(e.constructor.name, 'ValidationError');
        assert.ok(e instanceof Error);
        assert.equal(e.message, 'x must be at least 0, got -5');
        assert.equal(e.field, 'x');
        assert.deepEqual(e.details, { min: 0, seen: [-5] });
        assert.match(e.stack!, /at validate \(.*pool-targets\.js/);
        return true;
      });
      await assert.rejects(pool.apply(fx.failAt, [3, 3]), (e: Error) => e instanceof RangeError && e.message === 'item 3 is bad');
      await assert.rejects(pool.apply(() => { throw new mp.ValueError('ours'); }, []), (e: Error) => e instanceof mp.ValueError);
      await assert.rejects(pool.apply(() => { throw { code: 7 }; }, []), (e: unknown) => (e as { code: number }).code === 7);
    });

    it('_TestPoolWorkerErrors.test_async_error_callback and test_unpickleable_result: the pool keeps its workers', async () => {
      let seen: unknown = null;
      const res = pool.applyAsync(fx.raising, [], { errorCallback: (e) => (seen = e) });
      await assert.rejects(res.get(), (e: Error) => e.name === 'KeyError' && e.message === "'key'");
      assert.equal((seen as Error).name, 'KeyError');
      for (let i = 0; i < 20; i++) {
        let wrapped: unknown = null;
        const r = pool.applyAsync(fx.unpicklableResult, [], { errorCallback: (e) => (wrapped = e) });
        await assert.rejects(r.get(), (e: Error) => e instanceof mp.SerializationError && /^pool\.apply\(unpicklableResult\): the result is a function/.test(e.message));
        assert.ok(wrapped instanceof mp.SerializationError);
      }
      assert.equal(pool.stats().workersLost, 0);
      assert.equal(pool.stats().workersStarted, 4);
    });

    it('task functions by source: a self-contained lambda runs; one that uses an outer variable is refused at the call, by name', async () => {
      assert.equal(await pool.apply((a: number, b: number) => a + b, [2, 3]), 5);
      const factor = 3;
      assert.throws(() => pool.applyAsync((x: number) => x * factor, [2]), (e: Error) => e instanceof mp.ValueError && /'factor'/.test(e.message));
      assert.deepEqual(await pool.map((x: number) => x + 1, [1, 2]), [2, 3]);
    });

    it('shared objects travel live both ways: a Value in the arguments, a Value made by a task in its result', async () => {
      const v = mp.Value('i', 0);
      const made = await pool.starmap(fx.bump, [[v, 50], [v, 50], [v, 50], [v, 50]], 1);
      assert.equal(v.value, 200, 'every task added to the same shared value');
      assert.deepEqual(made.map((m) => m.value), [42, 42, 42, 42]);
      made[0]!.value = 7;
      assert.equal(made[0]!.value, 7);
    });

    it('a task cannot start a pool of its own: workers are daemons (StateError, as Python)', async () => {
      await assert.rejects(pool.apply(fx.nestedPool), (e: Error) => e instanceof mp.StateError && /daemonic processes are not allowed to have children/.test(e.message));
    });

    it('bad input is refused at the call with the pool still serving', async () => {
      assert.throws(() => pool.applyAsync(5 as unknown as () => number), (e: Error) => e instanceof mp.ValueError && /not a function/.test(e.message));
      await assert.rejects(pool.map(fx.square, [1], -1), (e: Error) => e instanceof mp.ValueError && /chunksize.*-1/.test(e.message));
      await assert.rejects(pool.map(fx.square, [1], 0.5), mp.ValueError);
      await assert.rejects(pool.map(fx.square, 42 as never), (e: Error) => e instanceof mp.ValueError && /not an iterable/.test(e.message));
      assert.throws(() => pool.imap(fx.square, [1], 0), mp.ValueError);
      assert.throws(() => pool.applyAsync(fx.square, 3 as never), (e: Error) => e instanceof mp.ValueError && /args must be an array/.test(e.message));
      assert.throws(() => pool.applyAsync(fx.square, [1], { timeout: 'soon' as never }), mp.ValueError);
      assert.throws(() => pool.applyAsync(fx.square, [1], { signal: {} as never }), mp.ValueError);
      await assert.rejects(pool.starmap(fx.mul, [5 as never]), (e: Error) => e instanceof mp.ValueError && /iterable\[0\] is not an array/.test(e.message));
      assert.equal(await pool.apply(fx.square, [9]), 81);
    });

    it('stats() and onProgress: counts, percentiles, workers; progress per chunk up to the total', async () => {
      const before = pool.stats();
      await pool.apply(fx.sqr, [1, 100]);
      await assert.rejects(pool.apply(fx.raising));
      const seen: Array<[number, number]> = [];
      await pool.map(fx.square, range(40), 10, { onProgress: (done, total) => seen.push([done, total]) });
      assert.deepEqual(seen.map(([d]) => d).sort((a, b) => a - b), [10, 20, 30, 40]);
      assert.ok(seen.every(([, t]) => t === 40));
      const progress: Array<number | undefined> = [];
      await all(pool.imap(fx.square, range(3), 1, { onProgress: (_d, total) => progress.push(total) }));
      assert.equal(progress.at(-1), 3, 'imap knows its total once the input is exhausted');
      const s = pool.stats();
      assert.equal(s.processes, 4);
      assert.equal(s.workers.length, 4);
      assert.equal(s.completed - before.completed, 1 + 4 + 3, 'one apply, four chunks, three imap tasks');
      assert.equal(s.failed - before.failed, 1);
      assert.equal(s.queued, 0);
      assert.equal(s.inFlight, 0);
      assert.equal(s.runTime.count, s.completed + s.failed);
      assert.ok(s.runTime.max >= s.runTime.p99 && s.runTime.p99 >= s.runTime.p50, JSON.stringify(s.runTime));
      assert.ok(s.runTime.max >= 90, 'a 100 ms task was measured');
      assert.ok(s.utilization > 0 && s.utilization <= 1);
      assert.equal(s.workers.reduce((n, w) => n + w.completed, 0), s.completed);
      assert.ok(s.workers.every((w) => w.name.startsWith('PoolWorker-') && w.pid !== null));
      assert.ok(s.workers.every((w) => w.ending === false), 'no worker is being ended');
    });

    it('1,000 applyAsync calls of an async task issued at once, beside an imapUnordered on the same pool: each result arrives once and is right', async () => {
      const n = 1_000;
      const callbacks = new Int32Array(n);
      // Odd ones await a 1 ms timer, even ones only a resolved promise.
      const results = range(n).map((i) => pool.applyAsync(fx.sqr, [i, i % 2], { callback: () => callbacks[i]!++ }));
      const others = range(500).map((i) => n + i);
      const unordered = all(pool.imapUnordered(fx.sqr, others));
      const [applied, streamed] = await within(Promise.all([Promise.all(results), unordered]), 30_000, 'the calls');
      assert.deepEqual(applied, range(n).map((i) => i * i));
      assert.deepEqual([...callbacks].filter((c) => c !== 1), [], 'each callback ran once');
      assert.deepEqual(streamed.sort((a, b) => a - b), others.map((x) => x * x));
    });

    it('concurrent next() calls on an imap queue up and resolve in order', async () => {
      const it = pool.imap(fx.square, range(4));
      const first = await within(Promise.all([it.next(), it.next(), it.next()]), 10_000, 'three concurrent next()');
      assert.deepEqual(first, [0, 1, 4].map((value) => ({ done: false, value })));
      const rest = await within(Promise.all([it.next(), it.next()]), 10_000, 'two more concurrent next()');
      assert.deepEqual(rest, [{ done: false, value: 9 }, { done: true, value: undefined }]);
      const unordered = pool.imapUnordered(fx.square, range(3));
      const all3 = await within(Promise.all([unordered.next(), unordered.next(), unordered.next(), unordered.next()]), 10_000, 'imapUnordered next()');
      assert.deepEqual(all3.slice(0, 3).map((r) => r.value).sort(), [0, 1, 4]);
      assert.equal(all3[3]!.done, true);
    });

    it('breaking out of an imap returns at once while a read of its input is pending and never settles', async () => {
      async function* stalls(): AsyncGenerator<number> {
        yield 0;
        yield 1;
        await new Promise(() => {});
      }
      const it = pool.imap(fx.square, stalls());
      assert.equal((await it.next()).value, 0);
      assert.equal((await it.next()).value, 1);
      assert.deepEqual(await within(it.return!(), 5_000, 'return()'), { done: true, value: undefined });
      assert.deepEqual(await it.next(), { done: true, value: undefined });
    });

    it('an aborted map stops reading its async input and closes it', async () => {
      const pulled = { count: 0, closed: false };
      const controller = new AbortController();
      const call = pool.map(fx.square, fx.slowNaturals(pulled), 1, { signal: controller.signal });
      await eventually(() => pulled.count >= 5, 10_000, 'some input to be read');
      controller.abort();
      const atAbort = pulled.count;
      await assert.rejects(call, (e: Error) => e.name === 'AbortError');
      await eventually(() => pulled.closed, 5_000, 'the input to be closed');
      assert.ok(pulled.count <= atAbort + 1, `read ${pulled.count - atAbort} items after the abort`);
    });

    it("a result that cannot travel back names the task's index in the whole map and the path inside its result", async () => {
      await assert.rejects(pool.map(fx.unsendableAtSix, range(8), 4), (e: Error) => {
        assert.ok(e instanceof mp.SerializationError, String(e));
        assert.match(e.message, /^pool\.map\(unsendableAtSix\) item 6 \(of the chunk of items 4–7\): the result\.cb is a function/);
        return true;
      });
      await assert.rejects(pool.map(fx.unsendableAtSix, range(8), 1), (e: Error) => /^pool\.map\(unsendableAtSix\) item 6: the result\.cb is a function/.test(e.message));
      assert.deepEqual(await pool.map(fx.unsendableAtSix, [1, 2], 2), [1, 2], 'the pool goes on');
    });

    it('a result that cannot be read in the parent (a shared block unlinked already) fails its task with SerializationError; the pool goes on', async () => {
      await assert.rejects(pool.apply(fx.unlinkedSharedMemory), (e: Error) => {
        assert.ok(e instanceof mp.SerializationError, String(e));
        assert.match(e.message, /^pool\.apply\(unlinkedSharedMemory\): the result could not be read here/);
        assert.ok(e.cause instanceof mp.FileNotFoundError, String(e.cause));
        return true;
      });
      assert.equal(await pool.apply(fx.square, [4]), 16);
    });

    it('imap over an endless async generator is pulled lazily, within its bound, and stops when the loop breaks', async () => {
      const pulled = { count: 0, closed: false };
      let got = 0;
      for await (const y of pool.imap(fx.square, fx.naturals(pulled), 1)) {
        assert.equal(y, got * got);
        if (++got === 50) break;
      }
      const bound = 8 * pool.processes;
      assert.ok(pulled.count <= 50 + bound + 1, `pulled ${pulled.count} items for 50 results (bound ${bound})`);
      assert.equal(pulled.closed, true, "the generator's finally ran");
      const slow = { count: 0, closed: false };
      const it = pool.imap(fx.square, fx.naturals(slow), 2);
      await it.next();
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(slow.count <= 2 * 8 * pool.processes + 2, `an unconsumed imap pulled ${slow.count} items`);
      await it.return!();
    });
  });
}

describe('Pool, one per test', () => {
  for (const method of METHODS) {
    it(`test_make_pool, test_pool_maxtasksperchild_invalid, TestInitializers: bad construction is refused (${method})`, () => {
      for (const bad of [-1, 0, 1.5, '2']) {
        assert.throws(() => new mp.Pool(bad as number, { context: method }), (e: Error) => e instanceof mp.ValueError && /processes/.test(e.message));
      }
      for (const bad of [0, -1, 0.5, '12']) {
        assert.throws(() => new mp.Pool(1, { context: method, maxtasksperchild: bad as number }), (e: Error) => e instanceof mp.ValueError && /maxtasksperchild/.test(e.message));
      }
      assert.throws(() => new mp.Pool(1, { context: method, initializer: 1 as never }), (e: Error) => e instanceof mp.ValueError && /initializer/.test(e.message));
      assert.throws(() => new mp.Pool(1, { context: method, initializer: fx.initializer, initargs: [() => 1] }), (e: Error) => e instanceof mp.SerializationError && /initargs\[0\] is a function/.test(e.message));
      assert.throws(() => new mp.Pool(1, { context: 'fork' as never }), mp.ValueError);
    });

    it(`test_pool_initializer: each worker runs it, an async one awaited before the first task (${method})`, async () => {
      const counter = mp.Value('i', 0);
      const p = new mp.Pool(2, { context: mp.getContext(method), module, initializer: fx.asyncInitializer, initargs: [counter, 'set'] });
      assert.equal(p.stats().workers.length, 2);
      assert.deepEqual(await p.map(fx.initState, [1, 2, 3, 4], 1), ['set', 'set', 'set', 'set']);
      p.close();
      await p.join();
      assert.equal(counter.value, 2);
    });

    it(`an initializer that throws breaks the pool with BrokenPoolError instead of respawning forever (${method})`, async () => {
      const p = new mp.Pool(2, { context: method, module, initializer: fx.failingInitializer });
      const r = p.applyAsync(fx.square, [2]);
      await assert.rejects(r.get(), (e: Error) => {
        assert.ok(e instanceof mp.BrokenPoolError, String(e));
        assert.match(e.message, /initializer threw TypeError: the initializer failed on purpose/);
        assert.ok(e.cause instanceof TypeError);
        return true;
      });
      assert.throws(() => p.applyAsync(fx.square, [2]), mp.BrokenPoolError);
      assert.ok(p.stats().workersStarted <= 4, `${p.stats().workersStarted} workers started`);
      await p.join();
    });

    it(`test_context, test_enter, test_map_no_failfast: await using closes and joins, after a map failed with large errors too; a closed pool refuses work with ValueError (${method})`, async () => {
      let kept: mp.Pool;
      {
        await using p = new (mp.getContext(method).Pool)(2, { module });
        kept = p;
        const r = p.mapAsync(fx.square, range(10));
        assert.deepEqual(await r.get(), range(10).map((x) => x * x));
        await assert.rejects(p.map(fx.raiseLargeError, [0, 1], 1), (e: Error) => e instanceof RangeError && e.message.length === 1024 * 1024);
      }
      assert.throws(() => kept.mapAsync(fx.square, [1]), (e: Error) => e instanceof mp.ValueError && /not running/.test(e.message));
      await assert.rejects(kept.map(fx.square, [1]), mp.ValueError);
      assert.equal(kept.stats().workers.length, 0, 'every worker ended');
      const running = new mp.Pool(1, { context: method });
      await assert.rejects(running.join(), mp.ValueError, 'join() of a running pool');
      running.terminate();
      await running.join();
    });

    it(`close() and join() (and await using) end a pool whose imap was left unconsumed: the rest of its input runs, its results kept for a later read (${method})`, async () => {
      const p = new mp.Pool(2, { context: method, module });
      const it = p.imap(fx.square, range(300), 1);
      assert.deepEqual(await it.next(), { done: false, value: 0 });
      p.close();
      await within(p.join(), 20_000, 'join() with an imap left unconsumed');
      const rest: number[] = [];
      for await (const v of it) rest.push(v);
      assert.deepEqual(rest, range(300).slice(1).map((x) => x * x));
      // The same through await using, left by an exception between two next() calls.
      const pulled = { count: 0, closed: false };
      let finite: AsyncIterableIterator<number> | null = null;
      const left = within(
        (async () => {
          await using q = new (mp.getContext(method).Pool)(2, { module });
          const endless = q.imap(fx.square, fx.naturals(pulled), 1);
          await endless.next();
          finite = q.imap(fx.square, range(100), 1);
          await finite.next();
          await endless.return!();
          throw new Error('the caller failed');
        })(),
        20_000,
        'await using with an imap left unconsumed',
      );
      await assert.rejects(left, /the caller failed/);
      assert.equal(pulled.closed, true, "the returned imap's generator was closed");
      const kept: number[] = [];
      for await (const v of finite!) kept.push(v);
      assert.deepEqual(kept, range(100).slice(1).map((x) => x * x), 'the unconsumed imap ran to its end');
    });

    it(`an imap made for its tasks' effects and never read (its iterator dropped at once) runs every task by join(), whatever the collector does meanwhile (${method})`, { skip: gc ? false : 'run node with --expose-gc' }, async () => {
      const runs = mp.RawArray('i', 400);
      const p = new mp.Pool(2, { context: method, module, initializer: fx.keepCounters, initargs: [runs] });
      p.imap(fx.countRun, range(400), 1);
      p.close();
      let joined = false;
      const joining = p.join().then(() => (joined = true));
      for (let k = 0; !joined && k < 4_000; k++) {
        gc!();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await within(joining, 1_000, 'join()');
      assert.deepEqual(Array.from(runs), range(400).map(() => 1), 'each task ran once');
    });

    it(`join() while an endless imap is still read: the input goes at the workers' pace, the event loop keeps turning, and join() ends once the reader breaks; terminate() ends a join() waiting on an endless imap nobody reads (${method})`, async () => {
      const p = new mp.Pool(2, { context: method, module });
      const pulled = { count: 0, closed: false };
      const it = p.imap(fx.square, fx.naturals(pulled), 1);
      assert.equal((await it.next()).value, 0);
      p.close();
      const joined = p.join();
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 5);
      let read = 1;
      let ahead = 0;
      for await (const y of it) {
        assert.equal(y, read * read);
        // Pulled and not yet answered: within the bound (8 chunks per worker), however far the answers run ahead of the reader.
        ahead = Math.max(ahead, pulled.count - p.stats().completed);
        if (++read === 2_000) break;
      }
      await within(joined, 20_000, 'join() once the reader broke off');
      clearInterval(ticker);
      assert.ok(ticks > 0, 'timers ran while join() drained the imap');
      // Pulled as the workers answered, not as fast as the input gives.
      assert.ok(ahead <= 8 * 2 + 1, `${ahead} items pulled ahead of the answers`);
      assert.equal(pulled.closed, true);

      const q = new mp.Pool(2, { context: method, module });
      const nobody = { count: 0, closed: false };
      const unread = q.imap(fx.square, fx.naturals(nobody), 1);
      await unread.next();
      q.close();
      const waiting = q.join();
      // A timer still fires while join() waits on the endless imap, and terminate() from it ends the wait.
      await within(new Promise((resolve) => setTimeout(resolve, 200)), 10_000, 'a timer during join()');
      q.terminate();
      await within(waiting, 20_000, 'join() after terminate()');
      // The results that came in before, then the pool's end.
      await assert.rejects(
        (async () => {
          for (let k = 1; ; k++) assert.equal((await unread.next()).value, k * k);
        })(),
        mp.StateError,
      );
    });

    it(`AsyncResult get() and wait() with a timeout past 2^31-1 ms wait for the result, as forever (${method})`, async () => {
      const p = new mp.Pool(1, { context: method, module });
      const r = p.applyAsync(fx.sqr, [3, 300]);
      assert.equal(await within(r.get(2 ** 31), 20_000, 'get(2 ** 31)'), 9);
      const s = p.applyAsync(fx.sqr, [4, 300]);
      await within(s.wait(1e10), 20_000, 'wait(1e10)');
      assert.equal(s.ready(), true, 'wait(1e10) returned once the result was ready, not before');
      p.terminate();
      await p.join();
    });

    it(`_TestPoolWorkerLifetime: maxtasksperchild replaces workers; closing early still runs every task (${method})`, async () => {
      // Both workers up first: a worker still starting when the other's replacement is up would see its
      // tasks moved there (balancer.ts), and, having run fewer than 3, rightly stay.
      const up = mp.RawArray('i', 1);
      const p = new mp.Pool(2, { context: method, module, maxtasksperchild: 3, initializer: fx.slowFirstInitializer, initargs: [up, 0] });
      const first = p.stats().workers.map((w) => w.name);
      await eventually(() => Atomics.load(up, 0) >= 2, 20_000, 'both workers to start');
      const results = range(6).map((i) => p.applyAsync(fx.square, [i]));
      for (const [i, r] of results.entries()) assert.equal(await r.get(), i * i);
      const names = new Set((await Promise.all(range(2).map(() => p.apply(fx.whoAmI)))).map((w) => w.name));
      assert.ok(p.stats().workersStarted >= 4, `${p.stats().workersStarted} workers started for 8 tasks of 3 each`);
      assert.ok(![...names].some((n) => first.includes(n)), `the first workers were all replaced: ${[...names]} vs ${first}`);
      p.close();
      await p.join();
      const early = new mp.Pool(2, { context: method, module, maxtasksperchild: 1 });
      const slow = range(3).map((i) => early.applyAsync(fx.sqr, [i, 50]));
      early.close();
      await early.join();
      for (const [i, r] of slow.entries()) assert.equal(await r.get(), i * i);
    });

    it(`maxtasksperchild: a retired worker's replacement starts once it has exited (at most processes workers alive), and the pool keeps the process alive meanwhile (${method})`, async () => {
      const r = await run(process.execPath, [fixture('pool-retire.js'), method], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      const [outcome, joined] = r.stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown);
      const { results, most, started } = (outcome ?? {}) as { results: number[]; most: number; started: number };
      assert.deepEqual(results, [1, 4, 9, 16], `the map finished before the process ended: ${r.stdout}`);
      assert.ok(most <= 1, `${most} workers of a Pool(1) were alive at once`);
      assert.ok(started >= 4, `${started} workers started for 4 tasks of one each`);
      assert.equal(joined, 'joined');
    });

    it(`maxtasksperchild: a worker runs exactly that many tasks, also when tasks it was handed are moved to another worker (${method})`, async (t) => {
      const up = mp.RawArray('i', 1);
      const done = mp.RawArray('i', 1);
      const p = new mp.Pool(2, { context: method, module, maxtasksperchild: 4, initializer: fx.slowFirstInitializer, initargs: [up, 0] });
      t.after(() => p.terminate());
      await eventually(() => Atomics.load(up, 0) >= 2, 20_000, 'both workers to start');
      // One worker is handed the first four tasks, the other the last four
      // (its whole budget each). The first task waits for the seven others,
      // so the three behind it must move to the worker that replaces the
      // other one once that has run its four.
      const first = await p.starmap(fx.nameAfterOthers, [[done, 7], ...range(7).map(() => [done, 0] as [Int32Array, number])], 1);
      for (const moved of first.slice(1, 4)) assert.notEqual(moved, first[0], `the tasks behind the long one ran elsewhere: ${first}`);
      // Four more: exactly what the two workers that have not run four yet may still run.
      const second = await p.starmap(fx.nameAfterOthers, range(4).map(() => [done, 0] as [Int32Array, number]), 1);
      p.close();
      await p.join();
      const ran = new Map<string, number>();
      for (const name of [...first, ...second]) ran.set(name, (ran.get(name) ?? 0) + 1);
      assert.deepEqual([...ran.values()], [4, 4, 4], `tasks run per worker: ${JSON.stringify(Object.fromEntries(ran))}`);
    });

    it(`an error leaked by a task's async work fails the task running when it fires (UncaughtError, the error its cause); with none running it is logged; the worker goes on (${method})`, async (t) => {
      const p = new mp.Pool(1, { context: method, module });
      t.after(() => p.terminate());
      const first = await p.apply(fx.whoAmI);
      await assert.rejects(p.apply(fx.leakRejection, [200]), (e: Error) => {
        assert.ok(e instanceof mp.UncaughtError, String(e));
        assert.match(e.message, /unhandled promise rejection/);
        assert.ok(e.cause instanceof RangeError && e.cause.message === 'leaked on purpose', String(e.cause));
        return true;
      });
      const fired = mp.RawArray('i', 1);
      assert.equal(await p.apply(fx.leakLaterThrow, [fired]), 1);
      await eventually(() => Atomics.load(fired, 0) === 1, 10_000, 'the timer to throw');
      assert.equal((await p.apply(fx.whoAmI)).name, first.name, 'the same worker serves on');
      assert.equal(p.stats().workersLost, 0);
      p.close();
      await p.join();
    });

    it(`a 1 ms interval a task left ticks freely while its worker waits for work (the wait does not block the worker's event loop) (${method})`, async (t) => {
      const p = new mp.Pool(1, { context: method, module });
      t.after(() => p.terminate());
      await p.apply(fx.square, [2]);
      const counter = mp.RawArray('i', 1);
      await p.apply(fx.tickFor, [counter, 300]);
      // The interval ends itself after 300 ms; a wait blocking the thread (even in 50 ms slices) lets it tick a few times only.
      await eventually(() => Atomics.load(counter, 0) > 100, 5_000, 'the interval to tick 100 times');
      assert.equal(await p.apply(fx.square, [3]), 9, 'the worker serves on');
    });

    it(`a 0 ms timer a task left fires within ~50 ms while sync tasks keep its worker busy (median of 5) (${method})`, async (t) => {
      const p = new mp.Pool(1, { context: method, module });
      t.after(() => p.terminate());
      await p.apply(fx.busy, [0, 0]);
      const lateness: number[] = [];
      for (let round = 0; round < 5; round++) {
        const cell = mp.RawArray('d', 1);
        const first = p.applyAsync(fx.timerAt, [cell]);
        const rest = p.starmap(fx.busy, range(300).map((i) => [i, 1] as [number, number]), 1);
        const set = await first.get();
        await rest;
        await eventually(() => cell[0] !== 0, 10_000, 'the timer to fire');
        lateness.push(cell[0]! - set);
      }
      // The worker yields to its event loop every 50 ms of sync tasks, through a timers phase (one immediate alone skipped it: ~100 ms).
      // The median: a round preempted on a loaded machine is no yield missed.
      const median = lateness.sort((a, b) => a - b)[2]!;
      assert.ok(median < 75, `the timer fired ${median.toFixed(1)} ms late (median of 5: ${lateness.map((x) => x.toFixed(1)).join(', ')})`);
    });

    it(`while a long task runs alone, with nothing to move, the balancer arms no timer (${method})`, async (t) => {
      const p = new mp.Pool(2, { context: method, module });
      t.after(() => p.terminate());
      await p.map(fx.square, [1, 2]);
      const long = p.applyAsync(fx.sqr, [3, 1_500]);
      // Some land behind the long task and are moved away from it (stand-ins keep their places there).
      await Promise.all(range(7).map((i) => p.applyAsync(fx.square, [i])));
      let timers = 0;
      const hook = createHook({
        init(_id, type) {
          if (type === 'Timeout') timers++;
        },
      }).enable();
      await new Promise((resolve) => setTimeout(resolve, 300));
      hook.disable();
      assert.equal(long.ready(), false, 'the long task still ran');
      assert.ok(timers <= 3, `${timers} timers were armed in 300 ms`);
      p.terminate();
      await p.join();
    });

    it(`a long task does not hold the tasks queued behind it: an idle worker takes them, and each runs once (${method})`, async (t) => {
      const runs = mp.RawArray('i', 8);
      const p = new mp.Pool(2, { context: method, module, initializer: fx.keepCounters, initargs: [runs] });
      t.after(() => p.terminate());
      await p.map(fx.square, [1, 2]); // both workers up
      const long = p.applyAsync(fx.sqr, [3, 1_500]);
      // Half of these go to the long task's worker, behind it.
      const quick = range(7).map((i) => p.applyAsync(fx.countRun, [i]));
      assert.deepEqual(await Promise.all(quick), range(7));
      assert.equal(long.ready(), false, 'every quick task was answered while the long one still ran');
      assert.deepEqual(Array.from(runs).slice(0, 7), range(7).map(() => 1));
      p.terminate();
      await p.join();
    });

    it(`a large task handed to a worker whose event loop is busy (a task's leftover timer) moves to a free worker: only a batch being read stays (${method})`, async (t) => {
      const p = new mp.Pool(2, { context: method, module });
      t.after(() => p.terminate());
      await p.map(fx.square, [1, 2]); // both workers up
      const flags = mp.RawArray('i', 2);
      // Submitted together, one to each worker: one leaves its loop busy for 5 s, the other works 300 ms.
      const blocking = p.apply(fx.blockLoopLater, [flags, 5_000]);
      const working = p.apply(fx.busy, [0, 300]);
      const blocked = await blocking;
      await eventually(() => Atomics.load(flags, 0) === 1, 10_000, 'the leftover timer to start');
      // While the other still works, the large task (1 MiB: its batch goes through a file) goes to the blocked worker.
      const taken = await p.apply(fx.whoTakes, [new Uint8Array(1 << 20)]);
      assert.equal(taken.length, 1 << 20);
      assert.equal(Atomics.load(flags, 1), 0, 'it ran before the busy loop ended');
      assert.notEqual(taken.name, blocked, 'it moved to the other worker');
      assert.equal(await working, 0);
      p.terminate();
      await p.join();
    });

    it(`tasks handed to a worker still starting go to the first worker up (${method})`, async (t) => {
      const order = mp.RawArray('i', 1);
      const p = new mp.Pool(2, { context: method, module, initializer: fx.slowFirstInitializer, initargs: [order, 5_000] });
      t.after(() => p.terminate());
      const t0 = performance.now();
      // The first task goes to the first worker made, likely the slow one: nothing else wakes the pool.
      assert.equal(await p.apply(fx.square, [7]), 49);
      // Shared out two and two: two wait behind the slow initializer until they move.
      assert.deepEqual(await Promise.all(range(4).map((i) => p.applyAsync(fx.square, [i]))), [0, 1, 4, 9]);
      assert.ok(performance.now() - t0 < 4_000, 'answered long before the slow worker was up');
      p.terminate();
      await p.join();
    });

    it(`test_terminate: terminate() mid-map ends the workers at once and the map rejects (${method})`, async () => {
      const p = new mp.Pool(3, { context: method, module });
      const result = p.mapAsync(fx.sqr, range(10_000).map(() => 60_000), 1);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const [, ms] = await timed(async () => {
        p.terminate();
        await p.join();
      });
      assert.ok(ms < 5_000, `terminate + join took ${ms} ms`);
      await assert.rejects(result.get(), (e: Error) => e instanceof mp.StateError && /terminated/.test(e.message));
      assert.equal(result.successful(), false);
    });

    it(`100,000 tasks through map chunksize 1 (and 20,000 applyAsync): each runs once and its result comes back once (${method})`, async () => {
      const n = 100_000;
      const runs = mp.RawArray('i', n);
      const p = new mp.Pool(2, { context: method, module, initializer: fx.keepCounters, initargs: [runs] });
      const ids = range(n);
      const out = await p.map(fx.countRun, ids, 1);
      assert.deepEqual(out, ids);
      assert.ok(runs.every((c) => c === 1), 'each task ran once');
      const some = ids.slice(0, 20_000);
      assert.deepEqual(await Promise.all(some.map((i) => p.applyAsync(fx.identity, [i]))), some);
      assert.equal(p.stats().completed, n + some.length);
      p.close();
      await p.join();
    });
  }
});

// Types: checked by the build (tsc); a wrong line fails it.
export async function typeChecks(pool: mp.Pool): Promise<void> {
  const squares: number[] = await pool.map(fx.sqr, [1, 2]);
  const strings: string[] = await pool.map((x: number) => String(x), [1]);
  const products: number[] = await pool.starmap(fx.mul, [[1, 2], [3, 4]]);
  const one: number = await pool.apply(fx.mul, [2, 3]);
  const none: string = await pool.apply(fx.initState);
  const r: mp.AsyncResult<number[]> = pool.mapAsync(fx.square, [1]);
  for await (const x of pool.imap(fx.square, [1])) x.toFixed();
  // `as const` tuples (readonly) are accepted where their types fit.
  const fromConst: number = await pool.apply(fx.mul, [2, 3] as const);
  const starConst: number[] = await pool.starmap(fx.mul, [[1, 2] as const, [3, 4] as const]);
  // @ts-expect-error a readonly tuple is still checked against the parameters
  await pool.apply(fx.mul, [1, 'b'] as const);
  // @ts-expect-error a string is not a number item
  await pool.map(fx.square, ['a']);
  // @ts-expect-error a tuple of the wrong arity
  await pool.starmap(fx.mul, [[1]]);
  // @ts-expect-error apply's args are checked against the parameters
  await pool.apply(fx.mul, [1, 'b']);
  // @ts-expect-error the result is a number, not a string
  const wrong: string[] = await pool.map(fx.square, [1]);
  void [squares, strings, products, one, none, r, wrong, fromConst, starConst];
}
