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
 * That holds only once Redis confirmed the subscription, and a subscriber
 * connection can die without a word (a NAT or firewall dropping an idle
 * socket answers nothing). So no wait depends on it:
 * - `watch()` waits for the confirmation a short while at most (bounded
 *   by the caller's deadline too); a watch still unconfirmed sleeps in
 *   short slices (`UNCONFIRMED_SLICE_MS`): its waiter polls until then;
 * - a subscription Redis does not confirm within the connect timeout
 *   means the connection is dead: it is dropped and a new one made (after
 *   a pause when the connection could not even be opened), which
 *   subscribes every watched channel again;
 * - a confirmation that comes after `watch()` returned (a slow or a new
 *   connection) wakes its watches: their waiters look at the state again
 *   before sleeping, since what was published before it reached nobody.
 *   The same when a connection closes: ioredis would reconnect it, but
 *   pub/sub delivers nothing to a connection that is down, so it is
 *   replaced the same way and every watch looks again (as on a server
 *   restart, `wakeAll`);
 * - a connection that dies after its confirmations is noticed by a PING
 *   (sent while watches wait and the connection has said nothing for a
 *   second: one PING at a time per process, whatever the number of
 *   watches) that gets no answer within the connect timeout, or by TCP
 *   keepalive (redis.ts), and replaced the same way: a waiter learns of
 *   it within about a second and the time limit, not at the end of its
 *   sleep.
 * Sleeps are still cut into slices by their callers (a few seconds), so a
 * wake lost some other way costs a slice, never a hang.
 */
import { MAX_TIMER_MS } from '../../timer-limit.js';
import type { RedisClient } from '../redis.js';
import { remaining } from '../../sync/futex.js';

/** How long a waiter sleeps at most while its subscription is not confirmed: it looks again after that. */
export const UNCONFIRMED_SLICE_MS = 250;
/** A confirmed watch that slept this long without a message has the connection checked (a PING answered within the time limit). */
const CHECK_AFTER_MS = 1_000;
/** The pause before a new subscriber connection after one could not be opened (Redis down: no busy loop). */
const REOPEN_PAUSE_MS = 500;

/** One waiter's subscription to one channel. */
export class Watch {
  #pending = false;
  #wake: (() => void) | null = null;
  #closed = false;
  #confirmed = false;
  /** Whether its waiter has it (`watch()` returned): a confirmation after that makes it look again. */
  #handedOut = false;
  /** `watch()` waiting for the confirmation. */
  #onConfirm: (() => void) | null = null;

  constructor(
    readonly channel: string,
    private readonly onClose: (watch: Watch) => void,
  ) {}

  /** Whether Redis confirmed the subscription on the current connection (messages reach it). */
  get confirmed(): boolean {
    return this.#confirmed;
  }

  /** @internal A message arrived (or a reconnect): the next or current `wait` returns. */
  notify(): void {
    this.#pending = true;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** @internal Redis confirmed the subscription. */
  confirm(): void {
    if (this.#confirmed || this.#closed) return;
    this.#confirmed = true;
    this.#onConfirm?.();
    // Published before the confirmation reached nobody: look again.
    if (this.#handedOut) this.notify();
  }

  /** @internal The connection went: sleeps are short until a new one confirms; the waiter looks again now. */
  unconfirm(): void {
    if (!this.#confirmed) return;
    this.#confirmed = false;
    if (this.#handedOut) this.notify();
  }

  /** @internal Resolves when confirmed or after `ms`, then the waiter has it. */
  async handOut(ms: number): Promise<void> {
    if (!this.#confirmed && ms > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => resolve(), ms);
        this.#onConfirm = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#onConfirm = null;
    }
    this.#handedOut = true;
  }

  /**
   * Sleeps until a message arrives on the channel (one that arrived since the
   * last wait counts) or `ms` pass; at most `UNCONFIRMED_SLICE_MS` while the
   * subscription is not confirmed (messages may not reach it).
   * @returns true when woken (by a message, a confirmation, a lost
   *   connection: look again), false when the time ran out.
   */
  wait(ms: number): Promise<boolean> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve(true);
    }
    if (this.#closed) return Promise.resolve(false);
    const sleep = this.#confirmed ? ms : Math.min(ms, UNCONFIRMED_SLICE_MS);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve(false);
      }, Math.max(0, Math.min(sleep, MAX_TIMER_MS)));
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

/** One subscriber connection, from its opening until it is replaced. */
class Subscriber {
  redis: RedisClient | null = null;
  /** Channels Redis confirmed on this connection. */
  readonly confirmed = new Set<string>();
  /** Channels whose SUBSCRIBE is on its way. */
  readonly asked = new Set<string>();
  retired = false;
  /** A PING is on its way (see `Waker.#check`). */
  checking = false;
  /** When the connection was last heard from (a message, a confirmation, a PING's answer; `performance.now()`). */
  heard = performance.now();
  constructor(readonly ready: Promise<RedisClient>) {}
}

/** The subscriber of one context in this process. */
export class Waker {
  readonly #open: () => Promise<RedisClient>;
  readonly #hold: () => () => void;
  readonly #timeoutMs: number;
  readonly #closed: () => boolean;
  /** Watches alive, by channel. */
  readonly #channels = new Map<string, Set<Watch>>();
  #current: Subscriber | null = null;
  #reopen: NodeJS.Timeout | null = null;
  /** Watches alive, and the hold that keeps the process alive while there are any. */
  #watching = 0;
  #release: (() => void) | null = null;
  /** The check of a silent connection, running while there are watches. */
  #liveness: NodeJS.Timeout | undefined;

  /**
   * @param open makes a subscriber connection.
   * @param hold keeps the process alive until the function it returns is called.
   * @param timeoutMs how long Redis may take to confirm a subscription before the connection is taken for dead.
   * @param closed whether the context is closed (no new connection then).
   */
  constructor(open: () => Promise<RedisClient>, hold: () => () => void, timeoutMs: number, closed: () => boolean) {
    this.#open = open;
    this.#hold = hold;
    this.#timeoutMs = timeoutMs;
    this.#closed = closed;
  }

  /**
   * Subscribes a new watch to `channel`. Resolves once Redis confirmed the
   * subscription, or unconfirmed after a short while (never past
   * `deadline`, a `performance.now()` time): its waits are then short, and
   * it is woken once confirmed. Never rejects: a subscriber that cannot
   * connect leaves the waiter polling, and its own calls report Redis' state.
   */
  async watch(channel: string, deadline: number): Promise<Watch> {
    const watch = new Watch(channel, (w) => this.#unwatch(w));
    if (this.#watching++ === 0) {
      this.#release = this.#hold();
      // While anyone waits: a connection silent for a second is asked whether it still answers (#check), looked at twice a second.
      this.#liveness = setInterval(() => {
        const current = this.#current;
        if (current?.redis && current.confirmed.size > 0 && performance.now() - current.heard >= CHECK_AFTER_MS) this.#check();
      }, CHECK_AFTER_MS / 2);
      this.#liveness.unref();
    }
    let watches = this.#channels.get(channel);
    if (!watches) this.#channels.set(channel, (watches = new Set()));
    watches.add(watch);
    const subscriber = this.#subscriber();
    if (subscriber?.confirmed.has(channel)) watch.confirm();
    else if (subscriber) this.#ask(subscriber, channel);
    await watch.handOut(Math.min(remaining(deadline), UNCONFIRMED_SLICE_MS));
    return watch;
  }

  /** Wakes every watch (they look again): after a server restart. */
  wakeAll(): void {
    for (const watches of this.#channels.values()) for (const watch of watches) watch.notify();
  }

  /** The current subscriber connection, opened if there is none (null while a reopen waits, or once closed). */
  #subscriber(): Subscriber | null {
    if (this.#current) return this.#current;
    if (this.#reopen || this.#closed()) return null;
    const subscriber = new Subscriber(this.#open());
    this.#current = subscriber;
    subscriber.ready.then(
      (redis) => {
        subscriber.redis = redis;
        if (subscriber.retired) {
          redis.disconnect();
          return;
        }
        redis.on('message', (channel: string) => {
          subscriber.heard = performance.now();
          const watches = this.#channels.get(channel);
          if (watches) for (const watch of watches) watch.notify();
        });
        // ioredis would reconnect and subscribe again, but what was published meanwhile is lost: start over, everyone looks again.
        redis.once('close', () => this.#retire(subscriber, 0));
      },
      () => this.#retire(subscriber, REOPEN_PAUSE_MS),
    );
    for (const channel of this.#channels.keys()) this.#ask(subscriber, channel);
    return subscriber;
  }

  /** Subscribes `channel` on `subscriber`; a confirmation later than the time limit retires the connection. */
  #ask(subscriber: Subscriber, channel: string): void {
    if (subscriber.asked.has(channel) || subscriber.confirmed.has(channel)) return;
    subscriber.asked.add(channel);
    let timer: NodeJS.Timeout | undefined;
    subscriber.ready
      .then((redis) => {
        timer = setTimeout(() => this.#retire(subscriber, 0), this.#timeoutMs);
        timer.unref();
        return redis.subscribe(channel);
      })
      .then(
        () => {
          subscriber.asked.delete(channel);
          if (subscriber.retired) return;
          const watches = this.#channels.get(channel);
          if (!watches) {
            // Its last watch closed meanwhile.
            void subscriber.redis?.unsubscribe(channel).catch(() => {});
            return;
          }
          subscriber.confirmed.add(channel);
          subscriber.heard = performance.now();
          for (const watch of watches) watch.confirm();
        },
        () => {
          subscriber.asked.delete(channel);
          this.#retire(subscriber, REOPEN_PAUSE_MS);
        },
      )
      .finally(() => clearTimeout(timer));
  }

  /**
   * Checks that the connection still answers: one that died after its
   * subscriptions were confirmed says nothing (until TCP keepalive gives up
   * on it), and its watches would sleep whole slices.
   */
  #check(): void {
    const subscriber = this.#current;
    const redis = subscriber?.redis;
    if (!subscriber || !redis || subscriber.checking || subscriber.retired) return;
    subscriber.checking = true;
    const timer = setTimeout(() => this.#retire(subscriber, 0), this.#timeoutMs);
    timer.unref();
    // PING is allowed in subscriber mode; a failure closes the connection, which retires it.
    redis
      .ping()
      .then(() => (subscriber.heard = performance.now()))
      .catch(() => {})
      .finally(() => {
        clearTimeout(timer);
        subscriber.checking = false;
      });
  }

  /**
   * Drops a subscriber connection that died, stopped answering or could not
   * be opened; while watches remain, a new one is made after `pauseMs` and
   * subscribes them all again.
   */
  #retire(subscriber: Subscriber, pauseMs: number): void {
    if (subscriber.retired) return;
    subscriber.retired = true;
    subscriber.redis?.disconnect();
    if (this.#current !== subscriber) return;
    this.#current = null;
    for (const watches of this.#channels.values()) for (const watch of watches) watch.unconfirm();
    if (this.#channels.size === 0 || this.#closed()) return;
    if (pauseMs === 0) {
      this.#subscriber();
      return;
    }
    this.#reopen = setTimeout(() => {
      this.#reopen = null;
      if (this.#channels.size > 0) this.#subscriber();
    }, pauseMs);
    this.#reopen.unref();
  }

  #unwatch(watch: Watch): void {
    const watches = this.#channels.get(watch.channel);
    if (watches?.delete(watch) && watches.size === 0) {
      this.#channels.delete(watch.channel);
      const subscriber = this.#current;
      // One still asked is unsubscribed when its confirmation comes.
      if (subscriber?.confirmed.delete(watch.channel)) void subscriber.redis?.unsubscribe(watch.channel).catch(() => {});
    }
    if (--this.#watching === 0) {
      this.#release?.();
      this.#release = null;
      clearInterval(this.#liveness);
      this.#liveness = undefined;
    }
  }
}
