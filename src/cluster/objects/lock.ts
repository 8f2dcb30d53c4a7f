/**
 * Lock and RLock on Redis.
 *
 * Keys, under the lock's hash tag `{mpts:Lock:<name>}` (RLock: `RLock`):
 * - `…:holder`: the holder's token (random per acquire() call), set
 *   only when the key is free, with a ttl: at most one holder, and a holder
 *   that died frees the lock when its ttl runs out. A repeat of an acquire
 *   (ioredis sends a command again when the connection dropped before its
 *   answer) that finds its own token there answers as the first run did;
 * - `…:freed`: the tokens released last (64, for a few minutes), for a repeat of a release;
 * - `…:fence`: the fencing token (`lock.fencingToken`), set by every
 *   acquisition, in the same script, to the larger of the last token + 1
 *   and Redis' clock in microseconds (`TIME`): strictly increasing, also
 *   across a Redis restart that lost the key (no persistence) and
 *   `unlink()`, as long as the server's clock does not step back past the
 *   last token. A store guarded by the lock can use it to refuse writes
 *   from a holder whose lock expired under it (paused past its ttl). The
 *   tokens are large numbers (microseconds since 1970, about 1.8e15) but
 *   safe integers (below 2^53 until the year 2255);
 * - channel `…:free`: published by the release script.
 *
 * A holder's process renews its ttl (a watchdog every third of it) for as
 * long as it lives and holds the lock, so the ttl bounds how long a dead
 * holder blocks others, not how long a live one may hold. Release and
 * renewal are Lua scripts that act only when the token is the caller's:
 * a lock is released only by its holder.
 *
 * Waiting: an acquirer that finds the lock held subscribes to `…:free`
 * (wake.ts), tries again, and sleeps until a release is published or the
 * holder's remaining ttl passes (an expiry publishes nothing), bounded by
 * its timeout. No polling in between.
 *
 * RLock ownership follows the local RLock (sync/lock.ts): a bare
 * `acquire()` is held by this thread of this process (any of its code may
 * re-enter or release it); `withLock` scopes the hold to its callback's
 * async chain, so concurrent tasks of one process exclude each other and
 * re-entry works along one chain. The recursion is counted here, in the
 * process; Redis holds one token per holding process.
 */
import { MAX_TIMER_MS } from '../../timer-limit.js';
import { ClusterError, ValueError } from '../../errors.js';
import { currentTask, isWithin, openTask, runInFrame, type Frame } from '../../async-context.js';
import { blocks, deadlineOfOptions, remaining, type BlockOptions } from '../../sync/waiting.js';
import { objectKey, randomName } from '../keys.js';
import { ObjectClients, Script } from './connection.js';
import { ClusterObject, checkMs, notOverNetwork, objectOptions, registerClusterKind, type ClusterKind, type ClusterObjectOptions, type Settings } from './base.js';

/** Default ttl of a hold: how long a dead holder keeps others out. */
export const DEFAULT_LOCK_TTL_MS = 30_000;
/** The longest one sleep of a waiter lasts before it looks again (a lost wake costs at most this). */
const SLICE_MS = 5_000;

/** Options of `ctx.Lock` and `ctx.RLock`. */
export interface ClusterLockOptions extends ClusterObjectOptions {
  /**
   * Milliseconds a hold lasts without renewal (default 30,000): the holder's
   * process renews it while it lives, so this is how long a holder that
   * died (or froze, or lost its network) keeps the lock from others.
   */
  readonly ttl?: number;
}

/** How long releases are remembered, for a repeat of one (ms; see RELEASE). */
const REMEMBER_MS = 300_000;
/** How many of the latest releases are remembered. */
const FREED_KEPT = 64;

/**
 * Takes the lock for the token ARGV[1] (one per acquire() call), or finds
 * it taken by that token already: a repeat of this call, sent again after
 * a dropped connection lost the first run's answer, answers as the first
 * run did (won, with the fencing token it issued: no acquisition came
 * since, or the holder would be another token). Without this the repeat
 * found the lock held and the caller waited for itself until the ttl.
 */
