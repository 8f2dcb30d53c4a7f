/**
 * How an item becomes a frame of the ring, and back.
 *
 * A frame is an int32 header `(length << 8) | tag`, a second int32 (an
 * int32 item's value; a spilled item's inner tag), and `length` payload
 * bytes, padded to 8. Payloads start 8-aligned: V8 copies shared memory
 * byte by byte when either side is not (4× slower for 1 KiB, measured). Common small items are written by hand (the tagged
 * fast path: no `v8.serialize`, no allocation on the way in): int32 and
 * float64 numbers, bigints that fit 64 bits, well-formed strings (UTF-8; one
 * with a lone surrogate takes the serializer, which keeps it), booleans,
 * null, undefined, plain Uint8Arrays and plain Float64Arrays (a chunk's
 * numeric results, pool/worker-loop.ts). Everything else goes through the
 * project's serializer: `encode` (shared objects become handles, what cannot
 * travel is refused with its path) and then `v8.serialize`. A payload larger
 * than the ring's spill threshold goes to a spill file (spill.ts) and the
 * frame carries its name.
 *
 * `prepare` runs before the producer takes its slot, so a refused item
 * never touches the ring; it leaves its answer in module variables rather
 * than an object, to allocate nothing per small item.
 */
import { v8 } from '../builtins.js';
import { SerializationError } from '../errors.js';
import { abandon, encode, toBytes, type Encoded } from '../serialize/encode.js';
import { decode } from '../serialize/decode.js';
import { EVERY_KIND } from '../serialize/shared.js';
import { spill, unlinkQuietly, unspill } from './spill.js';

export const enum Tag {
  Wrap = 1,
  Int32 = 2,
  Float64 = 3,
  BigInt64 = 4,
  Undefined = 5,
  Null = 6,
  True = 7,
  False = 8,
  String = 9,
  Bytes = 10,
  V8 = 11,
  /** Second word: the inner tag (String, Bytes, Floats or V8); payload: the spill file's name. */
  Spill = 12,
  /** No item: a frame that only moves TAIL, to wake sleeping consumers (`Channel.poke`); taken and dropped. */
  Skip = 13,
  /** A Float64Array's elements as they are in memory (both ends share the machine; payloads start 8-aligned). */
  Floats = 14,
}

/** Strings up to this many UTF-16 units are written straight into the ring (room reserved for 3 bytes each). */
const SHORT_STRING = 1024;

/** The ring's views, built once per mapping. */
export interface Views {
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  /**
   * The same bytes through a plain ArrayBuffer aliasing the mapping (the
   * addon's `aliasSegment`), for whole-payload copies: V8 copies a
   * SharedArrayBuffer word by word with atomic stores, several times slower
   * than this memcpy. Every copy made through it touches only bytes the
   * channel's protocol gives the copier alone. `u8` itself without the addon.
   */
  readonly bulk: Uint8Array;
  readonly buf: Buffer;
  readonly dv: DataView;
}

// What `prepare` found (read by `writePayload`).
let tag: Tag = Tag.Undefined;
/** Payload bytes to reserve (for a short string: the most it can take). */
let size = 0;
let num = 0;
let big = 0n;
let str = '';
let bytes: Uint8Array | null = null;
let spillTag: Tag = Tag.Undefined;
/** The serializer's result, whose shared-object references the channel owns from here on. */
let encoded: Encoded | null = null;
/** The spill file holding the payload, if any. */
let spilled: string | null = null;
/** The bytes written to that file (0: none). */
let spilledBytes = 0;

/** A prepared item kept aside (a producer's backlog; see channel.ts). */
export interface Prepared {
  readonly tag: Tag;
  readonly size: number;
  readonly num: number;
  readonly big: bigint;
  readonly str: string;
  readonly bytes: Uint8Array | null;
  readonly spillTag: Tag;
  readonly encoded: Encoded | null;
  readonly spilled: string | null;
  readonly spilledBytes: number;
}

/**
 * Turns `item` into the tag and payload the next `writePayload` writes.
 * Large payloads are written to a spill file here.
 * @throws SerializationError naming the path of what cannot travel (nothing then stays held).
 */
