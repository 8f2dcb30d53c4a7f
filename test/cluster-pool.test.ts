/**
 * The cluster Pool against a real redis-server and real worker processes
 * (`multiprocessing-ts worker`, the CLI users run): calls and errors,
 * by-reference checks, a worker SIGKILLed mid-task (its batch finishes on
 * the other worker, once to the caller), Redis restarted empty mid-map (no
 * task lost), SIGTERM draining, the attempt limit, bad URLs and passwords.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { inspect } from 'node:util';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as mp from 'multiprocessing-ts';
import { eventually, fixture } from './helpers.js';
import { DIE_WITH_PARENT, redisUnavailable, startRedis, type RedisOptions, type RedisServer } from './redis.js';
import { add, fail, failHolding, failWithMarkerKey, mainRanHere, marked, noop, square, uncloneableResult } from './fixtures/cluster-tasks.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['multiprocessing-ts']!);
const TASKS = fixture('cluster-tasks.js');
const WAIT_MS = 20_000;
const skip = redisUnavailable() ?? false;

interface WorkerProc {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything it printed on stdout so far. */
  output(): string;
  /** Everything it printed on stderr so far. */
  errors(): string;
  exited: Promise<number | string>;
}

/** Starts `multiprocessing-ts worker` and waits for its banner. */
async function startWorker(url: string, extra: string[] = [], module = TASKS, env: NodeJS.ProcessEnv = process.env): Promise<WorkerProc> {
  const child = spawn(process.execPath, ['--import', DIE_WITH_PARENT, CLI, 'worker', '--cluster', url, '--module', module, '--concurrency', '1', '--start-method', 'thread', '--visibility-timeout', '1000', ...extra], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env,
  });
  // Never written: the pipe only has to close with this process, and must not keep it alive.
  (child.stdin as { unref?: () => void } | null)?.unref?.();
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal!)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker: no banner within ${WAIT_MS} ms; stderr: ${err}`)), WAIT_MS);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      out += line + '\n';
      if (line.includes('serving pool')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited (${code}) before its banner; stderr: ${err}`));
    });
  });
  return { child, pid: child.pid!, output: () => out, errors: () => err, exited };
}

function markers(dir: string): string[] {
  return readdirSync(dir);
}

/**
 * A redis-server, `n` worker CLIs on it, a context and a markers directory,
 * all ended when disposed, however the test ended (a failed assertion too).
 */
async function cluster(n: number, options: RedisOptions = {}) {
  const redis = await startRedis(options);
  const workers: WorkerProc[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'mpts-cluster-'));
  const end = async () => {
    for (const w of workers) w.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await redis.stop();
  };
  try {
    workers.push(...(await Promise.all(Array.from({ length: n }, () => startWorker(redis.url)))));
  } catch (err) {
    await end();
    throw err;
  }
  const ctx = mp.getContext(redis.url as `redis://${string}`);
  return {
    redis,
    workers,
    ctx,
    dir,
    async [Symbol.asyncDispose]() {
      ctx.close();
      await end();
    },
  };
}

