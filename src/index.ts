/**
 * multiprocessing-ts: Python's `multiprocessing` for TypeScript on Node.js.
 *
 * @example
 * ```ts
 * import * as mp from 'multiprocessing-ts';
 * export function square(xs: number[], out: mp.SynchronizedArray) { xs.forEach((x, i) => (out[i] = x * x)); }
 * if (mp.isMainProcess()) {
 *   const out = mp.Array('i', 4);
 *   const p = new mp.Process({ target: square, args: [[1, 2, 3, 4], out] });
 *   p.start();
 *   await p.join();
 *   console.log(Array.from(out)); // [1, 4, 9, 16]
 * }
 * ```
 * @module
 */
import { Process } from './process/process.js';
import { processClassFor } from './process/context.js';
import {
  getAllStartMethods,
  getStartMethod,
  setStartMethod,
  validateStartMethod,
  type StartMethod,
} from './process/start-method.js';
import { activeChildren, cpuCount, currentProcess, isMainProcess, parentProcess } from './process/current.js';
import { makeArray, makeRawArray, type RawSharedArray, type SynchronizedArray } from './sharedctypes/array.js';
import { makeRawValue, makeValue, type RawValue as SharedRawValue, type SynchronizedValue } from './sharedctypes/value.js';
import { Lock, RLock } from './sync/lock.js';
import { BoundedSemaphore, Semaphore } from './sync/semaphore.js';
import { Condition } from './sync/condition.js';
import { Event } from './sync/event.js';
import { Barrier } from './sync/barrier.js';
import type { Typecode } from './sharedctypes/typecodes.js';
import { SharedMemory } from './shm/shared-memory.js';
import { native as nativeAddon } from './native/addon.js';
import { ShareableList } from './shm/shareable-list.js';
import { listen, type ConnectionListener } from './connection/listener.js';
import { connect } from './connection/client.js';
import { JoinableQueue, Queue, SimpleQueue } from './queue/queue.js';
import { Pipe } from './connection/pipe-transport.js';
import type { ManagerOptions } from './managers/manager.js';
import { Manager, type SyncManager } from './managers/sync-manager.js';
import { Pool, poolClassFor } from './pool/pool.js';