export function prepare(item: unknown, spillAbove: number): void {
  bytes = null;
  encoded = null;
  spilled = null;
  spilledBytes = 0;
  switch (typeof item) {
    case 'number':
      num = item;
      if ((item | 0) === item && (item !== 0 || 1 / item > 0)) {
        tag = Tag.Int32;
        size = 0;
      } else {
        tag = Tag.Float64;
        size = 8;
      }
      return;
    case 'string':
      // UTF-8 has no lone surrogate ('\uD800' would arrive as '\uFFFD'):
      // such a string takes V8's path, which keeps UTF-16 as it is.
      if (!item.isWellFormed()) break;
      if (item.length <= SHORT_STRING && item.length * 3 <= spillAbove) {
        tag = Tag.String;
        str = item;
        size = item.length * 3;
        return;
      }
      return payload(Tag.String, Buffer.from(item, 'utf8'), spillAbove);
    case 'boolean':
      tag = item ? Tag.True : Tag.False;
      size = 0;
      return;
    case 'undefined':
      tag = Tag.Undefined;
      size = 0;
      return;
    case 'bigint':
      if (BigInt.asIntN(64, item) === item) {
        tag = Tag.BigInt64;
        big = item;
        size = 8;
        return;
      }
      break;
    case 'object':
      if (item === null) {
        tag = Tag.Null;
        size = 0;
        return;
      }
      {
        const proto = Object.getPrototypeOf(item);
        const view = proto === Uint8Array.prototype || proto === Float64Array.prototype ? ownBytes(item as Uint8Array | Float64Array) : null;
        if (view) return payload(proto === Uint8Array.prototype ? Tag.Bytes : Tag.Floats, view, spillAbove);
      }
      break;
  }
  const value = encode(item, 'item', { crossProcess: true });
  const serialized = toBytes(value, 'item');
  try {
    payload(Tag.V8, serialized, spillAbove);
  } catch (err) {
    abandon(value);
    throw err;
  }
  if (value.segments.length > 0) encoded = value;
}

/** The built-in getters of every typed array (own properties of an array can shadow them; a Proxy of one has no slots for them). */
const TYPED_ARRAY = Object.getPrototypeOf(Uint8Array.prototype) as object;
const bufferOf = Object.getOwnPropertyDescriptor(TYPED_ARRAY, 'buffer')!.get!;
const byteOffsetOf = Object.getOwnPropertyDescriptor(TYPED_ARRAY, 'byteOffset')!.get!;
const byteLengthOf = Object.getOwnPropertyDescriptor(TYPED_ARRAY, 'byteLength')!.get!;

const NO_BYTES = new Uint8Array(0);

/**
 * A plain Uint8Array over the bytes of a plain Uint8Array or Float64Array,
 * read through the built-in getters, so what is reserved in the ring is
 * what is copied (an own `byteLength` that lies would overrun the frame
 * into unread ones; a Proxy's traps would run inside the writer slot).
 * Null for what must take the serializer instead: a Proxy, or an array over
 * shared memory. Throws a SerializationError for an array whose bytes
 * cannot be read: its buffer detached (transferred), or, resizable, shrunk
 * below it; both report no bytes and cannot be copied, and the structured
 * clone refuses them likewise (Node 20 has neither
 * `ArrayBuffer.prototype.detached` nor a bounds getter: the copy of an
 * empty one is the test).
 */
function ownBytes(array: Uint8Array | Float64Array): Uint8Array | null {
  let buffer: ArrayBufferLike;
  let offset: number;
  let length: number;
  try {
    buffer = Reflect.apply(bufferOf, array, []) as ArrayBufferLike;
    offset = Reflect.apply(byteOffsetOf, array, []) as number;
    length = Reflect.apply(byteLengthOf, array, []) as number;
  } catch {
    return null;
  }
  if (buffer instanceof SharedArrayBuffer) return null;
  if (length > 0) return new Uint8Array(buffer, offset, length);
  try {
    NO_BYTES.set(array);
  } catch {
    const kind = Object.getPrototypeOf(array) === Float64Array.prototype ? 'Float64Array' : 'Uint8Array';
    throw new SerializationError(
      `item is a ${kind} whose ArrayBuffer was detached (transferred, e.g. by postMessage or structuredClone with transfer) or resized below it; put a copy made before`,
    );
  }
  return NO_BYTES;
}

