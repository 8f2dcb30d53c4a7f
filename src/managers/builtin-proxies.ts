/**
 * The typed proxies of SyncManager's objects (Python's ListProxy,
 * DictProxy, AcquirerProxy…). Each method is one call to the server.
 * What is an attribute in Python (`value`, `parties`, `broken`) is an
 * async method here.
 */
import { describe } from '../describe.js';
import { ValueError } from '../errors.js';
import type { AcquireOptions } from '../sync/lock.js';
import type { QueueWaitOptions } from '../queue/queue.js';
import { FrameKind, currentTask, openTask, runInFrame, type Frame } from '../async-context.js';
import { BaseProxy } from './proxy.js';
import { proxyClasses } from './typeids.js';

/** Items fetched per step of a list's `for await`. */
const ITERATION_CHUNK = 64;

/**
 * A manager's list. Indices may be negative (from the end); an index out
 * of range rejects with `IndexError`, a missing item with `ValueError`.
 * Items compare by content (`index`, `remove`, `count`, `includes`).
 * `for await` is live: it sees items appended before it reaches the end.
 * @example
 * ```ts
 * const xs = await manager.list([1, 2, 3]);
 * await xs.append(4);
 * console.log(await xs.get(-1), await xs.len()); // 4 4
 * for await (const x of xs) console.log(x);
 * ```
 */
export class ListProxy<T = unknown> extends BaseProxy implements AsyncIterable<T> {
  get(index: number): Promise<T> {
    return this.callMethod('get', [index]) as Promise<T>;
  }
  set(index: number, value: T): Promise<void> {
    return this.callMethod('set', [index, value]) as Promise<void>;
  }
  /** Python's `del xs[i]`. */
  delete(index: number): Promise<void> {
    return this.callMethod('delete', [index]) as Promise<void>;
  }
  len(): Promise<number> {
    return this.callMethod('len') as Promise<number>;
  }
  append(value: T): Promise<void> {
    return this.callMethod('append', [value]) as Promise<void>;
  }
  /** Appends each of `values` (an iterable here; for another list proxy, pass `await other.toArray()`). */
  extend(values: Iterable<T>): Promise<void> {
    if (typeof (values as { [Symbol.iterator]?: unknown } | null)?.[Symbol.iterator] !== 'function') {
      return Promise.reject(
        new ValueError(
          `extend() takes an iterable of values, not ${describe(values)}` +
            (values instanceof BaseProxy ? ' (for a proxy: await other.toArray())' : ''),
        ),
      );
    }
    return this.callMethod('extend', [Array.from(values)]) as Promise<void>;
  }
  insert(index: number, value: T): Promise<void> {
    return this.callMethod('insert', [index, value]) as Promise<void>;
  }
  /** Removes and returns the item at `index` (default the last). */
  pop(index = -1): Promise<T> {
    return this.callMethod('pop', [index]) as Promise<T>;
  }
  /** Removes the first item equal to `value`. */
  remove(value: T): Promise<void> {
    return this.callMethod('remove', [value]) as Promise<void>;
  }
  index(value: T, start?: number, stop?: number): Promise<number> {
    return this.callMethod('index', [value, start, stop]) as Promise<number>;
  }
  count(value: T): Promise<number> {
    return this.callMethod('count', [value]) as Promise<number>;
  }
  /** Python's `value in xs`. */
  includes(value: T): Promise<boolean> {
    return this.callMethod('includes', [value]) as Promise<boolean>;
  }
  reverse(): Promise<void> {
    return this.callMethod('reverse') as Promise<void>;
  }
  /** Sorts numbers, strings, and arrays of them (as tuples), as Python's `sort` does. */
  sort(options?: { reverse?: boolean }): Promise<void> {
    return this.callMethod('sort', options === undefined ? [] : [options]) as Promise<void>;
  }
  /** Python's `xs[start:end]`. */
  slice(start?: number, end?: number): Promise<T[]> {
    return this.callMethod('slice', [start, end]) as Promise<T[]>;
  }
  /** A copy of the whole list (Python's `xs[:]`). */
  toArray(): Promise<T[]> {
    return this.callMethod('toArray') as Promise<T[]>;
  }
  clear(): Promise<void> {
    return this.callMethod('clear') as Promise<void>;
  }
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (let i = 0; ; ) {
      const chunk = await this.slice(i, i + ITERATION_CHUNK);
      if (chunk.length === 0) return;
      yield* chunk;
      i += chunk.length;
    }
  }
}

