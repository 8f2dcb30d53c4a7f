/**
 * Wake-ups for cluster objects' waiters, over Redis pub/sub: one
 * subscriber connection per context and process, whatever the number of
 * waiters.
 *
 * A waiter subscribes to its object's channel *before* it looks at the
 * state (`watch`), then looks, then sleeps (`Watch.wait`) until a message
 * arrives or its slice ends. Every change a waiter may wait for is made by
 * a Lua script that publishes in the same step, so a change between the
 * look and the sleep is not missed: the message is counted by the watch
 * and the sleep returns at once (the futex protocol of the local
 * primitives, with the subscription standing for the sequence word).
 *
 * Pub/sub delivers nothing to a connection that is down: when the
 * subscriber reconnects (ioredis subscribes again by itself), every watch
 * is woken to look again, as is every watch when the server restarted.
 * Sleeps are still cut into slices by their callers (a few seconds), so a
 * wake lost some other way costs a slice, never a hang.
 */
import type { RedisClient } from '../redis.js';

interface Channel {
  readonly watches: Set<Watch>;
  /** Settles once Redis confirmed the subscription. */
  readonly subscribed: Promise<unknown>;
}

/** One waiter's subscription to one channel. */
export class Watch {
  #pending = false;
  #wake: (() => void) | null = null;
  #closed = false;

  constructor(
    readonly channel: string,
    private readonly onClose: (watch: Watch) => void,
  ) {}

  /** @internal A message arrived (or a reconnect): the next or current `wait` returns. */
  notify(): void {
    this.#pending = true;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /**
   * Sleeps until a message arrives on the channel (one that arrived since the
   * last wait counts) or `ms` pass.
   * @returns true when woken by a message, false when the time ran out.
   */
  wait(ms: number): Promise<boolean> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve(true);
    }
    if (this.#closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve(false);
      }, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
      this.#wake = () => {
        clearTimeout(timer);
        this.#pending = false;
        resolve(true);
      };
    });
  }

  /** Ends the subscription (the channel's is dropped with its last watch). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.notify();
    this.onClose(this);
  }
}

/** The subscriber of one context in this process. */
export class Waker {
  readonly #open: () => Promise<RedisClient>;
  readonly #hold: () => () => void;
  #subscriber: Promise<RedisClient> | null = null;
  readonly #channels = new Map<string, Channel>();
  /** Watches alive, and the hold that keeps the process alive while there are any. */
  #watching = 0;
  #release: (() => void) | null = null;

  /**
   * @param open makes the subscriber connection.
   * @param hold keeps the process alive until the function it returns is called.
   */
  constructor(open: () => Promise<RedisClient>, hold: () => () => void) {
    this.#open = open;
    this.#hold = hold;
  }

  /** Subscribes a new watch to `channel`; resolves once Redis confirmed the subscription. */
  async watch(channel: string): Promise<Watch> {
    const watch = new Watch(channel, (w) => this.#unwatch(w));
    if (this.#watching++ === 0) this.#release = this.#hold();
    try {
      let entry = this.#channels.get(channel);
      if (!entry) {
        const subscribed = this.#subscriberClient().then((redis) => redis.subscribe(channel));
        entry = { watches: new Set(), subscribed };
        this.#channels.set(channel, entry);
        subscribed.catch(() => {
          if (this.#channels.get(channel) === entry) this.#channels.delete(channel);
        });
      }
      entry.watches.add(watch);
      await entry.subscribed;
      return watch;
    } catch (err) {
      watch.close();
      throw err;
    }
  }

  /** Wakes every watch (they look again): after a reconnect or a server restart. */
  wakeAll(): void {
    for (const entry of this.#channels.values()) for (const watch of entry.watches) watch.notify();
  }

  #subscriberClient(): Promise<RedisClient> {
    if (!this.#subscriber) {
      this.#subscriber = this.#open().then((redis) => {
        redis.on('message', (channel: string) => {
          const entry = this.#channels.get(channel);
          if (entry) for (const watch of entry.watches) watch.notify();
        });
        // Messages published while it was down were lost: everyone looks again.
        redis.on('ready', () => this.wakeAll());
        redis.once('end', () => {
          this.#subscriber = null;
          this.#channels.clear();
        });
        return redis;
      });
      this.#subscriber.catch(() => (this.#subscriber = null));
    }
    return this.#subscriber;
  }

  #unwatch(watch: Watch): void {
    const entry = this.#channels.get(watch.channel);
    if (entry?.watches.delete(watch) && entry.watches.size === 0) {
      this.#channels.delete(watch.channel);
      void this.#subscriber?.then((redis) => redis.unsubscribe(watch.channel)).catch(() => {});
    }
    if (--this.#watching === 0) {
      this.#release?.();
      this.#release = null;
    }
  }
}
