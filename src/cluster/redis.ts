/**
 * Connections to a cluster's Redis, through ioredis.
 *
 * ioredis is loaded on first use (a program that never names a cluster
 * never pays for it). Per URL and process there is one shared command
 * connection, with auto-pipelining on: every call made in one tick goes
 * out in one write, which is where batching across unrelated callers comes
 * from. Blocking commands (`XREAD … BLOCK`, `BLPOP`) would stall every
 * other caller of a shared connection, so each blocking reader gets a
 * connection of its own (`blockingClient`).
 *
 * A Redis Cluster (sharded) URL (`redis-cluster://`, url.ts) gives an
 * ioredis `Cluster` in each of those places instead of a `Redis`: the same
 * commands, routed by key slot to the node that serves it (every key of
 * one object shares one hash tag, keys.ts, so an object's commands,
 * scripts and transactions go to one node). A `Cluster` holds a socket per
 * node it talked to; a blocking reader's `Cluster` is its own, so its
 * blocking read stalls no other caller's node connection.
 *
 * Failure policy: the first connection must be made within the connect
 * timeout or the call fails with a `ClusterError` that names the URL with
 * its password masked. Later disconnects are ioredis' business: it
 * reconnects, and commands queued meanwhile are sent when it is back. A
 * Redis that comes back empty (restarted without persistence) is noticed
 * by its `run_id`; `onRestart` lets the layers above re-submit what they
 * know was lost. On a Redis Cluster that is watched per master node (see
 * `#watchNodes`).
 */
import { Socket } from 'node:net';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { keepAlive } from '../connection/keepalive.js';
import { ClusterError, ValueError } from '../errors.js';
import { type ClusterUrl, type ShardedUrl } from './url.js';

/** How long the first connection may take before a call fails. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/**
 * How long a connection whose Redis stopped answering TCP keepalive probes
 * lives on (connection/keepalive.ts): a NAT or firewall that dropped an
 * idle socket answers nothing, and a subscriber or a blocked read on it
 * would wait for good. A connection the caller configured (`redis.keepAlive`)
 * is left as configured.
 */
const KEEPALIVE_DEAD_AFTER_MS = 30_000;

/**
 * A connection as the layers above use it: one server's (`Redis`) or a
 * Redis Cluster's (`Cluster`). Both have the same command methods (one
 * ioredis interface), events and `status`.
 */
export type RedisClient = Redis | Cluster;

/** Options of a cluster context that reach the client. */
export interface ClusterClientOptions {
  /** Milliseconds the first connection may take (default 5000). */
  readonly connectTimeoutMs?: number;
  /**
   * Passed to ioredis as they are (password or ACL `username`, `tls`,
   * `sentinels` and `name` for Sentinel…); the URL's own settings win
   * where both name one. For a Redis Cluster URL they are every node's
   * connection options (`host`, `port` and `path` come from the URL;
   * `sentinels` is refused).
   */
  readonly redis?: RedisOptions;
}

interface IoRedis {
  readonly Redis: { new (url: string, options: RedisOptions): Redis; new (port: number, host: string, options: RedisOptions): Redis };
  readonly Cluster: new (seeds: { host: string; port: number }[], options: ClusterOptions) => Cluster;
}
let loaded: Promise<IoRedis> | null = null;

async function loadIoRedis(): Promise<IoRedis> {
  loaded ??= import('ioredis').then((m) => {
    const lib = (m.Redis ? m : m.default) as unknown as { Redis?: IoRedis['Redis']; Cluster: IoRedis['Cluster'] } & IoRedis['Redis'];
    return { Redis: lib.Redis ?? lib, Cluster: lib.Cluster } as IoRedis;
  });
  return loaded;
}

/**
 * Commands the shared connection writes at once rather than in the tick's
 * pipeline (ioredis defers that to a `setImmediate`): a pool's batches,
 * which are already one command per chunk or per tick of `applyAsync`
 * calls, so the pipeline would only delay a lone task's round trip.
 */
