/**
 * Semaphore and BoundedSemaphore on Redis.
 *
 * One hash per semaphore, `{mpts:Semaphore:<name>}` (or `BoundedSemaphore`):
 * `v` the units free, `m` the bound (the initial value of a
 * BoundedSemaphore; -1 for none). Every script first creates it from the
 * caller's initial value when it does not exist yet, so the first use
 * anywhere decides the value (handles of one name should be made with the
 * same value). Acquire takes a unit when one is free; release adds one,
 * refusing to pass the bound, and publishes on `…:released`, which
 * waiting acquirers are subscribed to (wake.ts): no polling.
 *
 * As the local Semaphore (and Python's), it has no owner: any process may
 * release, and a holder that dies without releasing keeps its unit. Use a
 * Lock (whose hold expires) where that matters.
 */
import { ValueError } from '../../errors.js';
import { describe } from '../../describe.js';
import { blocks, deadlineOfOptions, remaining, type BlockOptions } from '../../sync/waiting.js';
import { randomName } from '../keys.js';
import { ObjectClients, Script } from './connection.js';
import { ClusterObject, notOverNetwork, objectOptions, registerClusterKind, type ClusterKind, type ClusterObjectOptions, type Settings } from './base.js';

/** Tries of a change that ioredis aborted (see #change). */
const ABORT_TRIES = 3;
/** The largest count (as the local Semaphore's). */
const MAX_VALUE = 0x7fffffff;
/** The longest one sleep of a waiter lasts before it looks again. */
const SLICE_MS = 5_000;

const INIT = `local v = redis.call('HGET', KEYS[1], 'v')
if not v then
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'm', ARGV[2])
  v = ARGV[1]
end
v = tonumber(v)`;

/**
 * How long a change is remembered for a repeat of its call (ms): a repeat
 * comes when the connection is back, so an outage longer than this makes
 * a repeat count again.
 */
const REMEMBER_MS = 120_000;

/**
 * Every change carries its call's id (ARGV[4]). A call that changed the
 * count is recorded in the sorted set KEYS[2] (score: Redis' clock in ms),
 * so a repeat of it (ioredis sends a command again when the connection
 * dropped before its answer) answers as the first run did instead of taking
 * or giving a second unit. Records go when the object's next call says its
 * earlier answers came (ARGV[5] ids from ARGV[6]), or REMEMBER_MS after
 * they were made: a handle that made one call and was dropped (one revived
 * per task) leaves a record for that long, not for good.
 */
const CALL = `for i = 6, 5 + tonumber(ARGV[5]) do redis.call('ZREM', KEYS[2], ARGV[i]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ${REMEMBER_MS})
local repeated = redis.call('ZSCORE', KEYS[2], ARGV[4]) ~= false
local function record()
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ${REMEMBER_MS})
end`;

const ACQUIRE = new Script(
  'semaphore-acquire',
  2,
  `${CALL}
if repeated then return 1 end
${INIT}
if v > 0 then
  redis.call('HINCRBY', KEYS[1], 'v', -1)
  record()
  return 1
end
return 0`,
);

const RELEASE = new Script(
  'semaphore-release',
  2,
  `${CALL}
${INIT}
local m = tonumber(redis.call('HGET', KEYS[1], 'm') or '-1')
if repeated then return {1, v, m} end
if (m >= 0 and v >= m) or v >= ${MAX_VALUE} then return {0, v, m} end
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('PUBLISH', ARGV[3], '1')
record()
return {1, v + 1, m}`,
);

const VALUE = new Script('semaphore-value', 1, `${INIT}
return v`);

function checkValue(value: unknown, kind: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_VALUE) {
    throw new ValueError(`${kind} value must be an integer from 0 to ${MAX_VALUE}, got ${describe(value)}; pass the number of units free at the start (e.g. new ctx.${kind}(2))`);
  }
  return value;
}

/**
 * A counting semaphore shared by processes on any machine that reach one
 * Redis: the cluster form of `mp.Semaphore`.
 * @example
 * ```ts
 * const slots = new ctx.Semaphore(4, { name: 'gpu-slots' });
 * await slots.withLock(async () => { … }); // at most 4 at once, cluster-wide
 * ```
 */
export class ClusterSemaphore extends ClusterObject {
  /** The value it was made with (used when it does not exist in Redis yet). */
  readonly initialValue: number;
  readonly #channel: string;
  /** The records of recent changes, for repeats of their calls (see CALL). */
  readonly #calls: string;

  /** @internal Made by a cluster context (`new ctx.Semaphore(value, options)`). */
  constructor(conn: ObjectClients, value: number = 1, options?: ClusterObjectOptions) {
    const bounded = new.target === ClusterBoundedSemaphore;
    const kind = bounded ? 'BoundedSemaphore' : 'Semaphore';
    checkValue(value, kind);
    super(conn, kind, objectOptions(options, kind).name);
    this.initialValue = value;
    this.#channel = `${this.prefix}:released`;
    this.#calls = `${this.prefix}:calls`;
  }

