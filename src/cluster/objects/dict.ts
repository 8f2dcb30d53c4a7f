/**
 * A cluster manager's dict and Namespace: Redis hashes of packed values
 * (codec.ts).
 *
 * Dict keys, under `{mpts:dict:<name>}`:
 * - `…:h`: the hash. Its fields are keys in a form that keeps Map
 *   semantics (`1` and `'1'` differ): a type letter, then the primitive as
 *   text (`s` string, `n` number, with `-0` as `0` and every NaN alike, as
 *   SameValueZero; `i` bigint, `t`/`f` booleans, `u` undefined, `z` null),
 *   or `o` and the packed bytes of an object key (found by its content, as
 *   a tuple key is in Python and in the local manager's dict);
 * - `…:order` and `…:seq`: a sorted set of the fields by insertion number,
 *   so keys, values and items come in insertion order and `popitem()`
 *   takes the last one added, as Python's dict does.
 * Every change is one Lua script that keeps the hash and its order
 * together, and a change script (call-records.ts): one that ioredis sends
 * twice runs once.
 *
 * Namespace: one hash `{mpts:Namespace:<name>}`, field = the name.
 */
import { KeyError, ValueError } from '../../errors.js';
import { describe } from '../../describe.js';
import { pack, unpack } from '../codec.js';
import { ObjectClients, Script } from './connection.js';
import { ChangeScript } from './call-records.js';
import { ClusterObject, isClusterObject, objectOptions, registerClusterKind, type ClusterKind, type ClusterObjectOptions } from './base.js';

/** Stores field/value pairs from ARGV[from..], each new field at the end of the order. */
const STORE = (from: number) => `for i = ${from}, OWN, 2 do
  if redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[i])
  end
end`;

const SET = new ChangeScript('dict-set', 3, `if REPEATED then return 1 end
${STORE(1)}
RECORD()
return 1`);

const FILL = new ChangeScript('dict-fill', 3, `if REPEATED then return 1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
${STORE(1)}
RECORD()
return 1`);

const REMOVE = new ChangeScript(
  'dict-remove',
  3,
  `if REPEATED then return ANSWER end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
RECORD(v)
return v`,
);

const CLEAR = new ChangeScript('dict-clear', 3, `if REPEATED then return 1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
RECORD()
return 1`);

/** Its answer is recorded as the field's length (4 bytes), the field, then the value. */
const POPITEM = new ChangeScript(
  'dict-popitem',
  3,
  `if REPEATED then
  local n = struct.unpack('>I4', ANSWER)
  return {string.sub(ANSWER, 5, 4 + n), string.sub(ANSWER, 5 + n)}
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1)[1]
if not last then return false end
local v = redis.call('HGET', KEYS[1], last)
redis.call('HDEL', KEYS[1], last)
redis.call('ZREM', KEYS[2], last)
RECORD(struct.pack('>I4', #last) .. last .. v)
return {last, v}`,
);

const SETDEFAULT = new ChangeScript(
  'dict-setdefault',
  3,
  `if REPEATED then return ANSWER end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return v end
${STORE(1)}
RECORD(ARGV[2])
return ARGV[2]`,
);

/**
 * Puts back an entry (ARGV[1] field, ARGV[2] value) a pop took for a caller
 * that gave up waiting: at the end of the order, and only if nobody set the
 * key meanwhile.
 */
const RESTORE = new ChangeScript(
  'dict-restore',
  3,
  `if REPEATED then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
end
RECORD()
return 1`,
);

/** Namespace: removes one name (KEYS[1] its hash); 1 when it was there. */
const NAMESPACE_DELETE = new ChangeScript(
  'namespace-delete',
  1,
  `if REPEATED then return 1 end
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if n == 1 then RECORD() end
return n`,
);

const ITEMS = new Script(
  'dict-items',
  3,
  `local fields = redis.call('ZRANGE', KEYS[2], 0, -1)
local out = {}
for i, f in ipairs(fields) do
  out[2 * i - 1] = f
  out[2 * i] = redis.call('HGET', KEYS[1], f) or ''
end
return out`,
);

