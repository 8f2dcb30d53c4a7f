/**
 * Pool workers that die, and tasks ended on purpose, under both start
 * methods: SIGKILL mid-task, process.exit in a task, out of memory, an
 * abort, a time limit, and terminate() mid-map leaving no child and no
 * shared memory behind. Each time only the task that was running fails,
 * the tasks handed to the dead worker but not started run elsewhere
 * exactly once, a replacement starts, and the pool goes on.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import * as mp from '../src/index.js';
import { treeDir } from '../src/shm/tree.js';
import * as fx from './fixtures/pool-targets.js';
import { METHODS, eventually, fixture, pidAlive, run } from './helpers.js';

const module = fx.POOL_TARGETS;
const gc = (globalThis as { gc?: () => void }).gc;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The files of the tree's directory that are segments (not ledgers or name markers). */
function segmentFiles(): string[] {
  return readdirSync(treeDir()).filter((name) => name !== 'names' && name !== 'ledgers').sort();
}

/** The worker Process running in `where` (pid, threadId), among this process's children. */
function workerAt(where: Int32Array): mp.Process {
  const found = mp.activeChildren().find((p) => p.pid === where[0] && (p.threadId ?? 0) === where[1]);
  assert.ok(found, `no child at pid ${where[0]} thread ${where[1]}`);
  return found;
}

/** A pool that is terminated after the test, passed or failed (a failed test must not leave 60 s tasks running). */
function ended(t: TestContext, pool: mp.Pool): mp.Pool {
  t.after(async () => {
    pool.terminate();
    await pool.join();
  });
  return pool;
}

async function started(where: Int32Array): Promise<void> {
  await eventually(() => Atomics.load(where, 2) === 1, 20_000, 'the task to start');
}

