/**
 * Views of shared memory that are not shared objects themselves: a typed
 * array or DataView over a segment or a SharedMemory block (`raw.subarray()`,
 * `new Int32Array(raw.buffer, …)`, `shm.buf`), and such a SharedArrayBuffer
 * bare.
 *
 * Structured clone shares a SharedArrayBuffer with a thread but copies a view
 * of one into another process, so the same call would behave differently
 * under the two start methods. Instead such a value travels as a handle of
 * its memory (plus where the view looks and its element type), and the
 * receiver makes a plain view over its own mapping of the same memory.
 */
import { Segment, type SegmentHandle } from '../shm/segment.js';
import { blockBufferHandle } from '../shm/shared-memory.js';
import { registerShared, reviveShared, type SharedHandle } from './shared.js';

/** Element types by a name of ours (not `constructor.name`, which a subclass changes). */
const VIEW_TYPES = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
} as const;
type ViewType = keyof typeof VIEW_TYPES;
const TYPE_NAMES = Object.keys(VIEW_TYPES) as ViewType[];

interface SegmentBufferHandle extends SharedHandle {
  readonly segment: SegmentHandle;
}

interface ViewHandle extends SharedHandle {
  readonly buffer: SharedHandle;
  readonly type: ViewType;
  readonly byteOffset: number;
  /** Elements (bytes for a DataView). */
  readonly length: number;
}

/** The SharedArrayBuffer `value` is or looks at, if any. */
export function sharedBufferOf(value: object): SharedArrayBuffer | null {
  if (value instanceof SharedArrayBuffer) return value;
  if (ArrayBuffer.isView(value) && value.buffer instanceof SharedArrayBuffer) return value.buffer;
  return null;
}

/** Whether `buffer` is memory this package mapped (a segment or a SharedMemory block), which a handle can name. */
export function isMappedByUs(buffer: SharedArrayBuffer): boolean {
  return Segment.of(buffer) !== undefined || blockBufferHandle(buffer) !== undefined;
}

/**
 * The handle of a view or bare buffer over memory this package mapped, or
 * null for anything else. A segment's handle takes a reference in flight
 * (see `Segment.toHandle`).
 */
export function memoryHandle(value: object, buffer: SharedArrayBuffer): SharedHandle | null {
  const segment = Segment.of(buffer);
  const segmentBuffer: SegmentBufferHandle | undefined = segment && { kind: 'SegmentBuffer', segment: segment.toHandle() };
  const bufferHandle: SharedHandle | undefined = segmentBuffer ?? blockBufferHandle(buffer);
  if (!bufferHandle) return null;
  if (value === buffer) return bufferHandle;
  const view = value as ArrayBufferView;
  const type = TYPE_NAMES.find((name) => view instanceof VIEW_TYPES[name])!;
  const length = view instanceof DataView ? view.byteLength : (view as Uint8Array).length;
  const handle: ViewHandle = { kind: 'BufferView', buffer: bufferHandle, type, byteOffset: view.byteOffset, length };
  return handle;
}

registerShared('SegmentBuffer', (h) => Segment.attach((h as SegmentBufferHandle).segment).sab);
registerShared('BufferView', (h) => {
  const { buffer, type, byteOffset, length } = h as ViewHandle;
  const memory = reviveShared(buffer) as SharedArrayBuffer;
  const View = VIEW_TYPES[type] as new (buffer: SharedArrayBuffer, byteOffset: number, length: number) => ArrayBufferView;
  if (!View) throw new TypeError(`unknown view type '${type}'`);
  return new View(memory, byteOffset, length);
});
