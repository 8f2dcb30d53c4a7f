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
 * Failure policy: the first connection must be made within the connect
 * timeout or the call fails with a `ClusterError` that names the URL with
 * its password masked. Later disconnects are ioredis' business: it
 * reconnects, and commands queued meanwhile are sent when it is back. A
 * Redis that comes back empty (restarted without persistence) is noticed
 * by its `run_id`; `onRestart` lets the layers above re-submit what they
 * know was lost.
 */
import { Socket } from 'node:net';
import type { Redis, RedisOptions } from 'ioredis';
import { keepAlive } from '../connection/keepalive.js';
import { ClusterError } from '../errors.js';
import { type ClusterUrl } from './url.js';

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

/** Options of a cluster context that reach the client. */
export interface ClusterClientOptions {
  /** Milliseconds the first connection may take (default 5000). */
  readonly connectTimeoutMs?: number;
  /**
   * Passed to ioredis as they are (password or ACL `username`, `tls`,
   * `sentinels` and `name` for Sentinel…); the URL's own settings win
   * where both name one.
   */
  readonly redis?: RedisOptions;
}

type RedisConstructor = new (url: string, options: RedisOptions) => Redis;
let ctor: Promise<RedisConstructor> | null = null;

async function loadRedis(): Promise<RedisConstructor> {
  ctor ??= import('ioredis').then((m) => (m.Redis ?? m.default) as unknown as RedisConstructor);
  return ctor;
}

/** Opens one connection and waits until it is ready, or fails within the timeout. */
export async function openClient(url: ClusterUrl, options: ClusterClientOptions = {}, role = 'command'): Promise<Redis> {
  const Redis = await loadRedis();
  const timeout = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const client = new Redis(url.href, {
    keepAlive: KEEPALIVE_DEAD_AFTER_MS / 2,
    ...options.redis,
    lazyConnect: true,
    connectTimeout: timeout,
    // A command waits for a reconnect instead of failing after 20 tries:
    // the layers above bound their own waits.
    maxRetriesPerRequest: null,
    enableAutoPipelining: role === 'command',
    connectionName: `mpts-${role}-${process.pid}`,
  });
  // ioredis sets only when the first probe goes; the system's defaults then take some 11 minutes to give up.
  if (options.redis?.keepAlive === undefined) client.on('connect', () => tuneKeepAlive(client));
  // Errors also reach the commands that were waiting; without a listener
  // ioredis would print each reconnect attempt's error.
  let lastError: Error | null = null;
  client.on('error', (err: Error) => (lastError = err));
  const failure = (err: unknown) =>
    new ClusterError(`cannot connect to ${url.redacted} within ${timeout} ms: ${(err as Error)?.message ?? String(err)}`, { cause: sanitized(err) });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), timeout);
      }),
    ]);
    // The credentials are checked by the first command, not by connect().
    await client.ping();
  } catch (thrown) {
    client.disconnect();
    // A refused AUTH closes the connection: the reason is the error event's, not the rejection's.
    const err = (lastError as Error | null) ?? thrown;
    if ((err as Error)?.message?.match(/NOAUTH|WRONGPASS|invalid password|ERR AUTH/i)) {
      throw new ClusterError(`${url.redacted} refused the credentials: ${(err as Error).message}`, { cause: sanitized(err) });
    }
    throw failure(err);
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/** The shared connections of one URL in this process. */
export class ClusterClients {
  readonly url: ClusterUrl;
  readonly options: ClusterClientOptions;
  /** The shared command connection, once asked for. */
  #command: Promise<Redis> | null = null;
  /** Connections this object opened, ended by `close()`. */
  readonly #opened = new Set<Redis>();
  /** The server's run_id when last seen: a new one means Redis restarted and may have lost data. */
  #runId: string | null = null;
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
  command(): Promise<Redis> {
    // A rejected promise, never a throw: callers chain `.then()` on it.
    if (this.#closed) return Promise.reject(this.#closedError());
    if (!this.#command) {
      this.#command = this.#open('command').then(async (client) => {
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
  blockingClient(role: string): Promise<Redis> {
    if (this.#closed) return Promise.reject(this.#closedError());
    return this.#open(role);
  }

  /** Calls `listener` whenever the server is found to have restarted (a new run_id). */
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

  async #open(role: string): Promise<Redis> {
    const client = await openClient(this.url, this.options, role);
    if (this.#closed) {
      client.disconnect();
      throw new ClusterError(`the cluster context for ${this.url.redacted} is closed`);
    }
    this.#opened.add(client);
    client.once('end', () => this.#opened.delete(client));
    applyRef(client, this.#holds > 0);
    // A reconnect makes a new socket: it takes the current state.
    client.on('connect', () => applyRef(client, this.#holds > 0));
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

/** Gives a connection's new socket our keepalive timing (probes, their interval, the bound on unacknowledged data). */
function tuneKeepAlive(client: Redis): void {
  const stream = (client as unknown as { stream?: unknown }).stream;
  if (stream instanceof Socket) keepAlive(stream, KEEPALIVE_DEAD_AFTER_MS, true);
}

/** Refs or unrefs a connection's socket and its reconnect timer (an idle client whose Redis went away must not keep the process alive retrying). */
function applyRef(client: Redis, ref: boolean): void {
  type Handle = { ref?: () => void; unref?: () => void } | null | undefined;
  const { stream, reconnectTimeout } = client as unknown as { stream?: Handle; reconnectTimeout?: Handle };
  for (const handle of [stream, reconnectTimeout]) {
    if (ref) handle?.ref?.();
    else handle?.unref?.();
  }
}

async function runId(client: Redis): Promise<string> {
  const info = await client.info('server');
  return /run_id:(\w+)/.exec(info)?.[1] ?? '';
}
