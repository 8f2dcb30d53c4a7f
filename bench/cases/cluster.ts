/**
 * Cluster cases: our cluster Pool against BullMQ on the same redis-server,
 * started by this harness on a free loopback port (`--save '' --appendonly
 * no`, as the distributed anchors' run.sh does), 2 worker processes each,
 * at the anchors' own sizes (../shared/bench/anchors/distributed, groups k
 * and l):
 *
 * - `cluster`: 100,000 no-op tasks end to end. BullMQ: `addBulk` of 1,000
 *   jobs 100 times (awaited), 2 `Worker` processes of concurrency 1 and 50,
 *   the clock stopped when `getJobCounts` shows all completed (polled every
 *   10 ms, as the anchor). Ours: 2 `multiprocessing-ts worker` processes
 *   (`--concurrency 1`, the default start method), 100,000 `applyAsync` at
 *   once, and one `map` with the default chunksize. For the overhead per
 *   task, a local `Pool(2)` does the same 100,000 `applyAsync`.
 * - `cluster-rtt`: one task's round trip, median of 500 after 50 warm-ups.
 *   BullMQ: `queue.add()` then `job.waitUntilFinished(queueEvents)` with 1
 *   worker of concurrency 1; ours: `await pool.apply(noop)` with 1 worker.
 *
 * Workers start fresh for every sample and are stopped after it (their CPU
 * is then this process's, reaped); redis-server's CPU during a sample is
 * reported as the harness's own (`untrackedCpuS`), not as foreign load.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import * as mp from 'multiprocessing-ts';
import { startRedis, type RedisServer } from '../../test/redis.js';
import { PACKAGE_ROOT } from '../paths.js';
import { noopTask, TARGETS_URL } from '../targets.js';
import type { Case, CaseDefinition, Sample, Variant } from '../types.js';

const WORKERS = 2;
const BULK = 1000;
const BULLMQ_WORKER = fileURLToPath(new URL('../fixtures/bullmq-worker.js', import.meta.url));
const REDIS_ECHO = fileURLToPath(new URL('../fixtures/redis-echo.js', import.meta.url));
const CLI = join(PACKAGE_ROOT, 'dist/bundle/cli.js');
const TARGETS = fileURLToPath(TARGETS_URL);
const nowS = (): number => performance.now() / 1e3;

let server: Promise<RedisServer> | null = null;

/** The harness's redis-server, started on first use; it dies with this process (test/redis.ts). */
function redis(): Promise<RedisServer> {
  server ??= startRedis();
  return server;
}

/** CPU seconds a process has used (utime + stime), from /proc. */
function cpuS(pid: number | null): number {
  if (pid === null) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Runs `body` and reports redis-server's CPU meanwhile as the harness's own. */
async function measured(body: () => Promise<Sample>): Promise<Sample> {
  const r = await redis();
  const pid = r.pid();
  const before = cpuS(pid);
  const sample = await body();
  return { ...sample, untrackedCpuS: (sample.untrackedCpuS ?? 0) + cpuS(pid) - before };
}

async function startBullWorkers(port: number, queue: string, concurrency: number, n: number): Promise<ChildProcess[]> {
  const workers = Array.from({ length: n }, () => fork(BULLMQ_WORKER, [String(port), queue, String(concurrency)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('exit', (code) => reject(new Error(`a BullMQ worker exited (${code}) before it was ready`)));
  })));
  return workers;
}

async function stopAll(children: ChildProcess[], how: (c: ChildProcess) => void): Promise<void> {
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((resolve) => { c.once('exit', resolve); how(c); }))));
}

let queueSeq = 0;

async function bullmqE2E(n: number, concurrency: number): Promise<Sample> {
  const r = await redis();
  const name = `mpts-bench-${process.pid}-${queueSeq++}`;
  const connection = { host: '127.0.0.1', port: r.port };
  const queue = new Queue(name, { connection });
  const workers = await startBullWorkers(r.port, name, concurrency, WORKERS);
  try {
    const t0 = nowS();
    for (let i = 0; i < n; i += BULK) {
      await queue.addBulk(Array.from({ length: Math.min(BULK, n - i) }, (_, j) => ({ name: 'noop', data: { i: i + j } })));
    }
    let counts = await queue.getJobCounts('completed', 'failed');
    while ((counts['completed'] ?? 0) + (counts['failed'] ?? 0) < n) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      counts = await queue.getJobCounts('completed', 'failed');
    }
    const elapsed = nowS() - t0;
    const error = counts['completed'] === n ? undefined : `${counts['completed']} of ${n} completed, ${counts['failed']} failed`;
    return { value: n / elapsed, extra: { n, concurrency }, ...(error ? { error } : {}) };
  } finally {
    await stopAll(workers, (w) => w.send('stop'));
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}

