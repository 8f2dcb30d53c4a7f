/**
 * Value on Redis.
 *
 * One hash per value, `{mpts:Value:<name>}`: `t` the typecode and `v` the
 * value's bytes as the local Value holds them in shared memory (the typed
 * array's element, little-endian). Keeping the bytes, not a decimal
 * string, keeps the local semantics exactly: a store wraps or rounds as
 * the typed array does (`'i'` wraps at 2^31, `'f'` rounds to float32,
 * `'q'` is a 64-bit bigint). Every script first creates the hash from the
 * caller's typecode and initial value when it does not exist yet, and
 * refuses a caller whose typecode differs from the stored one (its bytes
 * would mean something else).
 *
 * `set(v)` and `add(delta)` are changes (call-records.ts): a repeat of
 * the call (a command resent after a dropped connection) answers as the
 * first run did and changes nothing.
 *
 * `get()` and `set(v)` are single steps; a read-modify-write over a
 * network needs one step too, so there is `add(delta)`, a Lua script that
 * adds with the typecode's arithmetic (Redis' Lua unpacks and packs the
 * bytes with its `struct` library; 64-bit codes add in two 32-bit halves,
 * since Lua's numbers are doubles). Anything longer runs under
 * `getLock()`, a cluster RLock of its own (`{mpts:Value:<name>}:lock`).
 */
import { ClusterError, ValueError } from '../../errors.js';
import { describe } from '../../describe.js';
import { toElement, typeInfo, type ElementOf, type TypeInfo, type Typecode } from '../../sharedctypes/typecodes.js';
import { ObjectClients, Script } from './connection.js';
import { ChangeScript } from './call-records.js';
import { ClusterObject, notOverNetwork, objectOptions, registerClusterKind, type ClusterKind, type ClusterObjectOptions, type Settings } from './base.js';
import { ClusterRLock } from './lock.js';

const INIT = `local t = redis.call('HGET', KEYS[1], 't')
if not t then
  redis.call('HSET', KEYS[1], 't', ARGV[1], 'v', ARGV[2])
  t = ARGV[1]
end
if t ~= ARGV[1] then return {0, t} end`;

const READ = new Script('value-read', 1, `${INIT}
return {1, redis.call('HGET', KEYS[1], 'v')}`);

const WRITE = new ChangeScript('value-write', 1, `${INIT}
if REPEATED then return {1, ANSWER} end
redis.call('HSET', KEYS[1], 'v', ARGV[3])
RECORD(ARGV[3])
return {1, ARGV[3]}`);

/** struct formats of the codes of at most 32 bits, and their widths. */
const SMALL: Record<string, [string, number, boolean]> = {
  c: ['<B', 8, false],
  b: ['<b', 8, true],
  B: ['<B', 8, false],
  h: ['<h', 16, true],
  H: ['<H', 16, false],
  i: ['<i4', 32, true],
  I: ['<I4', 32, false],
};

const ADD = new ChangeScript(
  'value-add',
  1,
  `${INIT}
if REPEATED then return {1, ANSWER} end
local v = redis.call('HGET', KEYS[1], 'v')
local code = ARGV[1]
local out
if code == 'd' or code == 'f' then
  local fmt = code == 'd' and '<d' or '<f'
  out = struct.pack(fmt, struct.unpack(fmt, v) + tonumber(ARGV[3]))
elseif code == 'q' or code == 'Q' or code == 'l' or code == 'L' then
  local lo, hi = struct.unpack('<I4I4', v)
  local l2 = lo + tonumber(ARGV[3])
  local carry = math.floor(l2 / 4294967296)
  l2 = l2 % 4294967296
  local h2 = (hi + tonumber(ARGV[4]) + carry) % 4294967296
  out = struct.pack('<I4I4', l2, h2)
else
  local fmt, bits, signed = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1'
  local m = 2 ^ bits
  local x = (struct.unpack(fmt, v) + tonumber(ARGV[3])) % m
  if signed and x >= m / 2 then x = x - m end
  out = struct.pack(fmt, x)
end
redis.call('HSET', KEYS[1], 'v', out)
RECORD(out)
return {1, out}`,
);

/** The bytes of one element of `info`. */
function bytesOf(info: TypeInfo, element: number | bigint): Buffer {
  const array = new info.array(new ArrayBuffer(info.size), 0, 1);
  array[0] = element as never;
  return Buffer.from(array.buffer);
}

/** The element `bytes` hold. */
function elementOf(info: TypeInfo, bytes: Buffer): number | bigint {
  const copy = new Uint8Array(info.size);
  copy.set(bytes.subarray(0, info.size));
  return new info.array(copy.buffer, 0, 1)[0]!;
}