  get kind(): ClusterKind {
    return 'Semaphore';
  }

  /** @internal The bound a release may not pass (-1: none). */
  protected get bound(): number {
    return -1;
  }

  protected override settings(): Settings {
    return { value: this.initialValue };
  }

  protected redisKeys(): string[] {
    return [this.prefix, this.#calls];
  }

  #args(): (string | number)[] {
    return [this.initialValue, this.bound, this.#channel];
  }

  /** Ids of this object's calls whose answers came: their records go with its next call (see CALL). */
  #answered: string[] = [];

  /**
   * Runs a change with a call id of its own (see CALL), or `id` when the
   * same change is tried again; the id is forgotten once the answer came. A
   * change that ioredis aborted rather than resent (a pipeline cut by a
   * dropped connection: Redis may have run it) is sent again with its id,
   * which makes that safe.
   */
  async #change(what: string, script: Script, late?: (result: unknown) => Promise<unknown> | void, id = randomName()): Promise<unknown> {
    for (let tries = 1; ; tries++) {
      const forget = this.#answered.splice(0, 100);
      try {
        const result = await this.script(what, script, [this.prefix, this.#calls], [...this.#args(), id, forget.length, ...forget], late && ((r) => {
          this.#answered.push(id);
          return late(r);
        }));
        this.#answered.push(id);
        return result;
      } catch (err) {
        this.#answered.push(...forget);
        if ((err as Error)?.name !== 'AbortError' || tries >= ABORT_TRIES) throw err;
      }
    }
  }

  async #try(): Promise<boolean> {
    // One id for the give-back, however often it is tried: a try that timed out may still run.
    let backId: string | undefined;
    return (
      Number(
        await this.#change('acquire()', ACQUIRE, (late) => {
          // A unit taken after the acquire() gave up has no holder: it would be gone for good.
          if (Number(late) === 1) return this.#change('give back', RELEASE, undefined, (backId ??= randomName()));
        }),
      ) === 1
    );
  }

  /**
   * Takes a unit, waiting (without polling) while none is free.
   * @returns true when taken; false on timeout, or at once with `{ block: false }` when none is free.
   */
  async acquire(options?: BlockOptions): Promise<boolean> {
    const deadline = deadlineOfOptions(options, `${this.kind}.acquire()`);
    if (await this.#try()) return true;
    if (!blocks(options ?? {}) || remaining(deadline) === 0) return false;
    const watch = await this.conn.waker.watch(this.#channel, deadline);
    try {
      for (;;) {
        if (await this.#try()) return true;
        const left = remaining(deadline);
        if (left === 0) return false;
        await watch.wait(Math.min(left, SLICE_MS));
      }
    } finally {
      watch.close();
    }
  }

  /**
   * Gives a unit back and wakes the waiters.
   * @throws ValueError for a BoundedSemaphore already at its initial value (released too many times).
   */
  async release(): Promise<void> {
    const [ok, v, m] = (await this.#change('release()', RELEASE)) as [number, number, number];
    if (Number(ok) === 1) return;
    throw new ValueError(
      Number(m) >= 0
        ? `BoundedSemaphore '${this.name}' released too many times: its value is already ${v}, the value it was made with; release only what you acquired (withLock pairs them)`
        : `Semaphore '${this.name}' value would pass ${MAX_VALUE}`,
    );
  }

  /** Units free now (Python's `get_value()`). */
  async getValue(): Promise<number> {
    return Number(await this.script('getValue()', VALUE, [this.prefix], this.#args()));
  }

  /** Runs `fn` holding a unit and gives it back however `fn` ends. */
  async withLock<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      await this.release();
    }
  }

  /** Not over a network: use `await sem.acquire()`. */
  acquireSync(): never {
    throw notOverNetwork(`${this.kind}.acquireSync()`, 'await sem.acquire()');
  }

  /** Not over a network: use `await sem.withLock(fn)`. */
  withLockSync(): never {
    throw notOverNetwork(`${this.kind}.withLockSync()`, 'await sem.withLock(fn)');
  }
}

/** A cluster semaphore whose `release()` refuses to pass its initial value (`mp.BoundedSemaphore`). */
export class ClusterBoundedSemaphore extends ClusterSemaphore {
  override get kind(): ClusterKind {
    return 'BoundedSemaphore';
  }

  protected override get bound(): number {
    return this.initialValue;
  }
}

registerClusterKind('Semaphore', (conn, name, s) => new ClusterSemaphore(conn, s['value'] as number, { name }));
registerClusterKind('BoundedSemaphore', (conn, name, s) => new ClusterBoundedSemaphore(conn, s['value'] as number, { name }));