/** The hash field of a dict key. */
export function keyField(key: unknown): Buffer {
  switch (typeof key) {
    case 'string':
      return Buffer.from(`s${key}`);
    case 'number':
      return Buffer.from(`n${Object.is(key, -0) ? '0' : String(key)}`);
    case 'bigint':
      return Buffer.from(`i${key}`);
    case 'boolean':
      return Buffer.from(key ? 't' : 'f');
    case 'undefined':
      return Buffer.from('u');
    case 'object':
      if (key === null) return Buffer.from('z');
      if (isClusterObject(key)) throw new ValueError(`${key} cannot be a dict key; use its name, or data`);
      return Buffer.concat([Buffer.from('o'), pack(key, 'key')]);
    default:
      throw new ValueError(`${describe(key)} cannot be a dict key (it cannot be stored in Redis)`);
  }
}

/** The key a hash field stands for. */
export function fieldKey(field: Buffer, conn: ObjectClients): unknown {
  const tag = String.fromCharCode(field[0] ?? 0);
  const text = () => field.subarray(1).toString();
  switch (tag) {
    case 's':
      return text();
    case 'n':
      return Number(text());
    case 'i':
      return BigInt(text());
    case 't':
      return true;
    case 'f':
      return false;
    case 'u':
      return undefined;
    case 'z':
      return null;
    case 'o':
      return unpack(field.subarray(1), 'a dict key', conn.clients);
    default:
      throw new ValueError(`a dict field in Redis is not a key this package stored (${describe(field.toString('latin1').slice(0, 40))})`);
  }
}

/** The entries of an object, a Map, or an array of `[key, value]` pairs. */
function entriesOf(entries: unknown, call: string): Array<[unknown, unknown]> {
  if (entries instanceof Map) return [...entries];
  if (Array.isArray(entries)) {
    return entries.map((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2) throw new ValueError(`${call}: item ${i} of the array is ${describe(pair)}, not a [key, value] pair`);
      return [pair[0], pair[1]];
    });
  }
  if (typeof entries === 'object' && entries !== null && !ArrayBuffer.isView(entries) && !isClusterObject(entries)) {
    return Object.keys(entries).map((k) => [k, (entries as Record<string, unknown>)[k]]);
  }
  throw new ValueError(`${call} takes an object, a Map or an array of [key, value] pairs, not ${describe(entries)}`);
}

/**
 * A dict in Redis with the local manager's `DictProxy` methods (all async),
 * Map semantics for keys (`1` and `'1'` differ), insertion order kept.
 * `for await` goes over the keys as they were when it began.
 * @example
 * ```ts
 * const d = await manager.dict<string, number>({ a: 1 }, { name: 'scores' });
 * await d.set('b', 2);
 * console.log(await d.get('b'), await d.toObject()); // 2 { a: 1, b: 2 }
 * ```
 */
export class ClusterDict<K = unknown, V = unknown> extends ClusterObject implements AsyncIterable<K> {
  readonly #hash: string;
  readonly #order: string;
  readonly #seq: string;

  /** @internal Made by a cluster manager (`await manager.dict(init, options)`). */
  constructor(conn: ObjectClients, options?: ClusterObjectOptions) {
    super(conn, 'dict', objectOptions(options, 'dict').name);
    this.#hash = `${this.prefix}:h`;
    this.#order = `${this.prefix}:order`;
    this.#seq = `${this.prefix}:seq`;
  }

  get kind(): ClusterKind {
    return 'dict';
  }

  protected redisKeys(): string[] {
    return [this.#hash, this.#order, this.#seq];
  }

  #value(bytes: Buffer): V {
    return unpack(bytes, `a value of dict '${this.name}'`, this.conn.clients) as V;
  }

