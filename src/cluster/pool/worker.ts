/**
 * A cluster worker: takes batches from a pool's tasks stream and runs their
 * tasks on a local Pool (`npx multiprocessing-ts worker` runs one).
 *
 * Taking and finishing (Redis Streams with a consumer group):
 * - `XREADGROUP … BLOCK` takes new entries while fewer than
 *   `2 × concurrency` batches are held; each task of a batch goes to the
 *   local pool, which keeps its workers busy with its own pipelining;
 * - a batch's result is written with `XADD` to its caller's results stream
 *   in one `MULTI` with the `XACK` and `XDEL` of its entry: a result is
 *   never stored without the entry leaving, nor the entry leaving without
 *   its result;
 * - while it holds batches, the worker resets their idle time
 *   (`XCLAIM … JUSTID`) every third of the visibility timeout; a worker
 *   that died stops doing so, and after the timeout any other worker takes
 *   its batches over with `XAUTOCLAIM` (at least once). Redis counts the
 *   deliveries; past the batch's attempt limit its tasks fail with
 *   `WorkerLostError` instead of running again.
 *
 * Draining (`drain()`, SIGTERM in the CLI): no new entries are taken (the
 * blocking read in progress returns within a second, and what it returns
 * still runs), held batches finish and are acknowledged, then the local
 * pool is joined and the heartbeat removed.
 */
import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import { BrokenPoolError, ClusterError, SerializationError, ValueError, WorkerLostError } from '../../errors.js';
import { importAsTaskModule } from '../../process/current.js';
import { Pool } from '../../pool/pool.js';
import type { StartMethod } from '../../process/start-method.js';
import { pack, packError, unpack } from '../codec.js';
import { checkName, randomName } from '../keys.js';
import { bounded, ClusterClients, DEFAULT_CONNECT_TIMEOUT_MS, type ClusterClientOptions, type RedisClient } from '../redis.js';
import { parseClusterUrl } from '../url.js';
import { DEFAULT_VISIBILITY_MS, fieldsOf, fingerprint, GROUP, HEARTBEAT_MS, PoolKeys, RESULTS_TTL_MS } from './protocol.js';
import { removeHeartbeat, writeHeartbeat } from './workers.js';
import { moduleFingerprint } from './module-fingerprint.js';

export interface ClusterWorkerOptions {
  /** The cluster's Redis URL. */
  readonly cluster: string;
  /** The module whose exports are the task functions: a path (from the working directory) or a URL. */
  readonly module: string | URL;
  /** Tasks at once: the local pool's size (default `mp.cpuCount()`). */
  readonly concurrency?: number;
  readonly startMethod?: StartMethod;
  /** The pool to serve (default `'default'`). */
  readonly pool?: string;
  /** Milliseconds a held batch may go without this worker's word before another takes it over (default 30,000). */
  readonly visibilityTimeoutMs?: number;
  readonly client?: ClusterClientOptions;
}

/**
 * ioredis has `xautoclaimBuffer` (binary fields: the payload is V8 bytes)
 * but does not declare it; `callBuffer` is no way round, as auto-pipelining
 * drops its command name.
 */
interface BufferCommands {
  xautoclaimBuffer(...args: (string | number)[]): Promise<unknown>;
}

/** `XCLAIM … JUSTID` as one signature (ioredis types it for `Redis` and `Cluster` apart). */
interface ClaimCommand {
  xclaim(...args: (string | number)[]): Promise<unknown>;
}

/** How long one blocking read of new entries waits before the loop looks again (at draining, say). */
const READ_BLOCK_MS = 1000;
/** Redis unreachable for this many call timeouts: a result that cannot be stored is left to other workers. */
const UNREACHABLE_TIMEOUTS = 6;

/** One batch held by this worker. */
interface Held {
  readonly entry: string;
}

