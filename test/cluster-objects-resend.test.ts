/**
 * Cluster objects when Redis ran a command but the connection dropped
 * before its answer arrived: ioredis sends the command again after the
 * reconnect, so Redis sees it twice. A real redis-server behind a TCP
 * proxy (tcp-proxy.ts) that drops Redis's answer to the chosen command,
 * then closes the client's socket once Redis has run it. What may run
 * twice must answer as its first run did (Lock, Semaphore, a queue's
 * take); what must not (Value.add, a list's append, a queue's put) is not
 * sent again and fails with its outcome unknown. Skipped, saying why,
 * without redis-server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import * as mp from '../src/index.js';
import { startRedis, redisUnavailable, type RedisServer } from './redis.js';
import { TcpProxy, type ProxiedConnection } from './tcp-proxy.js';

const skip = redisUnavailable() ?? false;

/** Resolves once `check()` holds (looked at every 10 ms), or fails after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('cluster objects when an answer is lost with its connection (resent commands)', { skip }, () => {
  let redis: RedisServer;
  let direct: mp.ClusterContext;
  let raw: Redis;

  before(async () => {
    redis = await startRedis();
    direct = mp.getContext(redis.url as `redis://${string}`);
    raw = new Redis(redis.port, '127.0.0.1');
  });

  after(async () => {
    raw?.disconnect();
    direct?.close();
    await redis?.stop();
  });

  /**
   * Runs `body` with a context through a new proxy. `drop(pattern, ran)`
   * arms the fault: the answer to the first command matching `pattern` is
   * dropped; once `ran()` (read directly from Redis) says Redis ran it,
   * the client's connection is cut.
   */
  async function throughProxy(
    body: (ctx: mp.ClusterContext, drop: (pattern: RegExp, ran: () => Promise<boolean>) => Promise<void>) => Promise<void>,
  ): Promise<void> {
    const proxy = await TcpProxy.start(redis.port);
    const ctx = mp.getContext(`redis://127.0.0.1:${proxy.port}/0`, { connectTimeoutMs: 3000 });
    const drop = async (pattern: RegExp, ran: () => Promise<boolean>) => {
      const conn: ProxiedConnection = await proxy.onSent(pattern, 'drop answers');
      await until(ran, 5000, 'Redis running the command');
      conn.cut();
    };
    try {
      await body(ctx, drop);
    } finally {
      ctx.close();
      await proxy.close();
    }
  }

  it('Lock: an acquire run twice wins with its fencing token, and a release run twice reports no lost hold', () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-lock-${process.pid}`;
      const holder = `{mpts:Lock:${name}}:holder`;
      // The scripts loaded beforehand: the faulty call is one EVALSHA that runs.
      await new direct.Lock({ name: `${name}-warm` }).withLock(() => {});
      const lock = new ctx.Lock({ name, ttl: 20_000 });
      const started = performance.now();
      const acquiring = lock.acquire({ timeout: 8000 });
      await drop(new RegExp(`Lock:${name}`), async () => (await raw.exists(holder)) === 1);
      assert.equal(await acquiring, true);
      assert.ok(performance.now() - started < 6000, 'acquired without waiting for its own hold');
      assert.equal(lock.fencingToken, Number(await raw.get(`{mpts:Lock:${name}}:fence`)));
      const releasing = lock.release();
      await drop(new RegExp(`Lock:${name}`), async () => (await raw.exists(holder)) === 0);
      await releasing;
      assert.equal(await new direct.Lock({ name }).acquire({ block: false }), true, 'the lock is free for another');
    }));

  it('Semaphore: an acquire run twice takes one unit, a release run twice gives back one', () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-sem-${process.pid}`;
      const value = async () => Number(await raw.hget(`{mpts:Semaphore:${name}}`, 'v'));
      const warm = new direct.Semaphore(1, { name: `${name}-warm` });
      await warm.acquire();
      await warm.release();
      const sem = new ctx.Semaphore(3, { name });
      await sem.getValue();
      const acquiring = sem.acquire({ timeout: 8000 });
      await drop(new RegExp(`Semaphore:${name}`), async () => (await value()) === 2);
      assert.equal(await acquiring, true);
      assert.equal(await value(), 2);
      await sem.acquire();
      const releasing = sem.release();
      await drop(new RegExp(`Semaphore:${name}`), async () => (await value()) === 2);
      await releasing;
      assert.equal(await value(), 2);
    }));

  it('Queue: a take run twice returns its item once and takes no other', () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-q-${process.pid}`;
      const producer = new direct.Queue<string>(0, { name });
      await producer.put('warm');
      await producer.get();
      await producer.put('a');
      await producer.put('b');
      const q = new ctx.Queue<string>(0, { name });
      await q.qsize();
      const getting = q.get({ timeout: 8000 });
      await drop(new RegExp(`Queue:${name}`), async () => (await producer.qsize()) === 1);
      assert.equal(await getting, 'a');
      assert.equal(await producer.qsize(), 1);
      assert.equal(await q.get({ timeout: 5000 }), 'b');
    }));

  it("Queue: a blocking read run twice delivers one item and the other goes back to the queue's head", () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-bq-${process.pid}`;
      const producer = new direct.Queue<string>(0, { name });
      const q = new ctx.Queue<string>(0, { name });
      await q.qsize();
      const getting = q.get({ timeout: 8000 });
      let put = false;
      await drop(/BLPOP|BLMOVE/i, async () => {
        if (!put) await producer.put('a');
        put = true;
        return (await producer.qsize()) === 0;
      });
      // The read sent again after the reconnect takes the next item.
      await producer.put('b');
      const got = await getting;
      await until(async () => (await producer.qsize()) === 1, 5000, 'the other item back in the queue');
      const rest = await producer.get({ timeout: 1000 });
      assert.deepEqual([got, rest].sort(), ['a', 'b']);
    }));

  it('Value.add, list.append and Queue.put run at most once: a lost answer is a ClusterError saying the outcome is unknown', () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-once-${process.pid}`;
      const unknown = (e: Error) => e instanceof mp.ClusterError && /unknown/.test(e.message);

      const v = new ctx.Value('i', 0, { name });
      await v.get();
      await new direct.Value('i', 0, { name: `${name}-warm` }).add(1);
      const adding = v.add(1);
      await drop(new RegExp(`Value:${name}`), async () => (await new direct.Value('i', 0, { name }).get()) === 1);
      await assert.rejects(adding, unknown);
      assert.equal(await new direct.Value('i', 0, { name }).get(), 1);

      const manager = await ctx.Manager();
      const xs = await manager.list<number>([], { name });
      const other = await (await direct.Manager()).list<number>(undefined, { name });
      await other.append(0);
      await other.clear();
      const appending = xs.append(7);
      await drop(new RegExp(`list:${name}`), async () => (await other.len()) === 1);
      await assert.rejects(appending, unknown);
      assert.deepEqual(await other.toArray(), [7]);

      const q = new ctx.Queue<number>(0, { name });
      const producer = new direct.Queue<number>(0, { name });
      await producer.put(0);
      await producer.get();
      const putting = q.put(1);
      await drop(new RegExp(`Queue:${name}`), async () => (await producer.qsize()) === 1);
      await assert.rejects(putting, unknown);
      assert.equal(await producer.qsize(), 1);
    }));
});