/** Starts `multiprocessing-ts worker` processes on a pool name of their own and waits for their banners. */
async function startOurWorkers(url: string, pool: string, n: number): Promise<ChildProcess[]> {
  const workers = Array.from({ length: n }, () =>
    spawn(process.execPath, [CLI, 'worker', '--cluster', url, '--module', TARGETS, '--concurrency', '1', '--pool', pool], { stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
    createInterface({ input: w.stdout! }).on('line', (line) => {
      if (line.includes('serving pool')) resolve();
    });
    w.once('exit', (code) => reject(new Error(`a cluster worker exited (${code}) before it was ready`)));
  })));
  return workers;
}

type Shape = 'applyAsync' | 'map';

async function oursE2E(n: number, shape: Shape): Promise<Sample> {
  const r = await redis();
  const name = `bench-${process.pid}-${queueSeq++}`;
  const workers = await startOurWorkers(r.url, name, WORKERS);
  const ctx = mp.getContext(r.url as `redis://${string}`);
  const pool = new ctx.Pool(WORKERS, { name });
  try {
    await pool.apply(noopTask, [0]);
    const xs = Array.from({ length: n }, (_, i) => i);
    const t0 = nowS();
    const res = shape === 'map' ? await pool.map(noopTask, xs) : await Promise.all(xs.map((x) => pool.applyAsync(noopTask, [x])));
    const elapsed = nowS() - t0;
    const exact = res.length === n && res.every((v, i) => v === i);
    return { value: n / elapsed, extra: { n }, ...(exact ? {} : { error: `wrong results (${res.length} of ${n})` }) };
  } finally {
    pool.close();
    await pool.join();
    await stopAll(workers, (w) => w.kill('SIGTERM'));
  }
}

async function localE2E(n: number): Promise<Sample> {
  const pool = new mp.Pool(WORKERS, { module: TARGETS_URL });
  try {
    await pool.apply(noopTask, [0]);
    const xs = Array.from({ length: n }, (_, i) => i);
    const t0 = nowS();
    const res = await Promise.all(xs.map((x) => pool.applyAsync(noopTask, [x])));
    const elapsed = nowS() - t0;
    return { value: n / elapsed, extra: { n }, ...(res.length === n ? {} : { error: 'lost results' }) };
  } finally {
    pool.close();
    await pool.join();
  }
}

