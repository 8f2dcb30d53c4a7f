/**
 * Cluster objects (locks, Semaphore, Event, the queues, Value, the
 * manager's list/dict/Namespace) on a real redis-server, with real child
 * processes where the semantics cross processes. Skipped, saying why, when
 * redis-server is not installed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import * as mp from '../src/index.js';
import { redact } from '../src/cluster/url.js';
import { startRedis, redisUnavailable, type RedisServer } from './redis.js';
import * as fx from './fixtures/cluster-objects.js';
import { child, joined } from './cluster-children.js';

const module = fx.CLUSTER_OBJECTS;
const skip = redisUnavailable() ?? false;


describe('cluster objects', { skip }, () => {
  let redis: RedisServer;
  let ctx: mp.ClusterContext;

  before(async () => {
    redis = await startRedis();
    ctx = mp.getContext(redis.url as `redis://${string}`);
  });

  after(async () => {
    ctx?.close();
    await redis?.stop();
  });

  describe('locks', () => {
    it('2 processes × 200 read-then-write increments under one cluster Lock give exactly 400, and fencing tokens grow with each acquisition', async () => {
      const lock = new ctx.Lock();
      const counter = new ctx.Value('i', 0);
      const manager = await ctx.Manager();
      const tokens = await manager.list<[number, number]>();
      // One child of each start method: the lock, Value and list travel in args and arrive live.
      const children = [child('process', fx.incrementUnderLock, [lock, counter, tokens, 200]), child('thread', fx.incrementUnderLock, [lock, counter, tokens, 200])];
      for (const p of children) assert.equal(await joined(p), 0);
      assert.equal(await counter.get(), 400, 'no increment lost: never two holders at once');
      const pairs = await tokens.toArray();
      assert.equal(pairs.length, 400);
      // Ordered by the value each holder read (the order of the holds), tokens strictly increase.
      pairs.sort((a, b) => a[0] - b[0]);
      pairs.forEach(([v], i) => assert.equal(v, i, 'each value read exactly once'));
      for (let i = 1; i < pairs.length; i++) assert.ok(pairs[i]![1] > pairs[i - 1]![1], `token ${pairs[i]![1]} after ${pairs[i - 1]![1]}`);
      await manager.shutdown();
    });

    it('a holder SIGKILLed while holding: the lock stays held until its ttl runs out, then another process gets it', async () => {
      const lock = new ctx.Lock({ ttl: 600 });
      const holding = new ctx.Event();
      const p = child('process', fx.holdLockForever, [lock, holding]);
      assert.equal(await holding.wait(20_000), true, 'the child took the lock');
      // Renewed every 200 ms while it lives: past its ttl, the hold is the renewals' doing.
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(await lock.acquire({ block: false }), false, 'held while the holder lives (its renewals outlast the ttl)');
      p.kill();
      await joined(p);
      assert.equal(await lock.acquire({ block: false }), false, 'still held right after the kill: the ttl has not run out');
      const start = performance.now();
      assert.equal(await lock.acquire({ timeout: 5000 }), true, 'taken once the ttl ran out');
      assert.ok(performance.now() - start < 1500, 'taken within the ttl (and a margin) of the kill, not after a poll interval');
      await lock.release();
    });

    it('a cluster Lock is released only by its holder; over-release, and the async-only members, are refused clearly', async () => {
      const name = `held-${process.pid}`;
      const a = new ctx.Lock({ name });
      const b = new ctx.Lock({ name });
      assert.equal(await a.acquire(), true);
      await assert.rejects(b.release(), (e: Error) => e instanceof mp.ValueError && /does not hold/.test(e.message));
      assert.equal(await b.acquire({ timeout: 50 }), false);
      await a.release();
      await assert.rejects(a.release(), mp.ValueError);
      assert.throws(() => a.acquireSync(), (e: Error) => e instanceof mp.ClusterError && /await lock.acquire\(\)/.test(e.message));
      assert.equal(await b.acquire({ block: false }), true);
      await b.release();
    });

    it('RLock: withLock re-enters along its chain, and concurrent tasks of one process exclude each other', async () => {
      const lock = new ctx.RLock();
      let inside = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: 4 }, () =>
          lock.withLock(async () => {
            most = Math.max(most, ++inside);
            await lock.withLock(() => new Promise((r) => setTimeout(r, 5)));
            inside--;
          }),
        ),
      );
      assert.equal(most, 1);
      await assert.rejects(lock.release(), mp.ValueError);
      const other = new ctx.RLock({ name: lock.name });
      assert.equal(await lock.acquire(), true);
      assert.equal(await lock.acquire(), true, 'a bare re-entry');
      await lock.release();
      assert.equal(await new ctx.Lock({ name: lock.name }).acquire({ block: false }), true, 'a Lock of the same name is another object');
      await lock.release();
      assert.equal(await other.acquire({ block: false }), true);
      await other.release();
    });

    it('Semaphore(2) lets two tasks in at once; BoundedSemaphore refuses an over-release', async () => {
      const sem = new ctx.Semaphore(2);
      let inside = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: 5 }, () =>
          sem.withLock(async () => {
            most = Math.max(most, ++inside);
            await new Promise((r) => setTimeout(r, 20));
            inside--;
          }),
        ),
      );
      assert.equal(most, 2);
      assert.equal(await sem.getValue(), 2);
      const bounded = new ctx.BoundedSemaphore(1);
      assert.equal(await bounded.acquire(), true);
      assert.equal(await bounded.acquire({ timeout: 30 }), false);
      await bounded.release();
      await assert.rejects(bounded.release(), (e: Error) => e instanceof mp.ValueError && /released too many times/.test(e.message));
    });
  });

  it('Event.set() in this process wakes a waiter in another process (no polling: well within a wait slice)', async () => {
    const event = new ctx.Event();
    const waiting = new ctx.Event();
    const p = child('process', fx.waitForEvent, [event, waiting]);
    assert.equal(await waiting.wait(20_000), true);
    await event.set();
    assert.equal(await joined(p), 0);
    assert.equal(await event.isSet(), true);
    await event.clear();
    assert.equal(await event.wait(10), false);
  });

  describe('queues', () => {
    it('2 producer and 2 consumer processes: every item arrives exactly once', async () => {
      const q = new ctx.Queue<[number, number] | null>(50);
      const manager = await ctx.Manager();
      const got = await manager.list<[number, number]>();
      const consumers = [child('process', fx.consume, [q, got]), child('thread', fx.consume, [q, got])];
      const producers = [child('process', fx.produce, [q, 0, 300]), child('thread', fx.produce, [q, 1, 300])];
      for (const p of producers) assert.equal(await joined(p), 0);
      await q.put(null);
      await q.put(null);
      for (const p of consumers) assert.equal(await joined(p), 0);
      const items = (await got.toArray()).map(([id, i]) => `${id}:${i}`);
      assert.equal(items.length, 600, 'nothing lost or duplicated');
      assert.equal(new Set(items).size, 600);
      assert.equal(await q.qsize(), 0);
      await manager.shutdown();
    });

    it('JoinableQueue: an item whose consumer was SIGKILLed before taskDone() is delivered again after its lease; join() then resolves', async () => {
      const q = new ctx.JoinableQueue<string>(0, { leaseMs: 400 });
      const took = new ctx.Event();
      await q.put('job-1');
      const p = child('process', fx.takeAndHang, [q, took]);
      assert.equal(await took.wait(20_000), true);
      assert.equal(await q.qsize(), 0, 'the item is the consumer\'s, not in the queue');
      p.kill();
      await joined(p);
      const start = performance.now();
      assert.equal(await q.get({ timeout: 5000 }), 'job-1', 'delivered again once the dead consumer\'s lease lapsed');
      assert.ok(performance.now() - start < 1500, 'within about a lease of the death, not a wait slice later');
      let joinedYet = false;
      const join = q.join().then(() => (joinedYet = true));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(joinedYet, false, 'join() waits for the taskDone()');
      await q.taskDone();
      await join;
      await assert.rejects(q.taskDone(), (e: Error) => e instanceof mp.ValueError && /too many times/.test(e.message));
    });

    it('JoinableQueue: a consumer that took two items at once, marked one done and was SIGKILLed loses neither: both are delivered again', async () => {
      const q = new ctx.JoinableQueue<string>(0, { leaseMs: 400 });
      const took = new ctx.Event();
      await q.put('A');
      await q.put('B');
      const p = child('process', fx.takeTwoFinishOneAndHang, [q, took]);
      assert.equal(await took.wait(20_000), true);
      p.kill();
      await joined(p);
      // Which of the two the taskDone() meant cannot be told (one chain took both): neither was removed.
      const again = [await q.get({ timeout: 5000 }), await q.get({ timeout: 5000 })];
      assert.deepEqual(again.sort(), ['A', 'B'], 'the item still being worked on was not removed');
      await q.taskDone();
      await q.taskDone();
      await q.join();
    });

    it('JoinableQueue: the late taskDone() of a consumer stopped past its lease (its item delivered again) counts nothing and says why; join() waits for the new holder', async () => {
      const q = new ctx.JoinableQueue<string>(0, { leaseMs: 300 });
      const took = new ctx.Event();
      const go = new ctx.Event();
      const result = new ctx.Queue<string>();
      await q.put('job-1');
      const p = child('process', fx.takeThenLateTaskDone, [q, took, go, result]);
      try {
        assert.equal(await took.wait(20_000), true);
        process.kill(p.pid!, 'SIGSTOP');
        assert.equal(await q.get({ timeout: 5000 }), 'job-1', 'delivered again while its first consumer is stopped');
        process.kill(p.pid!, 'SIGCONT');
        await go.set();
        assert.match(await result.get({ timeout: 20_000 }), /^ClusterError: .*lease \(300 ms\) lapsed/);
        assert.equal(await joined(p), 0);
        const joining = q.join().then(() => 'resolved');
        assert.equal(await Promise.race([joining, new Promise((r) => setTimeout(() => r('waiting'), 200))]), 'waiting', 'the late taskDone() did not count');
        await q.taskDone();
        assert.equal(await joining, 'resolved');
      } finally {
        if (p.isAlive()) process.kill(p.pid!, 'SIGCONT');
      }
    });

    it('JoinableQueue: close() keeps the lease of items still held (no other consumer gets them) until their taskDone()', async () => {
      const name = `jq-close-${process.pid}`;
      const a = new ctx.JoinableQueue<string>(0, { name, leaseMs: 300 });
      const b = new ctx.JoinableQueue<string>(0, { name, leaseMs: 300 });
      await a.put('job');
      assert.equal(await a.get(), 'job');
      a.close();
      // Over three leases: b applies the lapse rule all along, and must find a's lease renewed.
      await assert.rejects(b.get({ timeout: 1000 }), mp.Empty);
      await a.taskDone();
      await b.join();
    });

    it('Full, Empty, close(), and a Queue that travels through another Queue arrives live', async () => {
      const q = new ctx.Queue<unknown>(1);
      await q.put(1);
      await assert.rejects(q.putNowait(2), mp.Full);
      await assert.rejects(q.put(2, { timeout: 30 }), mp.Full);
      assert.equal(await q.full(), true);
      assert.equal(await q.get(), 1);
      await assert.rejects(q.getNowait(), mp.Empty);
      const inner = new ctx.Queue<string>();
      await q.put({ inner, note: 'carrier' });
      const { inner: received } = (await q.get()) as { inner: mp.ClusterQueue<string> };
      assert.ok(received instanceof mp.ClusterQueue);
      assert.equal(received.name, inner.name);
      await received.put('through the copy');
      assert.equal(await inner.get({ timeout: 1000 }), 'through the copy');
      const waiting = q.get();
      q.close();
      await assert.rejects(waiting, (e: Error) => e instanceof mp.ValueError && /closed while get\(\) waited/.test(e.message));
      await assert.rejects(q.put(3), mp.ValueError);
      const simple = new ctx.SimpleQueue<Map<string, bigint>>();
      await simple.put(new Map([['n', 2n ** 70n]]));
      assert.deepEqual(await simple.get(), new Map([['n', 2n ** 70n]]));
      assert.equal(await simple.empty(), true);
    });
  });

  it('Value keeps the typecode\'s arithmetic: add() wraps, rounds and carries as the local Value stores', async () => {
    const i = new ctx.Value('i', 2 ** 31 - 1);
    assert.equal(await i.add(1), -(2 ** 31));
    const q = new ctx.Value('q', -1n);
    assert.equal(await q.add(1), 0n, 'the carry crosses the 32-bit halves');
    assert.equal(await q.add(2n ** 63n), -(2n ** 63n));
    const f = new ctx.Value('f', 0.1);
    assert.equal(await f.add(0.2), Math.fround(Math.fround(0.1) + 0.2));
    const d = new ctx.Value('d', 0.1, { name: `d-${process.pid}` });
    assert.equal(await d.add(0.2), 0.1 + 0.2);
    await d.set(5);
    assert.equal(await new ctx.Value('d', 0, { name: d.name }).get(), 5, 'attached by name, the init does not overwrite');
    await assert.rejects(new ctx.Value('i', 0, { name: d.name }).get(), (e: Error) => e instanceof mp.ValueError && /holds typecode 'd'/.test(e.message));
    assert.throws(() => d.value, (e: Error) => e instanceof mp.ClusterError && /await v.get\(\)/.test(e.message));
    assert.equal(await d.getLock().withLock(async () => d.add(1)), 6);
  });

  describe('manager', () => {
    it('seed example 3 with its list in Redis: one process appends, another reads it live', async () => {
      const manager = await ctx.Manager();
      const records = await manager.list<[string, number]>([['Sam', 10], ['Adam', 9], ['Kevin', 9]]);
      const scores = await manager.dict<string, number>();
      const p1 = child('process', fx.insertRecord, [['Jeff', 8], records]);
      assert.equal(await joined(p1), 0);
      const p2 = child('thread', fx.copyRecords, [records, scores]);
      assert.equal(await joined(p2), 0);
      assert.deepEqual(await scores.toObject(), { Sam: 10, Adam: 9, Kevin: 9, Jeff: 8 });
      assert.deepEqual(await scores.keys(), ['Sam', 'Adam', 'Kevin', 'Jeff'], 'insertion order kept');
      await manager.shutdown();
      await assert.rejects(records.len(), (e: Error) => e instanceof mp.ClusterError && /shut down/.test(e.message));
      const second = await ctx.Manager();
      const again = await second.list(undefined, { name: records.name });
      assert.equal(await again.len(), 4, 'the data stay in Redis after shutdown');
      await again.clear();
      assert.equal(await again.len(), 0);
      await second.shutdown();
    });

    it('list and dict follow the local proxies: negative indices, content equality, Map keys, atomic multi-step calls', async () => {
      const manager = await ctx.Manager();
      const xs = await manager.list<unknown>([3, [1, 2], 'a']);
      assert.equal(await xs.get(-1), 'a');
      await assert.rejects(xs.get(3), mp.IndexError);
      assert.equal(await xs.index([1, 2]), 1, 'found by content');
      await xs.insert(-1, 'b');
      assert.deepEqual(await xs.toArray(), [3, [1, 2], 'b', 'a']);
      assert.deepEqual(await xs.pop(1), [1, 2]);
      await xs.remove('a');
      await assert.rejects(xs.remove('zzz'), mp.ValueError);
      assert.deepEqual(await xs.slice(-2), [3, 'b']);
      assert.deepEqual(await xs.slice(0, -1), [3]);
      const nums = await manager.list<number>([5, 1, 4]);
      // Two writers rebuild the list at once: optimistic retries keep both changes.
      await Promise.all([nums.insert(0, 9), nums.sort({ reverse: true }), nums.append(0)]);
      assert.equal(await nums.len(), 5);
      const d = await manager.dict<unknown, string>();
      await d.update([[1, 'number'], ['1', 'string'], [[1, 2], 'tuple']]);
      assert.equal(await d.get(1), 'number');
      assert.equal(await d.get('1'), 'string');
      assert.equal(await d.get([1, 2]), 'tuple');
      assert.equal(await d.setdefault('x', 'first'), 'first');
      assert.equal(await d.setdefault('x', 'second'), 'first');
      assert.deepEqual(await d.popitem(), ['x', 'first']);
      await assert.rejects(d.pop('missing'), mp.KeyError);
      assert.equal(await d.pop('missing', 'fallback'), 'fallback');
      const keys: unknown[] = [];
      for await (const k of d) keys.push(k);
      assert.deepEqual(keys, [1, '1', [1, 2]]);
      const ns = await manager.Namespace({ epoch: 1 });
      await ns.set('lock', new ctx.Lock({ name: 'in-a-namespace' }));
      assert.equal(await ns.get('epoch'), 1);
      assert.equal(String(await ns.get('lock')), "<cluster Lock 'in-a-namespace'>", 'a cluster object stored in a Namespace comes back live');
      await manager.shutdown();
    });
  });

  it('bad input: unknown typecode, bad name, uncloneable item (by its path), reserved key', async () => {
    assert.throws(() => new ctx.Value('x' as 'i', 0), (e: Error) => e instanceof mp.ValueError && /unknown typecode 'x'/.test(e.message));
    assert.throws(() => new ctx.Lock({ name: 'a:b' }), (e: Error) => e instanceof mp.ValueError && /"a:b"/.test(e.message));
    assert.throws(() => new ctx.Queue(-1), mp.ValueError);
    assert.throws(() => new ctx.Lock({ ttl: 5 }), (e: Error) => e instanceof mp.ValueError && /ttl/.test(e.message));
    const q = new ctx.Queue<unknown>();
    await assert.rejects(q.put({ job: { callback: () => 1 } }), (e: Error) => e instanceof mp.SerializationError && /item\.job\.callback is a function/.test(e.message));
    await assert.rejects(q.put({ __multiprocessing_ts_cluster__: { kind: 'Lock', name: 'x' } }), mp.SerializationError);
    assert.equal(await q.qsize(), 0, 'nothing was put');
  });

  it('a cluster Lock and Value passed as cluster-pool task arguments arrive live on the worker, and the Lock comes back live as a result', async () => {
    const worker = await mp.ClusterWorker.start({ cluster: redis.url, module, concurrency: 1, startMethod: 'thread', pool: `objects-${process.pid}` });
    try {
      const pool = new ctx.Pool(1, { name: `objects-${process.pid}` });
      const lock = new ctx.Lock();
      const counter = new ctx.Value('i', 0);
      const [back, token, count] = await pool.apply(fx.countUnderLock, [lock, counter]);
      assert.ok(back instanceof mp.ClusterLock && back.name === lock.name, 'the lock came back as a live cluster Lock');
      assert.equal(count, 1);
      assert.equal(await counter.get(), 1);
      assert.equal(await lock.acquire({ block: false }), true, 'the worker released it');
      assert.ok(lock.fencingToken! > token);
      await lock.release();
      pool.close();
      await pool.join();
    } finally {
      await worker.drain();
    }
  });

  it('fencing tokens keep growing across a Redis restart that lost them and across unlink(), and stay safe integers', async () => {
    const own = await startRedis();
    const c = mp.getContext(own.url as `redis://${string}`);
    try {
      const lock = new c.Lock({ name: 'fenced' });
      const tokens: number[] = [];
      const take = async () => {
        assert.equal(await lock.acquire({ timeout: 10_000 }), true);
        tokens.push(lock.fencingToken!);
        await lock.release();
      };
      await take();
      await take();
      await own.restart();
      await take();
      await lock.unlink();
      await take();
      for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `token ${tokens[i]} after ${tokens[i - 1]}`);
      assert.ok(tokens.every((t) => Number.isSafeInteger(t)), String(tokens));
    } finally {
      c.close();
      await own.stop();
    }
  });

  it('a refused password appears nowhere in the error, its causes included (util.inspect)', async () => {
    const own = await startRedis({ password: 'right-one' });
    const c = mp.getContext(`redis://:wrong-pass-XYZ@127.0.0.1:${own.port}/0`);
    try {
      const err = await new c.Lock().acquire().then(
        () => assert.fail('acquired with a wrong password'),
        (e: Error) => e,
      );
      assert.ok(err instanceof mp.ClusterError, String(err));
      assert.ok(!inspect(err, { depth: 10 }).includes('wrong-pass-XYZ'), inspect(err, { depth: 10 }));
    } finally {
      c.close();
      await own.stop();
    }
  });

  it('Redis restarting under a blocked get: the get completes after the reconnect; with Redis gone, a call rejects with a ClusterError in bounded time', async () => {
    const own = await startRedis();
    const c = mp.getContext(own.url as `redis://${string}`, { connectTimeoutMs: 1500 });
    try {
      const q = new c.Queue<string>(0, { name: 'survives' });
      const getting = q.get({ timeout: 20_000 });
      await new Promise((r) => setTimeout(r, 100));
      await own.restart();
      await q.put('after the restart');
      assert.equal(await getting, 'after the restart');
      await own.stop();
      const start = performance.now();
      await assert.rejects(new c.Lock().acquire(), (e: Error) => e instanceof mp.ClusterError && /did not answer within/.test(e.message));
      assert.ok(performance.now() - start < 5000, 'bounded by the connect timeout');
    } finally {
      c.close();
      await own.stop();
    }
  });
});

it('a cluster URL\'s passwords are masked in messages: the userinfo\'s and a query option\'s (?password=)', () => {
  const shown = redact('redis://user:u-secret@h:6379/0?password=q-secret&sentinelPassword=s-secret&db=0&name=x');
  assert.ok(!/u-secret|q-secret|s-secret/.test(shown), shown);
  assert.match(shown, /name=x/);
  assert.equal(redact('redis://h:6379/0?db=0'), 'redis://h:6379/0?db=0', 'a URL without a secret is left as it is');
});
