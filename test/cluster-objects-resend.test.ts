/**
 * A cluster Lock when Redis ran its command but the connection dropped
 * before the answer arrived: ioredis sends the command again after the
 * reconnect, so Redis sees it twice. A real redis-server behind a TCP
 * proxy (tcp-proxy.ts) that drops Redis's answer to the chosen command,
 * then closes the client's socket once Redis has run it. The Lock's and
 * the Semaphore's acquire and release answer as their first run did. (The
 * other objects do not yet: README, "Cluster objects".) Skipped, saying
 * why, without redis-server.
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
});
