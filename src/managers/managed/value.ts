/**
 * The server's `Value` and `Array`: one element, or a fixed-length typed
 * array, of a typecode (as `mp.Value`/`mp.Array`, but in the server's
 * memory, reached through the manager from anywhere).
 */
import { describe } from '../../describe.js';
import { IndexError, ValueError } from '../../errors.js';
import { toElement, typeInfo, type TypeInfo, type TypedArray } from '../../sharedctypes/typecodes.js';
import { Managed, currentLimits, resolveIndex, type Caller } from './base.js';

export class ManagedValue extends Managed {
  static override readonly exposed: readonly string[] = ['get', 'set', 'typecode'];

  readonly #info: TypeInfo;
  #value: number | bigint;

  constructor(typecode: unknown, value: unknown = 0) {
    super();
    this.#info = typeInfo(typecode);
    this.#value = this.#stored(value);
  }

  get(): number | bigint {
    return this.#value;
  }

  set(_: Caller, value: unknown): void {
    this.#value = this.#stored(value);
  }

  typecode(): string {
    return this.#info.code;
  }

  /** As the typed array of the typecode would store it (wrapped, rounded to float32…). */
  #stored(value: unknown): number | bigint {
    const cell = new this.#info.array(new ArrayBuffer(this.#info.size), 0, 1);
    cell[0] = toElement(this.#info, value, 'Value') as never;
    return cell[0]!;
  }
}

export class ManagedArray extends Managed {
  static override readonly exposed: readonly string[] = ['get', 'set', 'len', 'toArray', 'typecode'];

  readonly #info: TypeInfo;
  readonly #items: TypedArray;

  constructor(typecode: unknown, sizeOrInit: unknown) {
    super();
    const info = typeInfo(typecode);
    this.#info = info;
    if (typeof sizeOrInit === 'number') {
      if (!Number.isSafeInteger(sizeOrInit) || sizeOrInit < 0) {
        throw new ValueError(`Array size must be an integer >= 0, not ${describe(sizeOrInit)}`);
      }
      checkSize(info, sizeOrInit);
      this.#items = new info.array(new ArrayBuffer(sizeOrInit * info.size), 0, sizeOrInit);
      return;
    }
    const source = Array.isArray(sizeOrInit) || ArrayBuffer.isView(sizeOrInit) ? (sizeOrInit as ArrayLike<unknown>) : null;
    if (!source) throw new ValueError(`Array takes a size or an array of initial values, not ${describe(sizeOrInit)}`);
    checkSize(info, source.length ?? 0);
    const init = Array.from(source);
    this.#items = new info.array(new ArrayBuffer(init.length * info.size), 0, init.length);
    init.forEach((v, i) => (this.#items[i] = toElement(info, v, `Array initializer[${i}]`) as never));
  }

  get(_: Caller, index: unknown): number | bigint {
    return this.#items[this.#at(index)]!;
  }

  set(_: Caller, index: unknown, value: unknown): void {
    this.#items[this.#at(index)] = toElement(this.#info, value, 'Array value') as never;
  }

  len(): number {
    return this.#items.length;
  }

  toArray(): Array<number | bigint> {
    return Array.from(this.#items as ArrayLike<number | bigint>);
  }

  typecode(): string {
    return this.#info.code;
  }

  #at(index: unknown): number {
    const i = resolveIndex(index, this.#items.length, 'Array');
    if (i === null) throw new IndexError(`Array index ${String(index)} out of range (length ${this.#items.length})`);
    return i;
  }
}

/**
 * Refuses an Array larger than the server allows (`maxArrayBytes`): its
 * memory is taken at once, and one call must not take the server's all.
 */
function checkSize(info: TypeInfo, length: number): void {
  const { maxArrayBytes } = currentLimits();
  const bytes = length * info.size;
  if (bytes <= maxArrayBytes) return;
  throw new ValueError(
    `Array of ${length} '${info.code}' items needs ${bytes} bytes, more than this manager's limit of ${maxArrayBytes} ` +
      `(maxArrayBytes); make it smaller, or give the manager a larger maxArrayBytes`,
  );
}