describe('cluster Pool', { skip }, () => {
  let redis: RedisServer;
  let workers: WorkerProc[] = [];
  let ctx: mp.ClusterContext;

  before(async () => {
    redis = await startRedis();
    workers = await Promise.all([startWorker(redis.url), startWorker(redis.url)]);
    ctx = mp.getContext(redis.url as `redis://${string}`);
  });

  after(async () => {
    ctx?.close();
    for (const w of workers) w.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('apply, applyAsync, map, starmap, imap and imapUnordered run on the workers', async () => {
    const pool = new ctx.Pool();
    assert.equal(await pool.apply(add, [2, 3]), 5);
    let called: number | null = null;
    const r = pool.applyAsync(square, [7], { callback: (v) => (called = v) });
    assert.equal(await r.get(WAIT_MS), 49);
    assert.equal(called, 49);
    assert.equal(r.successful(), true);
    const xs = Array.from({ length: 200 }, (_, i) => i);
    assert.deepEqual(await pool.map(square, xs), xs.map((x) => x * x));
    assert.deepEqual(await pool.map(square, xs, 7), xs.map((x) => x * x));
    assert.deepEqual(await pool.starmap(add, [[1, 2], [3, 4]]), [3, 7]);
    const ordered: number[] = [];
    for await (const y of pool.imap(square, (async function* () { for (const x of [1, 2, 3, 4]) yield x; })())) ordered.push(y);
    assert.deepEqual(ordered, [1, 4, 9, 16]);
    const unordered: number[] = [];
    for await (const y of pool.imapUnordered(square, [5, 6, 7], 2)) unordered.push(y);
    assert.deepEqual(unordered.sort((a, b) => a - b), [25, 36, 49]);
    const stats = await pool.stats();
    assert.deepEqual(new Set(stats.workers.map((w) => w.pid)), new Set(workers.map((w) => w.pid)));
    assert.ok(stats.completed >= 200 * 2 + 8);
    pool.close();
    await pool.join();
  });

  it('10,000 applyAsync at once: each result exactly once, in its own AsyncResult', async () => {
    const pool = new ctx.Pool();
    const results = Array.from({ length: 10_000 }, (_, i) => pool.applyAsync(add, [i, 1]));
    const values = await Promise.all(results);
    assert.deepEqual(values, Array.from({ length: 10_000 }, (_, i) => i + 1));
    pool.close();
    await pool.join();
  });

  it("a task's error keeps its class name, message and own properties (a shared object among them described; plain data under the cluster's reserved key kept)", async () => {
    const pool = new ctx.Pool();
    await assert.rejects(pool.apply(fail, ['boom']), (err: any) => err.constructor.name === 'Custom' && err.message === 'boom' && err.code === 42 && /fail/.test(err.stack));
    await assert.rejects(pool.apply(uncloneableResult, []), (err: Error) => err.name === 'SerializationError');
    // A shared object on the error cannot go through Redis: the error still arrives, that property described.
    await assert.rejects(pool.apply(failHolding, ['held']), (err: any) => {
      assert.equal(err.constructor.name, 'Custom', inspect(err));
      assert.equal(err.message, 'held');
      assert.match(String(err.raw), /cannot be copied to another process/);
      return true;
    });
    // Plain data on the error with the key cluster objects are stored under is data: it arrives as it was.
    await assert.rejects(pool.apply(failWithMarkerKey, ['marked']), (err: any) => {
      assert.equal(err.constructor.name, 'Custom', inspect(err));
      assert.deepEqual(err.detail, { __multiprocessing_ts_cluster__: 'plain data' });
      return true;
    });
    pool.close();
    await pool.join();
  });

  it("the worker imports the module without running its guarded main code", async () => {
    const pool = new ctx.Pool();
    assert.equal(await pool.apply(mainRanHere, []), false);
    for (const w of workers) assert.doesNotMatch(w.errors(), /main code ran/);
    pool.close();
    await pool.join();
  });

  it('refuses by-source functions, other versions and functions the module lacks, with clear errors', async () => {
    const pool = new ctx.Pool();
    assert.throws(() => pool.applyAsync((x: number) => x, [1]), (e: Error) => e instanceof mp.ValueError && /by reference/.test(e.message));
    assert.throws(() => pool.applyAsync(add, [() => 1] as never), (e: Error) => e instanceof mp.SerializationError && /args\[0\]/.test(e.message));
    // Same name, other source: a worker must not run its own `square` instead.
    const square = (x: number) => x + 1;
    Object.defineProperty(square, 'name', { value: 'square' });
    await assert.rejects(pool.apply(square, [3]), (e: Error) => e instanceof mp.ClusterError && /another version/.test(e.message));
    function notExported(): number {
      return 1;
    }
    await assert.rejects(pool.apply(notExported, []), (e: Error) => e instanceof mp.ClusterError && /exports no function named "notExported"/.test(e.message));
    assert.throws(() => new ctx.Pool(2, { initializer: noop } as never), (e: Error) => e instanceof mp.ValueError && /belongs to the workers/.test(e.message));
    // The pool still serves.
    assert.equal(await pool.apply(add, [1, 1]), 2);
    pool.close();
    await pool.join();
  });

  it("a worker whose module is another version is refused even when the task function's own source is the same", async () => {
    const { tax } = (await import(fixture('cluster-tax-v1.js'))) as typeof import('./fixtures/cluster-tax-v1.js');
    const other = await startWorker(redis.url, ['--pool', 'versions'], fixture('cluster-tax-v2.js'));
    try {
      const pool = new ctx.Pool(1, { name: 'versions' });
      await assert.rejects(pool.apply(tax, [100]), (e: Error) => e instanceof mp.ClusterError && /module that defines tax .*another version/.test(e.message));
      pool.close();
      await pool.join();
      // Asked not to (a caller running a bundle of the same code): only the function's own source counts.
      const unchecked = new ctx.Pool(1, { name: 'versions', checkModule: false });
      assert.equal(await unchecked.apply(tax, [100]), 30);
      unchecked.close();
      await unchecked.join();
      assert.throws(() => new ctx.Pool(1, { checkModule: 'no' as never }), (e: Error) => e instanceof mp.ValueError && /checkModule/.test(e.message));
    } finally {
      other.child.kill('SIGKILL');
    }
  });

  it('a caller script that never closes its context ends by itself once its pool is joined', async () => {
    const child = spawn(process.execPath, [fixture('cluster-caller-exits.js'), redis.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const code = await new Promise<number | string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`still running after ${WAIT_MS} ms; printed ${JSON.stringify(out)}`)), WAIT_MS);
      child.once('exit', (c, signal) => {
        clearTimeout(timer);
        resolve(c ?? signal!);
      });
    });
    child.kill('SIGKILL');
    assert.equal(code, 0);
    assert.equal(out.trim(), '42');
  });

  it('abort listeners leave a long-lived signal once their calls settle; bad pool names are refused', async () => {
    const pool = new ctx.Pool();
    const signal = new AbortController().signal;
    await Promise.all(Array.from({ length: 50 }, (_, i) => pool.applyAsync(add, [i, 1], { signal })));
    await pool.map(square, [1, 2, 3], 1, { signal });
    for (let i = 0; i < 3; i++) {
      const got: number[] = [];
      for await (const y of pool.imap(square, [1, 2], 1, { signal })) got.push(y);
      assert.deepEqual(got, [1, 4]);
    }
    for await (const y of pool.imapUnordered(square, [3], 1, { signal })) assert.equal(y, 9);
    assert.equal(getEventListeners(signal, 'abort').length, 0);
    assert.throws(() => new ctx.Pool(1, { name: 'a}b:c' }), (e: Error) => e instanceof mp.ValueError && /name/.test(e.message));
    pool.close();
    await pool.join();
  });

  it("a throwing onProgress fails its map or imap with the callback's error; the pool keeps serving", async () => {
    const pool = new ctx.Pool();
    const bug = new Error('bug in my progress bar');
    const thrower = () => {
      throw bug;
    };
    await assert.rejects(pool.map(square, [1, 2, 3, 4], 1, { onProgress: thrower }), (e) => e === bug);
    await assert.rejects(
      (async () => {
        for await (const _ of pool.imap(square, [1, 2, 3], 1, { onProgress: thrower }));
      })(),
      (e) => e === bug,
    );
    await assert.rejects(pool.map(square, [1], 1, { onProgress: 'yes' as never }), (e: Error) => e instanceof mp.ValueError && /onProgress must be a function/.test(e.message));
    assert.equal(await pool.apply(add, [20, 22]), 42);
    pool.close();
    await pool.join();
  });

  it('imap: concurrent next() calls resolve in order; close() + join() waits for the batches in flight', async () => {
    const pool = new ctx.Pool();
    const it = pool.imap(square, [1, 2, 3, 4], 1);
    const [a, b, c] = await Promise.all([it.next(), it.next(), it.next()]);
    assert.deepEqual([a.value, b.value, c.value], [1, 4, 9]);
    pool.close();
    const joined = pool.join();
    const d = await it.next();
    assert.equal(d.value, 16);
    await joined;
    assert.equal((await it.next()).done, true);
    // Breaking out of an endless input: it stops pulling (a bounded number of items taken).
    const pool2 = new ctx.Pool(2);
    let pulled = 0;
    async function* endless() {
      for (let i = 0; ; i++) {
        pulled++;
        yield i;
      }
    }
    let seen = 0;
    for await (const y of pool2.imapUnordered(square, endless())) {
      assert.equal(typeof y, 'number');
      if (++seen === 20) break;
    }
    const after = pulled;
    assert.ok(after < 20 + 4 * 2 * 2 + 2, `pulled ${after} items for 20 results`);
    pool2.close();
    await pool2.join();
    assert.equal(pulled, after, 'nothing pulled after the break');
  });

  it('ctx.close() with a call pending rejects it at once with a ClusterError', async () => {
    const own = mp.getContext(redis.url as `redis://${string}`, { connectTimeoutMs: 4000 });
    const pool = new own.Pool();
    const dir = mkdtempSync(join(tmpdir(), 'mpts-cluster-'));
    try {
      const pending = pool.apply(marked, [1, 1500, dir]);
      await eventually(() => markers(dir).length === 1, WAIT_MS, 'the task to start');
      const t0 = Date.now();
      own.close();
      await assert.rejects(pending, (e: Error) => e instanceof mp.ClusterError && /closed/.test(e.message));
      assert.ok(Date.now() - t0 < 1000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('terminate() fails pending calls at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpts-cluster-'));
    try {
      const pool = new ctx.Pool();
      const pending = pool.starmap(marked, [0, 1, 2, 3, 4, 5].map((x) => [x, 2000, dir] as [number, number, string]), 1);
      await eventually(() => markers(dir).length > 0, WAIT_MS, 'a task to start');
      pool.terminate();
      await assert.rejects(pending, (e: Error) => e instanceof mp.StateError);
      await pool.join();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cluster Pool faults', { skip }, () => {
  it('a worker SIGKILLed mid-task: its batch runs on the other worker, each result once to the caller', async () => {
    await using c = await cluster(2);
    const [a, b] = c.workers as [WorkerProc, WorkerProc];
    const pool = new c.ctx.Pool();
    const running = pool.starmap(marked, [0, 1, 2, 3].map((x) => [x, 1500, c.dir] as [number, number, string]), 1);
    await eventually(() => markers(c.dir).length >= 1, WAIT_MS, 'a task to start');
    const victim = [a, b].find((w) => markers(c.dir).some((m) => m.endsWith(`-${w.pid}`)))!;
    victim.child.kill('SIGKILL');
    assert.deepEqual(await running, [0, 1, 2, 3]);
    const ranOnVictim = markers(c.dir).filter((m) => m.endsWith(`-${victim.pid}`)).map((m) => m.split('-')[0]);
    const survivor = victim === a ? b : a;
    // Every task the victim had started ran again on the survivor.
    for (const x of ranOnVictim) assert.ok(markers(c.dir).includes(`${x}-${survivor.pid}`), `task ${x} was not run again`);
    assert.ok((await pool.stats()).retried >= 1);
    pool.close();
    await pool.join();
  });

  it('Redis restarted empty mid-map: no task lost', async () => {
    await using c = await cluster(2, { persist: false });
    const pool = new c.ctx.Pool();
    const xs = [0, 1, 2, 3, 4, 5];
    const running = pool.starmap(marked, xs.map((x) => [x, 400, c.dir] as [number, number, string]), 1);
    await eventually(() => markers(c.dir).length >= 1, WAIT_MS, 'a task to start');
    await c.redis.restart();
    assert.deepEqual(await running, xs);
    // The workers kept serving through the restart.
    assert.equal(await pool.apply(add, [1, 2]), 3);
    pool.close();
    await pool.join();
  });

  it('after a restart onto a server whose clock is behind, results (with smaller stream ids) still arrive', async () => {
    await using c = await cluster(1, { persist: false });
    const pool = new c.ctx.Pool();
    assert.equal(await pool.apply(add, [1, 1]), 2);
    // The caller has read an id from the old server 60 s ahead of the new one's
    // clock (a failover target behind, a clock stepped back): a stale entry
    // with such an id (its batch number matches no call) stands for it.
    const { Redis } = await import('ioredis');
    const admin = new Redis(c.redis.url);
    try {
      const [key] = await admin.keys('*results*');
      assert.ok(key, 'the caller has a results stream');
      const [seconds] = await admin.time();
      await admin.xadd(key, `${Number(seconds) * 1000 + 60_000}-0`, 'b', '999999', 'w', 'old-primary', 'n', '1', 'e', 'x');
      // The caller has read past it: a call made after it completes.
      assert.equal(await pool.apply(add, [2, 2]), 4);
    } finally {
      admin.disconnect();
    }
    await c.redis.restart();
    const after = pool.apply(add, [3, 3]);
    const outcome = await Promise.race([after, new Promise((resolve) => setTimeout(() => resolve('still pending'), 10_000).unref())]);
    assert.equal(outcome, 6);
    pool.close();
    await pool.join();
  });

  it("every client's connection dropped mid-map (CLIENT KILL): the caller and the workers reconnect and every result arrives once", async () => {
    await using c = await cluster(2);
    const pool = new c.ctx.Pool();
    const xs = [0, 1, 2, 3, 4, 5];
    const running = pool.starmap(marked, xs.map((x) => [x, 300, c.dir] as [number, number, string]), 1);
    await eventually(() => markers(c.dir).length >= 1, WAIT_MS, 'a task to start');
    const killed = spawnSync('redis-cli', ['-p', String(c.redis.port), 'CLIENT', 'KILL', 'TYPE', 'normal'], { encoding: 'utf8' });
    assert.ok(Number(killed.stdout) >= 3, `connections dropped: ${killed.stdout}${killed.stderr}`);
    assert.deepEqual(await running, xs);
    pool.close();
    await pool.join();
  });

  it('SIGTERM drains: the task it holds finishes and is delivered, then it exits 0', async () => {
    await using c = await cluster(1);
    const worker = c.workers[0]!;
    const pool = new c.ctx.Pool();
    const running = pool.apply(marked, [7, 800, c.dir]);
    await eventually(() => markers(c.dir).length === 1, WAIT_MS, 'the task to start');
    worker.child.kill('SIGTERM');
    assert.equal(await running, 7);
    assert.equal(await worker.exited, 0);
    assert.match(worker.output(), /draining/);
    assert.equal((await pool.stats()).workers.length, 0, 'a drained worker is no longer listed');
    pool.close();
    await pool.join();
  });

  it("a signal to the worker's whole process group (Ctrl-C, a service stop) drains it: its 'process' children do not die with it, the task is delivered", async () => {
    await using redis = await startRedis();
    const dir = mkdtempSync(join(tmpdir(), 'mpts-cluster-'));
    // Its own group, as a terminal's foreground job or a service is.
    const child = spawn(process.execPath, ['--import', DIE_WITH_PARENT, CLI, 'worker', '--cluster', redis.url, '--module', TASKS, '--concurrency', '1', '--start-method', 'process'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    (child.stdin as { unref?: () => void } | null)?.unref?.();
    const ctx = mp.getContext(redis.url as `redis://${string}`);
    try {
      let out = '';
      const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal!)));
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d) => {
          out += d;
          if (out.includes('serving pool')) resolve();
        });
        child.once('exit', () => reject(new Error(`worker exited early: ${out}`)));
      });
      const pool = new ctx.Pool();
      const running = pool.apply(marked, [5, 1000, dir]);
      await eventually(() => markers(dir).length === 1, WAIT_MS, 'the task to start');
      process.kill(-child.pid!, 'SIGINT');
      assert.equal(await running, 5);
      assert.equal(await exited, 0);
      pool.close();
      await pool.join();
    } finally {
      ctx.close();
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('Redis gone for good: a pending call, stats() and join() end with a ClusterError or return, in bounded time', async () => {
    const redis = await startRedis();
    const worker = await startWorker(redis.url);
    const ctx = mp.getContext(redis.url as `redis://${string}`, { connectTimeoutMs: 500 });
    const dir = mkdtempSync(join(tmpdir(), 'mpts-cluster-'));
    try {
      const pool = new ctx.Pool();
      const pending = pool.apply(marked, [1, 60_000, dir]);
      await eventually(() => markers(dir).length === 1, WAIT_MS, 'the task to start');
      worker.child.kill('SIGKILL');
      await redis.stop();
      const t0 = Date.now();
      await assert.rejects(pool.stats(), (e: Error) => e instanceof mp.ClusterError);
      await assert.rejects(pending, (e: Error) => e instanceof mp.ClusterError && /unreachable/.test(e.message));
      assert.ok(Date.now() - t0 < 10_000, `rejected after ${Date.now() - t0} ms`);
      pool.close();
      await pool.join();
    } finally {
      ctx.close();
      worker.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGTERM with Redis gone: an idle worker and one holding a batch exit in bounded time, with exit 1 saying what may be unfinished', async () => {
    const redis = await startRedis();
    const extra = ['--connect-timeout', '300'];
    const idle = await startWorker(redis.url, [...extra, '--pool', 'idle']);
    const busy = await startWorker(redis.url, extra);
    const ctx = mp.getContext(redis.url as `redis://${string}`, { connectTimeoutMs: 300 });
    const dir = mkdtempSync(join(tmpdir(), 'mpts-cluster-'));
    try {
      const pool = new ctx.Pool();
      const pending = pool.apply(marked, [1, 1500, dir]);
      pending.catch(() => {});
      await eventually(() => markers(dir).length === 1, WAIT_MS, 'the task to start');
      await redis.stop();
      const t0 = Date.now();
      idle.child.kill('SIGTERM');
      busy.child.kill('SIGTERM');
      const within = (p: Promise<number | string>) => Promise.race([p, new Promise((r) => setTimeout(() => r('still running'), 15_000).unref())]);
      // The idle one's last read was cut off with Redis gone: it cannot tell whether that read took a batch.
      assert.equal(await within(idle.exited), 1, `idle worker: ${idle.errors()}`);
      assert.match(idle.errors(), /may be unfinished/);
      assert.equal(await within(busy.exited), 1, `busy worker: ${busy.errors()}`);
      assert.match(busy.errors(), /1 batch\(es\) it took are unfinished/);
      assert.ok(Date.now() - t0 < 15_000, `exited after ${Date.now() - t0} ms`);
      pool.terminate();
    } finally {
      ctx.close();
      idle.child.kill('SIGKILL');
      busy.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a drain whose last read was cut off (its answer stalled) leaves what that read took to other workers: the batch still runs", async () => {
    await using redis = await startRedis();
    const { TcpProxy } = await import('./tcp-proxy.js');
    const proxy = await TcpProxy.start(redis.port);
    const ctx = mp.getContext(redis.url as `redis://${string}`);
    let other: mp.ClusterWorker | null = null;
    try {
      const pool = new ctx.Pool(1, { name: 'cutoff' });
      const result = pool.applyAsync(square, [7]);
      const { Redis } = await import('ioredis');
      const probe = new Redis(redis.url);
      try {
        for (const deadline = Date.now() + WAIT_MS; (await probe.exists('{mpts:pool:cutoff}:tasks')) === 0; ) {
          assert.ok(Date.now() < deadline, 'the batch is written');
          await new Promise((r) => setTimeout(r, 10));
        }
      } finally {
        probe.disconnect();
      }
      // The worker's first read of tasks gets its answer held back (a stalled network): Redis gave it the batch, the worker never sees it.
      const held = proxy.onSent(/XREADGROUP/i, 'hold answers');
      const worker = await mp.ClusterWorker.start({
        cluster: `redis://127.0.0.1:${proxy.port}/0`,
        module: TASKS,
        pool: 'cutoff',
        concurrency: 1,
        startMethod: 'thread',
        visibilityTimeoutMs: 1000,
        client: { connectTimeoutMs: 300 },
      });
      const connection = await held;
      await worker.drain();
      assert.equal(worker.leftForOthers, 1, 'the drain says it left the batch');
      connection.release();
      other = await mp.ClusterWorker.start({ cluster: redis.url, module: TASKS, pool: 'cutoff', concurrency: 1, startMethod: 'thread', visibilityTimeoutMs: 200 });
      const outcome = await Promise.race([result.get(), new Promise((r) => setTimeout(() => r('still pending'), 8_000).unref())]);
      assert.equal(outcome, 49);
      pool.terminate();
    } finally {
      await other?.drain();
      ctx.close();
      await proxy.close();
    }
  });

  it("a dead worker's batch behind many held by live workers is taken over (the reclaim scan goes on from its cursor)", async () => {
    await using redis = await startRedis();
    const { Redis } = await import('ioredis');
    const admin = new Redis(redis.url);
    const ctx = mp.getContext(redis.url as `redis://${string}`);
    let refresher: NodeJS.Timeout | undefined;
    let worker: WorkerProc | undefined;
    try {
      const tasks = '{mpts:pool:deep}:tasks';
      await admin.xgroup('CREATE', tasks, 'workers', '0', 'MKSTREAM');
      // 30 older batches held by a live worker, which keeps them fresh.
      for (let i = 0; i < 30; i++) await admin.xadd(tasks, '*', 'junk', String(i));
      const held = ((await admin.xreadgroup('GROUP', 'workers', 'live', 'COUNT', 30, 'STREAMS', tasks, '>')) as [string, [string, string[]][]][])[0]![1].map(([id]) => id);
      refresher = setInterval(() => void admin.xclaim(tasks, 'workers', 'live', 0, ...held, 'JUSTID').catch(() => {}), 150);
      // A real batch, taken by a worker that then died.
      const pool = new ctx.Pool(1, { name: 'deep' });
      const result = pool.apply(square, [9]);
      for (const deadline = Date.now() + WAIT_MS; (await admin.xlen(tasks)) < 31; ) {
        assert.ok(Date.now() < deadline, 'the batch is written');
        await new Promise((r) => setTimeout(r, 10));
      }
      await admin.xreadgroup('GROUP', 'workers', 'dead', 'COUNT', 1, 'STREAMS', tasks, '>');
      worker = await startWorker(redis.url, ['--pool', 'deep']);
      const outcome = await Promise.race([result, new Promise((r) => setTimeout(() => r('still pending'), 8_000).unref())]);
      assert.equal(outcome, 81);
      pool.terminate();
    } finally {
      clearInterval(refresher);
      worker?.child.kill('SIGKILL');
      admin.disconnect();
      ctx.close();
    }
  });

  it('past its attempt limit a batch fails with WorkerLostError', async () => {
    await using redis = await startRedis();
    const first = await startWorker(redis.url);
    const ctx = mp.getContext(redis.url as `redis://${string}`);
    const dir = mkdtempSync(join(tmpdir(), 'mpts-cluster-'));
    let second: WorkerProc | null = null;
    try {
      const pool = new ctx.Pool(1, { maxAttempts: 1 });
      const running = pool.apply(marked, [1, 5000, dir]);
      await eventually(() => markers(dir).length === 1, WAIT_MS, 'the task to start');
      first.child.kill('SIGKILL');
      second = await startWorker(redis.url);
      await assert.rejects(running, (e: Error) => e instanceof mp.WorkerLostError && /delivered 2 times \(limit 1\)/.test(e.message));
      assert.equal(markers(dir).length, 1, 'it did not run again');
      pool.close();
      await pool.join();
    } finally {
      ctx.close();
      second?.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a worker whose local pool cannot start stops with exit 1, and its batch runs on another worker', async () => {
    await using redis = await startRedis();
    const module = fixture('cluster-tasks-broken.js');
    const broken = await startWorker(redis.url, [], module, { ...process.env, MPTS_BREAK_LOCAL: '1' });
    const ctx = mp.getContext(redis.url as `redis://${string}`);
    let good: WorkerProc | null = null;
    try {
      const { add } = (await import(module)) as typeof import('./fixtures/cluster-tasks-broken.js');
      const pool = new ctx.Pool();
      const result = pool.apply(add, [1, 2]);
      assert.equal(await broken.exited, 1);
      assert.match(broken.errors(), /local pool cannot run tasks/);
      good = await startWorker(redis.url, [], module);
      assert.equal(await result, 3);
      pool.close();
      await pool.join();
    } finally {
      ctx.close();
      broken.child.kill('SIGKILL');
      good?.child.kill('SIGKILL');
    }
  });

  it('an unreachable URL and a wrong password are clear errors that never show the password', async () => {
    await using redis = await startRedis({ password: 's3cret' });
    const wrong = mp.getContext(`redis://:wrong-pass@127.0.0.1:${redis.port}/0`);
    await assert.rejects(new wrong.Pool().apply(add, [1, 2]), (e: Error) => e instanceof mp.ClusterError && /refused the credentials|WRONGPASS|NOAUTH/i.test(e.message) && !inspect(e, { depth: 10 }).includes('wrong-pass'));
    wrong.close();
    const started = Date.now();
    const nowhere = mp.getContext('redis://:topsecret@127.0.0.1:1/0', { connectTimeoutMs: 1000 });
    await assert.rejects(new nowhere.Pool().apply(add, [1, 2]), (e: Error) => e instanceof mp.ClusterError && /cannot connect to redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0/.test(e.message) && !inspect(e, { depth: 10 }).includes('topsecret'));
    assert.ok(Date.now() - started < 5000, 'within the connect timeout');
    nowhere.close();
    assert.throws(() => mp.getContext('redis://h:1/x' as 'redis://'), (e: Error) => e instanceof mp.ValueError && /database number/.test(e.message));
    // The right password works.
    const right = mp.getContext(redis.url as `redis://${string}`);
    const worker = await startWorker(redis.url);
    try {
      const pool = new right.Pool();
      assert.equal(await pool.apply(add, [1, 2]), 3);
      pool.close();
      await pool.join();
      // A password on the command line is readable by every local user: the worker says so (the environment variable is the way).
      assert.match(worker.errors(), /holds a password.*MULTIPROCESSING_TS_CLUSTER/);
      assert.ok(!worker.errors().includes('s3cret'));
    } finally {
      right.close();
      worker.child.kill('SIGKILL');
    }
  });

  it('the worker CLI refuses bad input with exit 2 and an unreachable Redis with exit 1', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI, 'worker', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr!.on('data', (d) => (stderr += d));
        child.once('exit', (code) => resolve({ code, stderr }));
      });
    const noModule = await run(['--cluster', 'redis://127.0.0.1:1/0']);
    assert.equal(noModule.code, 2);
    assert.match(noModule.stderr, /--module is missing/);
    const badUrl = await run(['--cluster', 'http://x:1', '--module', TASKS]);
    assert.equal(badUrl.code, 2);
    const unreachable = await run(['--cluster', 'redis://:pw@127.0.0.1:1/0', '--module', TASKS]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot connect to redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0/);
  });
});