/**
 * A manager's dict, with Map semantics for keys (`1` and `'1'` differ); an
 * array key finds the entry stored under an equal array (a Python tuple
 * key). `for await` goes over the keys (as they were when it began).
 * @example
 * ```ts
 * const d = await manager.dict<string, number>({ a: 1 });
 * await d.set('b', 2);
 * console.log(await d.get('b'), await d.toObject()); // 2 { a: 1, b: 2 }
 * ```
 */
export class DictProxy<K = unknown, V = unknown> extends BaseProxy implements AsyncIterable<K> {
  /** The value under `key`, or `fallback` (undefined) when there is none. */
  get(key: K, fallback?: V): Promise<V | undefined> {
    return this.callMethod('get', fallback === undefined ? [key] : [key, fallback]) as Promise<V | undefined>;
  }
  set(key: K, value: V): Promise<void> {
    return this.callMethod('set', [key, value]) as Promise<void>;
  }
  has(key: K): Promise<boolean> {
    return this.callMethod('has', [key]) as Promise<boolean>;
  }
  /** Removes `key`; whether it was there. */
  delete(key: K): Promise<boolean> {
    return this.callMethod('delete', [key]) as Promise<boolean>;
  }
  keys(): Promise<K[]> {
    return this.callMethod('keys') as Promise<K[]>;
  }
  values(): Promise<V[]> {
    return this.callMethod('values') as Promise<V[]>;
  }
  items(): Promise<Array<[K, V]>> {
    return this.callMethod('items') as Promise<Array<[K, V]>>;
  }
  len(): Promise<number> {
    return this.callMethod('len') as Promise<number>;
  }
  /** Adds the entries of an object, a Map, or an array of `[key, value]` pairs. */
  update(entries: Record<string, V> | Map<K, V> | Array<[K, V]>): Promise<void> {
    return this.callMethod('update', [entries]) as Promise<void>;
  }
  /** Removes `key` and returns its value; `KeyError` when it is missing and no fallback was given. */
  pop(key: K, ...fallback: [V?]): Promise<V> {
    return this.callMethod('pop', [key, ...fallback]) as Promise<V>;
  }
  /** Removes and returns the last entry added. */
  popitem(): Promise<[K, V]> {
    return this.callMethod('popitem') as Promise<[K, V]>;
  }
  setdefault(key: K, fallback?: V): Promise<V> {
    return this.callMethod('setdefault', [key, fallback]) as Promise<V>;
  }
  clear(): Promise<void> {
    return this.callMethod('clear') as Promise<void>;
  }
  /** A copy as a Map (keys keep their types): Python's `d.copy()`. */
  copy(): Promise<Map<K, V>> {
    return this.callMethod('copy') as Promise<Map<K, V>>;
  }
  /** A copy as a plain object (keys become strings). */
  toObject(): Promise<Record<string, V>> {
    return this.callMethod('toObject') as Promise<Record<string, V>>;
  }
  async *[Symbol.asyncIterator](): AsyncIterator<K> {
    yield* await this.keys();
  }
}

/** A manager's Namespace: named values (`get` of an unset name is undefined). */
export class NamespaceProxy extends BaseProxy {
  get<V = unknown>(name: string): Promise<V | undefined> {
    return this.callMethod('get', [name]) as Promise<V | undefined>;
  }
  set(name: string, value: unknown): Promise<void> {
    return this.callMethod('set', [name, value]) as Promise<void>;
  }
  has(name: string): Promise<boolean> {
    return this.callMethod('has', [name]) as Promise<boolean>;
  }
  delete(name: string): Promise<boolean> {
    return this.callMethod('delete', [name]) as Promise<boolean>;
  }
  toObject(): Promise<Record<string, unknown>> {
    return this.callMethod('toObject') as Promise<Record<string, unknown>>;
  }
}

/** A manager's Value (Python's `value` attribute is `get()`/`set(v)`). */
export class ValueProxy<E extends number | bigint = number> extends BaseProxy {
  get(): Promise<E> {
    return this.callMethod('get') as Promise<E>;
  }
  set(value: E): Promise<void> {
    return this.callMethod('set', [value]) as Promise<void>;
  }
  typecode(): Promise<string> {
    return this.callMethod('typecode') as Promise<string>;
  }
}

