/**
 * Workers' heartbeats: each live worker refreshes its score in the pool's
 * `workers` sorted set and its own hash (which expires) every second;
 * readers list those heard from within `WORKER_TTL_MS`.
 */
import type { RedisClient } from '../redis.js';
import { HEARTBEAT_MS, PoolKeys, WORKER_TTL_MS } from './protocol.js';

/** One live worker, as `pool.stats()` lists it. */
export interface ClusterWorkerInfo {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  /** Tasks it runs at once (its local pool's size). */
  readonly concurrency: number;
  readonly startMethod: string;
  /** Tasks it has finished (successfully or not). */
  readonly completed: number;
  /** Batches it holds now. */
  readonly running: number;
  /** False once it was asked to stop and drains (takes no new work). */
  readonly accepting: boolean;
  /** When it last said it was alive (ms since the epoch, by Redis' clock). */
  readonly lastSeen: number;
}

/** What a worker writes in its hash. */
export interface WorkerRecord {
  host: string;
  pid: number;
  concurrency: number;
  startMethod: string;
  completed: number;
  running: number;
  accepting: boolean;
}

/**
 * Redis' clock, in ms: heartbeats are scored and read by it, so a worker
 * whose clock is off by seconds is still listed (and counted for chunking).
 */
async function serverNow(redis: RedisClient): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

export async function writeHeartbeat(redis: RedisClient, keys: PoolKeys, id: string, record: WorkerRecord): Promise<void> {
  const now = await serverNow(redis);
  await redis
    .multi()
    .zadd(keys.workers, now, id)
    .hset(keys.worker(id), { ...record, accepting: record.accepting ? '1' : '0' })
    .pexpire(keys.worker(id), WORKER_TTL_MS)
    // Workers that vanished long ago leave the set.
    .zremrangebyscore(keys.workers, '-inf', now - 60 * WORKER_TTL_MS)
    .exec();
}

export async function removeHeartbeat(redis: RedisClient, keys: PoolKeys, id: string): Promise<void> {
  await redis.multi().zrem(keys.workers, id).del(keys.worker(id)).exec();
}

export async function readWorkers(redis: RedisClient, keys: PoolKeys): Promise<ClusterWorkerInfo[]> {
  const now = await serverNow(redis);
  const flat = await redis.zrangebyscore(keys.workers, now - WORKER_TTL_MS, '+inf', 'WITHSCORES');
  const ids: [string, number][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) ids.push([flat[i]!, Number(flat[i + 1])]);
  if (ids.length === 0) return [];
  const hashes = await Promise.all(ids.map(([id]) => redis.hgetall(keys.worker(id))));
  const out: ClusterWorkerInfo[] = [];
  ids.forEach(([id, lastSeen], i) => {
    const h = hashes[i]!;
    if (!h['pid']) return; // expired between the two reads
    out.push({
      id,
      host: h['host'] ?? '?',
      pid: Number(h['pid']),
      concurrency: Number(h['concurrency'] ?? 1),
      startMethod: h['startMethod'] ?? '?',
      completed: Number(h['completed'] ?? 0),
      running: Number(h['running'] ?? 0),
      accepting: h['accepting'] !== '0',
      lastSeen,
    });
  });
  return out;
}

export { HEARTBEAT_MS };
