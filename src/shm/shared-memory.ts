/**
 * `SharedMemory`: a named block of shared memory, Python's
 * `multiprocessing.shared_memory.SharedMemory`.
 *
 * The block is `/dev/shm/<name>`, exactly where Python's `shm_open` puts it,
 * so a Python process can attach the same name. Lifetime follows the API
 * contract, not Python's resource tracker: attaching or exiting never
 * deletes a block; `unlink()` does, and so does the end of the process tree
 * that created it (its reaper), even after a SIGKILL.
 */
import { unlinkSync } from 'node:fs';
import { randomHex } from '../builtins.js';
import { native } from '../native/addon.js';
import { FileExistsError, FileNotFoundError, StateError, ValueError } from '../errors.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import { SHM_ROOT, markNameOwned, unmarkName } from './tree.js';

/** Options of `new SharedMemory(…)`, as Python's `SharedMemory(name, create, size)`. */
export interface SharedMemoryOptions {
  /** The block's name (no `/`). Default: a fresh random name when creating. */
  name?: string;
  /** Create a new block (true) or attach an existing one (false, default). */
  create?: boolean;
  /** Bytes, when creating (> 0). */
  size?: number;
}

interface SharedMemoryHandle extends SharedHandle {
  readonly name: string;
  readonly size: number;
  readonly sab?: SharedArrayBuffer;
}

/** Blocks of this isolate when there is no addon (threads only), by name. */
const localBlocks = new Map<string, SharedArrayBuffer>();

/**
 * The block each mapping of this isolate is, so a view of one (`shm.buf`, a
 * `subarray()` of it) travels as the block's name instead of a copy.
 */
const blocks = new WeakMap<SharedArrayBuffer, string>();

interface BlockBufferHandle extends SharedHandle {
  readonly name: string;
  readonly sab?: SharedArrayBuffer;
}

/** @internal How a mapping of a block travels, or undefined if `buffer` is not one. */
export function blockBufferHandle(buffer: SharedArrayBuffer): BlockBufferHandle | undefined {
  const name = blocks.get(buffer);
  if (name === undefined) return undefined;
  return { kind: 'SharedMemoryBuffer', name, ...(native() ? {} : { sab: buffer }) };
}

/**
 * A named block of shared memory any process can attach.
 * @example
 * ```ts
 * const shm = new mp.SharedMemory({ create: true, size: 1024 });
 * shm.buf[0] = 42;
 * const other = new mp.SharedMemory({ name: shm.name }); // here or in any process
 * other.close(); shm.close(); shm.unlink();
 * ```
 */
export class SharedMemory {
  /** The block's name, to attach it elsewhere. */
  readonly name: string;
  /** Its size in bytes. */
  readonly size: number;
  private sab: SharedArrayBuffer | null;
  private view: Uint8Array | null;

  constructor(options: SharedMemoryOptions = {}) {
    const { create = false } = options;
    let { name, size = 0 } = options;
    if (name !== undefined) validateName(name);
    if (create) {
      if (!Number.isSafeInteger(size) || size <= 0) {
        throw new ValueError(`size must be a positive integer number of bytes when creating, not ${size}`);
      }
      name ??= `psm_${randomHex(8)}`;
      this.sab = createBlock(name, size);
    } else {
      if (name === undefined) throw new ValueError('name is required to attach a SharedMemory (or pass create: true)');
      if (!Number.isSafeInteger(size) || size < 0) throw new ValueError(`size must be a non-negative integer, not ${size}`);
      // As Python: attaching ignores `size`; the block has its own.
      this.sab = attachBlock(name, 0);
      size = this.sab.byteLength;
    }
    this.name = name;
    this.size = size;
    this.view = new Uint8Array(this.sab, 0, size);
    blocks.set(this.sab, name);
  }

  /** The bytes of the block. Throws after `close()`. */
  get buf(): Uint8Array {
    if (!this.view) throw new StateError(`SharedMemory '${this.name}' is closed`);
    return this.view;
  }

  /** Stops using the block from this object (the memory is unmapped once nothing refers to it). */
  close(): void {
    this.view = null;
    this.sab = null;
  }

  /**
   * Removes the name, so nobody can attach it any more; mappings that exist
   * keep working. Any process may call it, once.
   */
  unlink(): void {
    if (!native()) {
      if (!localBlocks.delete(this.name)) throw notFound(this.name);
      return;
    }
    try {
      unlinkSync(`${SHM_ROOT}/${this.name}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(this.name);
      throw err;
    }
    unmarkName(this.name);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  toString(): string {
    return `SharedMemory('${this.name}', size=${this.size})`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal */
  [SHARED](): SharedMemoryHandle {
    const sab = native() ? undefined : (this.sab ?? undefined);
    return { kind: 'SharedMemory', name: this.name, size: this.size, ...(sab ? { sab } : {}) };
  }
}

function validateName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 250 || name.includes('/') || name === '.' || name === '..') {
    throw new ValueError(`SharedMemory name ${JSON.stringify(name)} is not valid: use 1-250 characters without '/'`);
  }
}

function notFound(name: string): FileNotFoundError {
  return new FileNotFoundError(`no shared memory block named '${name}' (it was never created, or it was unlinked)`);
}

function createBlock(name: string, size: number): SharedArrayBuffer {
  const addon = native();
  if (!addon) {
    if (localBlocks.has(name)) throw new FileExistsError(`a shared memory block named '${name}' exists already`);
    const sab = new SharedArrayBuffer(size);
    localBlocks.set(name, sab);
    return sab;
  }
  let sab: SharedArrayBuffer;
  try {
    sab = addon.openSegment(`${SHM_ROOT}/${name}`, size, true);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new FileExistsError(`a shared memory block named '${name}' exists already; attach it with { name } or pick another name`);
    }
    throw err;
  }
  markNameOwned(name);
  return sab;
}

function attachBlock(name: string, size: number): SharedArrayBuffer {
  const addon = native();
  if (!addon) {
    const local = localBlocks.get(name);
    if (!local) throw notFound(name);
    return local;
  }
  try {
    return addon.openSegment(`${SHM_ROOT}/${name}`, size, false);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(name);
    throw err;
  }
}

registerShared('SharedMemoryBuffer', (h) => {
  const { name, sab } = h as BlockBufferHandle;
  const buffer = sab ?? attachBlock(name, 0);
  blocks.set(buffer, name);
  return buffer;
});
registerShared('SharedMemory', (h) => {
  const { name, size, sab } = h as SharedMemoryHandle;
  if (sab) localBlocks.set(name, sab);
  return new SharedMemory({ name, size });
});