function payload(t: Tag, b: Uint8Array, spillAbove: number): void {
  if (b.byteLength <= spillAbove) {
    tag = t;
    bytes = b;
    size = b.byteLength;
    return;
  }
  tag = Tag.Spill;
  spillTag = t;
  spilled = spill(b);
  spilledBytes = b.byteLength;
  bytes = Buffer.from(spilled, 'latin1');
  size = bytes.byteLength;
}

/** Prepares a Skip frame (no item; see `Channel.poke`). */
export function prepareSkip(): void {
  bytes = null;
  encoded = null;
  spilled = null;
  spilledBytes = 0;
  tag = Tag.Skip;
  size = 0;
}

/** What `readFrame` leaves in `readValue` for a Skip frame. */
export const SKIPPED: unique symbol = Symbol('skipped');

/** The bytes the item prepared last wrote to a spill file, 0 for none (until the next `prepare`: also once committed). */
export function preparedSpillBytes(): number {
  return spilledBytes;
}

/** Payload bytes the prepared item needs at most. */
export function preparedSize(): number {
  return size;
}

/**
 * The prepared item as an object. An async put copies the item's bytes
 * (its caller runs on and may change them before the put commits); a
 * blocking put need not, since nothing else runs on its thread meanwhile
 * and the item's buffer is not shared (shared ones take the V8 path).
 */
export function keepPrepared(copyBytes: boolean): Prepared {
  const own = bytes && (copyBytes && (tag === Tag.Bytes || tag === Tag.Floats) ? bytes.slice() : bytes);
  return { tag, size, num, big, str, bytes: own, spillTag, encoded, spilled, spilledBytes };
}

/** Makes `p` the prepared item again. */
export function restorePrepared(p: Prepared): void {
  ({ tag, size, num, big, str, bytes, spillTag, encoded, spilled, spilledBytes } = p);
}

/** Gives back what a prepared item that will never be committed holds: its spill file, its references. */
export function discardPrepared(p: Prepared): void {
  if (p.spilled) unlinkQuietly(p.spilled);
  if (p.encoded) abandon(p.encoded);
}

/**
 * Writes the prepared item's frame at byte `at` of the mapping (8-aligned,
 * with `preparedSize()` payload bytes of room after the 8-byte header).
 * @returns the frame's length in bytes, padded to 8.
 */
export function writeFrame(v: Views, at: number): number {
  const p = at + 8;
  let length = size;
  switch (tag) {
    case Tag.Int32:
      // In the header's second word: a small int is one 8-byte frame.
      v.i32[(at >> 2) + 1] = num;
      length = 0;
      break;
    case Tag.Float64:
      v.dv.setFloat64(p, num, true);
      break;
    case Tag.BigInt64:
      v.dv.setBigInt64(p, big, true);
      break;
    case Tag.String:
      // A long string was encoded by `prepare`: its bytes are copied.
      if (bytes === null) length = str.length === 0 ? 0 : v.buf.write(str, p, size, 'utf8');
      else v.bulk.set(bytes, p);
      break;
    case Tag.Bytes:
    case Tag.Floats:
    case Tag.V8:
      v.bulk.set(bytes!, p);
      break;
    case Tag.Spill:
      v.i32[(at >> 2) + 1] = spillTag;
      v.bulk.set(bytes!, p);
      break;
  }
  v.i32[at >> 2] = (length << 8) | tag;
  return (8 + length + 7) & ~7;
}

/** A frame read out of the ring but not yet turned into the item (that happens outside the slot). */
export const enum Pending {
  None = 0,
  /** `readValue` is a copy of V8 bytes, to deserialize and revive handle markers in. */
  Decode = 1,
  /** `readValue` is a spill file name; `readSpillTag` says what it holds. */
  Unspill = 2,
}

export let readValue: unknown;
export let readSpillTag: Tag = Tag.Undefined;

/**
 * Reads the frame at byte `at` (not a Wrap): leaves its value (or what is
 * still to be done with it) in `readValue`.
 * @returns what remains to do after the slot is given back.
 */
