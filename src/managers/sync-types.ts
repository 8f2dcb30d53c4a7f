/**
 * SyncManager's typeids: the server's built-in objects (managed/) and the
 * proxies clients build for them (builtin-proxies.ts).
 */
import { Ref } from './object-table.js';
import { Managed } from './managed/base.js';
import { ManagedList } from './managed/list.js';
import { ManagedDict, ManagedNamespace } from './managed/dict.js';
import { ManagedJoinableQueue, ManagedQueue } from './managed/queue.js';
import { ManagedArray, ManagedValue } from './managed/value.js';
import {
  ManagedBarrier,
  ManagedBoundedSemaphore,
  ManagedCondition,
  ManagedEvent,
  ManagedLock,
  ManagedRLock,
  ManagedSemaphore,
} from './managed/sync.js';
import { addRegistration } from './typeids.js';

type ManagedClass = { readonly exposed: readonly string[] } & (abstract new (...args: any[]) => Managed);

/** typeid, factory (a plain function: the server calls it), the server's class (for `exposed`), the proxy's class name. */
const SYNC_TYPES: ReadonlyArray<readonly [string, (...args: any[]) => Managed, ManagedClass, string]> = [
  ['list', (items?: unknown) => new ManagedList(items), ManagedList, 'ListProxy'],
  ['dict', (entries?: unknown) => new ManagedDict(entries), ManagedDict, 'DictProxy'],
  ['Namespace', (values?: unknown) => new ManagedNamespace(values), ManagedNamespace, 'NamespaceProxy'],
  ['Queue', (maxsize?: unknown) => new ManagedQueue(maxsize), ManagedQueue, 'QueueProxy'],
  ['JoinableQueue', (maxsize?: unknown) => new ManagedJoinableQueue(maxsize), ManagedJoinableQueue, 'JoinableQueueProxy'],
  ['Lock', () => new ManagedLock(), ManagedLock, 'LockProxy'],
  ['RLock', () => new ManagedRLock(), ManagedRLock, 'LockProxy'],
  ['Semaphore', (value?: unknown) => new ManagedSemaphore(value), ManagedSemaphore, 'SemaphoreProxy'],
  ['BoundedSemaphore', (value?: unknown) => new ManagedBoundedSemaphore(value), ManagedBoundedSemaphore, 'SemaphoreProxy'],
  // A Condition made with a manager Lock gets that lock's object (a stored proxy arrives as a Ref).
  ['Condition', (lock?: unknown) => new ManagedCondition(lock instanceof Ref ? lock.entry.obj : lock), ManagedCondition, 'ConditionProxy'],
  ['Event', () => new ManagedEvent(), ManagedEvent, 'EventProxy'],
  ['Barrier', (parties?: unknown, options?: unknown) => new ManagedBarrier(parties, options), ManagedBarrier, 'BarrierProxy'],
  ['Value', (typecode?: unknown, value?: unknown) => new ManagedValue(typecode, value), ManagedValue, 'ValueProxy'],
  ['Array', (typecode?: unknown, sizeOrInit?: unknown) => new ManagedArray(typecode, sizeOrInit), ManagedArray, 'ArrayProxy'],
];

/** Registers SyncManager's typeids on `cls` (once, when the package loads). */
export function registerSyncTypes(cls: Function): void {
  for (const [typeid, factory, managed, proxytype] of SYNC_TYPES) {
    addRegistration({
      typeid,
      factory,
      exposed: managed.exposed,
      methodToTypeid: {},
      proxytype,
      createMethod: false,
      cls,
      file: null,
      builtin: true,
    });
  }
}