export * from './errors.js';
export type { ClusterContext } from './cluster/context.js';
export type { ClusterClientOptions } from './cluster/redis.js';
export { ClusterPool, type ClusterPoolOptions, type ClusterPoolStats } from './cluster/pool/pool.js';
export type { ClusterWorkerInfo } from './cluster/pool/workers.js';
export { ClusterWorker, type ClusterWorkerOptions } from './cluster/pool/worker.js';
export { ClusterObject, type ClusterObjectOptions, type ClusterKind } from './cluster/objects/base.js';
export { ClusterLock, ClusterRLock, DEFAULT_LOCK_TTL_MS, type ClusterLockOptions } from './cluster/objects/lock.js';
export { ClusterSemaphore, ClusterBoundedSemaphore } from './cluster/objects/semaphore.js';
export { ClusterEvent } from './cluster/objects/event.js';
export { ClusterQueue, ClusterJoinableQueue, ClusterSimpleQueue, DEFAULT_LEASE_MS, type ClusterQueueWaitOptions, type ClusterJoinableQueueOptions } from './cluster/objects/queue.js';
export { ClusterValue } from './cluster/objects/value.js';
export { ClusterList } from './cluster/objects/list.js';
export { ClusterDict, ClusterNamespace } from './cluster/objects/dict.js';
export { ClusterManager } from './cluster/objects/manager.js';
import { clusterContext, type ClusterContext } from './cluster/context.js';
import type { ClusterClientOptions } from './cluster/redis.js';
import { isClusterUrl } from './cluster/url.js';
export { isClusterUrl, redact as redactClusterUrl } from './cluster/url.js';
export { Process, type ProcessBaseOptions, type ProcessOptions, type ProcessLike } from './process/process.js';
export { activeChildren, cpuCount, currentProcess, isMainProcess, parentProcess } from './process/current.js';
export { getAllStartMethods, getStartMethod, setStartMethod, type StartMethod } from './process/start-method.js';
export { Lock, RLock, type AcquireOptions } from './sync/lock.js';
export { Semaphore, BoundedSemaphore } from './sync/semaphore.js';
export { Condition } from './sync/condition.js';
export { Event } from './sync/event.js';
export { Barrier, type BarrierOptions } from './sync/barrier.js';
export type { BlockOptions } from './sync/waiting.js';
export { SharedMemory, type SharedMemoryOptions } from './shm/shared-memory.js';
export { ShareableList, type ShareableItem } from './shm/shareable-list.js';
export { Queue, JoinableQueue, SimpleQueue, type QueueWaitOptions } from './queue/queue.js';
export {
  RawValue as SharedRawValue,
  SynchronizedValue,
  type LockOption,
} from './sharedctypes/value.js';
export type { SynchronizedArray, RawSharedArray } from './sharedctypes/array.js';
export type { Typecode, ElementOf } from './sharedctypes/typecodes.js';
export { nativeLoadError } from './native/addon.js';
export { Connection, type BytesLike } from './connection/connection.js';
export { type ListenerOptions, type AcceptOptions, ConnectionListener } from './connection/listener.js';
export type { ClientOptions } from './connection/client.js';
export type { Address } from './connection/address.js';
export { wait, type Waitable } from './connection/wait.js';
export { Pipe } from './connection/pipe-transport.js';
export { BaseManager, type ManagerOptions, type ManagerStartOptions, type Proxy } from './managers/manager.js';
export { SyncManager, Manager } from './managers/sync-manager.js';
export { BaseProxy } from './managers/proxy.js';
export {
  ListProxy,
  DictProxy,
  NamespaceProxy,
  ValueProxy,
  ArrayProxy,
  QueueProxy,
  JoinableQueueProxy,
  AcquirerProxy,
  LockProxy,
  SemaphoreProxy,
  ConditionProxy,
  EventProxy,
  BarrierProxy,
} from './managers/builtin-proxies.js';
export { ManagerServer, type ServerOptions } from './managers/server.js';
export { serveManager, type ServeOptions } from './managers/server-process.js';
export type { RegisterOptions } from './managers/typeids.js';
export {
  Pool,
  type PoolOptions,
  type CallOptions,
  type MapOptions,
  type ImapOptions,
  type ApplyAsyncOptions,
  type MapAsyncOptions,
  type TaskFn,
  type TaskResult,
  type AnyIterable,
  type ItemOf,
} from './pool/pool.js';
export { AsyncResult, type ResultCallbacks } from './pool/async-result.js';
export type { PoolStats, WorkerStats, Percentiles } from './pool/stats.js';

/** Whether the native addon loaded (without it, only `'thread'` children; `nativeLoadError()` says why). */
export function nativeAvailable(): boolean {
  return nativeAddon() !== null;
}

/** `mp.Value(typecode, init = 0, { lock = true })`: a shared element guarded by a lock. */
export const Value = makeValue;
/** What `mp.Value` returns. */
export type Value<E extends number | bigint = number> = SynchronizedValue<E>;
/** `mp.RawValue(typecode, init = 0)`: a shared element with no lock. */
export const RawValue = makeRawValue;
/** What `mp.RawValue` returns. */
export type RawValue<E extends number | bigint = number> = SharedRawValue<E>;
/** `mp.Array(typecode, sizeOrInit, { lock = true })`: a shared typed array guarded by a lock. */
export const Array = makeArray;
/** `mp.SharedArray`: `mp.Array` under a name that does not shadow the global `Array`. */
export const SharedArray = makeArray;
/** What `mp.Array`/`mp.SharedArray` return. */
export type SharedArray<E = number> = SynchronizedArray<E>;
/** `mp.RawArray(typecode, sizeOrInit)`: a shared typed array with no lock. */
export const RawArray = makeRawArray;
/** What `mp.RawArray` returns: the typed array of the typecode, over shared memory. */
export type RawArray<T extends Typecode = Typecode> = RawSharedArray<T>;