const ACQUIRE = new Script(
  'lock-acquire',
  2,
  `local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return {1, redis.call('GET', KEYS[2]) or '0'} end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local t = redis.call('TIME')
  local token = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  -- %.0f: Lua would write a number this large in exponent form, losing digits.
  local text = string.format('%.0f', token)
  redis.call('SET', KEYS[2], text)
  return {1, text}
end
return {0, redis.call('PTTL', KEYS[1])}`,
);

/**
 * Releases the hold of token ARGV[1]. The tokens released last (up to
 * FREED_KEPT, for a while) are kept in the list KEYS[2], so a repeat of a
 * release (sent again after a dropped connection) answers "released"
 * rather than "lost", also when others took and released the lock in
 * between.
 */
const RELEASE = new Script(
  'lock-release',
  2,
  `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('LTRIM', KEYS[2], 0, ${FREED_KEPT - 1})
  redis.call('PEXPIRE', KEYS[2], ${REMEMBER_MS})
  redis.call('PUBLISH', ARGV[2], '1')
  return 1
end
if redis.call('LPOS', KEYS[2], ARGV[1]) then return 1 end
if v then return -1 end
return 0`,
);

const EXTEND = new Script(
  'lock-extend',
  1,
  `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`,
);

/**
 * One hold at a time of one lock key: takes it (waiting), renews it while
 * held, lets it go. Lock keeps one per object, RLock one per process.
 */
class Lease {
  /** The token of the hold, while held. */
  token: string | null = null;
  /** The fencing token of the latest acquisition. */
  fence: number | null = null;
  #watchdog: NodeJS.Timeout | null = null;
  #lost = false;
  readonly holder: string;
  readonly fenceKey: string;
  readonly freedKey: string;
  readonly channel: string;

  constructor(
    readonly conn: ObjectClients,
    prefix: string,
    readonly label: string,
  ) {
    this.holder = `${prefix}:holder`;
    this.fenceKey = `${prefix}:fence`;
    this.freedKey = `${prefix}:freed`;
    this.channel = `${prefix}:free`;
  }

  /** Takes the lock by `deadline` (a `performance.now()` time); false when it ran out, or at once when not `block`ing. */
  async take(deadline: number, block: boolean, ttl: number): Promise<boolean> {
    const token = `${process.pid}-${randomName()}`;
    let pttl = await this.#try(token, ttl);
    if (pttl === true) return true;
    if (!block || remaining(deadline) === 0) return false;
    const watch = await this.conn.waker.watch(this.channel, deadline);
    try {
      for (;;) {
        pttl = await this.#try(token, ttl);
        if (pttl === true) return true;
        const left = remaining(deadline);
        if (left === 0) return false;
        // An expiry publishes nothing: wake when the holder's ttl is out.
        await watch.wait(Math.min(left, SLICE_MS, pttl >= 0 ? pttl + 5 : SLICE_MS));
      }
    } finally {
      watch.close();
    }
  }

