/**
 * The connections cluster objects (locks, queues, Event, Value, manager
 * proxies) use, per cluster URL and process: one command connection, one
 * subscriber for wake-ups (wake.ts), and blocking connections lent to one
 * blocking read (`BLMOVE`) at a time.
 *
 * They are not the pool's shared command connection, for one reason: a
 * child whose target used a cluster Lock must still end when its target
 * is done (the package's handles never keep a process alive), and an
 * open socket would keep it. So these sockets are unref'd whenever no
 * call of an object is in flight, and ref'd while one is (a pending
 * `await lock.acquire()` keeps the process alive, as a local wait does).
 *
 * Every call is bounded: ioredis queues commands while it reconnects and
 * would wait forever for a Redis that does not come back, so a call that
 * got no answer within `callTimeoutMs` (the context's connect timeout, 5 s
 * by default; blocking reads add their own block time) rejects with a
 * `ClusterError`. What such a call did is then unknown (it may run once
 * Redis is back); the message says so. A call that takes something (a
 * queue's `BLMOVE` or take script) says what to do with what it
 * returns after it was given up (`late`): its caller is gone, so the item
 * is put back, or it would be lost; the process is kept alive a while for
 * that answer.
 */
import { createHash } from 'node:crypto';
import { ClusterError } from '../../errors.js';
import { applyRef, DEFAULT_CONNECT_TIMEOUT_MS, onNewHandles, type ClusterClients, type RedisClient } from '../redis.js';
import { Waker } from './wake.js';

/** Blocking connections kept idle for the next blocking read (more are opened while more wait, and closed after). */
const IDLE_BLOCKING = 4;
/** Tries at putting back what a given-up call took, a second apart, before giving up with a warning. */
const PUT_BACK_TRIES = 10;
const PUT_BACK_PAUSE_MS = 1_000;

/**
 * What to do with the result of a call that arrives after the call was
 * given up at its time limit (its caller already has a `ClusterError`):
 * put back what it took. Retried while it fails (Redis away).
 */
export type Late<T> = (result: T) => Promise<unknown> | void;

