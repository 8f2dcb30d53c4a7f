/**
 * A cluster manager's list: a Redis list of packed items (codec.ts).
 *
 * Keys, under `{mpts:list:<name>}`: `…:items` (the list) and `…:v`, a
 * version that every change increments in the same step (each change is
 * one Lua script).
 *
 * What Redis does by index is done there: `get`/`set` with negative
 * indices (`LINDEX`/`LSET`), `len`, `append`/`extend`, `pop()` of an end,
 * `slice` (`LRANGE`). What needs the items' values (`remove`, `index`,
 * `count`, `includes` compare by content, as the local manager's list
 * does; `sort` orders them; `insert`, `pop(i)`, `delete(i)`, `reverse`
 * rebuild the list) runs here on a snapshot read with its version, with
 * the local manager's own list code, and is written back by a script only
 * if the version is still the one read; otherwise it runs again on a fresh
 * snapshot (optimistic concurrency). Every change is a change script
 * (call-records.ts): one that ioredis sends twice runs once. Each such call moves the whole list
 * twice: it suits lists of the size a manager's list has, not millions.
 */
import { IndexError, StateError, ValueError } from '../../errors.js';
import { describe } from '../../describe.js';
import { ManagedList } from '../../managers/managed/list.js';
import type { Caller } from '../../managers/managed/base.js';
import { pack, unpack } from '../codec.js';
import { ObjectClients, Script } from './connection.js';
import { ChangeScript } from './call-records.js';
import { ClusterObject, objectOptions, registerClusterKind, type ClusterKind, type ClusterObjectOptions } from './base.js';

/** Items fetched per step of `for await`. */
const ITERATION_CHUNK = 64;
/** Attempts of an optimistic change before it gives up (others kept changing the list). */
const MAX_ATTEMPTS = 100;
/** The managed list's methods take their caller first; these calls have none. */
const NO_CALLER = undefined as unknown as Caller;

/** Pushes the script's own arguments from ARGV[from] in chunks (Lua's unpack has a stack limit). */
const PUSH_ARGS = (from: number) => `for i = ${from}, OWN, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, OWN)))
end`;

const PUSH = new ChangeScript('list-push', 2, `if REPEATED then return tonumber(ANSWER) end
${PUSH_ARGS(1)}
redis.call('INCR', KEYS[2])
local n = redis.call('LLEN', KEYS[1])
RECORD(n)
return n`);

const SET = new ChangeScript(
  'list-set',
  2,
  `if REPEATED then return {1, 0} end
local r = redis.pcall('LSET', KEYS[1], ARGV[1], ARGV[2])
if type(r) == 'table' and r.err then return {0, redis.call('LLEN', KEYS[1])} end
redis.call('INCR', KEYS[2])
RECORD()
return {1, 0}`,
);

const POP_END = new ChangeScript(
  'list-pop-end',
  2,
  `if REPEATED then return ANSWER end
local item
if ARGV[1] == 'left' then item = redis.call('LPOP', KEYS[1]) else item = redis.call('RPOP', KEYS[1]) end
if item then
  redis.call('INCR', KEYS[2])
  RECORD(item)
end
return item`,
);

/** Puts back at its end (ARGV[1] 'left' or 'right') an item a pop took for a caller that gave up waiting. */
const PUSH_BACK = new ChangeScript(
  'list-push-back',
  2,
  `if REPEATED then return 0 end
if ARGV[1] == 'left' then redis.call('LPUSH', KEYS[1], ARGV[2]) else redis.call('RPUSH', KEYS[1], ARGV[2]) end
redis.call('INCR', KEYS[2])
RECORD()
return 1`,
);

const READ = new Script('list-read', 2, `return {redis.call('GET', KEYS[2]) or '0', redis.call('LRANGE', KEYS[1], 0, -1)}`);

const REPLACE = new ChangeScript(
  'list-replace',
  2,
  `if REPEATED then return 1 end
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
${PUSH_ARGS(2)}
redis.call('INCR', KEYS[2])
RECORD()
return 1`,
);

const FILL = new ChangeScript('list-fill', 2, `if REPEATED then return 1 end
redis.call('DEL', KEYS[1])
${PUSH_ARGS(1)}
redis.call('INCR', KEYS[2])
RECORD()
return 1`);

