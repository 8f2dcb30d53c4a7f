/**
 * Queue, JoinableQueue and SimpleQueue on Redis.
 *
 * Keys, under the queue's hash tag `{mpts:<Kind>:<name>}`:
 * - `…:items`: a list of packed items (codec.ts), put at the right, taken
 *   from the left. `put` is a script that checks `maxsize` and pushes in
 *   one step, so a bounded queue never holds more;
 * - channel `…:room`: published when an item leaves a bounded queue, for
 *   producers waiting for room (wake.ts).
 *
 * Taking: a script takes an item if there is one; otherwise the consumer
 * blocks in Redis itself (`BLMOVE`, see `takeBlocking`) on a
 * connection lent to it alone (connection.ts), in slices of a few seconds.
 * A consumer `close()`d while it waits stops waiting at once; an item its
 * read still takes goes back to the head of the queue. So does an item
 * that a read or take script returns after its call was given up at its
 * time limit (`get()` rejected with a `ClusterError`; Redis, or the
 * network, was that slow): its caller is gone, and nobody else would ever
 * get it. (A bounded queue may then hold more than `maxsize` until its
 * consumers catch up: the item must not be lost.)
 *
 * JoinableQueue, at least once: `put()` tags each item with a random id
 * (16 bytes before the packed item), so every stored item is unique, and
 * increments `…:unfinished`. `get()` moves the item into the consumer's
 * own processing list `…:proc:<consumer>` (atomically, `LMOVE`/`BLMOVE`);
 * the queue object records, in the process, each item it holds and the
 * async chain (async-context.ts) whose `get()` took it. `taskDone()` removes
 * the item the caller finished (`LREM` of that exact item) and decrements
 * the count; `join()` waits on channel `…:done`, published when the count
 * reaches 0. Which item a `taskDone()` finished: the only one held; else
 * the only one its own chain took (chains are told apart inside
 * `withLock` callbacks and child targets). When neither tells (several
 * items taken by one chain, e.g. `Promise.all([q.get(), q.get()])`), the
 * done is counted in the process and no item is removed until every item
 * the object holds is done: an item still being worked on is never
 * removed, and if the consumer dies first all its items go back (the
 * finished ones run twice). Use one queue object per concurrent consumer
 * chain for exact acks (objects share their connections).
 *
 * Each consumer (one per queue object) keeps a lease `…:alive:<consumer>`
 * (`leaseMs`, renewed every third of it) while it holds items (even after
 * `close()`) or waits for one, and is listed in the set `…:consumers`. The
 * rule: **the items of a consumer whose lease lapsed go back to the head
 * of the queue**, oldest first, for another consumer; any consumer that is
 * about to wait, and every `join()`, applies it. A consumer that was only
 * slow (its event loop blocked past its lease) may then see its item
 * processed twice: at least once, never lost. A consumer also puts back,
 * before it waits, the items of its own list that the object does not
 * hold, when no other `get()` of the object is in flight: ones a given-up
 * read moved there whose answer never came (a dropped connection), which
 * its lease, renewed all along, would otherwise keep from everyone for the
 * consumer's whole life. Its late `taskDone()` finds
 * the item gone from its list, counts nothing (the consumer that has the
 * item now counts it) and rejects with a `ClusterError` saying the lease
 * lapsed. (The processing lists and leases are reached by a script that
 * does not declare them; they share the queue's hash tag, so on a Redis
 * Cluster they sit in its slot.)
 *
 * Items are copied at `put()` (a value that cannot be stored is refused
 * there, by its path); cluster objects inside items travel by name and
 * arrive live (codec.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { currentFrame, type Frame } from '../../async-context.js';
import { ClusterError, Empty, Full, StateError, ValueError } from '../../errors.js';
import { describe } from '../../describe.js';
import { deadlineOf } from '../../sync/futex.js';
import { remaining } from '../../sync/waiting.js';
import { pack, unpack } from '../codec.js';
import { randomName } from '../keys.js';
import { ObjectClients, Script } from './connection.js';
import { ChangeScript } from './call-records.js';
import { SLOT_MOVING_PAUSE_MS, slotMoving } from './connection.js';
import { ClusterObject, checkMs, notOverNetwork, objectOptions, registerClusterKind, type ClusterKind, type ClusterObjectOptions, type Settings } from './base.js';

/** The longest one blocking read or sleep lasts before the waiter looks again. */
const SLICE_MS = 2_000;
/** Default lease of a JoinableQueue consumer: how long a dead consumer's items wait before they go back. */
export const DEFAULT_LEASE_MS = 30_000;

/** Options of `put` and `get`, as Python's `(block=True, timeout=None)`. */
export interface ClusterQueueWaitOptions {
  /** `false` (or any falsy value but `undefined`): do not wait. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most; negative means 0. Default: forever. */
  timeout?: number;
}

/** Options of `ctx.JoinableQueue`. */
export interface ClusterJoinableQueueOptions extends ClusterObjectOptions {
  /**
   * Milliseconds a consumer's items stay its own without a renewal of its
   * lease (default 30,000): the consumer's process renews it while it holds
   * items, so this is how long the items of a consumer that died wait
   * before they are delivered again.
   */
  readonly leaseMs?: number;
}