/** A manager's Array: fixed length, typed by its typecode. */
export class ArrayProxy<E extends number | bigint = number> extends BaseProxy implements AsyncIterable<E> {
  get(index: number): Promise<E> {
    return this.callMethod('get', [index]) as Promise<E>;
  }
  set(index: number, value: E): Promise<void> {
    return this.callMethod('set', [index, value]) as Promise<void>;
  }
  len(): Promise<number> {
    return this.callMethod('len') as Promise<number>;
  }
  toArray(): Promise<E[]> {
    return this.callMethod('toArray') as Promise<E[]>;
  }
  typecode(): Promise<string> {
    return this.callMethod('typecode') as Promise<string>;
  }
  async *[Symbol.asyncIterator](): AsyncIterator<E> {
    yield* await this.toArray();
  }
}

/** A manager's Queue (the options of `mp.Queue`'s calls). */
export class QueueProxy<T = unknown> extends BaseProxy {
  /** @throws Full when `{ block: false }` or the timeout finds no room. */
  put(item: T, options?: QueueWaitOptions): Promise<void> {
    return this.callMethod('put', options === undefined ? [item] : [item, options]) as Promise<void>;
  }
  /** @throws Empty when `{ block: false }` or the timeout finds nothing. */
  get(options?: QueueWaitOptions): Promise<T> {
    return this.callMethod('get', options === undefined ? [] : [options]) as Promise<T>;
  }
  putNowait(item: T): Promise<void> {
    return this.callMethod('putNowait', [item]) as Promise<void>;
  }
  getNowait(): Promise<T> {
    return this.callMethod('getNowait') as Promise<T>;
  }
  qsize(): Promise<number> {
    return this.callMethod('qsize') as Promise<number>;
  }
  empty(): Promise<boolean> {
    return this.callMethod('empty') as Promise<boolean>;
  }
  full(): Promise<boolean> {
    return this.callMethod('full') as Promise<boolean>;
  }
}

/** A manager's JoinableQueue. */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {
  /** @throws ValueError when called more times than items were put. */
  taskDone(): Promise<void> {
    return this.callMethod('taskDone') as Promise<void>;
  }
  /** Resolves once every item put has had its `taskDone()`. */
  join(): Promise<void> {
    return this.callMethod('join') as Promise<void>;
  }
}

/** Ids of this process's task frames, for the server (0 is the process itself). */
const taskIds = new WeakMap<Frame, number>();
let lastTaskId = 0;

/**
 * The chain a lock call comes from, as the server keys holders on it
 * (managed/sync.ts OwnerChain): the running task frames, innermost first,
 * then 0. So a lock held by an enclosing `withLock`, or by the process, is
 * held here too.
 */
function ownerChain(): number[] {
  const chain: number[] = [];
  for (let f: Frame | null | undefined = currentTask(); f != null; f = f.parent) {
    if (f.kind !== FrameKind.Task) continue;
    let id = taskIds.get(f);
    if (id === undefined) taskIds.set(f, (id = ++lastTaskId));
    chain.push(id);
  }
  chain.push(0);
  return chain;
}

/**
 * A manager's Lock or RLock (Python's AcquirerProxy). A bare `acquire()` is
 * held by this process (its connection), as a thread holds a lock in
 * Python and as a local lock's bare `acquire()` is held by its thread: any
 * code of the process may re-enter or release it. `withLock` runs its callback as an async task of its own, so
 * concurrent `withLock`s of one process exclude each other (and nested ones
 * of the same task re-enter an RLock). If the process ends while holding
 * it, the server releases it.
 */
export class AcquirerProxy extends BaseProxy {
  acquire(options?: AcquireOptions): Promise<boolean> {
    // Taken free, it is the process's (0 first); held by a chain we run in, it is re-entered.
    return this.callMethod('acquire', [options ?? null, [0, ...ownerChain()]]) as Promise<boolean>;
  }
  release(): Promise<void> {
    return this.callMethod('release', [ownerChain()]) as Promise<void>;
  }
  /** Acquires, runs `fn`, releases (also when `fn` throws); resolves to what `fn` returned. */
  async withLock<R>(fn: () => R | Promise<R>): Promise<R> {
    if (typeof fn !== 'function') throw new ValueError(`withLock() takes a function, not ${describe(fn)}`);
    // The callback's awaits continue in this frame: the server tells this task from the process's others.
    const frame = openTask();
    return runInFrame(frame, async () => {
      await this.callMethod('acquire', [null, ownerChain()]);
      try {
        return await fn();
      } finally {
        try {
          await this.release();
        } finally {
          frame.done = true;
        }
      }
    });
  }
}

