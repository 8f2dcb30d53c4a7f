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
import { ObjectClients, Script } from './connection.js';
import { ChangeScript } from './call-records.js';
import { ClusterObject, notOverNetwork, objectOptions, registerClusterKind, type ClusterKind, type ClusterObjectOptions, type Settings } from './base.js';

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
 * Acquire and release are changes (call-records.ts): a repeat of a call
 * that took or gave a unit answers as it did, and takes or gives none.
 */
const ACQUIRE = new ChangeScript(
  'semaphore-acquire',
  1,
  `if REPEATED then return 1 end
${INIT}
if v > 0 then
  redis.call('HINCRBY', KEYS[1], 'v', -1)
  RECORD()
  return 1
end
return 0`,
);

const RELEASE = new ChangeScript(
  'semaphore-release',
  1,
  `${INIT}
local m = tonumber(redis.call('HGET', KEYS[1], 'm') or '-1')
if REPEATED then return {1, v, m} end
if (m >= 0 and v >= m) or v >= ${MAX_VALUE} then return {0, v, m} end
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('PUBLISH', ARGV[3], '1')
RECORD()
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

  /** @internal Made by a cluster context (`new ctx.Semaphore(value, options)`). */
  constructor(conn: ObjectClients, value: number = 1, options?: ClusterObjectOptions) {
    const bounded = new.target === ClusterBoundedSemaphore;
    const kind = bounded ? 'BoundedSemaphore' : 'Semaphore';
    checkValue(value, kind);
    super(conn, kind, objectOptions(options, kind).name);
    this.initialValue = value;
    this.#channel = `${this.prefix}:released`;
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
    return [this.prefix];
  }

  #args(): (string | number)[] {
    return [this.initialValue, this.bound, this.#channel];
  }

  async #try(): Promise<boolean> {
    // One id for the give-back, however often it is tried: a try that timed out may still run.
    let backId: string | undefined;
    return (
      Number(
        await this.change('acquire()', ACQUIRE, [this.prefix], this.#args(), (late) => {
          // A unit taken after the acquire() gave up has no holder: it would be gone for good.
          if (Number(late) === 1) return this.change('give back', RELEASE, [this.prefix], this.#args(), undefined, (backId ??= this.newCallKey()));
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
    const [ok, v, m] = (await this.change('release()', RELEASE, [this.prefix], this.#args())) as [number, number, number];
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