/** A Lua script, loaded by its hash (`EVALSHA`) and sent whole only when Redis does not know it yet. */
export class Script {
  readonly sha: string;
  constructor(
    readonly name: string,
    /** How many keys it declares; -1 when that varies (a change script's record keys follow its own). */
    readonly keys: number,
    readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

const byClients = new WeakMap<ClusterClients, ObjectClients>();

/** The connections of the cluster objects of one context, in this process. */
export class ObjectClients {
  readonly clients: ClusterClients;
  /** The longest a call waits for an answer before it fails (ms). */
  readonly callTimeoutMs: number;
  readonly waker: Waker;
  #command: Promise<RedisClient> | null = null;
  readonly #idle: RedisClient[] = [];
  /** Every socket of ours, to ref while calls are in flight and unref after. */
  readonly #mine = new Set<RedisClient>();
  #inFlight = 0;
  readonly #restartListeners = new Set<() => void>();
  /** Why calls fail once the clients are closed, when something else than the context closed them (a manager's shutdown). */
  closedReason: string | null = null;

  private constructor(clients: ClusterClients) {
    this.clients = clients;
    this.callTimeoutMs = clients.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.waker = new Waker(
      () => this.#open('subscriber', () => this.clients.subscriberClient()),
      () => this.hold(),
      this.callTimeoutMs,
      () => this.clients.closed,
    );
    // A server that came back empty has lost every key: waiters look again (their state may be gone).
    clients.onRestart(() => {
      this.waker.wakeAll();
      for (const listener of this.#restartListeners) listener();
    });
  }

  /** The objects' connections of `clients` (one set per context and process). */
  static of(clients: ClusterClients): ObjectClients {
    let found = byClients.get(clients);
    if (!found) byClients.set(clients, (found = new ObjectClients(clients)));
    return found;
  }

  /** The URL with its password masked, for messages. */
  get url(): string {
    return this.clients.url.redacted;
  }

  /** Calls `listener` when the server is found to have restarted. */
  onRestart(listener: () => void): () => void {
    this.#restartListeners.add(listener);
    return () => this.#restartListeners.delete(listener);
  }

  /**
   * Runs `fn` on the command connection, keeping the process alive meanwhile,
   * and fails with a `ClusterError` naming `what` when Redis does not answer in time.
   */
  call<T>(what: string, fn: (redis: RedisClient) => Promise<T>, extraMs = 0, late?: Late<T>): Promise<T> {
    return this.#held(what, extraMs, async () => fn(await this.#commandClient()), late);
  }

  /** Runs one script (by its hash; whole when Redis does not know it). Bulk replies are Buffers. */
  script(what: string, script: Script, keys: readonly string[], args: readonly (string | Buffer | number)[], late?: Late<unknown>): Promise<unknown> {
    return this.call(what, (redis) => runScript(redis, script, keys, args), 0, late);
  }

  /**
   * Lends a connection of its own to one blocking read. After a read that
   * failed the connection is closed (its state is unknown); otherwise it
   * goes back to the idle ones.
   */
  blocking<T>(what: string, blockMs: number, fn: (redis: RedisClient) => Promise<T>, late?: Late<T>): Promise<T> {
    return this.#held(what, blockMs, async () => {
      const redis = this.#idle.pop() ?? (await this.#open('blocking'));
      let healthy = false;
      try {
        const result = await fn(redis);
        healthy = true;
        return result;
      } finally {
        if (healthy && this.#idle.length < IDLE_BLOCKING && redis.status === 'ready' && !this.clients.closed) this.#idle.push(redis);
        else redis.disconnect();
      }
    }, late);
  }

  /**
   * Keeps the process alive and bounds the wait while `fn` runs; a result
   * that comes after the bound goes to `late`.
   */
  async #held<T>(what: string, extraMs: number, fn: () => Promise<T>, late?: Late<T>): Promise<T> {
    if (this.clients.closed) throw new ClusterError(`${what}: ${this.closedReason ?? `the cluster context for ${this.url} is closed`}`);
    this.#ref(+1);
    let timer: NodeJS.Timeout | undefined;
    const limit = this.callTimeoutMs + extraMs;
    const running = fn();
    try {
      return await Promise.race([
        running,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => {
              if (late) this.#awaitLate(what, running, limit, late);
              reject(
                new ClusterError(
                  `${what}: ${this.url} did not answer within ${limit} ms (restarting, failing over or unreachable); ` +
                    'what the call did is unknown: it may still take effect once Redis is back',
                ),
              );
            },
            limit,
          );
        }),
      ]);
    } catch (err) {
      throw toClusterError(err, what, this.url);
    } finally {
      clearTimeout(timer);
      this.#ref(-1);
    }
  }

  /**
   * Hands the result of a call given up at its time limit to `late` (which
   * puts back what it took), keeping the process alive for it up to another
   * `limit` ms; `late` is tried again while it fails.
   */
  #awaitLate<T>(what: string, running: Promise<T>, limit: number, late: Late<T>): void {
    const release = this.hold();
    const cap = setTimeout(release, limit);
    cap.unref();
    running
      .then((result) => this.#retried(what, () => late(result)))
      .catch(() => {})
      .finally(() => {
        clearTimeout(cap);
        release();
      });
  }

  /**
   * Runs `task` (a put-back or a clean-up that must happen although its
   * caller is gone) in the background, keeping the process alive meanwhile,
   * and tries it again while it fails (Redis away), up to PUT_BACK_TRIES.
   */
  background(what: string, task: () => Promise<unknown>): void {
    const release = this.hold();
    void this.#retried(what, task).finally(release);
  }

  async #retried(what: string, task: () => Promise<unknown> | void): Promise<void> {
    for (let tries = 1; ; tries++) {
      try {
        await task();
        return;
      } catch (err) {
        if (this.clients.closed || tries >= PUT_BACK_TRIES) {
          process.emitWarning(`multiprocessing-ts: ${what}: not done after ${tries} tries (what it was to give back may be lost): ${(err as Error)?.message ?? err}`);
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, PUT_BACK_PAUSE_MS));
    }
  }

  #commandClient(): Promise<RedisClient> {
    if (!this.#command) {
      this.#command = this.#open('objects');
      this.#command.catch(() => (this.#command = null));
    }
    return this.#command;
  }

  async #open(role: string, open = () => this.clients.blockingClient(role)): Promise<RedisClient> {
    const redis = await open();
    this.#mine.add(redis);
    // ioredis makes a new socket at each reconnect, and a timer before it: give them the current state.
    onNewHandles(redis, () => this.#apply(redis));
    redis.once('end', () => {
      this.#mine.delete(redis);
      const i = this.#idle.indexOf(redis);
      if (i >= 0) this.#idle.splice(i, 1);
    });
    this.#apply(redis);
    return redis;
  }

  #ref(delta: number): void {
    const before = this.#inFlight;
    this.#inFlight += delta;
    if ((before === 0) !== (this.#inFlight === 0)) for (const redis of this.#mine) this.#apply(redis);
  }

  /**
   * Refs or unrefs one connection's socket, and its reconnect timer while
   * Redis is away, as the calls in flight say: an idle object whose Redis
   * went away must not keep its process alive retrying either.
   */
  #apply(redis: RedisClient): void {
    applyRef(redis, this.#inFlight > 0);
  }


  /** Counts a wait (a subscription) as a call in flight, so the process lives while it waits. */
  hold(): () => void {
    this.#ref(+1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#ref(-1);
    };
  }
}

