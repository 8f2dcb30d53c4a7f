/**
 * The cluster context on a real Redis Cluster (sharded): three masters from
 * Debian's redis-server (test/redis-cluster.ts), a password on every node,
 * and the `redis-cluster://` URL everywhere a URL goes (getContext,
 * MULTIPROCESSING_TS_CLUSTER, the worker CLI's --cluster). Pools whose keys
 * live on different masters, each served by a worker CLI, and one of those
 * masters restarted empty mid-map; locks, queues,
 * Event, Value and a manager's list and dict across real processes (whose
 * exit also shows that no node socket keeps them alive); wrong credentials
 * and a database other than 0 refused clearly. Skipped, saying why, when
 * redis-server is not installed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import * as mp from '../src/index.js';
import { redact } from '../src/cluster/url.js';
import { eventually, fixture } from './helpers.js';
import { DIE_WITH_PARENT, redisUnavailable } from './redis.js';
import { startRedisCluster, type RedisCluster } from './redis-cluster.js';
import * as fx from './fixtures/cluster-objects.js';
import { child, joined } from './cluster-children.js';
import { add, marked, square } from './fixtures/cluster-tasks.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['multiprocessing-ts']!);
const TASKS = fixture('cluster-tasks.js');
const WAIT_MS = 20_000;
const PASSWORD = 'shard-secret';
const skip = redisUnavailable() ?? false;


/** Starts `multiprocessing-ts worker` on `pool` and waits for its banner (which names the URL redacted). */
async function startWorker(url: string, pool: string): Promise<{ child: ChildProcess; banner: string }> {
  const args = ['--import', DIE_WITH_PARENT, CLI, 'worker', '--cluster', url, '--module', TASKS, '--pool', pool, '--concurrency', '1', '--start-method', 'thread'];
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  // Never written: the pipe only has to close with this process, and must not keep it alive.
  (child.stdin as { unref?: () => void } | null)?.unref?.();
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const banner = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker: no banner within ${WAIT_MS} ms; stderr: ${err}`)), WAIT_MS);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.includes('serving pool')) return;
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited (${code}) before its banner; stderr: ${err}`));
    });
  });
  return { child, banner };
}


/** The port of the master serving each slot, from `CLUSTER NODES`. */
function slotOwners(cluster: RedisCluster): (slot: number) => number {
  const ranges: [number, number, number][] = [];
  for (const line of cluster.cli(['cluster', 'nodes']).trim().split('\n')) {
    const [, address, flags, , , , , , ...slots] = line.split(' ');
    if (!flags!.includes('master')) continue;
    const port = Number(/:(\d+)@/.exec(address!)![1]);
    for (const range of slots) {
      const [from, to = from] = range.split('-').map(Number);
      ranges.push([from!, to!, port]);
    }
  }
  return (slot) => ranges.find(([from, to]) => slot >= from && slot <= to)![2];
}