/**
 * A typed number shared by processes on any machine that reach one Redis:
 * the cluster form of `mp.Value`. `get()`/`set(v)` replace `.value`, and
 * `add(delta)` is the atomic read-modify-write.
 * @example
 * ```ts
 * const hits = new ctx.Value('i', 0, { name: 'hits' });
 * await hits.add(1);                 // atomic, cluster-wide
 * console.log(await hits.get());
 * await hits.getLock().withLock(async () => { … longer updates … });
 * ```
 */
export class ClusterValue<E extends number | bigint = number> extends ClusterObject {
  readonly #info: TypeInfo;
  readonly #init: Buffer;
  readonly #initial: number | bigint;
  #lock: ClusterRLock | null = null;

  /** @internal Made by a cluster context (`new ctx.Value(typecode, init, options)`). */
  constructor(conn: ObjectClients, typecode: Typecode, init: number | bigint = 0, options?: ClusterObjectOptions) {
    const info = typeInfo(typecode);
    const o = objectOptions(options as (ClusterObjectOptions & { lock?: unknown }) | undefined, 'Value');
    if ((o as { lock?: unknown }).lock !== undefined) {
      throw new ValueError('a cluster Value has no lock option: its getLock() is a cluster RLock of its own, and get/set/add are atomic without it');
    }
    const initial = toElement(info, init, 'the initial value');
    super(conn, 'Value', o.name);
    this.#info = info;
    this.#initial = initial;
    this.#init = bytesOf(info, initial);
  }

  get kind(): ClusterKind {
    return 'Value';
  }

  /** The typecode it was made with. */
  get typecode(): Typecode {
    return this.#info.code;
  }

  protected override settings(): Settings {
    return { typecode: this.#info.code, init: typeof this.#initial === 'bigint' ? `${this.#initial}n` : this.#initial };
  }

  protected redisKeys(): string[] {
    return [this.prefix, `${this.prefix}:lock:holder`, `${this.prefix}:lock:fence`];
  }

  /** Runs a script and checks the stored typecode; returns the value's bytes after it. */
  async #run(what: string, script: Script, extra: (string | number | Buffer)[] = []): Promise<E> {
    const args = [this.#info.code, this.#init, ...extra];
    const [ok, bytes] = (
      script instanceof ChangeScript ? await this.change(what, script, [this.prefix], args) : await this.script(what, script, [this.prefix], args)
    ) as [number, Buffer];
    if (Number(ok) !== 1) {
      throw new ValueError(
        `Value '${this.name}' holds typecode '${bytes.toString()}' in Redis, but this object was made with '${this.#info.code}'; ` +
          `make it with the same typecode (or unlink() the old one)`,
      );
    }
    if (!Buffer.isBuffer(bytes) || bytes.length < this.#info.size) throw new ClusterError(`Value '${this.name}' holds ${describe(bytes)} in Redis, not a '${this.#info.code}'`);
    return elementOf(this.#info, bytes) as E;
  }

  /** The value. */
  get(): Promise<E> {
    return this.#run('get()', READ);
  }

  /** Stores `v`, wrapped or rounded as the typecode's storage does; resolves once stored. */
  async set(v: E | number): Promise<void> {
    await this.#run('set()', WRITE, [bytesOf(this.#info, toElement(this.#info, v, 'the value'))]);
  }

  /**
   * Adds `delta` in one atomic step (with the typecode's wrapping or
   * rounding) and returns the new value.
   */
  add(delta: E | number): Promise<E> {
    const info = this.#info;
    const d = toElement(info, delta, 'the delta');
    if (info.bigint) {
      const bits = BigInt.asUintN(64, BigInt(d));
      return this.#run('add()', ADD, [String(Number(bits & 0xffffffffn)), String(Number(bits >> 32n))]);
    }
    if (info.float) return this.#run('add()', ADD, [String(d)]);
    const [fmt, width, signed] = SMALL[info.code]!;
    // Only the low bits of the delta matter to a wrapping add (and keep Lua's doubles exact).
    return this.#run('add()', ADD, [String(Number(d) % 2 ** width), fmt, width, signed ? '1' : '0']);
  }

  /** The cluster RLock that guards longer updates of this value (one per value, shared by every handle). */
  getLock(): ClusterRLock {
    return (this.#lock ??= new ClusterRLock(this.conn, { name: this.name }, { kind: 'Value', prefix: this.prefix }));
  }

  /** Not over a network: use `await v.get()`. */
  get value(): never {
    throw notOverNetwork('Value.value', 'await v.get() (and await v.set(x), or await v.add(delta) to update atomically)');
  }

  set value(_: unknown) {
    throw notOverNetwork('Value.value = …', 'await v.set(x) (or await v.add(delta) to update atomically)');
  }
}

registerClusterKind('Value', (conn, name, s) => {
  const init = s['init'];
  const value = typeof init === 'string' && /^-?\d+n$/.test(init) ? BigInt(init.slice(0, -1)) : init;
  return new ClusterValue(conn, s['typecode'] as Typecode, value as number | bigint, { name });
});

export type { ElementOf };
