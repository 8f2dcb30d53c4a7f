/**
 * Python's ctypes typecodes on Linux x86-64, mapped to typed arrays.
 * `l L q Q` are 64-bit and held as bigint; `c` is one byte, as `B`.
 */
import { ValueError } from '../errors.js';
import { describe } from '../describe.js';

export type TypedArray =
  | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

type TypedArrayCtor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray; BYTES_PER_ELEMENT: number };

/** One typecode's storage. */
export interface TypeInfo {
  readonly code: Typecode;
  readonly array: TypedArrayCtor;
  readonly size: number;
  readonly bigint: boolean;
  readonly float: boolean;
  /** Python's ctypes name, for messages and `toString`. */
  readonly ctype: string;
}

export type Typecode = 'c' | 'b' | 'B' | 'h' | 'H' | 'i' | 'I' | 'l' | 'L' | 'q' | 'Q' | 'f' | 'd';

/** The element type a typecode holds in JavaScript. */
export type ElementOf<T extends Typecode> = T extends 'l' | 'L' | 'q' | 'Q' ? bigint : number;

const make = (code: Typecode, array: TypedArrayCtor, ctype: string): TypeInfo => ({
  code,
  array,
  size: array.BYTES_PER_ELEMENT,
  bigint: array === BigInt64Array || array === BigUint64Array,
  float: array === Float32Array || array === Float64Array,
  ctype,
});

const TABLE: Record<Typecode, TypeInfo> = {
  c: make('c', Uint8Array, 'c_char'),
  b: make('b', Int8Array, 'c_byte'),
  B: make('B', Uint8Array, 'c_ubyte'),
  h: make('h', Int16Array, 'c_short'),
  H: make('H', Uint16Array, 'c_ushort'),
  i: make('i', Int32Array, 'c_int'),
  I: make('I', Uint32Array, 'c_uint'),
  l: make('l', BigInt64Array, 'c_long'),
  L: make('L', BigUint64Array, 'c_ulong'),
  q: make('q', BigInt64Array, 'c_longlong'),
  Q: make('Q', BigUint64Array, 'c_ulonglong'),
  f: make('f', Float32Array, 'c_float'),
  d: make('d', Float64Array, 'c_double'),
};

export const TYPECODES = Object.keys(TABLE) as Typecode[];

/** The storage of `code`, or a ValueError naming it. */
export function typeInfo(code: unknown): TypeInfo {
  if (typeof code === 'string' && Object.hasOwn(TABLE, code)) return TABLE[code as Typecode];
  throw new ValueError(
    `unknown typecode ${typeof code === 'string' ? `'${code}'` : String(code)}; use one of ${TYPECODES.join(' ')}`,
  );
}

/**
 * Checks and converts one element for storage.
 * @param where how to name the value in an error (`initializer[2]`, `value`).
 */
export function toElement(info: TypeInfo, value: unknown, where: string): number | bigint {
  if (info.bigint) {
    if (typeof value === 'bigint') return value;
    if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
    throw new ValueError(`${where} is ${describe(value)}; typecode '${info.code}' holds a bigint (or a safe integer number)`);
  }
  if (typeof value === 'number') {
    if (!info.float && !Number.isInteger(value)) {
      throw new ValueError(`${where} is ${value}; typecode '${info.code}' (${info.ctype}) holds integers`);
    }
    return value;
  }
  if (typeof value === 'boolean') return value ? 1 : 0;
  throw new ValueError(`${where} is ${describe(value)}; typecode '${info.code}' (${info.ctype}) holds numbers`);
}