/** The median of `reps` sequential round trips (µs) after `warm` untimed ones; also as `extra.us`, for views. */
async function roundTrips(reps: number, warm: number, once: (i: number) => Promise<unknown>, pause?: () => Promise<unknown>): Promise<Sample> {
  const times: number[] = [];
  for (let i = 0; i < warm + reps; i++) {
    if (pause) await pause();
    const t0 = performance.now();
    await once(i);
    if (i >= warm) times.push((performance.now() - t0) * 1000);
  }
  return { value: median(times), extra: { reps, warm, us: median(times) } };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function bullmqRtt(reps: number, warm: number): Promise<Sample> {
  const r = await redis();
  const name = `mpts-bench-${process.pid}-${queueSeq++}`;
  const connection = { host: '127.0.0.1', port: r.port };
  const queue = new Queue(name, { connection });
  const events = new QueueEvents(name, { connection });
  await events.waitUntilReady();
  const workers = await startBullWorkers(r.port, name, 1, 1);
  try {
    return await roundTrips(reps, warm, async (i) => {
      const job = await queue.add('noop', { i });
      await job.waitUntilFinished(events, 10_000);
    });
  } finally {
    await stopAll(workers, (w) => w.send('stop'));
    await events.close();
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}

async function oursRtt(reps: number, warm: number): Promise<Sample> {
  const r = await redis();
  const name = `bench-${process.pid}-${queueSeq++}`;
  const workers = await startOurWorkers(r.url, name, 1);
  const ctx = mp.getContext(r.url as `redis://${string}`);
  const pool = new ctx.Pool(1, { name });
  try {
    return await roundTrips(reps, warm, (i) => pool.apply(noopTask, [i]));
  } finally {
    pool.close();
    await pool.join();
    await stopAll(workers, (w) => w.kill('SIGTERM'));
  }
}

/**
 * The floor of any round trip through Redis with this client: an `XADD`
 * waking a blocked `XREADGROUP` in another process, whose `MULTI XADD XACK
 * XDEL` wakes this process's blocked `XREAD` (fixtures/redis-echo.ts). No
 * task runs: what ours adds to it is its own work (decoding, the local
 * pool's hop to its child and back).
 */
async function redisFloorRtt(reps: number, warm: number): Promise<Sample> {
  const r = await redis();
  const stream = `bench-echo-${process.pid}-${queueSeq++}`;
  const echo = fork(REDIS_ECHO, [String(r.port), stream], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    echo.once('message', () => resolve());
    echo.once('exit', (code) => reject(new Error(`the Redis echo process exited (${code}) before it was ready`)));
  });
  const command = new Redis(r.url, { enableAutoPipelining: true });
  const reader = new Redis(r.url);
  try {
    let last = '0-0';
    return await roundTrips(reps, warm, async (i) => {
      void command.xadd(stream, '*', 'c', 'caller', 'b', String(i));
      for (;;) {
        const reply = (await reader.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', `${stream}:reply`, last)) as [string, [string, string[]][]][] | null;
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) continue;
        last = entries[entries.length - 1]![0];
        return;
      }
    });
  } finally {
    echo.kill('SIGKILL');
    command.disconnect();
    reader.disconnect();
  }
}

/**
 * The local pool's share of ours: a lone `apply` on a `Pool(1)` at about
 * the cadence the cluster worker sees (a pause of a millisecond before each,
 * untimed), so its child and its parent wake from sleep as they do there;
 * back to back, both would still be spinning.
 */
async function localRtt(reps: number, warm: number): Promise<Sample> {
  const pool = new mp.Pool(1, { module: TARGETS_URL });
  try {
    return await roundTrips(reps, warm, (i) => pool.apply(noopTask, [i]), () => new Promise((resolve) => setTimeout(resolve, 1)));
  } finally {
    pool.close();
    await pool.join();
  }
}

export const clusterThroughput: CaseDefinition = {
  name: 'cluster',
  summary: 'cluster Pool on Redis: 100,000 no-op tasks vs BullMQ on the same Redis (tasks/s)',
  make({ quick }): Case {
    const n = quick ? 20_000 : 100_000;
    const target = { anchor: 'bullmq.c50', op: '>=' as const, ratio: 1.5 };
    const variants: Variant[] = [
      { id: 'bullmq.c1', system: 'bullmq', label: 'BullMQ, 2 workers, concurrency 1', sample: () => measured(() => bullmqE2E(n, 1)) },
      { id: 'bullmq.c50', system: 'bullmq', label: 'BullMQ, 2 workers, concurrency 50', sample: () => measured(() => bullmqE2E(n, 50)) },
      { id: 'mpts.applyAsync', system: 'multiprocessing-ts', label: `ours, 2 workers, ${n} applyAsync at once`, target, sample: () => measured(() => oursE2E(n, 'applyAsync')) },
      { id: 'mpts.map', system: 'multiprocessing-ts', label: 'ours, 2 workers, map (default chunksize)', target, sample: () => measured(() => oursE2E(n, 'map')) },
      { id: 'local.applyAsync', system: 'multiprocessing-ts', label: `local Pool(2), ${n} applyAsync (overhead per task)`, anchor: 'mpts.applyAsync', sample: () => localE2E(n) },
    ];
    return {
      name: 'cluster',
      title: `Cluster Pool throughput, ${n} no-op tasks, 2 worker processes, Redis on loopback`,
      unit: 'tasks/s',
      better: 'higher',
      method: 'workers started fresh per sample; BullMQ: addBulk of 1,000 × n/1,000, done when getJobCounts shows all completed (10 ms polls)',
      variants,
    };
  },
};

export const clusterRoundTrip: CaseDefinition = {
  name: 'cluster-rtt',
  summary: "cluster Pool: one task's round trip vs a BullMQ job's (µs)",
  make({ quick }): Case {
    const reps = quick ? 100 : 500;
    const warm = quick ? 10 : 50;
    return {
      name: 'cluster-rtt',
      title: "One task's round trip, 1 worker, Redis on loopback",
      unit: 'µs',
      better: 'lower',
      method: `median of ${reps} sequential round trips after ${warm} warm-ups; BullMQ: queue.add() then job.waitUntilFinished(queueEvents)`,
      variants: [
        { id: 'bullmq.rtt', system: 'bullmq', label: 'BullMQ job round trip', sample: () => measured(() => bullmqRtt(reps, warm)) },
        {
          id: 'mpts.rtt',
          system: 'multiprocessing-ts',
          label: 'ours, await pool.apply(noop)',
          target: { anchor: 'bullmq.rtt', op: '<=', ratio: 0.5 },
          views: [{ id: 'mpts.rtt.vs-floor', label: '  same, vs the Redis floor', metric: 'us', anchor: 'floor.rtt' }],
          sample: () => measured(() => oursRtt(reps, warm)),
        },
        {
          id: 'floor.rtt',
          system: 'limit',
          label: 'physical limit: XADD → XREADGROUP → MULTI XADD → XREAD, no task (ioredis)',
          views: [{ id: 'floor.rtt.vs-bullmq', label: '  the floor alone, vs BullMQ', metric: 'us', anchor: 'bullmq.rtt' }],
          sample: () => measured(() => redisFloorRtt(reps, warm)),
        },
        { id: 'local.rtt', system: 'multiprocessing-ts', label: 'local Pool(1), a lone apply after a 1 ms pause (the local hop)', sample: () => localRtt(reps, warm) },
      ],
    };
  },
};