export function readFrame(v: Views, at: number, header: number): Pending {
  const p = at + 8;
  const length = header >>> 8;
  switch ((header & 0xff) as Tag) {
    case Tag.Int32:
      readValue = v.i32[(at >> 2) + 1];
      return Pending.None;
    case Tag.Float64:
      readValue = v.dv.getFloat64(p, true);
      return Pending.None;
    case Tag.BigInt64:
      readValue = v.dv.getBigInt64(p, true);
      return Pending.None;
    case Tag.Undefined:
      readValue = undefined;
      return Pending.None;
    case Tag.Null:
      readValue = null;
      return Pending.None;
    case Tag.True:
      readValue = true;
      return Pending.None;
    case Tag.False:
      readValue = false;
      return Pending.None;
    case Tag.Skip:
      readValue = SKIPPED;
      return Pending.None;
    case Tag.String:
      readValue = length === 0 ? '' : v.buf.toString('utf8', p, p + length);
      return Pending.None;
    case Tag.Bytes:
      readValue = copyOut(v, p, length);
      return Pending.None;
    case Tag.Floats:
      readValue = floatsOf(v.bulk.subarray(p, p + length));
      return Pending.None;
    case Tag.V8:
      // A copy: V8's deserializer makes typed arrays that view its input.
      readValue = v.bulk.slice(p, p + length);
      return Pending.Decode;
    case Tag.Spill:
      readSpillTag = v.i32[(at >> 2) + 1] as Tag;
      readValue = v.buf.toString('latin1', p, p + length);
      return Pending.Unspill;
    default:
      throw new Error(`corrupt queue frame (header ${header}); please report this`);
  }
}

/** A Float64Array of its own holding a copy of `bytes` (a whole number of elements). */
function floatsOf(bytes: Uint8Array): Float64Array {
  const out = new Float64Array(bytes.byteLength >> 3);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/**
 * Small byte arrays taken out of the ring are views of a shared 64 KiB slab
 * (as Node's Buffer pool does): a fresh ArrayBuffer per item costs ~300 ns,
 * more than the copy, and `slice()` of shared memory is slower still.
 */
const SLAB_BYTES = 64 * 1024;
const SLAB_ITEM_MAX = 4 * 1024;
let slab = new Uint8Array(0);
let slabUsed = 0;

function copyOut(v: Views, p: number, length: number): Uint8Array {
  if (length > SLAB_ITEM_MAX) {
    const out = new Uint8Array(length);
    out.set(v.bulk.subarray(p, p + length));
    return out;
  }
  if (slabUsed + length > slab.byteLength) {
    // Not zero-filled: every byte an item views is written just below.
    slab = new Uint8Array(Buffer.allocUnsafeSlow(SLAB_BYTES).buffer);
    slabUsed = 0;
  }
  const out = new Uint8Array(slab.buffer, slabUsed, length);
  out.set(v.bulk.subarray(p, p + length));
  slabUsed = (slabUsed + length + 7) & ~7;
  return out;
}

/**
 * An item that went through the serializer, handed out as its V8 bytes
 * without being decoded (`finish` with `raw`: a Pipe's `recvBytes`). Its
 * shared-object handles are still in flight, as in a message not yet
 * received: nothing was attached and no reference taken or given back.
 */
export class Serialized {
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * Finishes a frame `readFrame` left pending, outside the slot (attaching
 * shared objects, reading a spill file). Items come from this process
 * tree (the channel is reached only through handles it gave out), so every
 * kind of shared object is revived (see `HandleKinds` in serialize/shared.ts).
 * @param raw leave a serialized item undecoded (a `Serialized`).
 * @param mayMap a spill file may be mapped rather than read (Channel `mapsSpills`).
 */
export function finish(pending: Pending, value: unknown, spillTag: Tag, raw = false, mayMap = true): unknown {
  if (pending === Pending.Decode) {
    return raw ? new Serialized(value as Uint8Array) : decode(v8().deserialize(value as Uint8Array), EVERY_KIND);
  }
  // A string or a Float64Array is copied out of the file's bytes anyway: only the others may keep them mapped.
  const data = unspill(value as string, mayMap && spillTag !== Tag.String && spillTag !== Tag.Floats);
  if (spillTag === Tag.String) return data.toString('utf8');
  if (spillTag === Tag.Bytes) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (spillTag === Tag.Floats) return floatsOf(data);
  return raw ? new Serialized(data) : decode(v8().deserialize(data), EVERY_KIND);
}

/** Frame length (padded) of a header. */
export function frameBytes(header: number): number {
  return (8 + (header >>> 8) + 7) & ~7;
}
