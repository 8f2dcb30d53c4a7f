/**
 * `SyncManager` and `mp.Manager()`: Python's SyncManager typeids (shared
 * containers and synchronization objects) on a BaseManager.
 */
import { ValueError } from '../errors.js';
import type { ElementOf, Typecode } from '../sharedctypes/typecodes.js';
import {
  ArrayProxy,
  BarrierProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  JoinableQueueProxy,
  ListProxy,
  LockProxy,
  NamespaceProxy,
  QueueProxy,
  SemaphoreProxy,
  ValueProxy,
} from './builtin-proxies.js';
import { BaseManager, type ManagerOptions } from './manager.js';
import { setDefaultManagerClass } from './server-process.js';
import { registerSyncTypes } from './sync-types.js';

/**
 * A manager with Python's SyncManager typeids: shared containers and
 * synchronization objects in the server, usable from any process that has
 * a proxy. Made started by `await mp.Manager()`.
 * @example
 * ```ts
 * await using manager = await mp.Manager();
 * const records = await manager.list([['Sam', 10]]);
 * const p = new mp.Process({ target: addRecord, args: [records] });  // the proxy works in the child
 * p.start();
 * await p.join();
 * console.log(await records.toArray());
 * ```
 */
export class SyncManager extends BaseManager {
  /** A list in the server (Python's `manager.list(sequence)`). */
  list<T = unknown>(sequence?: Iterable<T>): Promise<ListProxy<T>> {
    return this.create('list', ...(sequence === undefined ? [] : [Array.from(sequence)])) as Promise<ListProxy<T>>;
  }
  /** A dict in the server, from an object, a Map or `[key, value]` pairs. */
  dict<K = unknown, V = unknown>(entries?: Record<string, V> | Map<K, V> | Iterable<[K, V]>): Promise<DictProxy<K, V>> {
    const init = entries === undefined || entries instanceof Map || !isIterable(entries) ? entries : Array.from(entries as Iterable<[K, V]>);
    return this.create('dict', ...(init === undefined ? [] : [init])) as Promise<DictProxy<K, V>>;
  }
  /** A Namespace in the server, with initial values. */
  Namespace(values?: Record<string, unknown>): Promise<NamespaceProxy> {
    return this.create('Namespace', ...(values === undefined ? [] : [values])) as Promise<NamespaceProxy>;
  }
  /** A Queue in the server (`maxsize` 0: unbounded). */
  Queue<T = unknown>(maxsize = 0): Promise<QueueProxy<T>> {
    return this.create('Queue', maxsize) as Promise<QueueProxy<T>>;
  }
  JoinableQueue<T = unknown>(maxsize = 0): Promise<JoinableQueueProxy<T>> {
    return this.create('JoinableQueue', maxsize) as Promise<JoinableQueueProxy<T>>;
  }
  /** A Lock in the server; released by the server if the process holding it ends. */
  Lock(): Promise<LockProxy> {
    return this.create('Lock') as Promise<LockProxy>;
  }
  RLock(): Promise<LockProxy> {
    return this.create('RLock') as Promise<LockProxy>;
  }
  Semaphore(value = 1): Promise<SemaphoreProxy> {
    return this.create('Semaphore', value) as Promise<SemaphoreProxy>;
  }
  BoundedSemaphore(value = 1): Promise<SemaphoreProxy> {
    return this.create('BoundedSemaphore', value) as Promise<SemaphoreProxy>;
  }
  /** A Condition, on a manager Lock/RLock of this manager or a new RLock. */
  Condition(lock?: LockProxy): Promise<ConditionProxy> {
    return this.create('Condition', ...(lock === undefined ? [] : [lock])) as Promise<ConditionProxy>;
  }
  Event(): Promise<EventProxy> {
    return this.create('Event') as Promise<EventProxy>;
  }
  /** A Barrier in the server; an `action` cannot run there (use `mp.Barrier` for one). */
  Barrier(parties: number, options: { timeout?: number; action?: never } = {}): Promise<BarrierProxy> {
    if (options !== null && typeof options === 'object' && (options as { action?: unknown }).action !== undefined) {
      return Promise.reject(
        new ValueError('a manager Barrier cannot run an action (it would have to run in the server); use mp.Barrier for an action'),
      );
    }
    return this.create('Barrier', parties, options) as Promise<BarrierProxy>;
  }
  /** A Value of `typecode` in the server (`get()`/`set(v)`). */
  Value<T extends Typecode>(typecode: T, value?: ElementOf<T>): Promise<ValueProxy<ElementOf<T>>> {
    return this.create('Value', typecode, ...(value === undefined ? [] : [value])) as Promise<ValueProxy<ElementOf<T>>>;
  }
  /** An Array of `typecode` in the server, of a size or from initial values. */
  Array<T extends Typecode>(typecode: T, sizeOrInit: number | ArrayLike<ElementOf<T>>): Promise<ArrayProxy<ElementOf<T>>> {
    const init = typeof sizeOrInit === 'number' ? sizeOrInit : Array.from(sizeOrInit);
    return this.create('Array', typecode, init) as Promise<ArrayProxy<ElementOf<T>>>;
  }
}

function isIterable(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function';
}

registerSyncTypes(SyncManager);
setDefaultManagerClass(SyncManager);

/**
 * A started SyncManager (Python's `multiprocessing.Manager()`). End it with
 * `await manager.shutdown()`, or `await using manager = await mp.Manager()`.
 * @example
 * ```ts
 * const manager = await mp.Manager();
 * const d = await manager.dict();
 * await d.set('answer', 42);
 * await manager.shutdown();
 * ```
 */
export async function Manager(options: ManagerOptions = {}): Promise<SyncManager> {
  const manager = new SyncManager(options);
  await manager.start();
  return manager;
}