/** `await mp.Listener({ address?, authkey?, backlog? })`: accepts connections on a Unix socket or TCP port. */
export const Listener = listen;
/** What `mp.Listener` resolves to. */
export type Listener = ConnectionListener;
/** `await mp.Client(address, { authkey? })`: a Connection to a Listener (ours or Python's). */
export const Client = connect;

/** Everything bound to one start method (Python's context object). */
export interface Context {
  readonly Process: typeof Process;
  readonly Value: typeof makeValue;
  readonly RawValue: typeof makeRawValue;
  readonly Array: typeof makeArray;
  readonly SharedArray: typeof makeArray;
  readonly RawArray: typeof makeRawArray;
  readonly Lock: typeof Lock;
  readonly RLock: typeof RLock;
  readonly Semaphore: typeof Semaphore;
  readonly BoundedSemaphore: typeof BoundedSemaphore;
  readonly Condition: typeof Condition;
  readonly Event: typeof Event;
  readonly Barrier: typeof Barrier;
  readonly SharedMemory: typeof SharedMemory;
  readonly ShareableList: typeof ShareableList;
  readonly Queue: typeof Queue;
  readonly JoinableQueue: typeof JoinableQueue;
  readonly SimpleQueue: typeof SimpleQueue;
  readonly Pipe: typeof Pipe;
  /** `mp.Manager()` whose server process uses this context's start method. */
  readonly Manager: (options?: ManagerOptions) => Promise<SyncManager>;
  /** `Pool` with this context's start method for its workers. */
  readonly Pool: typeof Pool;
  readonly currentProcess: typeof currentProcess;
  readonly parentProcess: typeof parentProcess;
  readonly activeChildren: typeof activeChildren;
  readonly cpuCount: typeof cpuCount;
  /** This context's start method. */
  getStartMethod(): StartMethod;
}

const contexts = new Map<StartMethod, Context>();

/**
 * The API bound to a start method (default: the current one).
 * @example
 * ```ts
 * const ctx = mp.getContext('thread');
 * const p = new ctx.Process({ target: work }); // a worker thread, whatever the global setting
 * ```
 */
export function getContext(method?: StartMethod): Context;
/**
 * A cluster context: the Pool, queues, locks, Event, Value and Manager on
 * Redis (`'cluster'` reads the URL from `MULTIPROCESSING_TS_CLUSTER`). A
 * Redis Cluster (sharded) is named by `redis-cluster://host:port?seeds=host2:port2,…`
 * (`rediss-cluster://` for TLS).
 * @example
 * ```ts
 * const ctx = mp.getContext('redis://10.0.0.5:6379/0');
 * const pool = new ctx.Pool();          // workers: npx multiprocessing-ts worker --cluster … --module ./tasks.js
 * console.log(await pool.map(square, [1, 2, 3]));
 * ```
 */
export function getContext(
  url: `redis://${string}` | `rediss://${string}` | `redis-cluster://${string}` | `rediss-cluster://${string}` | 'cluster',
  options?: ClusterClientOptions,
): ClusterContext;
export function getContext(method?: StartMethod | string, options?: ClusterClientOptions): Context | ClusterContext {
  if (method === 'cluster' || isClusterUrl(method)) return clusterContext(method, options);
  const m = validateStartMethod(method ?? getStartMethod());
  let ctx = contexts.get(m);
  if (!ctx) {
    ctx = Object.freeze({
      Process: processClassFor(m),
      Value: makeValue,
      RawValue: makeRawValue,
      Array: makeArray,
      SharedArray: makeArray,
      RawArray: makeRawArray,
      Lock,
      RLock,
      Semaphore,
      BoundedSemaphore,
      Condition,
      Event,
      Barrier,
      SharedMemory,
      ShareableList,
      Queue,
      JoinableQueue,
      SimpleQueue,
      Pipe,
      Manager: (options: ManagerOptions = {}) => Manager({ startMethod: m, ...options }),
      Pool: poolClassFor(m),
      currentProcess,
      parentProcess,
      activeChildren,
      cpuCount,
      getStartMethod: () => m,
    });
    contexts.set(m, ctx);
  }
  return ctx;
}