const CLEAR = new ChangeScript('list-clear', 2, `if REPEATED then return 1 end
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
RECORD()
return 1`);

function checkIndex(index: unknown, call: string): number {
  if (typeof index !== 'number' || !Number.isInteger(index)) throw new ValueError(`${call} index must be an integer, not ${describe(index)}`);
  return index;
}

/** Array items of an iterable value, as the local list's `extend` takes them. */
function itemsOf(values: unknown, call: string): unknown[] {
  if (typeof (values as { [Symbol.iterator]?: unknown } | null)?.[Symbol.iterator] !== 'function' || typeof values === 'string') {
    throw new ValueError(
      `${call} takes an iterable of values, not ${describe(values)}` + (values instanceof ClusterList ? ' (for another list: await other.toArray())' : ''),
    );
  }
  return Array.from(values as Iterable<unknown>);
}

/**
 * A list in Redis with the local manager's `ListProxy` methods (all async):
 * negative indices, `IndexError` out of range, `ValueError` for a missing
 * item, items compared by content; `for await` is live (it sees items
 * appended before it reaches the end).
 * @example
 * ```ts
 * const manager = await ctx.Manager();
 * const xs = await manager.list([1, 2, 3], { name: 'results' });
 * await xs.append(4);
 * console.log(await xs.get(-1), await xs.len()); // 4 4
 * ```
 */
export class ClusterList<T = unknown> extends ClusterObject implements AsyncIterable<T> {
  readonly #items: string;
  readonly #version: string;

  /** @internal Made by a cluster manager (`await manager.list(init, options)`). */
  constructor(conn: ObjectClients, options?: ClusterObjectOptions) {
    super(conn, 'list', objectOptions(options, 'list').name);
    this.#items = `${this.prefix}:items`;
    this.#version = `${this.prefix}:v`;
  }

  get kind(): ClusterKind {
    return 'list';
  }

  protected redisKeys(): string[] {
    return [this.#items, this.#version];
  }

  #keys(): string[] {
    return [this.#items, this.#version];
  }

  #pack(value: unknown, path: string): Buffer {
    return pack(value, path);
  }