const PUT = new ChangeScript(
  'queue-put',
  2,
  `if REPEATED then return tonumber(ANSWER) end
local max = tonumber(ARGV[1])
if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return -1 end
local n = redis.call('RPUSH', KEYS[1], ARGV[3])
if ARGV[2] == '1' then redis.call('INCR', KEYS[2]) end
RECORD(n)
return n`,
);

/**
 * Lua: puts back at the head of KEYS[1] the items of up to `limit` takes
 * listed in \`taking\` whose consumer never settled them in time (it died
 * between its read and its settling). Their lists are reached without
 * being declared (they share the queue's hash tag), so on a Redis Cluster
 * a slot in migration skips them for now.
 */
const RECOVER_TAKES = (taking: string, limit: number) => `do
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, stale in ipairs(redis.call('ZRANGEBYSCORE', ${taking}, '-inf', now, 'LIMIT', 0, ${limit})) do
    local items = redis.pcall('LRANGE', stale, 0, -1)
    if type(items) == 'table' and not items.err then
      for i = #items, 1, -1 do redis.call('LPUSH', KEYS[1], items[i]) end
      redis.pcall('DEL', stale)
      redis.call('ZREM', ${taking}, stale)
    end
  end
end`;

/** Takes the head of KEYS[1]; first puts back overdue takes' items (KEYS[2], see RECOVER_TAKES). */
const TAKE = new ChangeScript(
  'queue-take',
  2,
  `if REPEATED then return ANSWER end
${RECOVER_TAKES('KEYS[2]', 4)}
local item = redis.call('LPOP', KEYS[1])
if item then
  if ARGV[1] == '1' then redis.call('PUBLISH', ARGV[2], '1') end
  RECORD(item)
end
return item`,
);

/** Puts an item taken for a caller that is gone back to the head of the queue. */
const PUT_BACK_HEAD = new ChangeScript(
  'queue-put-back-head',
  1,
  `if REPEATED then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
RECORD()
return 1`,
);

/**
 * How long after its read's block time a blocking take's list may stay
 * unsettled before any other consumer puts its items back (RECOVER_TAKES),
 * at least: its consumer settles right after the read unless it died.
 * (A consumer that settles later finds the list gone and does not deliver
 * the item: it went to another consumer.)
 */
const TAKE_GRACE_MS = 60_000;

/**
 * Lists a blocking take's own list KEYS[2] in the queue's set of takes in
 * progress KEYS[1] (score: by when it must be settled, on Redis' clock),
 * written together with the read (so it costs no round trip).
 */
const REGISTER_TAKE = `local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1]), KEYS[2])
return 1`;

/**
 * Settles a blocking take (\`BLMOVE\` of the head of KEYS[1] into KEYS[2], a
 * list of the call's own, listed in KEYS[3]): its caller received one item
 * (ARGV[1] '1') or none. The list holds one item unless the \`BLMOVE\` ran
 * twice (resent after a dropped connection), and then the caller holds
 * the second run's. Every item in it but the one received goes back to the
 * head of KEYS[1], in order, and the list goes. With more than one and no
 * digest ARGV[2] of the received item, nothing changes and -1 asks for it
 * (so the item is sent back only on that rare path). Answers 1 when the
 * received item was there (the caller may deliver it), 0 when not: the
 * take was overdue and another consumer put it back, so it is theirs. A
 * change script: a repeat answers as the first run. Then overdue takes of
 * others are recovered (RECOVER_TAKES).
 */
const SETTLE_TAKE = new ChangeScript(
  'queue-settle-take',
  3,
  `if REPEATED then return tonumber(ANSWER) end
local got = redis.call('LRANGE', KEYS[2], 0, -1)
local keep = ARGV[1] == '1'
if keep and #got > 1 and OWN < 2 then return -1 end
local kept = 0
for i = #got, 1, -1 do
  if keep and (#got == 1 or redis.sha1hex(got[i]) == ARGV[2]) then
    keep = false
    kept = 1
  else
    redis.call('LPUSH', KEYS[1], got[i])
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], KEYS[2])
if #got > 0 then RECORD(kept) end
${RECOVER_TAKES('KEYS[3]', 16)}
return kept`,
);

/** Deletes a plain queue's items (KEYS[1]), its set of takes in progress (KEYS[2]) and their lists, and KEYS[3..] (its call records). */
const UNLINK_PLAIN = new Script(
  'queue-unlink-plain',
  -1,
  `for _, key in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do redis.pcall('DEL', key) end
local n = 0
for i = 1, #KEYS, 1000 do n = n + redis.call('DEL', unpack(KEYS, i, math.min(i + 999, #KEYS))) end
return n`,
);

