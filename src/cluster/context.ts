/**
 * `mp.getContext('redis://…')`: the package's API on a Redis cluster.
 *
 * One context per URL (and options) and process holds the connections
 * (redis.ts); every object made from it uses them. Objects are found by
 * name in Redis, so processes on any machine that make an object of the
 * same kind and name from contexts of the same URL share it.
 *
 * Every method of the cluster objects is async: there is no synchronous
 * form over a network (`acquireSync`, `getSync`, `.value` and the like
 * throw a `ClusterError` naming the async form). The objects, their keys
 * and their failure model are in objects/ and docs/ARCHITECTURE.md.
 */
import { serialize } from 'node:v8';
import { ValueError } from '../errors.js';
import type { Typecode, ElementOf } from '../sharedctypes/typecodes.js';
import { ClusterPool, type ClusterPoolOptions } from './pool/pool.js';
import { ClusterClients, type ClusterClientOptions } from './redis.js';
import { CLUSTER_ENV, parseClusterUrl } from './url.js';
import { setClientsResolver, type ClusterObjectOptions } from './objects/base.js';
import { ObjectClients } from './objects/connection.js';
import { ClusterEvent } from './objects/event.js';
import { ClusterLock, ClusterRLock, type ClusterLockOptions } from './objects/lock.js';
import { ClusterManager } from './objects/manager.js';
import { ClusterJoinableQueue, ClusterQueue, ClusterSimpleQueue, type ClusterJoinableQueueOptions } from './objects/queue.js';
import { ClusterBoundedSemaphore, ClusterSemaphore } from './objects/semaphore.js';
import { ClusterValue } from './objects/value.js';
// Registered for descriptors (a manager's list or dict arriving as a task argument).
import './objects/list.js';
import './objects/dict.js';

/** The API of a cluster context. */
export interface ClusterContext {
  /** The URL, password masked. */
  readonly url: string;
  /** `new ctx.Pool(processes?, { name?, maxAttempts? })`: a pool whose workers are `npx multiprocessing-ts worker` processes anywhere. */
  readonly Pool: new (processes?: number | null, options?: ClusterPoolOptions) => ClusterPool;
  /** `new ctx.Lock({ name?, ttl? })`: a lock with an expiry and a fencing token. */
  readonly Lock: new (options?: ClusterLockOptions) => ClusterLock;
  /** `new ctx.RLock({ name?, ttl? })`. */
  readonly RLock: new (options?: ClusterLockOptions) => ClusterRLock;
  /** `new ctx.Semaphore(value = 1, { name? })`. */
  readonly Semaphore: new (value?: number, options?: ClusterObjectOptions) => ClusterSemaphore;
  /** `new ctx.BoundedSemaphore(value = 1, { name? })`. */
  readonly BoundedSemaphore: new (value?: number, options?: ClusterObjectOptions) => ClusterBoundedSemaphore;
  /** `new ctx.Event({ name? })`. */
  readonly Event: new (options?: ClusterObjectOptions) => ClusterEvent;
  /** `new ctx.Queue<T>(maxsize = 0, { name? })`. */
  readonly Queue: new <T = unknown>(maxsize?: number, options?: ClusterObjectOptions) => ClusterQueue<T>;
  /** `new ctx.JoinableQueue<T>(maxsize = 0, { name?, leaseMs? })`: at-least-once delivery. */
  readonly JoinableQueue: new <T = unknown>(maxsize?: number, options?: ClusterJoinableQueueOptions) => ClusterJoinableQueue<T>;
  /** `new ctx.SimpleQueue<T>({ name? })`. */
  readonly SimpleQueue: new <T = unknown>(options?: ClusterObjectOptions) => ClusterSimpleQueue<T>;
  /** `new ctx.Value(typecode, init = 0, { name? })`: get/set/add, all async. */
  readonly Value: new <T extends Typecode>(typecode: T, init?: ElementOf<T> | number, options?: ClusterObjectOptions) => ClusterValue<ElementOf<T>>;
  /** `await ctx.Manager()`: list, dict and Namespace in Redis. */
  Manager(): Promise<ClusterManager>;
  /** Closes this context's connections; its objects stop working. */
  close(): void;
  /** Always `'cluster'`. */
  getStartMethod(): 'cluster';
}