  /** One attempt: true when taken, else the holder's remaining ttl (ms; negative when unknown). */
  async #try(token: string, ttl: number): Promise<true | number> {
    const [won, n] = (await this.conn.script(`${this.label}.acquire()`, ACQUIRE, [this.holder, this.fenceKey], [token, ttl], (late) => {
      // Taken after the acquire() gave up (Redis was that slow): nobody here holds it, so it goes now, not after its ttl.
      if (Number((late as [number])[0]) === 1) return this.conn.script(`${this.label} give back`, RELEASE, [this.holder, this.freedKey], [token, this.channel]);
    })) as [number, number];
    if (won !== 1) return Number(n);
    this.token = token;
    this.fence = Number(String(n));
    this.#lost = false;
    this.#startWatchdog(token, ttl);
    return true;
  }

  #startWatchdog(token: string, ttl: number): void {
    this.#stopWatchdog();
    const timer = setInterval(() => {
      this.conn
        .script(`${this.label} renewal`, EXTEND, [this.holder], [token, ttl])
        .then((ok) => {
          if (Number(ok) === 1 || this.token !== token) return;
          // Expired under us (the event loop or the network stalled past the ttl), or Redis lost it.
          this.#lost = true;
          this.#stopWatchdog();
        })
        // Unreachable for now: the next renewal tries again; past the ttl the hold is lost.
        .catch(() => {});
    }, Math.max(10, Math.floor(ttl / 3)));
    // A hold must not keep its process alive: a process that ends frees the lock after the ttl.
    timer.unref();
    this.#watchdog = timer;
  }

  #stopWatchdog(): void {
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#watchdog = null;
  }

  /** Lets the hold go. @throws ClusterError when it had been lost (expired, or Redis restarted empty). */
  async give(): Promise<void> {
    const token = this.token;
    if (token === null) throw new ValueError(`${this.label}.release(): not held`);
    this.token = null;
    this.#stopWatchdog();
    const outcome = Number(await this.conn.script(`${this.label}.release()`, RELEASE, [this.holder, this.freedKey], [token, this.channel]));
    if (outcome === 1) return;
    throw new ClusterError(
      `${this.label}.release(): the hold had been lost before this release (${outcome === -1 ? 'another holder has the lock now' : 'the lock was free'}${this.#lost ? '; its renewal had failed' : ''}): ` +
        'its ttl ran out without a renewal (the event loop or the network stalled for longer than the ttl) or Redis restarted without its data; ' +
        'guard writes with lock.fencingToken, or give the lock a longer ttl',
    );
  }
}

function lockOptions(options: ClusterLockOptions | undefined, kind: string): { name: string | undefined; ttl: number } {
  const o = objectOptions(options, kind);
  return { name: o.name, ttl: o.ttl === undefined ? DEFAULT_LOCK_TTL_MS : checkMs(o.ttl, `${kind} ttl`, 100) };
}

/**
 * A lock shared by processes on any machine that reach one Redis: the
 * cluster form of `mp.Lock`. Not re-entrant; released only by the object
 * that holds it; a hold of a process that died ends after `ttl` ms.
 * @example
 * ```ts
 * const ctx = mp.getContext('redis://10.0.0.5:6379/0');
 * const lock = new ctx.Lock({ name: 'ledger' });
 * await lock.withLock(async () => {
 *   await store.write(record, lock.fencingToken); // the store refuses older tokens
 * });
 * ```
 */
export class ClusterLock extends ClusterObject {
  readonly #lease: Lease;
  /** Milliseconds a hold lasts without renewal. */
  readonly ttl: number;

  /** @internal Made by a cluster context (`new ctx.Lock(options)`). */
  constructor(conn: ObjectClients, options?: ClusterLockOptions) {
    const { name, ttl } = lockOptions(options, 'Lock');
    super(conn, 'Lock', name);
    this.ttl = ttl;
    this.#lease = new Lease(conn, this.prefix, `Lock('${this.name}')`);
  }

  get kind(): ClusterKind {
    return 'Lock';
  }

  protected override settings(): Settings {
    return { ttl: this.ttl };
  }

  protected redisKeys(): string[] {
    return [this.#lease.holder, this.#lease.fenceKey, this.#lease.freedKey];
  }

  /**
   * Takes the lock, waiting (without polling) while another holds it.
   * @returns true when taken; false on timeout, or at once with `{ block: false }` when held.
   */
  async acquire(options?: BlockOptions): Promise<boolean> {
    const deadline = deadlineOfOptions(options, 'Lock.acquire()');
    return this.#lease.take(deadline, blocks(options ?? {}), this.ttl);
  }

  /**
   * Lets the lock go.
   * @throws ValueError when this object does not hold it.
   * @throws ClusterError when its hold had been lost meanwhile (the ttl ran out unrenewed).
   */
  release(): Promise<void> {
    if (this.#lease.token === null) {
      return Promise.reject(new ValueError(`release() of cluster Lock '${this.name}', which this object does not hold (a cluster lock is released only by its holder)`));
    }
    return this.#lease.give();
  }

  /** Whether this object holds the lock (as far as it knows: a hold whose renewal failed may have expired). */
  held(): boolean {
    return this.#lease.token !== null;
  }

  /**
   * The fencing token of this object's latest acquisition (null before the
   * first): a number that grows with every acquisition of the lock by anyone,
   * also across a Redis restart that lost it; a large one (Redis' clock in
   * microseconds, or the last token + 1), always a safe integer.
   */
  get fencingToken(): number | null {
    return this.#lease.fence;
  }

  /** Runs `fn` holding the lock and releases it however `fn` ends; returns what `fn` returns. */
  async withLock<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      await this.release();
    }
  }

  /** Not over a network: use `await lock.acquire()`. */
  acquireSync(): never {
    throw notOverNetwork('Lock.acquireSync()', 'await lock.acquire()');
  }

  /** Not over a network: use `await lock.withLock(fn)`. */
  withLockSync(): never {
    throw notOverNetwork('Lock.withLockSync()', 'await lock.withLock(fn)');
  }
}