export class ClusterWorker {
  /** This worker's consumer name in the group, and its id in `stats()`. */
  readonly id: string;
  readonly #keys: PoolKeys;
  readonly #clients: ClusterClients;
  readonly #module: string;
  readonly #exports: Record<string, unknown>;
  readonly #local: Pool;
  readonly #concurrency: number;
  readonly #startMethod: StartMethod;
  readonly #visibilityMs: number;
  readonly #held = new Map<string, Held>();
  /** The longest one Redis call may wait (the connect timeout): with Redis gone, a drain must still end. */
  readonly #callTimeoutMs: number;
  /** Batches left to other workers (after the visibility timeout): results not stored, then, after a drain, what Redis lists under its name. */
  #leftForOthers = 0;
  /** A drain could not ask Redis what it left (see `leftUnknown`). */
  #leftUnknown = false;
  /** Where the next XAUTOCLAIM scan starts: it walks the whole pending list over its ticks, not only its head. */
  #reclaimCursor = '0-0';
  #accepting = true;
  #completed = 0;
  #timers: NodeJS.Timeout[] = [];
  #slotFree: (() => void) | null = null;
  #readLoop: Promise<void> = Promise.resolve();
  #reader: RedisClient | null = null;
  #finished: Promise<void> | null = null;
  #markStopped!: () => void;
  /** Lets the connections stop keeping the process alive (at the end). */
  #release: () => void = () => {};
  /** Settles once the worker has drained (or was killed) and let go of everything. */
  readonly stopped: Promise<void> = new Promise((resolve) => (this.#markStopped = resolve));

  private constructor(options: ClusterWorkerOptions, exports: Record<string, unknown>, module: string, local: Pool, clients: ClusterClients) {
    this.id = `${hostname()}-${process.pid}-${randomName().slice(0, 6)}`;
    this.#keys = new PoolKeys(checkName(options.pool ?? 'default', 'the pool'));
    this.#clients = clients;
    this.#module = module;
    this.#exports = exports;
    this.#local = local;
    this.#concurrency = local.processes;
    this.#startMethod = options.startMethod ?? 'process';
    this.#visibilityMs = options.visibilityTimeoutMs ?? DEFAULT_VISIBILITY_MS;
    this.#callTimeoutMs = options.client?.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }

  /**
   * Imports the module, starts the local pool and connects; resolves once
   * the worker takes tasks.
   * @throws ClusterError when Redis cannot be reached; ValueError for bad options.
   */
  static async start(options: ClusterWorkerOptions): Promise<ClusterWorker> {
    const url = parseClusterUrl(options.cluster);
    checkName(options.pool ?? 'default', 'the pool');
    const visibility = options.visibilityTimeoutMs ?? DEFAULT_VISIBILITY_MS;
    if (!Number.isFinite(visibility) || visibility < 100) throw new ValueError(`the visibility timeout must be at least 100 ms, got ${visibility}`);
    const module =
      options.module instanceof URL ? options.module.href : /^(file|data):/.test(options.module) ? options.module : pathToFileURL(options.module).href;
    const clients = new ClusterClients(url, options.client);
    // A worker lives until it is drained or killed: its connections keep the process up all along.
    const release = clients.hold();
    const redis = await clients.command().catch((err) => {
      release();
      clients.close();
      throw err;
    });
    let exports: Record<string, unknown>;
    try {
      exports = await importAsTaskModule(module);
    } catch (err) {
      release();
      clients.close();
      throw new ClusterError(`cannot import the task module ${module}: ${(err as Error)?.message ?? err}`, { cause: err });
    }
    const local = new Pool(options.concurrency, { context: options.startMethod ?? 'process', module, initializer: shieldFromGroupSignals });
    const worker = new ClusterWorker(options, exports, module, local, clients);
    worker.#release = release;
    try {
      await worker.#ensureGroup(redis);
      await worker.#beat();
    } catch (err) {
      local.terminate();
      await local.join().catch(() => {});
      release();
      clients.close();
      throw new ClusterError(`cannot serve pool '${worker.#keys.name}' on ${url.redacted}: ${(err as Error)?.message ?? err}`);
    }
    worker.#timers.push(
      setInterval(() => void worker.#beat().catch((e) => worker.#warn('heartbeat', e)), HEARTBEAT_MS),
      setInterval(() => void worker.#refresh().catch((e) => worker.#warn('refresh', e)), Math.max(50, visibility / 3)),
      setInterval(() => void worker.#reclaim().catch((e) => worker.#warn('reclaim', e)), Math.max(50, visibility / 2)),
    );
    worker.#readLoop = worker.#read().catch((err) => {
      // Only opening the reader's connection can fail here (Redis gone); the worker stops.
      if (worker.#accepting) worker.#warn('reading tasks', err);
      void worker.kill();
    });
    return worker;
  }

  /** Last warning per job, so a Redis away for long prints one line per job and minute, not one per tick. */
  readonly #warned = new Map<string, number>();

  /** Says on stderr that periodic work failed (Redis away, usually); it is retried at its next tick. */
  #warn(job: string, err: unknown): void {
    const now = Date.now();
    if (now - (this.#warned.get(job) ?? 0) < 60_000) return;
    this.#warned.set(job, now);
    process.emitWarning(`multiprocessing-ts worker ${this.id}: ${job} failed (retried): ${(err as Error)?.message ?? err}`);
  }

  /** Why the worker stopped by itself (its local pool broke), or null. */
  failure: Error | null = null;

  /** Batches held now. */
  get running(): number {
    return this.#held.size;
  }

  /** Tasks finished so far. */
  get completed(): number {
    return this.#completed;
  }

  /**
   * Batches this worker took and did not finish (their results could not be
   * stored, or a read cut off at a drain took them unseen): other workers run
   * them after the visibility timeout. After a drain, what Redis lists under
   * its name; `leftUnknown` when Redis could not be asked.
   */
  get leftForOthers(): number {
    return this.#leftForOthers;
  }

  /** True after a drain that could not tell whether it left batches (Redis gone while a read was cut off). */
  get leftUnknown(): boolean {
    return this.#leftUnknown;
  }

  /** Stops taking work, finishes what it holds, then lets go of everything. Resolves when done. */
  drain(): Promise<void> {
    this.#finished ??= this.#drain().finally(() => this.#markStopped());
    return this.#finished;
  }

  /** Ends at once: held batches are left to other workers (after the visibility timeout). */
  async kill(): Promise<void> {
    this.#accepting = false;
    for (const t of this.#timers) clearInterval(t);
    this.#local.terminate();
    this.#clients.close();
    this.#release();
    await this.#local.join().catch(() => {});
    this.#markStopped();
  }

  async #drain(): Promise<void> {
    this.#accepting = false;
    this.#slotFree?.();
    // The read in progress returns within its block time, and what it took
    // still runs. With Redis gone it would never return (ioredis queues the
    // command for the reconnect): past its block time and one call timeout it
    // is cut off, and what it may have taken is reclaimed elsewhere.
    let cutOff: NodeJS.Timeout | undefined;
    let readEnded = false;
    await Promise.race([
      this.#readLoop.catch(() => {}).then(() => (readEnded = true)),
      new Promise<void>((r) => (cutOff = setTimeout(r, READ_BLOCK_MS + this.#callTimeoutMs))),
    ]);
    clearTimeout(cutOff);
    this.#reader?.disconnect();
    // Held batches end either way: stored, or left to others when Redis does not answer (#runBatch's write is bounded).
    while (this.#held.size > 0) await new Promise<void>((r) => (this.#slotFree = r));
    for (const t of this.#timers) clearInterval(t);
    this.#local.close();
    await this.#local.join();
    // What is still pending under this worker's name (a cut-off read may have
    // taken entries it never saw; results it could not store left theirs)
    // must stay there for other workers to reclaim: DELCONSUMER would delete
    // those entries with the consumer, and nobody would ever run them.
    let pending: number | null = null;
    try {
      const redis = await this.#clients.command();
      pending = ((await bounded(redis.xpending(this.#keys.tasks, GROUP, '-', '+', 10_000, this.id), this.#callTimeoutMs, 'looking at what it holds', this.#clients.url)) as unknown[]).length;
      if (pending === 0) await bounded(redis.xgroup('DELCONSUMER', this.#keys.tasks, GROUP, this.id), this.#callTimeoutMs, 'leaving the group', this.#clients.url);
      await bounded(removeHeartbeat(redis, this.#keys, this.id), this.#callTimeoutMs, 'removing the heartbeat', this.#clients.url);
    } catch {
      // The heartbeat expires by itself; a stale consumer entry costs nothing.
    }
    if (pending !== null) this.#leftForOthers = pending;
    // Unverified (Redis gone): a cut-off read may have taken entries.
    else if (!readEnded) this.#leftUnknown = true;
    this.#reader?.disconnect();
    this.#clients.close();
    this.#release();
  }

  get #capacity(): number {
    return 2 * this.#concurrency - this.#held.size;
  }

  async #ensureGroup(redis: RedisClient): Promise<void> {
    try {
      // From 0: entries written before the group existed (after a Redis restart) are work too.
      await redis.xgroup('CREATE', this.#keys.tasks, GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err;
    }
  }

  async #beat(): Promise<void> {
    await writeHeartbeat(await this.#clients.command(), this.#keys, this.id, {
      host: hostname(),
      pid: process.pid,
      concurrency: this.#concurrency,
      startMethod: this.#startMethod,
      completed: this.#completed,
      running: this.#held.size,
      accepting: this.#accepting,
    });
  }

  async #read(): Promise<void> {
    const redis = (this.#reader = await this.#clients.blockingClient('tasks'));
    while (this.#accepting) {
      if (this.#capacity <= 0) {
        await new Promise<void>((r) => (this.#slotFree = r));
        continue;
      }
      let reply: [Buffer, [Buffer, Buffer[] | null][]][] | null;
      try {
        reply = (await redis.xreadgroupBuffer(
          'GROUP',
          GROUP,
          this.id,
          'COUNT',
          this.#capacity,
          'BLOCK',
          READ_BLOCK_MS,
          'STREAMS',
          this.#keys.tasks,
          '>',
        )) as unknown as typeof reply;
      } catch (err) {
        if (!this.#accepting) return;
        if (/NOGROUP/.test((err as Error).message)) {
          await this.#ensureGroup(await this.#clients.command()).catch(() => {});
        } else {
          await new Promise((r) => setTimeout(r, 200));
        }
        continue;
      }
      if (!reply) continue;
      for (const [, entries] of reply) for (const [id, flat] of entries) this.#run(id.toString(), flat, 1);
    }
  }

  /** Keeps held batches from looking abandoned. */
  async #refresh(): Promise<void> {
    if (this.#held.size === 0) return;
    const redis = await this.#clients.command();
    // The overloads of xclaim resolve on one client class, not on the union of both.
    await (redis as unknown as ClaimCommand).xclaim(this.#keys.tasks, GROUP, this.id, 0, ...this.#held.keys(), 'JUSTID');
  }

  /** Takes over batches whose worker went silent past the visibility timeout. */
  async #reclaim(): Promise<void> {
    // Not gated on free capacity: the reader refills every free slot at once,
    // so a gate would leave a dead worker's batches behind the whole backlog.
    if (!this.#accepting) return;
    const redis = await this.#clients.command();
    const [next, entries, deleted] = (await (redis as unknown as BufferCommands).xautoclaimBuffer(
      this.#keys.tasks,
      GROUP,
      this.id,
      this.#visibilityMs,
      this.#reclaimCursor,
      'COUNT',
      Math.max(1, this.#capacity),
    )) as unknown as [Buffer, [Buffer, Buffer[] | null][], Buffer[] | undefined];
    // Redis looks at 10 × COUNT pending entries per call: from the cursor it
    // returned, the next tick goes on past entries held by live workers, so
    // a dead worker's batch behind many of them is found within a few ticks.
    this.#reclaimCursor = next?.toString() || '0-0';
    if (deleted?.length) await redis.xack(this.#keys.tasks, GROUP, ...deleted.map(String));
    for (const [rawId, flat] of entries) {
      const id = rawId.toString();
      if (this.#held.has(id)) continue;
      const info = (await redis.xpending(this.#keys.tasks, GROUP, id, id, 1)) as [string, string, number, number][];
      this.#run(id, flat, Number(info[0]?.[3] ?? 2));
    }
  }

  #run(entry: string, flat: Buffer[] | null, deliveries: number): void {
    this.#held.set(entry, { entry });
    void this.#runBatch(entry, fieldsOf(flat), deliveries)
      .catch((err) => {
        if (err instanceof LeftForOthers) {
          this.#warn('a batch', `${err.message} (${(err.cause as Error)?.message}); it runs again elsewhere after the visibility timeout`);
          return;
        }
        if (err instanceof WorkerBroken) {
          if (!this.failure) {
            this.failure = err.cause as Error;
            process.emitWarning(`multiprocessing-ts worker ${this.id}: stopping: its local pool is broken (${(err.cause as Error)?.message}); its batches go to other workers`);
            void this.kill();
          }
          return;
        }
        // Could not store the result (Redis away for good): the batch stays
        // pending and another worker runs it after the visibility timeout.
        process.emitWarning(`multiprocessing-ts worker ${this.id}: could not finish batch ${entry}: ${(err as Error)?.message ?? err}`);
      })
      .finally(() => {
        this.#held.delete(entry);
        const wake = this.#slotFree;
        this.#slotFree = null;
        wake?.();
      });
  }

  async #runBatch(entry: string, fields: Map<string, Buffer>, deliveries: number): Promise<void> {
    const redis = await this.#clients.command();
    const caller = fields.get('c')?.toString();
    if (!caller || !fields.has('p')) {
      // Deleted by its caller (an abort) after it was delivered.
      await redis.multi().xack(this.#keys.tasks, GROUP, entry).xdel(this.#keys.tasks, entry).exec();
      return;
    }
    const reply: (string | Buffer)[] = ['b', fields.get('b')!, 'w', this.id, 'n', String(deliveries)];
    const failure = this.#check(fields, deliveries);
    let tasks = 0;
    if (failure) {
      reply.push('e', packError(failure));
    } else {
      const fn = this.#exports[fields.get('f')!.toString()] as (...a: unknown[]) => unknown;
      const timeoutText = fields.get('t')?.toString();
      const timeout = timeoutText ? Number(timeoutText) : undefined;
      let argLists: unknown[][];
      try {
        argLists = unpack(fields.get('p')!, 'a batch', this.#clients) as unknown[][];
        if (!Array.isArray(argLists)) throw new ValueError('a batch holds no argument lists');
      } catch (err) {
        argLists = [];
        reply.push('e', packError(err));
      }
      if (argLists.length) {
        tasks = argLists.length;
        let broken: unknown = null;
        let outsideKill: unknown = null;
        const outcomes = await Promise.all(
          argLists.map((args) =>
            this.#local.applyAsync(fn, args as never, { timeout }).then(
              (value): [boolean, unknown] => [true, value],
              (err): [boolean, unknown] => {
                if (err instanceof BrokenPoolError) broken = err;
                // Killed from outside (a signal to the whole group): not the task's fault; another worker runs it.
                if (err instanceof WorkerLostError && OUTSIDE_SIGNALS.has((err as { exitCode?: number }).exitCode ?? 0)) outsideKill = err;
                return [false, packError(err)];
              },
            ),
          ),
        );
        // This machine cannot run tasks (its local workers die at start):
        // the batch is left for other workers, and this one stops.
        if (broken) throw new WorkerBroken('local pool broken', { cause: broken });
        if (outsideKill) throw new LeftForOthers('a local child was killed from outside', { cause: outsideKill });
        reply.push('r', packOutcomes(outcomes));
      }
    }
    const results = this.#keys.results(caller);
    try {
      await bounded(
        redis.multi().xadd(results, '*', ...(reply as string[])).pexpire(results, RESULTS_TTL_MS).xack(this.#keys.tasks, GROUP, entry).xdel(this.#keys.tasks, entry).exec(),
        UNREACHABLE_TIMEOUTS * this.#callTimeoutMs,
        'storing a batch result',
        this.#clients.url,
      );
    } catch (err) {
      // Not stored: the entry stays pending and another worker runs it after
      // the visibility timeout (if the write does land later, the caller
      // takes the first result and ignores the other).
      this.#leftForOthers++;
      throw new LeftForOthers('its result could not be stored', { cause: err });
    }
    this.#completed += tasks;
  }

  /** Why this worker must not run the batch, if it must not. */
  #check(fields: Map<string, Buffer>, deliveries: number): Error | null {
    const limit = Number(fields.get('a')?.toString() ?? 1);
    if (deliveries > limit) {
      return new WorkerLostError(
        `the batch was delivered ${deliveries} times (limit ${limit}): each worker that took it stopped answering before it finished (died, killed, or lost its network) for more than the visibility timeout`,
      );
    }
    const name = fields.get('f')?.toString() ?? '';
    const fn = Object.hasOwn(this.#exports, name) ? this.#exports[name] : undefined;
    if (typeof fn !== 'function') {
      return new ClusterError(`worker ${this.id}: its module ${this.#module} exports no function named ${JSON.stringify(name)}; start the workers with the module that exports it`);
    }
    const expected = fields.get('v')?.toString();
    const own = fingerprint(fn);
    if (expected !== own) {
      return new ClusterError(
        `worker ${this.id}: its ${name} in ${this.#module} is another version than the caller's (fingerprint ${own}, the caller's ${expected}); restart the workers with the caller's version of the module`,
      );
    }
    // The function may be the same and what it reads around it not (a constant, a helper): the module's source is compared too.
    const callerModule = fields.get('m')?.toString() ?? '';
    const ownModule = moduleFingerprint(fn);
    if (callerModule !== '' && ownModule !== '' && callerModule !== ownModule) {
      return new ClusterError(
        `worker ${this.id}: the module that defines ${name} (${this.#module} or one it imports) is another version than the caller's, or the same code in another layout (module fingerprint ${ownModule}, the caller's ${callerModule}): the function is the same, the script around it is not; run the same build of the module on the workers and the caller (a caller that runs a bundle of the same code can pass { checkModule: false } to its Pool)`,
      );
    }
    return null;
  }
}

/**
 * The local pool's initializer: a terminal's Ctrl-C, or a service manager's
 * SIGTERM to the whole process group, reaches the local children too; they
 * ignore it, so only the worker decides when they stop (it drains, then ends
 * them). Runs by source in each child; a thread child has no signals of its own.
 */
function shieldFromGroupSignals(): void {
  if (typeof process.send !== 'function') return;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(signal, () => {});
}

/** Exit codes of a local child that a signal from outside ended (SIGHUP, SIGINT, SIGQUIT, SIGTERM): not the task's doing. */
const OUTSIDE_SIGNALS = new Set([-1, -2, -3, -15]);

/** A batch this worker must not answer: its local pool is broken (the cause). */
class WorkerBroken extends Error {}

/** A batch left un-acknowledged, for another worker to take over after the visibility timeout. */
class LeftForOthers extends Error {}

/** The outcomes' bytes; a value that cannot be stored fails its own task only. */
function packOutcomes(outcomes: [boolean, unknown][]): Buffer {
  try {
    return pack(outcomes, 'results');
  } catch {
    return pack(
      outcomes.map((o, i) => {
        try {
          pack(o[1], `result`);
          return o;
        } catch (err) {
          return [false, packError(new SerializationError(`the result of task ${i} of its batch: ${(err as Error).message}`, { cause: err }))];
        }
      }),
      'results',
    );
  }
}