  #pairs(entries: Array<[unknown, unknown]>): Buffer[] {
    return entries.flatMap(([k, v], i) => [keyField(k), pack(v, entries.length === 1 ? 'value' : `entries[${i}][1]`)]);
  }

  /** @internal Replaces the contents (a manager's `dict(init)`). */
  async fill(entries: unknown): Promise<void> {
    await this.change('dict()', FILL, this.redisKeys(), this.#pairs(entriesOf(entries, 'dict()')));
  }

  /** The value under `key`, or `fallback` (undefined) when there is none. */
  async get(key: K, fallback?: V): Promise<V | undefined> {
    const bytes = await this.conn.call(`dict('${this.name}').get()`, (redis) => redis.hgetBuffer(this.#hash, keyField(key)));
    return bytes === null ? fallback : this.#value(bytes);
  }

  async set(key: K, value: V): Promise<void> {
    await this.change('set()', SET, this.redisKeys(), this.#pairs([[key, value]]));
  }

  async has(key: K): Promise<boolean> {
    return (await this.conn.call(`dict('${this.name}').has()`, (redis) => redis.hexists(this.#hash, keyField(key)))) === 1;
  }

  /** Removes `key`; whether it was there. */
  async delete(key: K): Promise<boolean> {
    return Buffer.isBuffer(await this.change('delete()', REMOVE, this.redisKeys(), [keyField(key)]));
  }

  async #entries(): Promise<Array<[Buffer, Buffer]>> {
    const flat = (await this.script('items()', ITEMS, this.redisKeys(), [])) as Buffer[];
    const out: Array<[Buffer, Buffer]> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
    return out;
  }

  async keys(): Promise<K[]> {
    const fields = await this.conn.call(`dict('${this.name}').keys()`, (redis) => redis.zrangeBuffer(this.#order, '0', '-1'));
    return fields.map((f) => fieldKey(f, this.conn) as K);
  }

  async values(): Promise<V[]> {
    return (await this.#entries()).map(([, v]) => this.#value(v));
  }

  async items(): Promise<Array<[K, V]>> {
    return (await this.#entries()).map(([f, v]) => [fieldKey(f, this.conn) as K, this.#value(v)]);
  }

  len(): Promise<number> {
    return this.conn.call(`dict('${this.name}').len()`, (redis) => redis.hlen(this.#hash));
  }

  /** Adds the entries of an object, a Map, or an array of `[key, value]` pairs. */
  async update(entries: Record<string, V> | Map<K, V> | Array<[K, V]>): Promise<void> {
    const pairs = this.#pairs(entriesOf(entries, 'update()'));
    if (pairs.length) await this.change('update()', SET, this.redisKeys(), pairs);
  }

  /** Removes `key` and returns its value; `KeyError` when it is missing and no fallback was given. */
  async pop(key: K, ...fallback: [V?]): Promise<V> {
    const field = keyField(key);
    const bytes = await this.change('pop()', REMOVE, this.redisKeys(), [field], this.#restoreLate((late) => (Buffer.isBuffer(late) ? [field, late] : null)));
    if (Buffer.isBuffer(bytes)) return this.#value(bytes);
    if (fallback.length > 0) return fallback[0] as V;
    throw new KeyError(`pop(${describe(key)}): no such key`);
  }

  /** Removes and returns the last entry added. */
  async popitem(): Promise<[K, V]> {
    const got = (await this.change('popitem()', POPITEM, this.redisKeys(), [], this.#restoreLate((late) => (Array.isArray(late) ? (late as [Buffer, Buffer]) : null)))) as
      | [Buffer, Buffer]
      | null;
    if (!got) throw new KeyError('popitem(): the dict is empty');
    return [fieldKey(got[0], this.conn) as K, this.#value(got[1])];
  }

  /**
   * What a pop given up at its time limit does with the entry Redis
   * answers with later (its caller is gone): puts it back, as one call
   * however often that is tried.
   */
  #restoreLate(entryOf: (late: unknown) => [Buffer, Buffer] | null): (late: unknown) => Promise<unknown> | undefined {
    let callKey: string | undefined;
    return (late) => {
      const entry = entryOf(late);
      if (entry) return this.change('put back', RESTORE, this.redisKeys(), entry, undefined, (callKey ??= this.newCallKey()));
    };
  }

  /** The value under `key`; when there is none, stores `fallback` (undefined by default) and returns it. */
  async setdefault(key: K, fallback?: V): Promise<V> {
    const bytes = (await this.change('setdefault()', SETDEFAULT, this.redisKeys(), this.#pairs([[key, fallback]]))) as Buffer;
    return this.#value(bytes);
  }

  /** Empties the dict (which removes its keys from Redis). */
  async clear(): Promise<void> {
    await this.change('clear()', CLEAR, this.redisKeys(), []);
  }

  /** A copy as a Map (keys keep their types): Python's `d.copy()`. */
  async copy(): Promise<Map<K, V>> {
    return new Map(await this.items());
  }

  /** A copy as a plain object (keys become strings). */
  async toObject(): Promise<Record<string, V>> {
    const out: Record<string, V> = {};
    for (const [k, value] of await this.items()) Object.defineProperty(out, String(k), { value, enumerable: true, writable: true, configurable: true });
    return out;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<K> {
    yield* await this.keys();
  }
}

/**
 * A Namespace in Redis: named values (`get` of an unset name is undefined),
 * as the local manager's `NamespaceProxy`.
 * @example
 * ```ts
 * const ns = await manager.Namespace({ epoch: 0 }, { name: 'training' });
 * await ns.set('epoch', 1);
 * ```
 */
export class ClusterNamespace extends ClusterObject {
  /** @internal Made by a cluster manager (`await manager.Namespace(values, options)`). */
  constructor(conn: ObjectClients, options?: ClusterObjectOptions) {
    super(conn, 'Namespace', objectOptions(options, 'Namespace').name);
  }

  get kind(): ClusterKind {
    return 'Namespace';
  }

  protected redisKeys(): string[] {
    return [this.prefix];
  }

  #name(name: unknown, call: string): string {
    if (typeof name !== 'string') throw new ValueError(`Namespace ${call}() takes a name (a string), not ${describe(name)}`);
    return name;
  }

  /** @internal Replaces the contents (a manager's `Namespace(values)`). */
  async fill(values: unknown): Promise<void> {
    if (typeof values !== 'object' || values === null || Array.isArray(values)) throw new ValueError(`Namespace() takes an object of initial values, not ${describe(values)}`);
    const pairs = Object.keys(values).flatMap((k) => [k, pack((values as Record<string, unknown>)[k], `values.${k}`)]);
    await this.conn.call(`Namespace('${this.name}')`, (redis) => {
      const tx = redis.multi().del(this.prefix);
      if (pairs.length) tx.hset(this.prefix, ...(pairs as [string, Buffer]));
      return tx.exec();
    });
  }

  async get<V = unknown>(name: string): Promise<V | undefined> {
    const bytes = await this.conn.call(`Namespace('${this.name}').get()`, (redis) => redis.hgetBuffer(this.prefix, this.#name(name, 'get')));
    return bytes === null ? undefined : (unpack(bytes, `Namespace '${this.name}'.${name}`, this.conn.clients) as V);
  }

  async set(name: string, value: unknown): Promise<void> {
    const bytes = pack(value, 'value');
    await this.conn.call(`Namespace('${this.name}').set()`, (redis) => redis.hset(this.prefix, this.#name(name, 'set'), bytes));
  }

  async has(name: string): Promise<boolean> {
    return (await this.conn.call(`Namespace('${this.name}').has()`, (redis) => redis.hexists(this.prefix, this.#name(name, 'has')))) === 1;
  }

  async delete(name: string): Promise<boolean> {
    return Number(await this.change('delete()', NAMESPACE_DELETE, [this.prefix], [this.#name(name, 'delete')])) === 1;
  }

  async toObject(): Promise<Record<string, unknown>> {
    const all = await this.conn.call(`Namespace('${this.name}').toObject()`, (redis) => redis.hgetallBuffer(this.prefix));
    const out: Record<string, unknown> = {};
    for (const [k, bytes] of Object.entries(all)) {
      Object.defineProperty(out, k, { value: unpack(bytes, `Namespace '${this.name}'.${k}`, this.conn.clients), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
}

registerClusterKind('dict', (conn, name) => new ClusterDict(conn, { name }));
registerClusterKind('Namespace', (conn, name) => new ClusterNamespace(conn, { name }));
