/**
 * Cluster objects when Redis ran a command but the connection dropped
 * before the answer arrived: ioredis sends the command again after the
 * reconnect, so Redis sees it twice. A real redis-server behind a TCP
 * proxy (tcp-proxy.ts) that drops Redis's answer to the chosen command,
 * then closes the client's socket once Redis has run it. Every change
 * answers as its first run did and happens once: a lock or a semaphore
 * unit is not taken twice, a queue item is neither lost nor put twice, an
 * addition, a set, an append, a pop or a clear happens once. Skipped,
 * saying why, without redis-server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import * as mp from '../src/index.js';
import { startRedis, redisUnavailable, type RedisServer } from './redis.js';
import { TcpProxy, type ProxiedConnection } from './tcp-proxy.js';

const skip = redisUnavailable() ?? false;

/** Resolves once `check()` holds (looked at every 10 ms), or fails after `ms`. */
/** `p`, or a failure naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

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
      const conn: ProxiedConnection = await within(proxy.onSent(pattern, 'drop answers'), 5000, `a command matching ${pattern} going out`);
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

  it('Value: an add() run twice adds once and answers the value after it; a set() run twice sets once', () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-value-${process.pid}`;
      const bytes = async () => (await raw.hgetBuffer(`{mpts:Value:${name}}`, 'v'))?.readInt32LE(0);
      await new direct.Value('i', 0, { name: `${name}-warm` }).add(1);
      await new direct.Value('i', 0, { name: `${name}-warm` }).set(1);
      const v = new ctx.Value('i', 10, { name });
      await v.get();
      const adding = v.add(5);
      await drop(new RegExp(`Value:${name}`), async () => (await bytes()) === 15);
      assert.equal(await adding, 15);
      assert.equal(await v.get(), 15);
      // A set() repeated after another process's add() must not undo that add.
      const setting = v.set(100);
      await drop(new RegExp(`Value:${name}`), async () => (await bytes()) === 100);
      await new direct.Value('i', 0, { name }).add(1);
      await setting;
      assert.equal(await v.get(), 101);
    }));

  it('Queue: a put() run twice puts one item, a getNowait() run twice takes one and answers it', () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-queue-${process.pid}`;
      const items = `{mpts:Queue:${name}}:items`;
      const warm = new direct.Queue<string>(0, { name: `${name}-warm` });
      await warm.put('w');
      await warm.getNowait();
      const q = new ctx.Queue<string>(0, { name });
      await q.qsize();
      const putting = q.put('A');
      await drop(new RegExp(`Queue:${name}`), async () => (await raw.llen(items)) === 1);
      await putting;
      assert.equal(await raw.llen(items), 1, 'one A');
      await new direct.Queue<string>(0, { name }).put('B');
      const getting = q.getNowait();
      await drop(new RegExp(`Queue:${name}`), async () => (await raw.llen(items)) === 1);
      assert.equal(await getting, 'A');
      assert.equal(await new direct.Queue<string>(0, { name }).getNowait(), 'B', 'B is still there');
    }));

  for (const kind of ['Queue', 'JoinableQueue'] as const) {
    it(`${kind}: a blocking get() whose read ran and whose answer was lost returns that item (none is lost or taken twice)`, () =>
      throughProxy(async (ctx, drop) => {
        const name = `resend-blocking-${kind}-${process.pid}`;
        const tag = `{mpts:${kind}:${name}}`;
        const make = (c: mp.ClusterContext) => (kind === 'Queue' ? new c.Queue<string>(0, { name }) : new c.JoinableQueue<string>(0, { name }));
        const q = make(ctx);
        await q.qsize();
        const getting = q.get({ timeout: 8000 });
        // The read blocks in Redis; an item arrives, the read takes it, and its answer is lost with the connection.
        let put = false;
        const dropped = drop(/BL(MOVE|POP)/i, async () => put && (await raw.llen(`${tag}:items`)) === 0);
        await until(async () => (await raw.info('clients')).includes('blocked_clients:1'), 5000, 'the read blocking');
        await make(direct).put('A');
        put = true;
        await dropped;
        assert.equal(await getting, 'A');
        assert.equal(await raw.llen(`${tag}:items`), 0, 'nothing left in the queue');
        assert.deepEqual(await raw.keys(`${tag}:call:*:taken`), [], 'no item left aside');
        if (q instanceof mp.ClusterJoinableQueue) {
          await q.taskDone();
          await within(q.join(), 3000, 'join() after the one taskDone()');
        }
      }));
  }

  it('JoinableQueue: a taskDone() run twice counts one item done and reports no lapsed lease', () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-done-${process.pid}`;
      const unfinished = `{mpts:JoinableQueue:${name}}:unfinished`;
      const warm = new direct.JoinableQueue<string>(0, { name: `${name}-warm` });
      await warm.put('w');
      await warm.get();
      await warm.taskDone();
      const q = new ctx.JoinableQueue<string>(0, { name });
      await q.put('A');
      await q.put('B');
      assert.equal(await q.get(), 'A');
      const done = q.taskDone();
      await drop(new RegExp(`JoinableQueue:${name}`), async () => Number(await raw.get(unfinished)) === 1);
      await done;
      assert.equal(Number(await raw.get(unfinished)), 1, 'B is still unfinished');
    }));

  it('list and dict: an append, a pop, a dict pop and a popitem each run twice happen once', () =>
    throughProxy(async (ctx, drop) => {
      const name = `resend-list-${process.pid}`;
      const items = `{mpts:list:${name}}:items`;
      const hash = `{mpts:dict:${name}}:h`;
      const warmManager = await direct.Manager();
      const warmList = await warmManager.list([1], { name: `${name}-warm` });
      await warmList.append(2);
      await warmList.pop();
      const warmDict = await warmManager.dict([['a', 1], ['b', 2]], { name: `${name}-warm` });
      await warmDict.pop('a');
      await warmDict.popitem();
      await warmDict.clear();
      const manager = await ctx.Manager();
      const xs = await manager.list(['a'], { name });
      const appending = xs.append('b');
      await drop(new RegExp(`list:${name}`), async () => (await raw.llen(items)) === 2);
      await appending;
      assert.deepEqual(await xs.toArray(), ['a', 'b']);
      const popping = xs.pop();
      await drop(new RegExp(`list:${name}`), async () => (await raw.llen(items)) === 1);
      assert.equal(await popping, 'b');
      assert.deepEqual(await xs.toArray(), ['a']);
      const d = await manager.dict([['x', 1], ['y', 2], ['z', 3]], { name });
      const dictPopping = d.pop('x');
      await drop(new RegExp(`dict:${name}`), async () => (await raw.hlen(hash)) === 2);
      assert.equal(await dictPopping, 1, 'no KeyError for the repeat');
      const popItem = d.popitem();
      await drop(new RegExp(`dict:${name}`), async () => (await raw.hlen(hash)) === 1);
      assert.deepEqual(await popItem, ['z', 3]);
      assert.deepEqual(await d.items(), [['y', 2]]);
      // A clear() repeated after another process's set() must not wipe that set().
      const clearing = d.clear();
      await drop(new RegExp(`dict:${name}`), async () => (await raw.hlen(hash)) === 0);
      await (await (await direct.Manager()).dict(undefined, { name })).set('w', 9);
      await clearing;
      assert.deepEqual(await d.items(), [['w', 9]]);
    }));
});