/** Pause before a call a slot in migration refused is tried again (ms). */
export const SLOT_MOVING_PAUSE_MS = 100;

/**
 * Whether a Redis Cluster refused a call because its slot is being moved
 * (TRYAGAIN while the keys a script declares are split between nodes, or
 * ioredis giving up after its redirections): the call did not run, and the
 * same call may be sent again.
 */
export function slotMoving(err: unknown): boolean {
  const messages = [(err as Error)?.message, ((err as Error)?.cause as Error | undefined)?.message];
  return messages.some((m) => typeof m === 'string' && /TRYAGAIN|Too many Cluster redirections|non local key/.test(m));
}

/** `EVALSHA`, falling back to `EVAL` the first time Redis meets the script (or after it restarted). */
export async function runScript(redis: RedisClient, script: Script, keys: readonly string[], args: readonly (string | Buffer | number)[]): Promise<unknown> {
  if (script.keys >= 0 && keys.length !== script.keys) throw new Error(`internal: script ${script.name} takes ${script.keys} keys, got ${keys.length}`);
  try {
    return await redis.callBuffer('EVALSHA', script.sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (!/NOSCRIPT/.test((err as Error)?.message ?? '')) throw err;
    return redis.callBuffer('EVAL', script.source, keys.length, ...keys, ...args);
  }
}

/**
 * Redis' own errors and ioredis' as `ClusterError`s that say which call
 * failed where; ours pass through. Either way no cause down the chain keeps
 * the command it failed on (see `withoutCommand`).
 */
export function toClusterError(err: unknown, what: string, url: string): unknown {
  if (!(err instanceof Error)) return err;
  if (err.name === 'ClusterError' || !isRedisError(err)) {
    if (err.name === 'ClusterError') scrubCauses(err);
    return err;
  }
  return new ClusterError(`${what} on ${url}: ${err.message}`, { cause: withoutCommand(err) });
}

/**
 * A copy of an ioredis error without the command it failed on: ioredis
 * attaches `command: { name, args }`, and the args of a refused `AUTH` are
 * the password (`util.inspect(err)` and loggers print causes in full).
 * Name, message, code and stack are kept; the cause chain is scrubbed too.
 */
export function withoutCommand(err: Error): Error {
  const copy = new Error(err.message);
  Object.defineProperty(copy, 'name', { value: err.name, writable: true, configurable: true });
  copy.stack = err.stack;
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) (copy as { code?: unknown }).code = code;
  if (err.cause !== undefined) copy.cause = err.cause instanceof Error ? withoutCommand(err.cause) : err.cause;
  return copy;
}

/** Replaces, in place, the cause chain of one of our errors by copies without commands. */
function scrubCauses(err: Error): void {
  if (err.cause instanceof Error) err.cause = withoutCommand(err.cause);
}

function isRedisError(err: Error): boolean {
  return err.name === 'ReplyError' || err.name === 'AbortError' || err.name === 'MaxRetriesPerRequestError' || /Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE/.test(err.message);
}
