/**
 * Cluster objects when the network to Redis fails under them: a subscriber
 * connection dropped without a word, a blocking read whose answer comes
 * after its call gave up, or never comes. A real redis-server, reached
 * through a TCP proxy the test controls (tcp-proxy.ts) to make the fault
 * happen at a chosen moment; skipped, saying why, without redis-server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { startRedis, redisUnavailable, type RedisServer } from './redis.js';
import { Redis } from 'ioredis';
import { TcpProxy } from './tcp-proxy.js';

const skip = redisUnavailable() ?? false;

/** `p`'s outcome, or a failure saying it was still pending after `ms` (the defects these tests are for are hangs). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `check()` holds (looked at every 10 ms), or fails after `ms`. */
function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  return within(
    (async () => {
      while (!(await check())) await new Promise((r) => setTimeout(r, 10));
    })(),
    ms,
    what,
  );
}

describe('cluster objects under network faults', { skip }, () => {
  let redis: RedisServer;
  let direct: mp.ClusterContext;

  before(async () => {
    redis = await startRedis();
    direct = mp.getContext(redis.url as `redis://${string}`);
  });

  after(async () => {
    direct?.close();
    await redis?.stop();
  });

  /** Runs `body` with a context whose connections go through a new proxy, with a short connect timeout (the calls' time limit). */
  async function throughProxy(body: (proxy: TcpProxy, ctx: mp.ClusterContext) => Promise<void>): Promise<void> {
    const proxy = await TcpProxy.start(redis.port);
    const ctx = mp.getContext(`redis://127.0.0.1:${proxy.port}/0`, { connectTimeoutMs: 500 });
    try {
      await body(proxy, ctx);
    } finally {
      ctx.close();
      await proxy.close();
    }
  }

  it('a subscriber connection dropped silently: Lock.acquire sees a release, and Event.wait, a full Queue.put and join() end, each within its time; a new subscriber is made', () =>
    throughProxy(async (proxy, ctx) => {
      const name = `dead-sub-${process.pid}`;
      // The subscriber is opened by a first wait (woken by a message), then its connection goes silent.
      const first = new ctx.Event();
      const firstWait = first.wait(20_000);
      await until(() => proxy.connections(/mpts-subscriber[\s\S]*SUBSCRIBE/i).length > 0, 5000, 'the subscriber subscribing');
      await new direct.Event({ name: first.name }).set();
      assert.equal(await within(firstWait, 5000, 'the first wait'), true);
      const subscribers = proxy.connections(/mpts-subscriber/);
      assert.equal(subscribers.length, 1);
      subscribers[0]!.drop();

      const holder = new direct.Lock({ name });
      assert.equal(await holder.acquire(), true);
      const acquiring = new ctx.Lock({ name }).acquire({ timeout: 8000 });
      // The waiter is subscribing (to nobody) when the holder lets go: the release is published to no one.
      await until(() => subscribers[0]!.sent.includes(`${name}}:free`), 5000, 'the waiter subscribing');
      await holder.release();
      const released = performance.now();
      assert.equal(await within(acquiring, 6000, 'Lock.acquire({ timeout: 8000 })'), true);
      assert.ok(performance.now() - released < 2000, `taken ${Math.round(performance.now() - released)} ms after the release: it looked again, not at its deadline`);

      let start = performance.now();
      assert.equal(await within(new ctx.Event().wait(600), 4000, 'Event.wait(600)'), false);
      assert.ok(performance.now() - start < 2000, 'Event.wait(600) returned about its timeout');

      const full = new ctx.Queue<number>(1);
      await full.put(1);
      start = performance.now();
      await within(assert.rejects(full.put(2, { timeout: 600 }), mp.Full), 4000, 'a full Queue.put({ timeout: 600 })');
      assert.ok(performance.now() - start < 2000, 'put() gave up about its timeout');

      const jqName = `dead-sub-jq-${process.pid}`;
      const worker = new direct.JoinableQueue<string>(0, { name: jqName });
      await worker.put('job');
      assert.equal(await worker.get(), 'job');
      const joining = new ctx.JoinableQueue<string>(0, { name: jqName }).join();
      await worker.taskDone();
      await within(joining, 4000, 'join() after the last taskDone()');

      // The silent one was replaced: a later wait is woken by a message on the new connection.
      assert.ok(proxy.connections(/mpts-subscriber/).length >= 2, 'a new subscriber connection was made');
      const event = new ctx.Event();
      const waiting = event.wait(20_000);
      const probe = new Redis(redis.url);
      try {
        const channel = `{mpts:Event:${event.name}}:set`;
        await until(async () => Number(((await probe.pubsub('NUMSUB', channel)) as [string, number])[1]) > 0, 5000, 'the new subscriber subscribing');
      } finally {
        probe.disconnect();
      }
      await new direct.Event({ name: event.name }).set();
      assert.equal(await within(waiting, 4000, 'Event.wait() after set()'), true);
    }));

  it('a confirmed waiter whose subscriber dies silently sees a later set() within a couple of seconds (a PING each second of silence), not at the end of its sleep', () =>
    throughProxy(async (proxy, ctx) => {
      const event = new ctx.Event();
      const waiting = event.wait(30_000);
      const channel = `{mpts:Event:${event.name}}:set`;
      const probe = new Redis(redis.url);
      try {
        await until(async () => Number(((await probe.pubsub('NUMSUB', channel)) as [string, number])[1]) > 0, 5000, 'the waiter subscribing');
      } finally {
        probe.disconnect();
      }
      const subscribers = proxy.connections(/mpts-subscriber/);
      assert.equal(subscribers.length, 1);
      subscribers[0]!.drop();
      await new direct.Event({ name: event.name }).set();
      const set = performance.now();
      assert.equal(await within(waiting, 8000, 'Event.wait() after set()'), true);
      // Its sleep slice is 5 s: found by the liveness PING (1 s of silence, then the 500 ms time limit) and looking again.
      assert.ok(performance.now() - set < 3000, `woken ${Math.round(performance.now() - set)} ms after set()`);
    }));

  for (const kind of ['Queue', 'SimpleQueue', 'JoinableQueue'] as const) {
    it(`${kind}: an item a get()'s blocking read takes after the get() gave up goes back to the queue`, () =>
      throughProxy(async (proxy, ctx) => {
        const name = `late-${kind}-${process.pid}`;
        const make = (c: mp.ClusterContext) =>
          kind === 'Queue' ? new c.Queue<string>(0, { name }) : kind === 'SimpleQueue' ? new c.SimpleQueue<string>({ name }) : new c.JoinableQueue<string>(0, { name });
        const consumer = make(ctx);
        const other = make(direct);
        // The network stalls right after the read goes out: Redis takes the item, its answer is held back.
        const stalled = proxy.onSent(/BLMOVE/i, 'hold answers');
        const getting = consumer.get({ timeout: 300 });
        const conn = await within(stalled, 5000, 'the blocking read going out');
        await other.put('X');
        await within(assert.rejects(getting, (e: Error) => e instanceof mp.ClusterError && /did not answer within/.test(e.message)), 5000, 'the get() giving up');
        // The answer, with the item, now reaches the process whose get() gave up.
        conn.release();
        assert.equal(await other.get({ timeout: 3000 }), 'X', 'the item went back to the queue');
        assert.equal(await other.qsize(), 0, 'once');
        if (other instanceof mp.ClusterJoinableQueue) {
          await other.taskDone();
          await within(other.join(), 3000, 'join()');
        }
      }));
  }

  it('Queue: close() while a blocking get() settles its take puts the item back (it is not lost)', () =>
    throughProxy(async (proxy, ctx) => {
      const name = `close-settle-${process.pid}`;
      const probe = new Redis(redis.url);
      try {
        const q = new ctx.Queue<string>(0, { name });
        await q.qsize();
        const getting = q.get({ timeout: 8000 });
        await until(async () => (await probe.info('clients')).includes('blocked_clients:1'), 5000, 'the read blocking');
        // The read's answer comes; the settling script after it gets no answer until released.
        const settling = proxy.onSent(/:taken/, 'hold answers');
        await new direct.Queue<string>(0, { name }).put('A');
        const conn = await within(settling, 5000, 'the settling going out');
        q.close();
        await within(assert.rejects(getting, (e: Error) => e instanceof mp.ValueError && /closed/.test(e.message)), 5000, 'get() ending on close()');
        conn.release();
        assert.equal(await new direct.Queue<string>(0, { name }).get({ timeout: 5000 }), 'A', 'the item went back to the queue');
        assert.equal(await new direct.Queue<string>(0, { name }).qsize(), 0, 'once');
      } finally {
        probe.disconnect();
      }
    }));

  it('Queue: a context closed while a blocking get() settles its take hands the item to that get() (it ran in Redis and is nowhere else)', () =>
    throughProxy(async (proxy, ctx) => {
      const name = `ctx-close-settle-${process.pid}`;
      const probe = new Redis(redis.url);
      try {
        const q = new ctx.Queue<string>(0, { name });
        const other = new direct.Queue<string>(0, { name });
        // The settling script known to Redis already: the faulty call is one EVALSHA that runs.
        const warm = q.get({ timeout: 5000 });
        await until(async () => (await probe.info('clients')).includes('blocked_clients:1'), 5000, 'the warm-up read blocking');
        await other.put('warm');
        assert.equal(await warm, 'warm');
        const held = proxy.onSent(/EVALSHA[\s\S]*:taken/, 'hold answers');
        const getting = q.get({ timeout: 5000 }).then(
          (x) => x,
          (e: Error) => e,
        );
        await until(async () => (await probe.info('clients')).includes('blocked_clients:1'), 5000, 'the read blocking');
        await other.put('precious');
        await within(held, 5000, 'the settling going out');
        // The settling ran in Redis (its list is gone); its answer never comes: the context closes.
        await until(async () => (await probe.keys(`{mpts:Queue:${name}}:call:*:taken`)).length === 0, 5000, 'the settling running');
        ctx.close();
        assert.equal(await within(getting, 5000, 'the get() ending'), 'precious');
      } finally {
        probe.disconnect();
      }
    }));

  it('Queue: an item a blocking read took for a consumer that never settled it (gone) goes back once its take is overdue; unlink() removes such takes; a context closed under a blocked get() warns of nothing', () =>
    throughProxy(async (proxy, ctx) => {
      const name = `stranded-${process.pid}`;
      const tag = `{mpts:Queue:${name}}`;
      const probe = new Redis(redis.url);
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        const strand = async (item: string) => {
          const c = mp.getContext(`redis://127.0.0.1:${proxy.port}/0`, { connectTimeoutMs: 3000 });
          const q = new c.Queue<string>(0, { name });
          await q.qsize();
          const held = proxy.onSent(/BLMOVE/i, 'hold answers');
          const getting = q.get({ timeout: 8000 }).catch((e: Error) => e);
          await within(held, 5000, 'the read going out');
          await until(async () => (await probe.info('clients')).includes('blocked_clients:1'), 5000, 'the read blocking');
          await new direct.Queue<string>(0, { name }).put(item);
          await until(async () => (await probe.keys(`${tag}:call:*:taken`)).length === 1, 5000, 'the read taking the item');
          // The consumer goes away between its read and the settling.
          c.close();
          assert.ok((await getting) instanceof mp.ClusterError);
        };
        await strand('A');
        assert.equal(await probe.zcard(`${tag}:taking`), 1, 'the take is listed');
        // Its time is up (the grace after the read is a minute; the test moves its deadline instead of waiting).
        const [key] = await probe.zrange(`${tag}:taking`, '0', '-1');
        await probe.zadd(`${tag}:taking`, '0', key!);
        // The next consumer's blocking take settles, and puts A back.
        const consumer = new direct.Queue<string>(0, { name });
        assert.equal(await consumer.get({ timeout: 5000 }), 'A');
        assert.deepEqual(await probe.keys(`${tag}:call:*:taken`), []);
        await strand('B');
        await consumer.unlink();
        assert.deepEqual(await probe.keys(`${tag}*`), [], 'unlink() left nothing');
        assert.deepEqual(warnings.filter((w) => /multiprocessing-ts/.test(w)), []);
      } finally {
        process.off('warning', onWarning);
        probe.disconnect();
      }
    }));

  it('Queue: a consumer whose take went overdue before it settled does not deliver the item another consumer took meanwhile (once, not twice); a non-blocking get() recovers overdue takes', () =>
    throughProxy(async (proxy, ctx) => {
      const name = `overdue-${process.pid}`;
      const tag = `{mpts:Queue:${name}}`;
      const probe = new Redis(redis.url);
      try {
        const slow = new ctx.Queue<string>(0, { name });
        await slow.qsize();
        const held = proxy.onSent(/BLMOVE/i, 'hold answers');
        const getting = slow.get({ timeout: 4000 }).then(
          (x) => x,
          (e: Error) => e,
        );
        const conn = await within(held, 5000, 'the read going out');
        await until(async () => (await probe.info('clients')).includes('blocked_clients:1'), 5000, 'the read blocking');
        await new direct.Queue<string>(0, { name }).put('X');
        await until(async () => (await probe.keys(`${tag}:call:*:taken`)).length === 1, 5000, 'the read taking X');
        // The slow consumer's grace runs out (moved rather than waited for) and another consumer takes X.
        const [key] = await probe.zrange(`${tag}:taking`, '0', '-1');
        await probe.zadd(`${tag}:taking`, '0', key!);
        assert.equal(await new direct.Queue<string>(0, { name }).getNowait(), 'X');
        // Now the read's answer reaches the slow consumer: it must not deliver X too.
        conn.release();
        const got = await within(getting, 8000, 'the slow get() ending');
        assert.ok(got instanceof mp.Empty, `the slow consumer got ${String(got)}`);
      } finally {
        probe.disconnect();
      }
    }));

  it('unlink() of a queue with thousands of call records pending removes everything', async () => {
    const name = `many-records-${process.pid}`;
    const q = new direct.Queue<number>(0, { name });
    await Promise.all(Array.from({ length: 10_000 }, (_, i) => q.put(i)));
    await q.unlink();
    const probe = new Redis(redis.url);
    try {
      assert.deepEqual(await probe.keys(`{mpts:Queue:${name}}*`), []);
    } finally {
      probe.disconnect();
    }
  });

  it('list and dict: what a pop() takes after it gave up (Redis answered late) goes back', () =>
    throughProxy(async (proxy, ctx) => {
      const name = `late-pop-${process.pid}`;
      const warm = await (await direct.Manager()).list([1], { name: `${name}-warm` });
      await warm.pop();
      const warmDict = await (await direct.Manager()).dict([['a', 1]], { name: `${name}-warm` });
      await warmDict.pop('a');
      const manager = await ctx.Manager();
      const xs = await manager.list(['a', 'b'], { name });
      const d = await manager.dict([['k', 'v']], { name });
      for (const [pattern, pop] of [
        [new RegExp(`list:${name}`), () => xs.pop()],
        [new RegExp(`dict:${name}`), () => d.pop('k')],
      ] as const) {
        const stalled = proxy.onSent(pattern, 'hold answers');
        const popping = pop();
        const conn = await within(stalled, 5000, 'the pop going out');
        await within(assert.rejects(popping, (e: Error) => e instanceof mp.ClusterError && /did not answer within/.test(e.message)), 5000, 'the pop giving up');
        conn.release();
      }
      const [directList, directDict] = [await (await direct.Manager()).list(undefined, { name }), await (await direct.Manager()).dict(undefined, { name })];
      await until(async () => (await directList.len()) === 2 && (await directDict.len()) === 1, 5000, 'the popped item and entry put back');
      assert.deepEqual(await directList.toArray(), ['a', 'b']);
      assert.deepEqual(await directDict.items(), [['k', 'v']]);
    }));

  it('Lock and Semaphore: what an acquire() takes after it gave up (Redis answered late) is given back at once', () =>
    throughProxy(async (proxy, ctx) => {
      const lockName = `late-lock-${process.pid}`;
      const semName = `late-sem-${process.pid}`;
      const lock = new direct.Lock({ name: lockName });
      const sem = new direct.Semaphore(1, { name: semName });
      // Scripts known to Redis already: the acquire runs at once, only its answer is late.
      assert.equal(await lock.acquire(), true);
      await lock.release();
      assert.equal(await sem.acquire(), true);
      await sem.release();
      for (const [name, acquire] of [
        [lockName, () => new ctx.Lock({ name: lockName }).acquire({ timeout: 100 })],
        [semName, () => new ctx.Semaphore(1, { name: semName }).acquire({ timeout: 100 })],
      ] as const) {
        const stalled = proxy.onSent(new RegExp(name), 'hold answers');
        const acquiring = acquire();
        const conn = await within(stalled, 5000, 'the acquire going out');
        await within(assert.rejects(acquiring, (e: Error) => e instanceof mp.ClusterError && /did not answer within/.test(e.message)), 5000, 'the acquire giving up');
        conn.release();
      }
      // The lock's ttl is 30 s, and a semaphore's unit never comes back by itself.
      assert.equal(await lock.acquire({ timeout: 3000 }), true, 'the lock was given back');
      await lock.release();
      assert.equal(await sem.acquire({ timeout: 3000 }), true, 'the unit was given back');
      await sem.release();
    }));

  it('JoinableQueue: an item a given-up read moved into the consumer\'s list, whose answer never came, is put back by the consumer\'s next get(); join() then resolves', () =>
    throughProxy(async (proxy, ctx) => {
      const name = `stranded-${process.pid}`;
      const consumer = new ctx.JoinableQueue<string>(0, { name });
      const producer = new direct.JoinableQueue<string>(0, { name });
      // The connection drops the answer of the read: the item is in the consumer's list, the consumer never hears of it.
      const dropped = proxy.onSent(/BLMOVE/i, 'drop answers');
      const first = consumer.get({ timeout: 300 });
      await within(dropped, 5000, 'the blocking read going out');
      await producer.put('X');
      await within(assert.rejects(first, mp.ClusterError), 5000, 'the get() giving up');
      // Its lease is renewed while it keeps getting: only the consumer itself can give the item back.
      assert.equal(await consumer.get({ timeout: 3000 }), 'X', 'the consumer\'s next get() found the item');
      await consumer.taskDone();
      await within(producer.join(), 3000, 'join()');
    }));
});