/** Registers the consumer, renews its lease, and takes an item into its processing list if there is one. */
const TAKE_HELD = new ChangeScript(
  'queue-take-held',
  4,
  `redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
if ARGV[5] == '0' then return false end
if REPEATED then return ANSWER end
local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if item then
  if ARGV[3] == '1' then redis.call('PUBLISH', ARGV[4], '1') end
  RECORD(item)
end
return item`,
);

/**
 * Puts the exact items ARGV[1..] (taken by calls whose caller is gone) from
 * the processing list KEYS[2] back to the head of KEYS[1], in their order;
 * one no longer in the list (put back already, or recovered) is left alone.
 */
const PUT_BACK = new Script(
  'queue-put-back',
  2,
  `local moved = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[2], -1, ARGV[i]) > 0 then
    redis.call('LPUSH', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved`,
);

/** Bytes of the random id a JoinableQueue puts before each packed item. */
const TAG_BYTES = 16;

/**
 * Marks done the items ARGV[2..] (exact stored items) of the processing
 * list KEYS[1], or, with none named, one item counted done by a consumer
 * that holds none (Python counts). Only items still in the list count:
 * one that is gone was delivered again after the lease lapsed, and its new
 * holder counts it. Returns {unfinished left (-1: nothing to count), items gone}.
 */
const TASK_DONE = new ChangeScript(
  'queue-task-done',
  2,
  `if REPEATED then
  local u, gone = string.match(ANSWER, '^(-?%d+) (%d+)$')
  return {tonumber(u), tonumber(gone)}
end
local u = tonumber(redis.call('GET', KEYS[2]) or '0')
local named = OWN - 1
if named == 0 then
  if u <= 0 then return {-1, 0} end
  u = redis.call('DECR', KEYS[2])
  if u == 0 then redis.call('PUBLISH', ARGV[1], '0') end
  RECORD(u .. ' 0')
  return {u, 0}
end
local removed = 0
for i = 2, OWN do removed = removed + redis.call('LREM', KEYS[1], 1, ARGV[i]) end
if removed > u then removed = math.max(u, 0) end
if removed > 0 then
  u = redis.call('DECRBY', KEYS[2], removed)
  if u == 0 then redis.call('PUBLISH', ARGV[1], '0') end
  RECORD(u .. ' ' .. (named - removed))
end
return {u, named - removed}`,
);

/**
 * The rule: the items of a consumer whose lease lapsed go back to the
 * head, oldest first. Returns how many moved, and the soonest a live
 * consumer holding items may lapse (ms, -1 for none): a waiter wakes then
 * to apply the rule again, so a dead consumer's items wait about a lease.
 * With ARGV[2] (the caller's consumer id), the items of the caller's own
 * list other than ARGV[3..] (the ones it holds) go back too, oldest first.
 */
const RECOVER = new Script(
  'queue-recover',
  2,
  `local moved = 0
local soonest = -1
if ARGV[2] then
  local held = {}
  for i = 3, #ARGV do held[ARGV[i]] = true end
  local own = ARGV[1] .. ':proc:' .. ARGV[2]
  local items = redis.call('LRANGE', own, 0, -1)
  for i = #items, 1, -1 do
    if not held[items[i]] then
      redis.call('LREM', own, -1, items[i])
      redis.call('LPUSH', KEYS[1], items[i])
      moved = moved + 1
    end
  end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local proc = ARGV[1] .. ':proc:' .. id
  local ttl = redis.call('PTTL', ARGV[1] .. ':alive:' .. id)
  if ttl == -2 then
    while true do
      local item = redis.call('RPOP', proc)
      if not item then break end
      redis.call('LPUSH', KEYS[1], item)
      moved = moved + 1
    end
    redis.call('SREM', KEYS[2], id)
  elseif ttl >= 0 and redis.call('LLEN', proc) > 0 and (soonest < 0 or ttl < soonest) then
    soonest = ttl
  end
end
return {moved, soonest}`,
);

/** Deletes the queue's keys (KEYS; the consumers' set third) and its consumers' lists and leases. */
const UNLINK = new Script(
  'queue-unlink',
  -1,
  `for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('DEL', ARGV[1] .. ':proc:' .. id, ARGV[1] .. ':alive:' .. id)
end
local n = 0
for i = 1, #KEYS, 1000 do n = n + redis.call('DEL', unpack(KEYS, i, math.min(i + 999, #KEYS))) end
return n`,
);

/** The waits a queue's options ask for. */
function waitOf(options: ClusterQueueWaitOptions | undefined, call: string): { block: boolean; deadline: number } {
  if (options === undefined) return { block: true, deadline: Infinity };
  if (typeof options !== 'object' || options === null) throw new ValueError(`${call} takes an options object like { block, timeout }, got ${describe(options)}`);
  const block = options.block === undefined || Boolean(options.block);
  if (!block) return { block, deadline: 0 };
  return { block, deadline: deadlineOf(options.timeout ?? undefined) };
}

function checkMaxsize(maxsize: unknown): number {
  if (typeof maxsize !== 'number' || !Number.isInteger(maxsize) || maxsize < 0 || maxsize > 0x7fffffff) {
    throw new ValueError(`maxsize must be an integer from 0 (unbounded) to 2147483647, got ${describe(maxsize)}`);
  }
  return maxsize;
}

