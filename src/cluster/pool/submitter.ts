/**
 * The caller's side of a cluster pool's traffic: writes batches to the tasks
 * stream and reads their results back.
 *
 * Every batch the caller has not seen a result for is kept here with its
 * entry's fields, until its result arrives or its call is dropped. That
 * record is what makes the guarantees:
 * - exactly once to the caller: a result for a batch that is not pending
 *   (a duplicate from a retried run, or a dropped call's) is ignored;
 * - nothing lost to a Redis that restarted empty: when the server's run_id
 *   changes, every pending batch whose entry is gone is written again (its
 *   tasks may then run twice; their results still arrive once).
 *
 * One reader per caller, on a connection of its own (`XREAD BLOCK` would
 * stall the shared one), runs while batches are pending and stops when
 * none are, so an idle pool keeps nothing alive.
 */
import { ClusterError } from '../../errors.js';
import { bounded, DEFAULT_CONNECT_TIMEOUT_MS, type ClusterClients, type RedisClient } from '../redis.js';
import { fieldsOf, GROUP, PoolKeys } from './protocol.js';

/** A batch's fate, as the reader hands it over. */
export interface BatchResult {
  /** Per task: `[true, value]` or `[false, error record bytes]`, packed. */
  readonly outcomes?: Buffer;
  /** An error record failing the whole batch. */
  readonly error?: Buffer;
  /** How many times the batch was delivered to a worker. */
  readonly attempts: number;
  /** Which worker ran it. */
  readonly worker: string;
}

/** What a pending batch needs: its entry's fields (to write it again) and where its result goes. */
export interface PendingBatch {
  readonly fields: (string | Buffer)[];
  /** Its entry id once written. */
  id: string | null;
  settle(result: BatchResult): void;
  /** The batch cannot be written (Redis refused or went away for good). */
  fail(error: unknown): void;
}

/** How long one blocking read waits before it looks whether it should stop. */
const READ_BLOCK_MS = 1000;
/** Redis unreachable for this many connect timeouts (30 s by default): pending batches fail instead of waiting on. */
const UNREACHABLE_TIMEOUTS = 6;

export class Submitter {
  readonly #clients: ClusterClients;
  readonly #keys: PoolKeys;
  readonly caller: string;
  readonly #pending = new Map<number, PendingBatch>();
  #nextBatch = 1;
  /** The last results-stream id read: reading resumes after it, also across reconnects. */
  #lastId = '0-0';
  /** Bumped at each restart notice, when reading starts again from the stream's beginning. */
  #generation = 0;
  #reader: Promise<void> | null = null;
  #readerClient: RedisClient | null = null;
  #stopped = false;
  readonly #unlistenRestart: () => void;
  readonly #unlistenClose: () => void;
  /** The longest one write may wait for Redis. */
  readonly #callTimeoutMs: number;