/** An RLock entry taken by a bare `acquire()`: held by the process (its thread), not a task. */
const BARE = Symbol('bare acquire');

/** This isolate's record of one RLock: who holds it here and how deep. */
interface Hold {
  readonly lease: Lease;
  /** One entry per acquisition still held: the withLock frame that took it, or BARE. */
  entries: Array<Frame | typeof BARE>;
  /** The task frame holding it (null: the whole thread). */
  owner: Frame | null;
  /** A task of this isolate is acquiring it in Redis: others wait here first. */
  busy: boolean;
  waiters: Array<() => void>;
}

const holds = new WeakMap<ObjectClients, Map<string, Hold>>();

function holdOf(conn: ObjectClients, prefix: string, label: string): Hold {
  let byPrefix = holds.get(conn);
  if (!byPrefix) holds.set(conn, (byPrefix = new Map()));
  let hold = byPrefix.get(prefix);
  if (!hold) byPrefix.set(prefix, (hold = { lease: new Lease(conn, prefix, label), entries: [], owner: null, busy: false, waiters: [] }));
  return hold;
}

function notifyLocal(hold: Hold): void {
  const waiters = hold.waiters;
  hold.waiters = [];
  for (const wake of waiters) wake();
}

/** Resolves true when this isolate's record of the lock changes, false after `ms`. */
function localChange(hold: Hold, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const wake = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      const i = hold.waiters.indexOf(wake);
      if (i >= 0) hold.waiters.splice(i, 1);
      resolve(false);
    }, Math.min(ms, MAX_TIMER_MS));
    hold.waiters.push(wake);
  });
}

/**
 * A re-entrant lock shared by processes on any machine that reach one
 * Redis: the cluster form of `mp.RLock`. The holder (this process's
 * thread for a bare `acquire()`, the callback's async chain inside
 * `withLock`) may acquire it again and must release it as often.
 * @example
 * ```ts
 * const lock = new ctx.RLock({ name: 'accounts' });
 * await lock.withLock(async () => {
 *   await lock.withLock(async () => { … }); // re-entry along one chain
 * });
 * ```
 */
export class ClusterRLock extends ClusterObject {
  readonly #hold: Hold;
  readonly ttl: number;
  readonly #of: string | undefined;

  /** @internal Made by a cluster context (`new ctx.RLock(options)`), or by a Value for its lock (`of`). */
  constructor(conn: ObjectClients, options?: ClusterLockOptions, of?: { kind: 'Value'; prefix: string }) {
    const { name, ttl } = lockOptions(options, 'RLock');
    super(conn, 'RLock', name, of ? `${of.prefix}:lock` : undefined);
    this.ttl = ttl;
    this.#of = of?.kind;
    this.#hold = holdOf(conn, this.prefix, `RLock('${this.name}')`);
  }

  get kind(): ClusterKind {
    return 'RLock';
  }

  protected override settings(): Settings {
    return this.#of ? { ttl: this.ttl, of: this.#of } : { ttl: this.ttl };
  }