const CLOSED = Symbol('closed');

/**
 * A FIFO shared by processes on any machine that reach one Redis: the
 * cluster form of `mp.Queue`. Every method is async (`qsize`, `empty`,
 * `full`, `putNowait` and `getNowait` too).
 * @example
 * ```ts
 * const jobs = new ctx.Queue<Job>(0, { name: 'jobs' });
 * await jobs.put({ id: 1 });
 * const job = await jobs.get({ timeout: 1000 }); // Empty after a second with none
 * ```
 */
export class ClusterQueue<T = unknown> extends ClusterObject implements AsyncIterable<T> {
  /** The most items it holds (`put` then waits); 0 for no limit. */
  readonly maxsize: number;
  /** @internal */ readonly items: string;
  readonly #room: string;
  /** The blocking takes in progress (see SETTLE_TAKE). */
  readonly #taking: string;
  #closed = false;
  #markClosed!: (value: typeof CLOSED) => void;
  /** Settles when `close()` is called: pending waits race it. */
  readonly #closing = new Promise<typeof CLOSED>((resolve) => (this.#markClosed = resolve));

  /** @internal Made by a cluster context (`new ctx.Queue(maxsize, options)`). */
  constructor(conn: ObjectClients, maxsize: number = 0, options?: ClusterObjectOptions) {
    const kind = (new.target as unknown as { readonly queueKind: ClusterKind }).queueKind;
    checkMaxsize(maxsize);
    super(conn, kind, objectOptions(options, kind).name);
    this.maxsize = maxsize;
    this.items = `${this.prefix}:items`;
    this.#room = `${this.prefix}:room`;
    this.#taking = `${this.prefix}:taking`;
  }

  /** @internal The kind of its keys and descriptor. */
  static readonly queueKind: ClusterKind = 'Queue';

  get kind(): ClusterKind {
    return (this.constructor as unknown as { readonly queueKind: ClusterKind }).queueKind;
  }

  protected override settings(): Settings | undefined {
    return this.maxsize > 0 ? { maxsize: this.maxsize } : undefined;
  }

  protected redisKeys(): string[] {
    return [this.items];
  }