for (const method of METHODS) {
  describe(`Pool workers that die (${method})`, () => {
    it('SIGKILL mid-task fails only that task (WorkerLostError naming it and the worker); the tasks queued behind it run elsewhere, once each', async (t) => {
      const runs = mp.RawArray('i', 40);
      const pool = ended(t, new mp.Pool(2, { context: method, module, initializer: fx.keepCounters, initargs: [runs] }));
      const where = mp.RawArray('i', 3);
      const long = pool.applyAsync(fx.reportAndWait, [where, 60_000]);
      // Submitted together with the long task: some land behind it in its worker's queue.
      const quick = range(40).map((i) => pool.applyAsync(fx.countRun, [i]));
      await started(where);
      const victim = workerAt(where);
      if (method === 'process') process.kill(where[0]!, 'SIGKILL');
      else victim.kill();
      await assert.rejects(long.get(), (e: Error & { worker?: string }) => {
        assert.ok(e instanceof mp.WorkerLostError, String(e));
        assert.match(e.message, /pool\.apply\(reportAndWait\) was running in PoolWorker-/);
        assert.match(e.message, /killed by SIGKILL/);
        assert.equal(e.worker, victim.name);
        return true;
      });
      assert.deepEqual(await Promise.all(quick), range(40));
      assert.deepEqual(Array.from(runs), range(40).map(() => 1), 'each queued task ran exactly once');
      assert.equal(await pool.apply(fx.square, [12]), 144, 'the pool goes on');
      const s = pool.stats();
      assert.equal(s.workersLost, 1);
      assert.equal(s.workersStarted, 3);
      assert.equal(s.workers.length, 2);
    });

    it('process.exit() in a task fails that task with WorkerLostError (its exit code), and a replacement serves the next', async (t) => {
      const pool = ended(t, new mp.Pool(1, { context: method, module }));
      await assert.rejects(pool.apply(fx.exitWith, [3]), (e: Error) => e instanceof mp.WorkerLostError && /pool\.apply\(exitWith\).*exited with code 3/.test(e.message));
      await assert.rejects(pool.apply(fx.exitWith, [0]), (e: Error) => e instanceof mp.WorkerLostError && /exited with code 0/.test(e.message));
      assert.deepEqual(await pool.map(fx.square, [1, 2, 3]), [1, 4, 9]);
      assert.equal(pool.stats().workersLost, 2);
    });

    it('a task that runs out of memory (heapLimitMb) fails with WorkerLostError saying so; the pool goes on', async (t) => {
      const pool = ended(t, new mp.Pool(1, { context: method, module, heapLimitMb: 32 }));
      await assert.rejects(pool.apply(fx.exhaustMemory), (e: Error) => {
        assert.ok(e instanceof mp.WorkerLostError, String(e));
        assert.match(e.message, /was aborted \(SIGABRT, most likely out of memory: its heap limit is heapLimitMb: 32\)/);
        return true;
      });
      assert.equal(await pool.apply(fx.square, [5]), 25);
    });

    it('an abort drops the queued tasks of that call and ends its running ones (workers replaced); the call rejects with the reason', async (t) => {
      const pool = ended(t, new mp.Pool(2, { context: method, module }));
      const count = mp.RawArray('i', 1);
      const controller = new AbortController();
      const t0 = performance.now();
      const call = pool.starmap(fx.countAndWait, range(8).map(() => [count, 30_000] as [Int32Array, number]), 1, { signal: controller.signal });
      await eventually(() => Atomics.load(count, 0) === 2, 20_000, 'two tasks to start');
      controller.abort();
      await assert.rejects(call, (e: Error) => e.name === 'AbortError');
      assert.ok(performance.now() - t0 < 10_000, 'the call ended at the abort, not after its 30 s tasks');
      assert.deepEqual(await pool.map(fx.square, range(6)), range(6).map((x) => x * x), 'the replacements serve');
      assert.equal(Atomics.load(count, 0), 2, 'no dropped task ran');
      const s = pool.stats();
      assert.equal(s.workersStarted, 4, 'both workers running the call were replaced');
      assert.equal(s.workersLost, 0, 'ending them on purpose is no loss');
      const reason = new Error('not wanted');
      await assert.rejects(pool.apply(fx.square, [1], { signal: AbortSignal.abort(reason) }), (e: unknown) => e === reason);
    });

    it('a task past its timeout fails with TimeoutError (its worker replaced); the call rejects, the pool goes on', async (t) => {
      const pool = ended(t, new mp.Pool(2, { context: method, module }));
      const t0 = performance.now();
      await assert.rejects(pool.starmap(fx.sqr, [[1, 0], [2, 30_000], [3, 0]], 1, { timeout: 200 }), (e: Error) => {
        assert.ok(e instanceof mp.TimeoutError, String(e));
        assert.match(e.message, /pool\.starmap\(sqr\) item 1 ran past its timeout of 200 ms/);
        return true;
      });
      const ms = performance.now() - t0;
      assert.ok(ms >= 190 && ms < 5_000, `the timeout fired after ${ms} ms`);
      assert.equal(await pool.apply(fx.sqr, [4, 50], { timeout: 5_000 }), 16, 'a task within its limit');
      assert.equal(pool.stats().workersStarted, 3);
    });

    it("stats() count a task ended by its time limit or an abort: a failure, its run time, its worker's busy time (listed as ending until it exits) and utilization", async (t) => {
      const t0 = performance.now();
      const pool = ended(t, new mp.Pool(2, { context: method, module }));
      const elapsed = () => performance.now() - t0;
      await assert.rejects(pool.apply(fx.sqr, [1, 30_000], { timeout: 300 }), mp.TimeoutError);
      // Synchronously after the rejection: the ended worker's exit cannot have been handled yet.
      let s = pool.stats();
      assert.equal(s.failed, 1);
      assert.equal(s.completed, 0);
      assert.equal(s.runTime.count, 1, 'the task cut at its limit has a run time');
      assert.ok(s.runTime.max >= 299, `it ran ${s.runTime.max} ms, cut at 300`);
      assert.equal(s.waitTime.count, 1);
      let ending = s.workers.filter((w) => w.ending);
      assert.equal(ending.length, 1, `the worker being ended is listed as ending: ${JSON.stringify(s.workers)}`);
      assert.equal(ending[0]!.failed, 1);
      assert.ok(ending[0]!.busyMs >= 299, `its busy time: ${ending[0]!.busyMs} ms`);
      assert.equal(s.workers.filter((w) => !w.ending).length, 2, 'the pool keeps 2 workers besides it');
      assert.ok(s.utilization * 2 * elapsed() >= 299, `utilization ${s.utilization} over ${elapsed()} ms counts the 300 ms task`);
      await eventually(() => pool.stats().workers.length === 2, 10_000, 'the ended worker to exit');
      s = pool.stats();
      assert.ok(s.workers.every((w) => !w.ending));
      assert.ok(s.utilization * 2 * elapsed() >= 299, `utilization ${s.utilization} still counts the task once its worker exited`);

      const started = mp.RawArray('i', 1);
      const controller = new AbortController();
      const submitted = performance.now();
      const call = pool.apply(fx.countAndWait, [started, 30_000], { signal: controller.signal });
      await eventually(() => Atomics.load(started, 0) === 1, 10_000, 'the task to start');
      const seen = performance.now();
      // Not a synchronisation: the task runs at least this long before the abort.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const abortAt = performance.now();
      controller.abort();
      s = pool.stats();
      const since = performance.now() - submitted;
      assert.equal(s.failed, 2);
      assert.equal(s.runTime.count, 2, 'the aborted task has a run time');
      ending = s.workers.filter((w) => w.ending);
      assert.equal(ending.length, 1, `the worker being ended is listed as ending: ${JSON.stringify(s.workers)}`);
      assert.equal(ending[0]!.failed, 1);
      const ran = abortAt - seen;
      assert.ok(ending[0]!.busyMs >= ran - 1 && ending[0]!.busyMs <= since, `its busy time: ${ending[0]!.busyMs} ms; it ran ${ran} ms at least, ${since} at most`);
      await assert.rejects(call, (e: Error) => e.name === 'AbortError');
    });

    it("stats() count a task cut by its worker's death: a failure, its run time, and its worker's busy time in utilization once the worker has exited", async (t) => {
      const t0 = performance.now();
      const pool = ended(t, new mp.Pool(2, { context: method, module }));
      await assert.rejects(pool.apply(fx.spinThenExit, [400, 3]), mp.WorkerLostError);
      const s = pool.stats();
      const elapsed = performance.now() - t0;
      assert.equal(s.failed, 1);
      assert.equal(s.runTime.count, 1, 'the task its worker died in has a run time');
      assert.ok(s.runTime.max >= 399, `it ran ${s.runTime.max} ms`);
      assert.ok(s.utilization * 2 * elapsed >= 399, `utilization ${s.utilization} over ${elapsed} ms counts the dead worker's 400 ms`);
    });

    it('a timeout armed while its worker is still starting (a slow initializer) still ends the task', async (t) => {
      const pool = ended(t, new mp.Pool(1, { context: method, module, initializer: fx.slowInitializer, initargs: [500] }));
      const t0 = performance.now();
      await assert.rejects(pool.apply(fx.sqr, [2, 4_000], { timeout: 200 }), mp.TimeoutError);
      const ms = performance.now() - t0;
      assert.ok(ms < 3_000, `rejected after ${ms.toFixed(0)} ms, not at the end of the 4 s task`);
    });

    it('a time limit that runs out as its task ends never ends the task after it: no short timed task runs twice', async (t) => {
      // The race is a few microseconds wide: this catches a regression now and then, not every run.
      const n = 40;
      const runs = mp.RawArray('i', n);
      const pool = ended(t, new mp.Pool(2, { context: method, module, initializer: fx.keepCounters, initargs: [runs] }));
      const outcomes = await Promise.allSettled(range(n).map((i) => pool.applyAsync(fx.countAndSpin, [i, 2], { timeout: 3 })));
      for (const [i, o] of outcomes.entries()) {
        if (o.status === 'fulfilled') {
          assert.equal(o.value, i);
          assert.equal(runs[i], 1, `task ${i} answered, and ran ${runs[i]} times`);
        } else {
          assert.ok(o.reason instanceof mp.TimeoutError, `task ${i}: ${o.reason}`);
          // Stopped at its limit, maybe before its first line ran (a busy machine): at most once.
          assert.ok(runs[i]! <= 1, `task ${i} timed out, and ran ${runs[i]} times`);
        }
      }
    });

    it('the running tasks of a call that failed keep their time limits (a timed-out map leaves none running past its limit)', async (t) => {
      const up = mp.RawArray('i', 1);
      const pool = ended(t, new mp.Pool(2, { context: method, module, initializer: fx.slowFirstInitializer, initargs: [up, 0] }));
      await eventually(() => Atomics.load(up, 0) === 2, 20_000, 'both workers to start');
      // One worker is busy for 150 ms, so the map's second task starts 150 ms after its first.
      const busy = pool.apply(fx.sqr, [0, 150]);
      const call = pool.starmap(fx.sqr, [[1, 30_000], [2, 30_000]], 1, { timeout: 300 });
      await assert.rejects(call, mp.TimeoutError);
      await eventually(() => pool.stats().workersStarted === 4, 5_000, "the call's other running task to be ended at its own limit");
      assert.equal(await busy, 0);
    });

    it('heapLimitMb holds in a process started with --max-old-space-size; a worker without it keeps that option', async () => {
      const r = await run(process.execPath, ['--max-old-space-size=512', fixture('pool-heap-flag.js'), method], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const { limited, unlimited } = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { limited: number; unlimited: number };
      assert.ok(limited < 200, `a heapLimitMb: 32 worker's heap limit is ${limited} MiB`);
      assert.ok(unlimited >= 500, `a worker without heapLimitMb has ${unlimited} MiB`);
    });

    it('a task stuck in a blocking native call fails at its time limit anyway: the caller is not held until the call returns', async (t) => {
      const pool = ended(t, new mp.Pool(1, { context: method, module }));
      // The worker up first: under load its start alone can take a second, which is not what is measured.
      assert.equal(await pool.apply(fx.square, [2]), 4);
      const t0 = performance.now();
      await assert.rejects(pool.apply(fx.sleepInNativeCall, [2], { timeout: 200 }), mp.TimeoutError);
      const ms = performance.now() - t0;
      assert.ok(ms < 1_500, `the task failed after ${ms.toFixed(0)} ms (its native call takes 2 s)`);
      assert.equal(await pool.apply(fx.square, [3]), 9, 'a replacement serves');
    });

    it('workers killed from outside while they start are replaced: only start-up failures of their own break the pool', async (t) => {
      const started = mp.RawArray('i', 1);
      // Workers of earlier tests' pools may not have ended yet: they are not this pool's.
      const killed = new Set(mp.activeChildren().map((p) => p.name));
      const pool = ended(t, new mp.Pool(1, { context: method, module, initializer: fx.countedSlowInitializer, initargs: [started, 300] }));
      for (let k = 1; k <= 4; k++) {
        await eventually(() => Atomics.load(started, 0) >= k, 10_000, `worker ${k} to run its initializer`);
        const victim = mp.activeChildren().find((p) => p.name.startsWith('PoolWorker-') && !killed.has(p.name));
        assert.ok(victim, 'the starting worker is a child');
        killed.add(victim.name);
        if (method === 'process') process.kill(victim.pid!, 'SIGKILL');
        else victim.kill();
      }
      assert.equal(await pool.apply(fx.square, [5]), 25);
      assert.equal(pool.stats().workersStarted, 5);
    });

    it('terminate() mid-map leaves no worker and no shared memory behind', { skip: gc ? false : 'run node with --expose-gc' }, async (t) => {
      const where = mp.RawArray('i', 3);
      const before = segmentFiles();
      let pool: mp.Pool | null = new mp.Pool(2, { context: method, module });
      const owned = pool;
      t.after(() => owned.terminate());
      const map = pool.starmap(fx.reportAndWait, range(50).map(() => [where, 60_000] as [Int32Array, number]), 1);
      map.catch(() => {});
      await started(where);
      const workers = mp.activeChildren().filter((p) => p.name.startsWith('PoolWorker-'));
      assert.equal(workers.length, 2);
      assert.ok(segmentFiles().some((name) => !before.includes(name)), 'the pool has segments of its own');
      pool.terminate();
      await pool.join();
      await assert.rejects(map, mp.StateError);
      assert.deepEqual(mp.activeChildren().filter((p) => p.name.startsWith('PoolWorker-')), []);
      if (method === 'process') for (const w of workers) assert.equal(pidAlive(w.pid!), false, `${w.name} is gone`);
      pool = null;
      await eventually(() => {
        gc!();
        // Files of earlier tests may go meanwhile: what matters is that none is new.
        return segmentFiles().every((name) => before.includes(name));
      }, 10_000, 'the pool\'s segments to be removed');
      assert.equal(Atomics.load(new Int32Array(where.buffer, 0, 1), 0), 1, "the tasks' references to the array were given back");
    });

    describe('a map read lazily (long chunks, no onProgress: the parent sleeps until the last answer of a share)', () => {
      it('answers that fill the result ring wake the parent: the worker never waits on a sleeping parent for room', async (t) => {
        const pool = ended(t, new mp.Pool(2, { context: method, module }));
        // Run times known and over 0.5 ms: the next map goes out in whole shares and is read lazily.
        await pool.starmap(fx.spinThenPad, [2, 2, 2, 2].map(() => [2, 2] as [number, number]), 1);
        // 96 answers of 60 KB: each worker's 2.9 MB is over five times its 512 KB ring.
        const started = performance.now();
        const out = await pool.starmap(fx.spinThenPad, range(96).map(() => [1, 60_000] as [number, number]), 1);
        const took = performance.now() - started;
        assert.equal(out.length, 96);
        assert.ok(out.every((s) => s.length === 60_000));
        // Had the parent slept through a full ring, each fill would have cost a 1 s sleep slice.
        assert.ok(took < 3000, `took ${Math.round(took)} ms`);
      });

      it('a worker killed mid-map fails the map with WorkerLostError, and the pool goes on', async (t) => {
        const pool = ended(t, new mp.Pool(2, { context: method, module }));
        await pool.starmap(fx.spinThenPad, [2, 2, 2, 2].map(() => [2, 2] as [number, number]), 1);
        const where = mp.RawArray('i', 3);
        const mapping = pool.starmap(fx.reportOrSpin, range(16).map((i) => [i, where, 60_000] as [number, Int32Array, number]), 1);
        await started(where);
        const victim = workerAt(where);
        if (method === 'process') process.kill(where[0]!, 'SIGKILL');
        else victim.kill();
        await assert.rejects(mapping, (e: Error) => e instanceof mp.WorkerLostError);
        assert.deepEqual(await pool.map(fx.square, [1, 2, 3]), [1, 4, 9]);
      });
    });
  });
}