/** A manager's Lock: + `locked()`. */
export class LockProxy extends AcquirerProxy {
  locked(): Promise<boolean> {
    return this.callMethod('locked') as Promise<boolean>;
  }
}

/** A manager's Semaphore or BoundedSemaphore. */
export class SemaphoreProxy extends AcquirerProxy {
  getValue(): Promise<number> {
    return this.callMethod('getValue') as Promise<number>;
  }
}

/** A manager's Condition; `wait`, `notify`, `notifyAll` need its lock held by this process's calling task (see AcquirerProxy). */
export class ConditionProxy extends LockProxy {
  /** Whether it was notified (false: the timeout passed). */
  wait(timeoutMs?: number): Promise<boolean> {
    return this.callMethod('wait', [timeoutMs ?? null, ownerChain()]) as Promise<boolean>;
  }
  /** Waits until `predicate()` (run here) is true, or the timeout; resolves to its last value. */
  async waitFor<R>(predicate: () => R | Promise<R>, timeoutMs?: number): Promise<R> {
    if (typeof predicate !== 'function') throw new ValueError(`waitFor() takes a predicate function, not ${describe(predicate)}`);
    const deadline = timeoutMs === undefined ? Infinity : performance.now() + Math.max(0, timeoutMs);
    for (;;) {
      const result = await predicate();
      if (result) return result;
      const left = deadline - performance.now();
      if (left <= 0) return result;
      await this.wait(left === Infinity ? undefined : left);
    }
  }
  notify(n = 1): Promise<void> {
    return this.callMethod('notify', [n, ownerChain()]) as Promise<void>;
  }
  notifyAll(): Promise<void> {
    return this.callMethod('notifyAll', [ownerChain()]) as Promise<void>;
  }
}

/** A manager's Event. */
export class EventProxy extends BaseProxy {
  set(): Promise<void> {
    return this.callMethod('set') as Promise<void>;
  }
  clear(): Promise<void> {
    return this.callMethod('clear') as Promise<void>;
  }
  isSet(): Promise<boolean> {
    return this.callMethod('isSet') as Promise<boolean>;
  }
  /** Whether the flag is set (false: the timeout passed first). */
  wait(timeoutMs?: number): Promise<boolean> {
    return this.callMethod('wait', timeoutMs === undefined ? [] : [timeoutMs]) as Promise<boolean>;
  }
}

/** A manager's Barrier (`parties`, `nWaiting`, `broken` are methods). */
export class BarrierProxy extends BaseProxy {
  /** Resolves to this party's place (0 … parties-1). @throws BrokenBarrierError */
  wait(timeoutMs?: number): Promise<number> {
    return this.callMethod('wait', timeoutMs === undefined ? [] : [timeoutMs]) as Promise<number>;
  }
  reset(): Promise<void> {
    return this.callMethod('reset') as Promise<void>;
  }
  abort(): Promise<void> {
    return this.callMethod('abort') as Promise<void>;
  }
  parties(): Promise<number> {
    return this.callMethod('parties') as Promise<number>;
  }
  nWaiting(): Promise<number> {
    return this.callMethod('nWaiting') as Promise<number>;
  }
  broken(): Promise<boolean> {
    return this.callMethod('broken') as Promise<boolean>;
  }
}

// By names of their own (a bundler may rename classes); the server's registrations name them so.
const NAMED: Array<[string, Function]> = [
  ['ListProxy', ListProxy],
  ['DictProxy', DictProxy],
  ['NamespaceProxy', NamespaceProxy],
  ['ValueProxy', ValueProxy],
  ['ArrayProxy', ArrayProxy],
  ['QueueProxy', QueueProxy],
  ['JoinableQueueProxy', JoinableQueueProxy],
  ['AcquirerProxy', AcquirerProxy],
  ['LockProxy', LockProxy],
  ['SemaphoreProxy', SemaphoreProxy],
  ['ConditionProxy', ConditionProxy],
  ['EventProxy', EventProxy],
  ['BarrierProxy', BarrierProxy],
];
for (const [name, cls] of NAMED) proxyClasses.set(name, cls);