  /** Removes its keys, and the lists of blocking takes in progress (see SETTLE_TAKE). */
  override async unlink(): Promise<void> {
    await this.script('unlink()', UNLINK_PLAIN, [this.items, this.#taking, ...this.answeredRecords()], []);
  }

  /** @internal Whether puts count unfinished tasks. */
  protected get joinable(): boolean {
    return false;
  }

  /** @internal */
  protected get unfinishedKey(): string {
    return `${this.prefix}:unfinished`;
  }

  #checkOpen(): void {
    if (this.#closed) throw new ValueError(`${this.kind} '${this.name}' is closed (this object; others of its name still work)`);
  }

  /** Races `p` with `close()`. */
  protected untilClosed<R>(p: Promise<R>): Promise<R | typeof CLOSED> {
    return Promise.race([p, this.#closing]);
  }

  /** @internal Whether this object was closed. */
  protected get closed(): boolean {
    return this.#closed;
  }

  /**
   * Puts a copy of `item`, made now. On a full bounded queue waits (without
   * polling) for room up to `timeout` ms, then rejects with `Full`.
   * @throws SerializationError when the item cannot be stored (named by its path; nothing is put).
   */
  async put(item: T, options?: ClusterQueueWaitOptions): Promise<void> {
    this.#checkOpen();
    const { block, deadline } = waitOf(options, 'put()');
    const bytes = this.encode(pack(item, 'item'));
    const args = [this.maxsize, this.joinable ? '1' : '0', bytes];
    const once = async () => Number(await this.change('put()', PUT, [this.items, this.unfinishedKey], args)) >= 0;
    if (await once()) return;
    if (!block || remaining(deadline) === 0) throw new Full(`${this.kind} '${this.name}' is full (maxsize ${this.maxsize})`);
    const watch = await this.conn.waker.watch(this.#room, deadline);
    try {
      for (;;) {
        if (await once()) return;
        const left = remaining(deadline);
        if (left === 0) throw new Full(`put timed out: ${this.kind} '${this.name}' is full (maxsize ${this.maxsize})`);
        if ((await this.untilClosed(watch.wait(Math.min(left, SLICE_MS)))) === CLOSED) {
          throw new ValueError(`${this.kind} '${this.name}' was closed while put() waited`);
        }
      }
    } finally {
      watch.close();
    }
  }

  /** `put(item, { block: false })`: `Full` at once when a bounded queue has no room. */
  putNowait(item: T): Promise<void> {
    return this.put(item, { block: false });
  }

  /**
   * Takes the next item, waiting (blocked in Redis, no polling) up to
   * `timeout` ms; rejects with `Empty` if none came, `ValueError` when this
   * object is `close()`d while it waits.
   */
  async get(options?: ClusterQueueWaitOptions): Promise<T> {
    this.#checkOpen();
    const { block, deadline } = waitOf(options, 'get()');
    const first = await this.takeNow(true);
    if (first !== null) return this.accept(first);
    if (!block || remaining(deadline) === 0) throw new Empty(`${this.kind} '${this.name}' is empty`);
    for (;;) {
      const left = remaining(deadline);
      if (left === 0) throw new Empty(`get timed out: ${this.kind} '${this.name}' is empty`);
      const got = await this.untilClosed(this.takeBlocking(Math.min(left, SLICE_MS)));
      if (got === CLOSED) throw new ValueError(`${this.kind} '${this.name}' was closed while get() waited`);
      if (got !== null) return this.accept(got);
    }
  }

  /** `get({ block: false })`: `Empty` at once when there is nothing. */
  getNowait(): Promise<T> {
    return this.get({ block: false });
  }

  /** @internal The stored form of a packed item. */
  protected encode(packed: Buffer): Buffer {
    return packed;
  }

  /** @internal The item a stored one holds, as `get()` returns it. */
  protected accept(stored: Buffer): T {
    return unpack(stored, `an item of ${this.kind} '${this.name}'`, this.conn.clients) as T;
  }

  /** @internal Takes an item if there is one. */
  protected async takeNow(_take: boolean): Promise<Buffer | null> {
    const got = await this.change('get()', TAKE, [this.items, this.#taking], [this.maxsize > 0 ? '1' : '0', this.#room], this.#putBackLate());
    return Buffer.isBuffer(got) ? got : null;
  }

  /**
   * @internal Puts an item taken for a caller that is gone (given up at its
   * time limit, or the object closed) back to the head of the queue.
   */
  protected async putBack(item: Buffer, callKey = this.newCallKey()): Promise<void> {
    await this.change('put back', PUT_BACK_HEAD, [this.items], [item], undefined, callKey);
  }

  /** What a given-up take does with the item it took: puts it back, with one call id however often that is tried. */
  #putBackLate(): (late: unknown) => Promise<void> | undefined {
    let callKey: string | undefined;
    return (late) => (Buffer.isBuffer(late) ? this.putBack(late, (callKey ??= this.newCallKey())) : undefined);
  }

  /**
   * @internal Waits in Redis up to `ms` for an item; one taken after
   * `close()` or after the call was given up goes back to the head.
   *
   * The read moves the head into a list of the call's own (`BLMOVE`), not
   * out of Redis (as `BLPOP` would): a read that ioredis sends twice (the connection
   * dropped before the first answer came) takes a second item, and then
   * the list still holds the first, which SETTLE_TAKE puts back.
   */
  protected async takeBlocking(ms: number): Promise<Buffer | null> {
    const taken = `${this.newCallKey()}:taken`;
    const got = await this.conn.blocking(
      `${this.kind}('${this.name}').get()`,
      ms,
      async (redis) => {
        // Listed in the takes in progress in the same round trip as the read (two commands written at
        // once, each resent by itself after a reconnect, in order): if this process dies after Redis ran
        // the read and before the settling, the next consumer to settle puts the item back.
        // (Should the listing fail, only a crash right after the read would leave its item aside.)
        redis.eval(REGISTER_TAKE, 2, this.#taking, taken, Math.max(1, ms) + this.#graceMs).catch(() => {});
        try {
          return await redis.blmoveBuffer(this.items, taken, 'LEFT', 'RIGHT', Math.max(1, ms) / 1000);
        } catch (err) {
          // A failover ends a blocked read with UNBLOCKED, a slot in migration answers TRYAGAIN: nothing was taken; the caller reads again.
          if (/^UNBLOCKED/.test((err as Error)?.message ?? '')) return null;
          if (slotMoving(err)) {
            await new Promise((resolve) => setTimeout(resolve, SLOT_MOVING_PAUSE_MS));
            return null;
          }
          // Otherwise the read may have run before it failed.
          if (!this.conn.clients.closed) this.#settleLater(taken, null);
          throw err;
        }
      },
      () => this.#settleLater(taken, null),
    );
    const item = this.#closed ? null : got;
    const settle = this.#settling(taken, item);
    let kept: boolean;
    try {
      kept = await settle();
    } catch (err) {
      // The context was closed under the settling: nothing can ask Redis again, and the settling may
      // have run (the item is then nowhere else). So the caller gets the item; had the settling not
      // reached Redis, the item is also delivered again once the take is overdue (at least once).
      if (item !== null && this.conn.clients.closed) return item;
      // Whether it settled is unknown: it goes on in the background, and an item it finds kept goes back
      // (its caller gets this error, not the item); one it does not find went to another consumer.
      this.#settleLater(taken, item, settle);
      throw err;
    }
    if (item === null) return null;
    // Overdue (this process was that slow): another consumer put the item back, and it is theirs now.
    if (!kept) return null;
    if (this.#closed) {
      // close() came while the take settled: its get() is gone, so the item goes back.
      await this.putBack(item, settle.backKey).catch(() => this.conn.background(`${this.kind}('${this.name}') put back`, () => this.putBack(item, settle.backKey)));
      return null;
    }
    if (this.maxsize > 0) void this.conn.call('room', (redis) => redis.publish(this.#room, '1')).catch(() => {});
    return item;
  }

  /** Time a consumer has to settle a take, after the read's own block time. */
  get #graceMs(): number {
    return Math.max(TAKE_GRACE_MS, 3 * this.conn.callTimeoutMs);
  }

  /**
   * The settling of one blocking take (see SETTLE_TAKE), as a function that
   * may be run again as the same calls: true when the caller may deliver
   * `received`.
   */
  #settling(taken: string, received: Buffer | null): (() => Promise<boolean>) & { readonly backKey: string } {
    const what = 'get() settling';
    const keys = [this.items, taken, this.#taking];
    const first = this.newCallKey();
    const second = this.newCallKey();
    const backKey = this.newCallKey();
    const run = async (): Promise<boolean> => {
      if (received === null) {
        await this.change(what, SETTLE_TAKE, keys, ['0'], undefined, first);
        return false;
      }
      // An answer that comes after the settling was given up: a kept item's caller is gone, so it goes back.
      const late = (r: unknown) => (Number(r) === 1 ? this.putBack(received, backKey) : undefined);
      let kept = Number(await this.change(what, SETTLE_TAKE, keys, ['1'], late, first));
      if (kept === -1) kept = Number(await this.change(what, SETTLE_TAKE, keys, ['1', createHash('sha1').update(received).digest('hex')], late, second));
      return kept === 1;
    };
    return Object.assign(run, { backKey });
  }

  /**
   * Settles a blocking take in the background (its caller is gone, or does
   * not get the item): a received item found kept goes back to the queue.
   * Nothing is tried once the context is closed: the take stays listed,
   * and the next consumer to settle after its grace puts its items back.
   */
  #settleLater(taken: string, received: Buffer | null, settle = this.#settling(taken, received)): void {
    if (this.conn.clients.closed) return;
    this.conn.background(`${this.kind}('${this.name}').get() settling ${taken}`, async () => {
      if (this.conn.clients.closed) return;
      if ((await settle()) && received !== null) await this.putBack(received, settle.backKey);
    });
  }

  /** How many items are in it (approximate while others put and get, as in Python). */
  async qsize(): Promise<number> {
    return this.conn.call(`${this.kind}('${this.name}').qsize()`, (redis) => redis.llen(this.items));
  }

  /** Whether it is empty (approximate while others put and get). */
  async empty(): Promise<boolean> {
    return (await this.qsize()) === 0;
  }

  /** Whether a bounded queue is at its `maxsize` (approximate). */
  async full(): Promise<boolean> {
    return this.maxsize > 0 && (await this.qsize()) >= this.maxsize;
  }

  /**
   * This object will put and get no more: later calls throw, pending waits
   * (and `for await` loops) end. Items stay in Redis for other holders.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#markClosed(CLOSED);
  }

  /** Python's `join_thread` (after `close()`): `put()` returns once its item is in Redis, so nothing is left to flush. */
  async joinThread(): Promise<void> {
    if (!this.#closed) throw new StateError(`joinThread() is for a closed ${this.kind}: call close() first (as Python asserts)`);
  }

  /** Python's `cancel_join_thread`: nothing is ever left to flush here. */
  cancelJoinThread(): void {}

  /** Yields items as they come, until this object is `close()`d. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (!this.#closed) {
      let item: T;
      try {
        item = await this.get();
      } catch (err) {
        if (this.#closed) return;
        throw err;
      }
      yield item;
    }
  }

  /** `close()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** Not over a network: use `await q.put(item)`. */
  putSync(): never {
    throw notOverNetwork(`${this.kind}.putSync()`, 'await q.put(item)');
  }

  /** Not over a network: use `await q.get()`. */
  getSync(): never {
    throw notOverNetwork(`${this.kind}.getSync()`, 'await q.get()');
  }
}

/**
 * The cluster form of `mp.JoinableQueue`, at least once: an item taken by
 * `get()` stays recorded as this consumer's until `taskDone()`, and goes
 * back to the queue if the consumer dies first (its lease lapses).
 * @example
 * ```ts
 * const work = new ctx.JoinableQueue<string>(0, { name: 'crawl', leaseMs: 10_000 });
 * // consumers: for (;;) { const url = await work.get(); await fetchIt(url); await work.taskDone(); }
 * await work.join(); // every item put so far is done
 * ```
 */
export class ClusterJoinableQueue<T = unknown> extends ClusterQueue<T> {
  static override readonly queueKind: ClusterKind = 'JoinableQueue';
  /** Milliseconds this consumer's items stay its own without a renewal. */
  readonly leaseMs: number;
  /** This object's consumer id. */
  readonly consumer = `${hostname()}-${process.pid}-${randomName().slice(0, 8)}`;
  readonly #proc: string;
  readonly #alive: string;
  readonly #consumers: string;
  readonly #done: string;
  /** Items this consumer took and has not had removed, oldest first, with the chain whose get() took each: the lease is renewed while any is held. */
  readonly #held: Array<{ readonly stored: Buffer; readonly chain: Frame | null }> = [];
  /** taskDone() calls that could not tell which held item they finished: all held items are removed once this reaches their number. */
  #doneUntold = 0;
  /** Items whose taskDone() is on its way (no longer in #held, still in the list). */
  readonly #finishing = new Set<Buffer>();
  /** Gets in progress: the lease is renewed while any waits. */
  #getting = 0;
  #renewal: NodeJS.Timeout | null = null;

  /** @internal Made by a cluster context (`new ctx.JoinableQueue(maxsize, options)`). */
  constructor(conn: ObjectClients, maxsize: number = 0, options?: ClusterJoinableQueueOptions) {
    super(conn, maxsize, options);
    const lease = objectOptions(options, 'JoinableQueue').leaseMs;
    this.leaseMs = lease === undefined ? DEFAULT_LEASE_MS : checkMs(lease, 'JoinableQueue leaseMs', 100);
    this.#proc = `${this.prefix}:proc:${this.consumer}`;
    this.#alive = `${this.prefix}:alive:${this.consumer}`;
    this.#consumers = `${this.prefix}:consumers`;
    this.#done = `${this.prefix}:done`;
  }

  protected override settings(): Settings {
    return this.maxsize > 0 ? { maxsize: this.maxsize, leaseMs: this.leaseMs } : { leaseMs: this.leaseMs };
  }

  protected override get joinable(): boolean {
    return true;
  }

  protected override redisKeys(): string[] {
    return [this.items, this.unfinishedKey, this.#consumers];
  }

  override async unlink(): Promise<void> {
    await this.script('unlink()', UNLINK, [...this.redisKeys(), ...this.answeredRecords()], [this.prefix]);
  }

  override async get(options?: ClusterQueueWaitOptions): Promise<T> {
    this.#getting++;
    this.#renew();
    try {
      return await super.get(options);
    } finally {
      this.#getting--;
      this.#renew();
    }
  }

  /** Starts or stops the lease renewal as this consumer holds items or waits for one. */
  #renew(): void {
    // Held items keep their lease after close(): the consumer is still working on them.
    const needed = this.#held.length > 0 || (this.#getting > 0 && !this.closed);
    if (needed && !this.#renewal) {
      this.#renewal = setInterval(() => {
        void this.conn.call('lease', (redis) => redis.set(this.#alive, '1', 'PX', this.leaseMs)).catch(() => {});
      }, Math.max(10, Math.floor(this.leaseMs / 3)));
      // The lease must not keep the process alive: a consumer that ends lets its items go back after the lease.
      this.#renewal.unref();
    } else if (!needed && this.#renewal) {
      clearInterval(this.#renewal);
      this.#renewal = null;
    }
  }

  protected override encode(packed: Buffer): Buffer {
    return Buffer.concat([randomBytes(TAG_BYTES), packed]);
  }

  protected override accept(stored: Buffer): T {
    const item = super.accept(stored.subarray(TAG_BYTES));
    this.#held.push({ stored, chain: currentFrame() });
    return item;
  }

  protected override async takeNow(take: boolean): Promise<Buffer | null> {
    const keys = [this.items, this.#proc, this.#consumers, this.#alive];
    const args = [this.consumer, this.leaseMs, this.maxsize > 0 ? '1' : '0', `${this.prefix}:room`, take ? '1' : '0'];
    const got = await this.change('get()', TAKE_HELD, keys, args, (late) => {
      if (Buffer.isBuffer(late)) return this.putBack(late);
    });
    return Buffer.isBuffer(got) ? got : null;
  }

  /** @internal Moves the exact item back from this consumer's list to the head of the queue (nothing if it is no longer there). */
  protected override async putBack(item: Buffer, _callKey?: string): Promise<void> {
    await this.conn.script(`JoinableQueue('${this.name}') put back`, PUT_BACK, [this.items, this.#proc], [item]);
  }

  protected override async takeBlocking(ms: number): Promise<Buffer | null> {
    // Registered with a fresh lease before the item can land in our list; dead consumers' items first.
    await this.takeNow(false);
    // The only get() in flight: what is in our list and not held was taken for a caller that is gone.
    const soonest = await this.#recover(this.#getting === 1);
    // Wake when a consumer holding items may have lapsed, to put its items back.
    const slice = soonest >= 0 ? Math.min(ms, soonest + 10) : ms;
    const item = await this.conn.blocking(
      `JoinableQueue('${this.name}').get()`,
      slice,
      (redis) => redis.blmoveBuffer(this.items, this.#proc, 'LEFT', 'RIGHT', Math.max(1, slice) / 1000),
      (late) => {
        if (late) return this.putBack(late);
      },
    );
    if (item === null) return null;
    if (this.closed) {
      await this.putBack(item);
      return null;
    }
    if (this.maxsize > 0) void this.conn.call('room', (redis) => redis.publish(`${this.prefix}:room`, '1')).catch(() => {});
    return item;
  }

  /**
   * Applies the rule (see RECOVER), and with `own` puts back the items of
   * this consumer's list it does not hold; returns the soonest a live
   * consumer holding items may lapse (ms, -1: none).
   */
  async #recover(own = false): Promise<number> {
    const args: (string | Buffer)[] = [this.prefix];
    if (own) args.push(this.consumer, ...this.#held.map((h) => h.stored), ...this.#finishing);
    const [, soonest] = (await this.script('recovery', RECOVER, [this.items, this.#consumers], args)) as [number, number];
    return Number(soonest);
  }

  /**
   * Marks an item taken by `get()` through this object as processed: the
   * only one it holds, else the only one the calling async chain took.
   * When that does not tell (one chain holds several), the done is counted
   * here and the items are removed once all of them are done (see the
   * module doc; until then they would all be delivered again if this
   * consumer died). A taskDone() on an object that holds nothing still
   * counts one item done, as Python counts.
   * @throws ValueError when called more times than items were put.
   * @throws ClusterError when the item was no longer this consumer's: its
   *   lease lapsed (the process stalled past `leaseMs`) and the item was
   *   delivered again; it is not counted done here.
   */
  async taskDone(): Promise<void> {
    const finished = this.#finished();
    if (finished === null) return;
    for (const item of finished) this.#finishing.add(item);
    try {
      const [left, gone] = (await this.change('taskDone()', TASK_DONE, [this.#proc, this.unfinishedKey], [this.#done, ...finished])) as [number, number];
      if (Number(left) < 0) throw new ValueError(`taskDone() called too many times on JoinableQueue '${this.name}' (more than items were put)`);
      if (Number(gone) > 0) {
        throw new ClusterError(
          `taskDone() on JoinableQueue '${this.name}': ${gone === 1 ? 'the item was' : `${gone} items were`} no longer this consumer's: ` +
            `its lease (${this.leaseMs} ms) lapsed (the process stalled or lost Redis, or Redis lost its data) and the item went back to the queue ` +
            'for another consumer; it is not counted done here (its new holder counts it)',
        );
      }
    } finally {
      for (const item of finished) this.#finishing.delete(item);
      this.#renew();
    }
  }

  /** The stored items a taskDone() now removes (none: it counts one done for a consumer that holds nothing); null when it must wait for the rest. */
  #finished(): Buffer[] | null {
    const held = this.#held;
    if (held.length === 0) return [];
    let at = held.length === 1 ? 0 : -1;
    if (at < 0) {
      const chain = currentFrame();
      const mine = held.flatMap((h, i) => (h.chain === chain ? [i] : []));
      if (mine.length === 1) at = mine[0]!;
    }
    if (at >= 0 && held.length - 1 > this.#doneUntold) return [held.splice(at, 1)[0]!.stored];
    // Which one is unknown (or this was the last undone one): once every held item is done, all go.
    if (at < 0 && ++this.#doneUntold < held.length) return null;
    this.#doneUntold = 0;
    return held.splice(0).map((h) => h.stored);
  }

  /**
   * Resolves when every item put so far has been marked done. Items of
   * consumers that died are put back for others meanwhile (see the module doc).
   */
  async join(): Promise<void> {
    const watch = await this.conn.waker.watch(this.#done, Infinity);
    try {
      for (;;) {
        const left = Number((await this.conn.call(`JoinableQueue('${this.name}').join()`, (redis) => redis.get(this.unfinishedKey))) ?? 0);
        if (left <= 0) return;
        const soonest = await this.#recover();
        await watch.wait(soonest >= 0 ? Math.min(SLICE_MS, soonest + 10) : SLICE_MS);
      }
    } finally {
      watch.close();
    }
  }

  override close(): void {
    super.close();
    this.#renew();
  }

  /** Not over a network: use `await q.join()`. */
  joinSync(): never {
    throw notOverNetwork('JoinableQueue.joinSync()', 'await q.join()');
  }
}

/** The cluster form of `mp.SimpleQueue`: an unbounded queue (`put`, `get`, `empty`, `close`). */
export class ClusterSimpleQueue<T = unknown> extends ClusterQueue<T> {
  static override readonly queueKind: ClusterKind = 'SimpleQueue';

  /** @internal Made by a cluster context (`new ctx.SimpleQueue(options)`). */
  constructor(conn: ObjectClients, options?: ClusterObjectOptions) {
    super(conn, 0, options);
  }
}

const numberSetting = (s: Settings, key: string): number | undefined => (typeof s[key] === 'number' ? (s[key] as number) : undefined);
registerClusterKind('Queue', (conn, name, s) => new ClusterQueue(conn, numberSetting(s, 'maxsize') ?? 0, { name }));
registerClusterKind('JoinableQueue', (conn, name, s) => new ClusterJoinableQueue(conn, numberSetting(s, 'maxsize') ?? 0, { name, leaseMs: numberSetting(s, 'leaseMs') }));
registerClusterKind('SimpleQueue', (conn, name) => new ClusterSimpleQueue(conn, { name }));