const contexts = new Map<string, ClusterContext>();
const clientsOf = new WeakMap<ClusterContext, ClusterClients>();

/**
 * The cluster context of `url` (`'cluster'` reads `MULTIPROCESSING_TS_CLUSTER`).
 * No connection is made until an object needs one.
 * @throws ValueError for a URL that is not a redis://, rediss://, redis-cluster:// or rediss-cluster:// URL.
 */
export function clusterContext(url: string, options: ClusterClientOptions = {}): ClusterContext {
  let href = url;
  if (url === 'cluster') {
    href = process.env[CLUSTER_ENV] ?? '';
    if (!href) throw new ValueError(`getContext('cluster') reads the cluster URL from ${CLUSTER_ENV}, which is not set; set it (e.g. redis://host:6379/0) or pass the URL`);
  }
  const parsed = parseClusterUrl(href);
  const key = options.connectTimeoutMs === undefined && options.redis === undefined ? href : null;
  const known = key === null ? undefined : contexts.get(key);
  if (known) return known;
  const clients = new ClusterClients(parsed, options);
  const conn = ObjectClients.of(clients);
  const ctx: ClusterContext = Object.freeze({
    url: parsed.redacted,
    Pool: class Pool extends ClusterPool {
      constructor(processes?: number | null, poolOptions?: ClusterPoolOptions) {
        super(clients, processes, poolOptions);
      }
    },
    Lock: class Lock extends ClusterLock {
      constructor(o?: ClusterLockOptions) {
        super(conn, o);
      }
    },
    RLock: class RLock extends ClusterRLock {
      constructor(o?: ClusterLockOptions) {
        super(conn, o);
      }
    },
    Semaphore: class Semaphore extends ClusterSemaphore {
      constructor(value?: number, o?: ClusterObjectOptions) {
        super(conn, value, o);
      }
    },
    BoundedSemaphore: class BoundedSemaphore extends ClusterBoundedSemaphore {
      constructor(value?: number, o?: ClusterObjectOptions) {
        super(conn, value, o);
      }
    },
    Event: class Event extends ClusterEvent {
      constructor(o?: ClusterObjectOptions) {
        super(conn, o);
      }
    },
    Queue: class Queue<T> extends ClusterQueue<T> {
      constructor(maxsize?: number, o?: ClusterObjectOptions) {
        super(conn, maxsize, o);
      }
    },
    JoinableQueue: class JoinableQueue<T> extends ClusterJoinableQueue<T> {
      constructor(maxsize?: number, o?: ClusterJoinableQueueOptions) {
        super(conn, maxsize, o);
      }
    },
    SimpleQueue: class SimpleQueue<T> extends ClusterSimpleQueue<T> {
      constructor(o?: ClusterObjectOptions) {
        super(conn, o);
      }
    },
    Value: class Value<T extends Typecode> extends ClusterValue<ElementOf<T>> {
      constructor(typecode: T, init?: ElementOf<T> | number, o?: ClusterObjectOptions) {
        super(conn, typecode, init, o);
      }
    },
    Manager: () => ClusterManager.start(clients),
    close() {
      clients.close();
      if (key !== null && contexts.get(key) === ctx) contexts.delete(key);
    },
    getStartMethod: () => 'cluster' as const,
  });
  clientsOf.set(ctx, clients);
  if (key !== null) contexts.set(key, ctx);
  return ctx;
}

/** Contexts made for cluster objects that arrived from a parent with options (one per URL and options). */
const revivedContexts = new Map<string, ClusterContext>();

setClientsResolver((href, options) => {
  let key: string | null = null;
  try {
    key = `${href}\0${serialize(options).toString('base64')}`;
  } catch {
    // Options that cannot be copied never travel (base.ts refuses them).
  }
  let ctx = key === null ? undefined : revivedContexts.get(key);
  if (!ctx || clientsOf.get(ctx)!.closed) {
    ctx = Object.keys(options).length === 0 ? clusterContext(href) : clusterContext(href, options);
    if (key !== null) revivedContexts.set(key, ctx);
  }
  return clientsOf.get(ctx)!;
});