const UNPIPELINED = ['xadd'];

/** Credential errors: a refused AUTH, or a server that wants one. */
const REFUSED = /NOAUTH|WRONGPASS|invalid password|ERR AUTH/i;

/**
 * Opens one connection and waits until it is ready, or fails within the
 * timeout. For a Redis Cluster URL that is a `Cluster` (every node), or with
 * `node`, a plain connection to that one node of it.
 */
export async function openClient(url: ClusterUrl, options: ClusterClientOptions = {}, role = 'command', node?: NodeAddress): Promise<RedisClient> {
  const lib = await loadIoRedis();
  const timeout = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const connection: RedisOptions = {
    keepAlive: KEEPALIVE_DEAD_AFTER_MS / 2,
    ...options.redis,
    connectTimeout: timeout,
    // A command waits for a reconnect instead of failing after 20 tries:
    // the layers above bound their own waits.
    maxRetriesPerRequest: null,
    connectionName: `mpts-${role}-${process.pid}`,
  };
  const client: RedisClient = url.sharded && node
    ? new lib.Redis(node.port, node.host, { ...nodeOptions(connection, url.sharded, url.redacted), lazyConnect: true, enableAutoPipelining: false })
    : url.sharded
    ? new lib.Cluster(
        url.sharded.seeds.map(({ host, port }) => ({ host, port })),
        {
          lazyConnect: true,
          enableAutoPipelining: role === 'command',
          autoPipeliningIgnoredCommands: UNPIPELINED,
          redisOptions: nodeOptions(connection, url.sharded, url.redacted),
        },
      )
    : new lib.Redis(url.href, { ...connection, lazyConnect: true, enableAutoPipelining: role === 'command', autoPipeliningIgnoredCommands: UNPIPELINED });
  // ioredis sets only when the first probe goes; the system's defaults then take some 11 minutes to give up.
  if (options.redis?.keepAlive === undefined) onNewSockets(client, tuneKeepAlive);
  // Errors also reach the commands that were waiting; without a listener
  // ioredis would print each reconnect attempt's error. A Cluster reports
  // its nodes' errors (a refused AUTH among them) as 'node error', and
  // retries its seeds until told to stop: a refusal ends the wait at once.
  let lastError: Error | null = null;
  let refuse: ((err: Error) => void) | null = null;
  const refused = new Promise<never>((_, reject) => (refuse = reject));
  refused.catch(() => {});
  const note = (err: Error) => {
    const cause = (err as { lastNodeError?: Error }).lastNodeError ?? err;
    if (REFUSED.test(lastError?.message ?? '')) return;
    lastError = cause;
    if (REFUSED.test(cause.message ?? '')) refuse?.(cause);
  };
  client.on('error', note);
  if (isCluster(client)) client.on('node error', note);
  const failure = (err: unknown) =>
    new ClusterError(`cannot connect to ${url.redacted} within ${timeout} ms: ${(err as Error)?.message ?? String(err)}`, { cause: sanitized(err) });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      // A Cluster whose ready check met a node in a failed state (a master
      // just restarted waits out its rejoin delay) reconnects by itself, and
      // the promise of the first connect() never settles: 'ready' is the word.
      ...(isCluster(client) ? [new Promise((resolve) => client.once('ready', resolve))] : []),
      refused,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), timeout);
      }),
    ]);
    // The credentials are checked by the first command, not by connect().
    await Promise.race([client.ping(), refused]);
  } catch (thrown) {
    client.disconnect();
    // A refused AUTH closes the connection: the reason is the error event's, not the rejection's.
    const err = (lastError as Error | null) ?? thrown;
    if ((err as Error)?.message?.match(REFUSED)) {
      throw new ClusterError(`${url.redacted} refused the credentials: ${(err as Error).message}`, { cause: sanitized(err) });
    }
    throw failure(err);
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/**
 * Every node's connection options for a Redis Cluster URL: the URL's
 * credentials and TLS over the context's options. Options that name one
 * server give way to the URL's nodes; Sentinel has no place in a cluster.
 */
function nodeOptions(connection: RedisOptions, sharded: ShardedUrl, redacted: string): NonNullable<ClusterOptions['redisOptions']> {
  if (connection.sentinels !== undefined) {
    throw new ValueError(`${redacted} is a Redis Cluster URL: the redis.sentinels option does not apply (a Sentinel set is named by a redis:// URL)`);
  }
  // Where to connect comes from the cluster itself; ioredis manages the nodes' retries and offline queues.
  const { host: _host, port: _port, path: _path, sentinels: _sentinels, retryStrategy: _retry, enableOfflineQueue: _offline, readOnly: _readOnly, ...nodes } = connection;
  return {
    ...nodes,
    ...(sharded.username === undefined ? {} : { username: sharded.username }),
    ...(sharded.password === undefined ? {} : { password: sharded.password }),
    ...(sharded.tls ? { tls: typeof connection.tls === 'object' ? connection.tls : {} } : {}),
  };
}

/** One node of a Redis Cluster. */
export interface NodeAddress {
  readonly host: string;
  readonly port: number;
}

/** The shared connections of one URL in this process. */
export class ClusterClients {
  readonly url: ClusterUrl;
  readonly options: ClusterClientOptions;
  /** The shared command connection, once asked for. */
  #command: Promise<RedisClient> | null = null;
  /** Connections this object opened, ended by `close()`. */
  readonly #opened = new Set<RedisClient>();
  /** The server's run_id when last seen: a new one means Redis restarted and may have lost data. */
  #runId: string | null = null;
  /** On a Redis Cluster, each master's run_id when last seen, by its address. */
  readonly #nodeRunIds = new Map<string, string>();
  readonly #restartListeners = new Set<() => void>();
  #closed = false;
  readonly #closeListeners = new Set<() => void>();
  /** Calls in flight that need the process kept alive (`hold()`); at 0 every socket is unref'd. */
  #holds = 0;

  constructor(url: ClusterUrl, options: ClusterClientOptions = {}) {
    this.url = url;
    this.options = options;
  }

  /** The shared command connection (auto-pipelined). */
  command(): Promise<RedisClient> {
    // A rejected promise, never a throw: callers chain `.then()` on it.
    if (this.#closed) return Promise.reject(this.#closedError());
    if (!this.#command) {
      this.#command = this.#open('command').then(async (client) => {
        // A Redis Cluster's masters are watched by #open, on every connection.
        if (isCluster(client)) return client;
        this.#runId = await runId(client);
        client.on('ready', () => void this.#checkRestart(client));
        return client;
      });
      // A failed first connection is not cached: the next call tries again.
      this.#command.catch(() => {
        this.#command = null;
      });
    }
    return this.#command;
  }

  /** A connection of its own, for a blocking reader; closed with this object or by the caller. */
  blockingClient(role: string): Promise<RedisClient> {
    if (this.#closed) return Promise.reject(this.#closedError());
    return this.#open(role);
  }

  /**
   * A connection for pub/sub wake-ups (objects/wake.ts). On a Redis Cluster,
   * a plain connection to one node, taken in turn among the masters known
   * (the seeds at first): classic pub/sub reaches every node over the
   * cluster bus, and on a connection of its own the waker's checks (a PING,
   * its close, TCP keepalive) are about the very socket its subscriptions
   * ride on. A `Cluster`'s own subscriber is a hidden connection that
   * ioredis replaces silently, losing what was published meanwhile.
   */
  subscriberClient(): Promise<RedisClient> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const sharded = this.url.sharded;
    if (!sharded) return this.#open('subscriber');
    return this.#nodeForSubscriber().then((node) => this.#open('subscriber', node));
  }

  #subscriberTurn = 0;

  async #nodeForSubscriber(): Promise<NodeAddress> {
    let nodes: readonly NodeAddress[] = this.url.sharded!.seeds;
    try {
      const command = await Promise.race([this.command(), new Promise<null>((r) => setTimeout(() => r(null), 0))]);
      if (command && isCluster(command)) {
        const masters = command.nodes('master').map((n) => ({ host: n.options.host!, port: n.options.port! }));
        if (masters.length > 0) nodes = masters;
      }
    } catch {
      // The seeds, then.
    }
    return nodes[this.#subscriberTurn++ % nodes.length]!;
  }

  /** Calls `listener` whenever the server (on a Redis Cluster: one of its masters) is found to have restarted (a new run_id). */
  onRestart(listener: () => void): () => void {
    this.#restartListeners.add(listener);
    return () => this.#restartListeners.delete(listener);
  }

  /**
   * Keeps this process alive (the connections' sockets ref'd) until the
   * returned function is called: for calls in flight. Without a hold, the
   * connections never keep a process alive, so a script whose pool is done
   * ends without `ctx.close()` (as with a local pool).
   */
  hold(): () => void {
    if (this.#holds++ === 0) for (const client of this.#opened) applyRef(client, true);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#holds === 0) for (const client of this.#opened) applyRef(client, false);
    };
  }

  /** Ends every connection this object opened. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const client of this.#opened) client.disconnect();
    this.#opened.clear();
    for (const listener of this.#closeListeners) listener();
    this.#closeListeners.clear();
  }

  /** Calls `listener` once when this object is closed (pending work then fails instead of waiting). */
  onClose(listener: () => void): () => void {
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #open(role: string, node?: NodeAddress): Promise<RedisClient> {
    const client = await openClient(this.url, this.options, role, node);
    if (this.#closed) {
      client.disconnect();
      throw new ClusterError(`the cluster context for ${this.url.redacted} is closed`);
    }
    this.#opened.add(client);
    client.once('end', () => this.#opened.delete(client));
    applyRef(client, this.#holds > 0);
    // A reconnect makes a new socket: it takes the current state.
    onNewHandles(client, () => applyRef(client, this.#holds > 0));
    if (isCluster(client)) this.#watchNodes(client);
    return client;
  }

  async #checkRestart(client: Redis): Promise<void> {
    let id: string;
    try {
      id = await runId(client);
    } catch {
      return;
    }
    if (this.#runId !== null && id !== this.#runId) {
      this.#runId = id;
      for (const listener of this.#restartListeners) listener();
    }
    this.#runId = id;
  }

  /**
   * Restart detection on a Redis Cluster: each master's run_id is read
   * whenever a connection to it becomes ready (ioredis makes a new node
   * connection after a node was lost, on the next command to its slots),
   * by every connection of this context, blocking readers included (they
   * are the ones that notice first: a reader waiting on a pool's results
   * is connected to the node that holds them). A master at the same
   * address with a new run_id restarted, and may have come back empty:
   * the listeners look for what is gone. A replica promoted by a failover
   * answers at its own address, which had no run_id recorded as a master:
   * its data is the old master's, and nothing fires. A listener that fires
   * for nothing lost costs a few reads (they check before re-submitting).
   */
  #watchNodes(cluster: Cluster): void {
    const watch = (node: Redis) => {
      if (node.status === 'ready') void this.#checkNode(node);
      node.on('ready', () => void this.#checkNode(node));
    };
    for (const node of cluster.nodes('all')) watch(node);
    cluster.on('+node', watch);
  }

  async #checkNode(node: Redis): Promise<void> {
    if (node.options.readOnly) return; // a replica: its restart loses nothing
    const address = `${node.options.host}:${node.options.port}`;
    let id: string;
    try {
      id = await runId(node);
    } catch {
      return;
    }
    const before = this.#nodeRunIds.get(address);
    this.#nodeRunIds.set(address, id);
    if (before !== undefined && before !== id) for (const listener of this.#restartListeners) listener();
  }

  #closedError(): ClusterError {
    return new ClusterError(`the cluster context for ${this.url.redacted} is closed`);
  }
}

/**
 * A Redis call that gives up after `ms`: ioredis queues commands while it
 * reconnects (maxRetriesPerRequest is off), which would wait forever for a
 * Redis that does not come back. The command may still run later.
 */
export async function bounded<T>(call: Promise<T>, ms: number, what: string, url: ClusterUrl): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      call,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ClusterError(`${what}: no answer from ${url.redacted} within ${ms} ms (Redis unreachable?); what it asked may still happen`)), ms);
        timer.unref?.();
      }),
    ]);
  } catch (err) {
    throw err instanceof ClusterError ? err : new ClusterError(`${what} on ${url.redacted}: ${(err as Error)?.message ?? err}`, { cause: sanitized(err) });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A client error fit to keep as a cause: ioredis' errors carry the command
 * with its arguments (`AUTH user password`), which util.inspect would print.
 */
export function sanitized(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const copy = new Error(err.message);
  copy.name = err.name;
  copy.stack = err.stack;
  return copy;
}

/** True for a Redis Cluster's client. */
export function isCluster(client: RedisClient): client is Cluster {
  return client.isCluster;
}

type Handle = { ref?: () => void; unref?: () => void } | null | undefined;

/**
 * What may keep the process alive in a client: a server connection's socket
 * and reconnect timer; for a Redis Cluster, its own reconnect and slots
 * refresh timers, every node connection's, and its pub/sub subscriber's
 * (a connection to one node that ioredis picks and replaces by itself).
 */
function handlesOf(client: RedisClient): Handle[] {
  if (!isCluster(client)) {
    const { stream, reconnectTimeout } = client as unknown as { stream?: Handle; reconnectTimeout?: Handle };
    return [stream, reconnectTimeout];
  }
  const inner = client as unknown as { reconnectTimeout?: Handle; slotsTimer?: Handle; subscriber?: { getInstance?: () => Redis | null } };
  const subscriber = inner.subscriber?.getInstance?.();
  return [inner.reconnectTimeout, inner.slotsTimer, ...client.nodes('all').flatMap(handlesOf), ...(subscriber ? handlesOf(subscriber) : [])];
}

/**
 * Refs or unrefs every socket and reconnect timer of a client (an idle
 * client whose Redis went away must not keep the process alive retrying).
 */
export function applyRef(client: RedisClient, ref: boolean): void {
  for (const handle of handlesOf(client)) {
    if (ref) handle?.ref?.();
    else handle?.unref?.();
  }
}

/**
 * Calls `apply` whenever a client makes a new socket or timer (a reconnect,
 * a retry's wait; on a Redis Cluster also a connection to a node), which
 * starts ref'd: the caller gives it the current state.
 */
export function onNewHandles(client: RedisClient, apply: () => void): void {
  for (const event of ['connect', 'ready', 'reconnecting']) client.on(event, apply);
  if (!isCluster(client)) return;
  const watch = (node: Redis) => {
    node.on('connect', apply);
    node.on('reconnecting', apply);
  };
  for (const node of client.nodes('all')) watch(node);
  client.on('+node', watch);
}

/** Gives a server connection's new socket our keepalive timing (probes, their interval, the bound on unacknowledged data). */
function tuneKeepAlive(server: Redis): void {
  const stream = (server as unknown as { stream?: unknown }).stream;
  if (stream instanceof Socket) keepAlive(stream, KEEPALIVE_DEAD_AFTER_MS, true);
}

/** Calls `fn` with each server connection of `client` whenever it has made a new socket (every node of a Cluster, those added later too). */
function onNewSockets(client: RedisClient, fn: (server: Redis) => void): void {
  if (!isCluster(client)) {
    client.on('connect', () => fn(client));
    return;
  }
  const watch = (node: Redis) => node.on('connect', () => fn(node));
  for (const node of client.nodes('all')) watch(node);
  client.on('+node', watch);
}

async function runId(client: Redis): Promise<string> {
  const info = await client.info('server');
  return /run_id:(\w+)/.exec(info)?.[1] ?? '';
}