  constructor(clients: ClusterClients, keys: PoolKeys, caller: string) {
    this.#clients = clients;
    this.#keys = keys;
    this.caller = caller;
    this.#callTimeoutMs = clients.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#unlistenRestart = clients.onRestart(() => void this.#rewriteLost());
    this.#unlistenClose = clients.onClose(() => void this.stop(new ClusterError(`the cluster context of ${clients.url.redacted} was closed with calls pending`)));
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Writes one batch; its result goes to `batch.settle`. */
  submit(batch: Omit<PendingBatch, 'id' | 'fields'>, fields: (string | Buffer)[]): number {
    const seq = this.#nextBatch++;
    if (this.#stopped) {
      // Terminated (or its context closed) meanwhile: nothing more is written.
      batch.fail(new ClusterError('the pool was terminated, or its cluster context closed, before this batch was written'));
      return seq;
    }
    const pending: PendingBatch = { ...batch, fields: ['c', this.caller, 'b', String(seq), ...fields], id: null };
    this.#pending.set(seq, pending);
    this.#write(seq, pending);
    this.#ensureReader();
    return seq;
  }

  /** Forgets batches (their call was dropped) and removes their entries if no worker has taken them yet. */
  drop(seqs: Iterable<number>): void {
    const ids: string[] = [];
    for (const seq of seqs) {
      const batch = this.#pending.get(seq);
      if (!batch) continue;
      this.#pending.delete(seq);
      if (batch.id) ids.push(batch.id);
    }
    if (ids.length === 0) return;
    void this.#clients
      .command()
      .then((redis) => redis.xdel(this.#keys.tasks, ...ids))
      .catch(() => {});
  }

  /**
   * Stops reading and forgets every batch (terminate or join's end), failing
   * them with `reason` when given; removes this caller's results stream.
   */
  async stop(reason?: unknown): Promise<void> {
    this.#stopped = true;
    this.#unlistenRestart();
    this.#unlistenClose();
    const left = [...this.#pending.values()];
    this.drop([...this.#pending.keys()]);
    if (reason !== undefined) for (const batch of left) batch.fail(reason);
    this.#readerClient?.disconnect();
    await this.#reader?.catch(() => {});
    if (this.#clients.closed) return;
    try {
      const redis = await this.#clients.command();
      await bounded(redis.del(this.#keys.results(this.caller)), this.#callTimeoutMs, 'removing the results stream', this.#clients.url);
    } catch {
      // The stream expires by itself.
    }
  }

  #write(seq: number, batch: PendingBatch): void {
    this.#clients
      .command()
      .then((redis) => bounded(redis.xadd(this.#keys.tasks, '*', ...(batch.fields as string[])), this.#callTimeoutMs, 'writing a batch', this.#clients.url))
      .then((id) => {
        if (this.#pending.get(seq) === batch) batch.id = id;
        else if (id) void this.#clients.command().then((r) => r.xdel(this.#keys.tasks, id)); // dropped meanwhile
      })
      .catch((err) => {
        if (this.#pending.get(seq) !== batch) return;
        this.#pending.delete(seq);
        batch.fail(err);
      });
  }

  #ensureReader(): void {
    if (this.#reader || this.#stopped) return;
    this.#reader = this.#read().finally(() => {
      this.#reader = null;
      // A batch submitted while the reader was winding down needs a new one.
      if (this.#pending.size > 0 && !this.#stopped) this.#ensureReader();
    });
  }

  async #read(): Promise<void> {
    let redis: RedisClient;
    try {
      redis = this.#readerClient ??= await this.#clients.blockingClient('results');
    } catch (err) {
      for (const [seq, batch] of this.#pending) {
        this.#pending.delete(seq);
        batch.fail(err);
      }
      return;
    }
    const key = this.#keys.results(this.caller);
    let unreachableSince: number | null = null;
    const giveUpMs = UNREACHABLE_TIMEOUTS * this.#callTimeoutMs;
    while (!this.#stopped && this.#pending.size > 0) {
      let reply: [string, [string, Buffer[]][]][] | null;
      // A read issued before a restart notice must not move #lastId past the reset (#rewriteLost).
      const generation = this.#generation;
      try {
        reply = (await bounded(
          redis.xreadBuffer('COUNT', 1000, 'BLOCK', READ_BLOCK_MS, 'STREAMS', key, this.#lastId),
          READ_BLOCK_MS + this.#callTimeoutMs,
          'reading results',
          this.#clients.url,
        )) as unknown as [string, [string, Buffer[]][]][] | null;
        unreachableSince = null;
      } catch (err) {
        if (this.#stopped || this.#clients.closed) return;
        // A dropped connection: ioredis reconnects and the next read resumes
        // after #lastId. A Redis gone for good fails what waits, not forever.
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince > giveUpMs) {
          const reason = new ClusterError(
            `${this.#clients.url.redacted} has been unreachable for ${Math.round(giveUpMs / 1000)} s; the pending tasks fail (they may still run if Redis comes back): ${(err as Error)?.message ?? err}`,
          );
          for (const [seq, batch] of this.#pending) {
            this.#pending.delete(seq);
            batch.fail(reason);
          }
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (!reply) continue;
      const done: string[] = [];
      for (const [, entries] of reply) {
        for (const [rawId, flat] of entries) {
          const id = rawId.toString();
          if (generation === this.#generation) this.#lastId = id;
          done.push(id);
          this.#deliver(fieldsOf(flat));
        }
      }
      if (done.length) void this.#clients.command().then((r) => r.xdel(key, ...done)).catch(() => {});
    }
  }

  #deliver(fields: Map<string, Buffer>): void {
    const seq = Number(fields.get('b')?.toString());
    const batch = this.#pending.get(seq);
    if (!batch) return; // a duplicate, or a dropped call's
    this.#pending.delete(seq);
    batch.settle({
      outcomes: fields.get('r'),
      error: fields.get('e'),
      attempts: Number(fields.get('n')?.toString() ?? 1),
      worker: fields.get('w')?.toString() ?? '?',
    });
  }

  /**
   * After a restart, writes again every pending batch whose entry the server
   * no longer has (a Redis without persistence comes back empty). First reads
   * what results are there, so a batch that finished is not run again, and
   * delivers them.
   *
   * Reading starts again from the stream's beginning: entry ids are the
   * server's clock, and a server whose clock is behind the old one's (a
   * failover target, a clock stepped back) writes results with ids below
   * the last one read, which a read after it would never return.
   * Duplicates are ignored (`#deliver`).
   */
  async #rewriteLost(): Promise<void> {
    this.#lastId = '0-0';
    this.#generation++;
    if (this.#stopped || this.#pending.size === 0) return;
    try {
      const redis = await this.#clients.command();
      // Workers recreate the group too; whoever is first wins, the other gets BUSYGROUP.
      await redis.xgroup('CREATE', this.#keys.tasks, GROUP, '0', 'MKSTREAM').catch(() => {});
      const batches = [...this.#pending.entries()];
      const exists = await Promise.all(
        batches.map(([, b]) => (b.id ? redis.xrange(this.#keys.tasks, b.id, b.id).then((r) => r.length > 0) : Promise.resolve(true))),
      );
      const results = await redis.xrangeBuffer(this.#keys.results(this.caller), '-', '+');
      const finished = new Set<number>();
      for (const [, flat] of results) {
        const fields = fieldsOf(flat);
        finished.add(Number(fields.get('b')?.toString()));
        this.#deliver(fields);
      }
      batches.forEach(([seq, batch], i) => {
        if (exists[i] || finished.has(seq) || this.#pending.get(seq) !== batch) return;
        batch.id = null;
        this.#write(seq, batch);
      });
      this.#ensureReader();
    } catch {
      // The next restart notice tries again.
    }
  }
}