  #unpack(bytes: Buffer): T {
    return unpack(bytes, `an item of list '${this.name}'`, this.conn.clients) as T;
  }

  /** @internal Replaces the contents (a manager's `list(init)`). */
  async fill(values: Iterable<T>): Promise<void> {
    const items = itemsOf(values, 'list()').map((v, i) => this.#pack(v, `list()[${i}]`));
    await this.change('list()', FILL, this.#keys(), items);
  }

  async get(index: number): Promise<T> {
    checkIndex(index, 'get()');
    const bytes = await this.conn.call(`list('${this.name}').get()`, (redis) => redis.lindexBuffer(this.#items, index));
    if (bytes === null) throw new IndexError(`list index ${index} out of range (length ${await this.len()})`);
    return this.#unpack(bytes);
  }

  async set(index: number, value: T): Promise<void> {
    checkIndex(index, 'set()');
    const [ok, length] = (await this.change('set()', SET, this.#keys(), [index, this.#pack(value, 'value')])) as [number, number];
    if (Number(ok) !== 1) throw new IndexError(`list assignment index ${index} out of range (length ${length})`);
  }

  /** Python's `del xs[i]`. */
  delete(index: number): Promise<void> {
    checkIndex(index, 'delete()');
    return this.#change('delete()', (list) => list.delete(NO_CALLER, index));
  }

  len(): Promise<number> {
    return this.conn.call(`list('${this.name}').len()`, (redis) => redis.llen(this.#items));
  }

  async append(value: T): Promise<void> {
    await this.change('append()', PUSH, this.#keys(), [this.#pack(value, 'value')]);
  }

  /** Appends each of `values` (an iterable; for another list, pass `await other.toArray()`). */
  async extend(values: Iterable<T>): Promise<void> {
    const items = itemsOf(values, 'extend()').map((v, i) => this.#pack(v, `values[${i}]`));
    if (items.length) await this.change('extend()', PUSH, this.#keys(), items);
  }

  insert(index: number, value: T): Promise<void> {
    checkIndex(index, 'insert()');
    this.#pack(value, 'value');
    return this.#change('insert()', (list) => list.insert(NO_CALLER, index, value));
  }

  /** Removes and returns the item at `index` (default the last). */
  async pop(index = -1): Promise<T> {
    checkIndex(index, 'pop()');
    if (index === -1 || index === 0) {
      const end = index === 0 ? 'left' : 'right';
      let callKey: string | undefined;
      // An item taken after the caller gave up waiting goes back to its end (as one call however often that is tried).
      const bytes = await this.change('pop()', POP_END, this.#keys(), [end], (late) => {
        if (Buffer.isBuffer(late)) return this.change('put back', PUSH_BACK, this.#keys(), [end, late], undefined, (callKey ??= this.newCallKey()));
      });
      if (!Buffer.isBuffer(bytes)) throw new IndexError('pop from empty list');
      return this.#unpack(bytes);
    }
    return this.#change('pop()', (list) => list.pop(NO_CALLER, index) as T);
  }

  /** Removes the first item equal to `value`. */
  remove(value: T): Promise<void> {
    return this.#change('remove()', (list) => list.remove(NO_CALLER, value));
  }

  async index(value: T, start?: number, stop?: number): Promise<number> {
    return (await this.#snapshot()).list.index(NO_CALLER, value, start, stop);
  }

  async count(value: T): Promise<number> {
    return (await this.#snapshot()).list.count(NO_CALLER, value);
  }

  /** Python's `value in xs`. */
  async includes(value: T): Promise<boolean> {
    return (await this.#snapshot()).list.includes(NO_CALLER, value);
  }

  reverse(): Promise<void> {
    return this.#change('reverse()', (list) => list.reverse());
  }

  /** Sorts numbers, strings, and arrays of them (as tuples), as Python's `sort` does. */
  sort(options?: { reverse?: boolean }): Promise<void> {
    return this.#change('sort()', (list) => list.sort(NO_CALLER, options));
  }

  /** Python's `xs[start:end]`. */
  async slice(start?: number, end?: number): Promise<T[]> {
    const from = start === undefined || start === null ? 0 : checkIndex(start, 'slice() start');
    const to = end === undefined || end === null ? null : checkIndex(end, 'slice() end');
    if (to === 0) return [];
    // Python's end is exclusive, LRANGE's stop inclusive; both clamp and count negatives from the end.
    const stop = to === null ? -1 : to - 1;
    const items = await this.conn.call(`list('${this.name}').slice()`, (redis) => redis.lrangeBuffer(this.#items, from, stop));
    return items.map((b) => this.#unpack(b));
  }

  /** A copy of the whole list (Python's `xs[:]`). */
  async toArray(): Promise<T[]> {
    return (await this.#snapshot()).list.items as T[];
  }

  /** Empties the list (which removes its items' key from Redis). */
  async clear(): Promise<void> {
    await this.change('clear()', CLEAR, this.#keys(), []);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (let i = 0; ; ) {
      const chunk = await this.slice(i, i + ITERATION_CHUNK);
      if (chunk.length === 0) return;
      yield* chunk;
      i += chunk.length;
    }
  }

  /** The items with the version they were read at. */
  async #snapshot(): Promise<{ version: string; list: ManagedList }> {
    const [version, raw] = (await this.script('read', READ, this.#keys(), [])) as [Buffer, Buffer[]];
    return { version: version.toString(), list: new ManagedList(raw.map((b) => this.#unpack(b))) };
  }

  /** Runs `change` on a snapshot and writes the result back if nobody changed the list meanwhile; again if somebody did. */
  async #change<R>(call: string, change: (list: ManagedList) => R): Promise<R> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const { version, list } = await this.#snapshot();
      const result = change(list);
      const items = list.items.map((v, i) => this.#pack(v, `list[${i}]`));
      if (Number(await this.change(call, REPLACE, this.#keys(), [version, ...items])) === 1) return result;
    }
    throw new StateError(`list '${this.name}'.${call}: the list kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }
}

registerClusterKind('list', (conn, name) => new ClusterList(conn, { name }));
