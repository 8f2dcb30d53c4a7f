/**
 * Event on Redis.
 *
 * One hash per event, `{mpts:Event:<name>}`: `f` 1 while set, `s` a count
 * of `set()` calls. `set()` stores the flag, bumps the count and publishes
 * on `…:set` in one script; a waiter subscribes (wake.ts), then reads both,
 * and sleeps until a message. As the local Event, a wait returns true when
 * the flag is set, or when the count moved since the wait began (a `set()`
 * happened during it, even if a `clear()` followed before the waiter
 * looked). `clear()` wakes nobody.
 */
import { deadlineOfTimeout, remaining } from '../../sync/waiting.js';
import { ObjectClients, Script } from './connection.js';
import { ClusterObject, notOverNetwork, objectOptions, registerClusterKind, type ClusterKind, type ClusterObjectOptions } from './base.js';

/** The longest one sleep of a waiter lasts before it looks again. */
const SLICE_MS = 5_000;

const SET = new Script(
  'event-set',
  1,
  `redis.call('HSET', KEYS[1], 'f', '1')
redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('PUBLISH', ARGV[1], '1')
return 1`,
);

/**
 * A flag that processes on any machine wait on: the cluster form of `mp.Event`.
 * @example
 * ```ts
 * const ready = new ctx.Event({ name: 'model-loaded' });
 * // elsewhere: await ready.wait();       here: await ready.set();
 * ```
 */
export class ClusterEvent extends ClusterObject {
  readonly #channel: string;

  /** @internal Made by a cluster context (`new ctx.Event(options)`). */
  constructor(conn: ObjectClients, options?: ClusterObjectOptions) {
    super(conn, 'Event', objectOptions(options, 'Event').name);
    this.#channel = `${this.prefix}:set`;
  }

  get kind(): ClusterKind {
    return 'Event';
  }

  protected redisKeys(): string[] {
    return [this.prefix];
  }

  /** Whether the flag is set. */
  async isSet(): Promise<boolean> {
    return (await this.#read())[0];
  }

  /** Sets the flag and wakes every waiter, wherever it is. */
  async set(): Promise<void> {
    await this.script('set()', SET, [this.prefix], [this.#channel]);
  }

  /** Clears the flag; later waits wait again. */
  async clear(): Promise<void> {
    await this.conn.call(`Event('${this.name}').clear()`, (redis) => redis.hset(this.prefix, 'f', '0'));
  }

  async #read(): Promise<[boolean, string]> {
    const [f, s] = await this.conn.call(`Event('${this.name}')`, (redis) => redis.hmget(this.prefix, 'f', 's'));
    return [f === '1', s ?? '0'];
  }

  /**
   * Waits until the flag is set.
   * @param timeout milliseconds at most (negative means 0); forever when undefined.
   * @returns true when the flag is set (or was set during the wait), false on timeout.
   */
  async wait(timeout?: number): Promise<boolean> {
    const deadline = deadlineOfTimeout(timeout, 'Event.wait()');
    const [set] = await this.#read();
    if (set) return true;
    if (remaining(deadline) === 0) return false;
    const watch = await this.conn.waker.watch(this.#channel, deadline);
    try {
      // Read again once subscribed: a set() before the subscription was confirmed published to nobody
      // (a watch still unconfirmed is woken by its confirmation, and the loop reads again).
      const [flag, start] = await this.#read();
      if (flag) return true;
      for (;;) {
        const left = remaining(deadline);
        if (left === 0) return false;
        await watch.wait(Math.min(left, SLICE_MS));
        const [now, seq] = await this.#read();
        if (now || seq !== start) return true;
      }
    } finally {
      watch.close();
    }
  }

  /** Not over a network: use `await event.wait(timeout)`. */
  waitSync(): never {
    throw notOverNetwork('Event.waitSync()', 'await event.wait(timeout)');
  }
}

registerClusterKind('Event', (conn, name) => new ClusterEvent(conn, { name }));
