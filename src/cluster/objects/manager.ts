/**
 * `await ctx.Manager()`: the SyncManager's factories with their data in
 * Redis instead of a server process.
 *
 * There is no manager process: `list`, `dict` and `Namespace` are Redis
 * structures (list.ts, dict.ts) and the sync objects and queues are the
 * cluster ones. The manager holds connections of its own; `shutdown()`
 * closes them, after which its objects reject at once. The data stay in
 * Redis (another process may be using them, by name): remove them with
 * the objects' `clear()` or `unlink()`.
 *
 * With a `name`, a factory attaches to what that name holds; given initial
 * contents as well, it replaces them (Python's `manager.list(seq)` makes a
 * new list with those items; an anonymous one always is new).
 */
import { ClusterError } from '../../errors.js';
import type { Typecode } from '../../sharedctypes/typecodes.js';
import { ClusterClients } from '../redis.js';
import { ObjectClients } from './connection.js';
import type { ClusterObjectOptions } from './base.js';
import { ClusterDict, ClusterNamespace } from './dict.js';
import { ClusterEvent } from './event.js';
import { ClusterList } from './list.js';
import { ClusterLock, ClusterRLock, type ClusterLockOptions } from './lock.js';
import { ClusterJoinableQueue, ClusterQueue, type ClusterJoinableQueueOptions } from './queue.js';
import { ClusterBoundedSemaphore, ClusterSemaphore } from './semaphore.js';
import { ClusterValue } from './value.js';

/**
 * A manager whose objects live in Redis: the cluster form of `mp.Manager()`.
 * @example
 * ```ts
 * const ctx = mp.getContext('redis://10.0.0.5:6379/0');
 * await using manager = await ctx.Manager();
 * const results = await manager.list<number>([], { name: 'results' });
 * // in any process, on any machine: (await (await ctx.Manager()).list([], …)) or pass `results` as a task argument
 * await results.append(42);
 * ```
 */
export class ClusterManager {
  readonly #clients: ClusterClients;
  readonly #conn: ObjectClients;

  private constructor(clients: ClusterClients) {
    this.#clients = clients;
    this.#conn = ObjectClients.of(clients);
  }

  /** @internal Connects (so an unreachable Redis fails here, within the connect timeout). */
  static async start(from: ClusterClients): Promise<ClusterManager> {
    const clients = new ClusterClients(from.url, from.options);
    const manager = new ClusterManager(clients);
    try {
      await manager.#conn.call('Manager()', (redis) => redis.ping());
    } catch (err) {
      clients.close();
      throw err;
    }
    return manager;
  }

  #check(call: string): void {
    if (this.#clients.closed) throw new ClusterError(`manager.${call}: the manager was shut down`);
  }

  /** A list in Redis (Python's `manager.list(sequence)`); with a name, that list (its contents replaced when `init` is given). */
  async list<T = unknown>(init?: Iterable<T> | null, options?: ClusterObjectOptions): Promise<ClusterList<T>> {
    this.#check('list()');
    const list = new ClusterList<T>(this.#conn, options);
    if (init !== undefined && init !== null) await list.fill(init);
    return list;
  }

  /** A dict in Redis; with a name, that dict (its contents replaced when `init` is given). */
  async dict<K = unknown, V = unknown>(init?: Record<string, V> | Map<K, V> | Array<[K, V]> | null, options?: ClusterObjectOptions): Promise<ClusterDict<K, V>> {
    this.#check('dict()');
    const dict = new ClusterDict<K, V>(this.#conn, options);
    if (init !== undefined && init !== null) await dict.fill(init);
    return dict;
  }

  /** A Namespace in Redis, with initial values; with a name, that Namespace (its values replaced when `values` is given). */
  async Namespace(values?: Record<string, unknown> | null, options?: ClusterObjectOptions): Promise<ClusterNamespace> {
    this.#check('Namespace()');
    const ns = new ClusterNamespace(this.#conn, options);
    if (values !== undefined && values !== null) await ns.fill(values);
    return ns;
  }

  async Lock(options?: ClusterLockOptions): Promise<ClusterLock> {
    this.#check('Lock()');
    return new ClusterLock(this.#conn, options);
  }

  async RLock(options?: ClusterLockOptions): Promise<ClusterRLock> {
    this.#check('RLock()');
    return new ClusterRLock(this.#conn, options);
  }

  async Semaphore(value = 1, options?: ClusterObjectOptions): Promise<ClusterSemaphore> {
    this.#check('Semaphore()');
    return new ClusterSemaphore(this.#conn, value, options);
  }

  async BoundedSemaphore(value = 1, options?: ClusterObjectOptions): Promise<ClusterBoundedSemaphore> {
    this.#check('BoundedSemaphore()');
    return new ClusterBoundedSemaphore(this.#conn, value, options);
  }

  async Event(options?: ClusterObjectOptions): Promise<ClusterEvent> {
    this.#check('Event()');
    return new ClusterEvent(this.#conn, options);
  }

  async Queue<T = unknown>(maxsize = 0, options?: ClusterObjectOptions): Promise<ClusterQueue<T>> {
    this.#check('Queue()');
    return new ClusterQueue<T>(this.#conn, maxsize, options);
  }

  async JoinableQueue<T = unknown>(maxsize = 0, options?: ClusterJoinableQueueOptions): Promise<ClusterJoinableQueue<T>> {
    this.#check('JoinableQueue()');
    return new ClusterJoinableQueue<T>(this.#conn, maxsize, options);
  }

  async Value(typecode: Typecode, init: number | bigint = 0, options?: ClusterObjectOptions): Promise<ClusterValue<number | bigint>> {
    this.#check('Value()');
    return new ClusterValue(this.#conn, typecode, init, options);
  }

  /** Closes the manager's connections; its objects reject from now on. The data stay in Redis. */
  async shutdown(): Promise<void> {
    this.#conn.closedReason = 'the manager was shut down (its objects made later by name from the context still work)';
    this.#clients.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}