describe('cluster context on a Redis Cluster (sharded)', { skip }, () => {
  let cluster: RedisCluster;
  let ctx: mp.ClusterContext;
  const workers: ChildProcess[] = [];
  /** Two pool names whose hash tags are served by different masters, and those masters' ports. */
  const pools: { name: string; port: number }[] = [];
  const banners: string[] = [];

  before(async () => {
    cluster = await startRedisCluster({ password: PASSWORD });
    const ownerOf = slotOwners(cluster);
    for (let i = 0; pools.length < 2; i++) {
      const name = `shard-${i}`;
      const port = ownerOf(Number(cluster.cli(['cluster', 'keyslot', `{mpts:pool:${name}}`]).trim()));
      if (!pools.some((p) => p.port === port)) pools.push({ name, port });
    }
    const started = await Promise.all(pools.map((p) => startWorker(cluster.url, p.name)));
    for (const w of started) {
      workers.push(w.child);
      banners.push(w.banner);
    }
    ctx = mp.getContext(cluster.url as `redis-cluster://${string}`);
  });

  after(async () => {
    ctx?.close();
    for (const w of workers) w.kill('SIGKILL');
    await cluster?.stop();
  });

  it('two pools whose keys live on different masters: map on one and applyAsync on the other, each run by its own worker CLI', async () => {
    assert.notEqual(pools[0]!.port, pools[1]!.port, 'the two pools hash to slots of different masters');
    for (const banner of banners) {
      assert.match(banner, /redis-cluster:\/\/:\*\*\*@127\.0\.0\.1/, 'the worker names the cluster URL, password masked');
      assert.ok(!banner.includes(PASSWORD));
    }
    const a = new ctx.Pool(null, { name: pools[0]!.name });
    const b = new ctx.Pool(null, { name: pools[1]!.name });
    const xs = Array.from({ length: 60 }, (_, i) => i);
    const [squares, sums] = await Promise.all([a.map(square, xs, 4), Promise.all(xs.map((x) => b.applyAsync(add, [x, 1]).get(WAIT_MS)))]);
    assert.deepEqual(squares, xs.map((x) => x * x));
    assert.deepEqual(sums, xs.map((x) => x + 1));
    const [statsA, statsB] = await Promise.all([a.stats(), b.stats()]);
    assert.deepEqual(statsA.workers.map((w) => w.pid), [workers[0]!.pid]);
    assert.deepEqual(statsB.workers.map((w) => w.pid), [workers[1]!.pid]);
    // Each pool's keys sit on the master its tag hashes to (asked of that node alone, no redirection).
    for (const { name, port } of pools) assert.equal(cluster.cli(['exists', `{mpts:pool:${name}}:workers`], port).trim(), '1', `pool ${name}'s keys on :${port}`);
    a.close();
    b.close();
    await Promise.all([a.join(), b.join()]);
  });

  it("the master holding a pool's keys restarted empty mid-map: its new run_id is noticed and no task is lost", async () => {
    const { name, port } = pools[0]!;
    const master = cluster.nodes.find((n) => n.port === port)!;
    const dir = mkdtempSync(join(tmpdir(), 'mpts-sharded-'));
    try {
      const pool = new ctx.Pool(null, { name });
      const xs = [0, 1, 2, 3, 4, 5];
      const running = pool.starmap(marked, xs.map((x) => [x, 300, dir] as [number, number, string]), 1);
      await eventually(() => readdirSync(dir).length >= 1, WAIT_MS, 'a task to start');
      await master.restart();
      assert.deepEqual(await running, xs, 'the batches the restart lost were written again');
      assert.equal(await pool.apply(add, [1, 2]), 3, 'the worker kept serving through the restart');
      pool.close();
      await pool.join();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('MULTIPROCESSING_TS_CLUSTER takes the cluster URL too', () => {
    const saved = process.env['MULTIPROCESSING_TS_CLUSTER'];
    process.env['MULTIPROCESSING_TS_CLUSTER'] = cluster.url;
    try {
      const viaEnv = mp.getContext('cluster');
      assert.equal(viaEnv.url, redact(cluster.url));
      assert.ok(!viaEnv.url.includes(PASSWORD));
    } finally {
      if (saved === undefined) delete process.env['MULTIPROCESSING_TS_CLUSTER'];
      else process.env['MULTIPROCESSING_TS_CLUSTER'] = saved;
    }
  });

  it('Lock across two processes: 2 × 40 increments under it give exactly 80, fencing tokens grow, and only the holder releases', async () => {
    const lock = new ctx.Lock();
    const counter = new ctx.Value('i', 0);
    const manager = await ctx.Manager();
    const tokens = await manager.list<[number, number]>();
    const children = [child('process', fx.incrementUnderLock, [lock, counter, tokens, 40]), child('thread', fx.incrementUnderLock, [lock, counter, tokens, 40])];
    for (const p of children) assert.equal(await joined(p), 0, 'the child ended by itself once its target was done');
    assert.equal(await counter.get(), 80, 'never two holders at once');
    const pairs = (await tokens.toArray()).sort((x, y) => x[0] - y[0]);
    pairs.forEach(([v], i) => assert.equal(v, i));
    for (let i = 1; i < pairs.length; i++) assert.ok(pairs[i]![1] > pairs[i - 1]![1], 'fencing tokens grow with each acquisition');
    const other = new ctx.Lock({ name: lock.name });
    assert.equal(await lock.acquire(), true);
    assert.ok(lock.fencingToken! > pairs.at(-1)![1]);
    await assert.rejects(other.release(), mp.ValueError);
    await lock.release();
    assert.equal(await other.acquire({ block: false }), true);
    await other.release();
    assert.equal(await counter.add(5), 85, 'Value.add');
    await manager.shutdown();
  });

  it('Queue: items a child process puts arrive in order in the parent', async () => {
    const q = new ctx.Queue<[number, number] | null>();
    const p = child('process', fx.produce, [q, 7, 25]);
    const got: [number, number][] = [];
    for (let i = 0; i < 25; i++) got.push((await q.get({ timeout: WAIT_MS }))!);
    assert.deepEqual(got, Array.from({ length: 25 }, (_, i) => [7, i]));
    assert.equal(await joined(p), 0);
  });

  it('JoinableQueue: join() waits for every taskDone() of a consumer in another context, and a killed consumer\'s item is delivered again', async () => {
    const q = new ctx.JoinableQueue<string>(0, { leaseMs: 400 });
    const other = mp.getContext(cluster.url as `redis-cluster://${string}`, { connectTimeoutMs: 5000 });
    try {
      const consumer = new other.JoinableQueue<string>(0, { name: q.name, leaseMs: 400 });
      await q.put('a');
      await q.put('b');
      let joinedYet = false;
      const join = q.join().then(() => (joinedYet = true));
      assert.equal(await consumer.get({ timeout: WAIT_MS }), 'a');
      assert.equal(await consumer.get({ timeout: WAIT_MS }), 'b');
      await consumer.taskDone();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(joinedYet, false, 'one item is still unfinished');
      await consumer.taskDone();
      await join;
      // The lease recovery script builds its consumers' keys from the tag: legal on a cluster.
      const took = new ctx.Event();
      await q.put('job');
      const p = child('process', fx.takeAndHang, [q, took]);
      assert.equal(await took.wait(WAIT_MS), true);
      p.kill();
      await joined(p);
      assert.equal(await q.get({ timeout: 5000 }), 'job', 'delivered again once the dead consumer\'s lease lapsed');
      await q.taskDone();
      await q.join();
    } finally {
      other.close();
    }
  });

  it('Event: a child waiting on it is woken by set() in the parent within a wait slice (pub/sub across the cluster)', async () => {
    const event = new ctx.Event();
    const waiting = new ctx.Event();
    const p = child('process', fx.waitForEvent, [event, waiting]);
    assert.equal(await waiting.wait(WAIT_MS), true);
    await event.set();
    assert.equal(await joined(p), 0, 'the child was woken promptly (it fails after 3 s)');
    assert.equal(await event.isSet(), true);
  });

  it('Manager: a dict filled by a child from a list, read back in the parent', async () => {
    const manager = await ctx.Manager();
    const records = await manager.list<[string, number]>([['ada', 3], ['bob', 5]]);
    const scores = await manager.dict<string, number>({ zed: 1 });
    assert.equal(await joined(child('thread', fx.copyRecords, [records, scores])), 0);
    assert.deepEqual(await scores.toObject(), { zed: 1, ada: 3, bob: 5 });
    assert.equal(await scores.len(), 3);
    await manager.shutdown();
  });

  /**
   * Sets the slot of `tag` migrating to another master, runs `during()`
   * (calls on objects there; the keys are all still on the source), moves
   * the keys after 2.5 s and gives the slot to the target. `during`'s
   * promise must settle only after that.
   */
  async function migrating<T>(tag: string, during: () => Promise<T>): Promise<T> {
    const slot = Number(cluster.cli(['cluster', 'keyslot', tag]).trim());
    const owns = (port: number) => Number(cluster.cli(['cluster', 'countkeysinslot', String(slot)], port).trim()) > 0;
    const source = cluster.nodes.find((n) => owns(n.port))!;
    const target = cluster.nodes.find((n) => n !== source)!;
    const id = (port: number) => cluster.cli(['cluster', 'myid'], port).trim();
    const [sourceId, targetId] = [id(source.port), id(target.port)];
    cluster.cli(['cluster', 'setslot', String(slot), 'importing', sourceId], target.port);
    cluster.cli(['cluster', 'setslot', String(slot), 'migrating', targetId], source.port);
    let moved = false;
    try {
      const running = during().then((x) => (moved ? x : Promise.reject(new Error(`the calls ended before the keys moved (${inspect(x)})`))));
      running.catch(() => {});
      // Longer than ioredis' own retries of TRYAGAIN (16 redirections 100 ms apart).
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const keys = cluster.cli(['cluster', 'getkeysinslot', String(slot), '1000'], source.port).split('\n').filter(Boolean);
      cluster.cli(['migrate', '127.0.0.1', String(target.port), '', '0', '5000', 'AUTH', PASSWORD, 'KEYS', ...keys], source.port);
      moved = true;
      for (const node of cluster.nodes) cluster.cli(['cluster', 'setslot', String(slot), 'node', targetId], node.port);
      return await running;
    } finally {
      if (!moved) for (const node of cluster.nodes) cluster.cli(['cluster', 'setslot', String(slot), 'stable'], node.port);
    }
  }

  it("a slot in migration: a Value's add() and a Queue's put() and getNowait() wait for the keys to move and then run once (each call's record key is missing, so Redis answers TRYAGAIN until then)", async () => {
    const name = `moving-${process.pid}`;
    const v = new ctx.Value('i', 0, { name });
    await v.add(1);
    assert.equal(await migrating(`{mpts:Value:${name}}`, () => v.add(1)), 2);
    assert.equal(await v.get(), 2, 'added once');
    const q = new ctx.Queue<number>(0, { name });
    await q.put(1);
    assert.deepEqual(await migrating(`{mpts:Queue:${name}}`, async () => {
      await q.put(2);
      return q.getNowait();
    }), 1);
    assert.equal(await q.getNowait(), 2, 'put once');
    await assert.rejects(q.getNowait(), mp.Empty);
    await v.unlink();
    await q.unlink();
  });

  it('a wrong password is refused within the connect timeout with a ClusterError naming the URL, password masked', async () => {
    const wrong = cluster.url.replace(PASSWORD, 'not-the-password');
    const bad = mp.getContext(wrong as `redis-cluster://${string}`);
    const start = performance.now();
    try {
      await assert.rejects(new bad.Lock().acquire(), (e: Error) => {
        assert.ok(e instanceof mp.ClusterError, `a ClusterError, got ${e}`);
        assert.match(e.message, /refused the credentials: WRONGPASS/);
        assert.match(e.message, /redis-cluster:\/\/:\*\*\*@127\.0\.0\.1/);
        assert.ok(!inspect(e, { depth: 5 }).includes('not-the-password'), 'no password in the error or its causes');
        return true;
      });
    } finally {
      bad.close();
    }
    assert.ok(performance.now() - start < 5000, 'refused, not timed out');
  });

  it('a Redis Cluster URL is checked at getContext(): a database other than 0, a stray option or a bad seed is refused, and redaction masks its password', () => {
    const base = cluster.url.replace('/0?', '/1?');
    assert.throws(() => mp.getContext(base as `redis-cluster://${string}`), (e: Error) => e instanceof mp.ValueError && /only database 0, not \/1/.test(e.message) && !e.message.includes(PASSWORD));
    assert.throws(() => mp.getContext('redis-cluster://h:7000?db=2'), (e: Error) => e instanceof mp.ValueError && /\?db= is not an option of a Redis Cluster URL/.test(e.message));
    assert.throws(() => mp.getContext('redis-cluster://h:7000?seeds=h2:99999'), (e: Error) => e instanceof mp.ValueError && /"h2:99999" is not a node address/.test(e.message));
    assert.equal(redact('rediss-cluster://u:pw@h1:7000/0?seeds=h2:7001,[::1]:7002'), 'rediss-cluster://u:***@h1:7000/0?seeds=h2:7001,[::1]:7002');
    assert.equal(mp.isClusterUrl('rediss-cluster://h1:7000'), true);
  });
});