  protected redisKeys(): string[] {
    return [this.#hold.lease.holder, this.#hold.lease.fenceKey, this.#hold.lease.freedKey];
  }

  /**
   * Takes the lock, or re-enters it when the running chain holds it.
   * @returns true when taken; false on timeout, or at once with `{ block: false }` when another holds it.
   */
  async acquire(options?: BlockOptions): Promise<boolean> {
    return this.#acquire(deadlineOfOptions(options, 'RLock.acquire()'), blocks(options ?? {}), null);
  }

  async #acquire(deadline: number, block: boolean, frame: Frame | null): Promise<boolean> {
    const hold = this.#hold;
    const task = frame ?? currentTask();
    for (;;) {
      if (hold.lease.token !== null) {
        if (isWithin(hold.owner, task)) {
          hold.entries.push(frame ?? BARE);
          if (frame !== null) hold.owner = frame;
          return true;
        }
      } else if (!hold.busy) {
        hold.busy = true;
        let won = false;
        try {
          won = await hold.lease.take(deadline, block, this.ttl);
        } finally {
          hold.busy = false;
          if (won) {
            hold.entries = [frame ?? BARE];
            hold.owner = frame;
          }
          notifyLocal(hold);
        }
        return won;
      }
      // Another task of this process holds it, or is acquiring it: wait here for it.
      const left = block ? remaining(deadline) : 0;
      if (left === 0 || !(await localChange(hold, left))) return false;
    }
  }

  /**
   * Releases one acquisition; the last one lets the lock go.
   * @throws ValueError when the running code does not hold it.
   */
  release(): Promise<void> {
    return this.#releaseIn(null);
  }

  async #releaseIn(frame: Frame | null): Promise<void> {
    const hold = this.#hold;
    const mark = frame ?? BARE;
    const at = hold.entries.lastIndexOf(mark);
    if (hold.lease.token === null || at < 0) {
      throw new ValueError(
        frame === null
          ? `release() of cluster RLock '${this.name}', which this process did not acquire() (a withLock callback's hold is released by withLock itself)`
          : `release() of cluster RLock '${this.name}' by a withLock that does not hold it`,
      );
    }
    hold.entries.splice(at, 1);
    if (hold.entries.length > 0) {
      let owner: Frame | null = null;
      for (let i = hold.entries.length - 1; i >= 0; i--) {
        const e = hold.entries[i]!;
        if (e !== BARE) {
          owner = e;
          break;
        }
      }
      if (owner !== hold.owner) {
        hold.owner = owner;
        notifyLocal(hold);
      }
      return;
    }
    hold.owner = null;
    const released = hold.lease.give();
    notifyLocal(hold);
    await released;
  }

  /** The fencing token of the latest acquisition of this lock by this process (null before the first). */
  get fencingToken(): number | null {
    return this.#hold.lease.fence;
  }

  /** Runs `fn` holding the lock (re-entering along its chain) and releases it however `fn` ends. */
  withLock<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    const frame = openTask();
    return runInFrame(frame, async (): Promise<Awaited<T>> => {
      await this.#acquire(Infinity, true, frame);
      try {
        return await fn();
      } finally {
        frame.done = true;
        await this.#releaseIn(frame);
      }
    });
  }

  /** Not over a network: use `await lock.acquire()`. */
  acquireSync(): never {
    throw notOverNetwork('RLock.acquireSync()', 'await lock.acquire()');
  }

  /** Not over a network: use `await lock.withLock(fn)`. */
  withLockSync(): never {
    throw notOverNetwork('RLock.withLockSync()', 'await lock.withLock(fn)');
  }
}

registerClusterKind('Lock', (conn, name, s) => new ClusterLock(conn, { name, ttl: s['ttl'] as number | undefined }));
registerClusterKind('RLock', (conn, name, s) => {
  const ttl = s['ttl'] as number | undefined;
  if (s['of'] === undefined) return new ClusterRLock(conn, { name, ttl });
  if (s['of'] !== 'Value') throw new ValueError(`a cluster RLock descriptor names an unknown owner kind (${String(s['of'])})`);
  return new ClusterRLock(conn, { name, ttl }, { kind: 'Value', prefix: objectKey('Value', name) });
});
