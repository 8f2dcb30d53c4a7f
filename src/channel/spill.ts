/**
 * Items too large for the ring travel in a file of their own, in the tree
 * directory, and the ring carries only its name.
 *
 * Why not stream them through the ring in pieces: a piece can only move
 * when a consumer makes room, so a producer putting 10 MB into a queue that
 * nobody reads yet would wait inside `put()`, and a parent that joins that
 * producer before reading would deadlock (Python's famous bug, which its
 * docs ask users to avoid). Written to a file, the item is in the queue
 * once `put()` returns, whoever reads it and whenever; the producer may
 * exit. The producer copies the item once (`write(2)` into tmpfs); the
 * consumer maps the file instead of reading it (`mapFile`, with the addon),
 * so its item is the file's own pages, unmapped when the item is collected.
 *
 * Mapped garbage: a mapping holds its tmpfs pages after the unlink, until
 * V8 collects the ArrayBuffer, and V8 collects for external memory only
 * tens of MiB later. A consumer that drops each 1 MiB item it gets thus
 * filled a 16 MiB /dev/shm by itself, and the producers' next spill failed
 * with ENOSPC. So a process maps while what it holds mapped (live items
 * and garbage alike, `mappedFileBytes`) is under MAP_SHARE of the file
 * system's size, and reads the file into its own memory past that (about
 * 3× slower for 1 MiB than mapping, measured: the copy and the new pages'
 * faults). What sits in /dev/shm is then the items in queues, plus at most
 * that share (and one item) per process consuming them. Items copied out
 * of the file anyway (strings, Float64Arrays) are read, and so are the
 * items of consumers that copy everything they take (the pool's channels,
 * Channel `mapsSpills`): mapping would save them nothing, and their
 * garbage, in a pool of many workers idle after a burst, held /dev/shm
 * full until they worked again.
 *
 * Ownership: the file belongs to the channel from `put()` until one
 * consumer takes its frame; that consumer reads and removes it. A file
 * whose frame is never taken (a queue dropped with items inside, a consumer
 * killed between taking the frame and reading the file) is removed with the
 * tree directory when the main process ends.
 *
 * One tree: the name is looked up in the reader's own tree directory, so a
 * channel (a Queue, a Pipe) must never be reached from another tree. None
 * is: a channel is revived only from its handle, and handles travel only
 * through Process args (the child is of the tree), Queues and Pipes (whose
 * handles came from the tree in turn); a Listener/Client socket refuses
 * every handle (connection/objects.ts), and a layer that allows some kinds
 * over sockets must not allow these (`HandleKinds` in serialize/shared.ts).
 */
import { closeSync, openSync, readFileSync, statSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { restated } from '../errno.js';
import { native } from '../native/addon.js';
import { treeDir } from '../shm/tree.js';

let prefix = '';
let counter = 0;

/** The share of the tree directory's file system one process may hold mapped (see "Mapped garbage"). */
const MAP_SHARE = 1 / 8;
/** What the file system's size is taken to be when it cannot be read (Docker's default /dev/shm). */
const FALLBACK_FS_BYTES = 64 * 1024 * 1024;
let fsBytes = -1;

/**
 * The size of the file system spill files go to (the tree directory's:
 * /dev/shm), read once: what shares of it (mapped items here, unread
 * answers of a pool worker) are measured against.
 */
export function spillFsBytes(): number {
  if (fsBytes < 0) {
    try {
      const fs = statfsSync(treeDir());
      // A tmpfs mounted with size=0 has no limit, and says 0 blocks.
      fsBytes = fs.blocks > 0 ? fs.blocks * fs.bsize : Infinity;
    } catch {
      fsBytes = FALLBACK_FS_BYTES;
    }
  }
  return fsBytes;
}

/** Bytes free for an unprivileged writer in the tree directory's file system (Infinity when that cannot be read: the write will tell). */
function freeBytes(): number {
  try {
    const fs = statfsSync(treeDir());
    return fs.blocks > 0 ? fs.bavail * fs.bsize : Infinity;
  } catch {
    return Infinity;
  }
}

/** Bytes this process may hold mapped before it reads spill files instead (see "Mapped garbage"). */
function mapBudgetBytes(): number {
  return spillFsBytes() * MAP_SHARE;
}

/** The largest file `readFileSync` reads (2 GiB less a page, to be safe); a larger one is mapped. */
const READ_MAX_BYTES = 2 ** 31 - 4096;

/** Writes `bytes` to a new spill file; returns its name inside the tree directory. */
export function spill(bytes: Uint8Array): string {
  // Refused up front when it cannot fit: written until the file system is
  // full, it would make every other writer there fail meanwhile (a pool's
  // workers answering), and then be removed anyway.
  if (bytes.byteLength > freeBytes()) {
    throw full(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' }), bytes.byteLength);
  }
  for (let attempt = 1; ; attempt++) {
    if (!prefix) prefix = Math.floor(Math.random() * 36 ** 8).toString(36);
    const name = `q${prefix}.${++counter}`;
    let fd: number;
    try {
      fd = openSync(`${treeDir()}/${name}`, 'wx', 0o600);
    } catch (err) {
      // Left by a dead process whose random prefix we drew again.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt === 5) throw full(err, bytes.byteLength);
      prefix = '';
      continue;
    }
    try {
      for (let done = 0; done < bytes.byteLength; ) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    } catch (err) {
      unlinkQuietly(name);
      throw full(err, bytes.byteLength);
    } finally {
      closeSync(fd);
    }
    return name;
  }
}

/**
 * A write that found the file system full, restated with the item's size,
 * the directory, and the fix; the errno fields stay, so `code` is still
 * ENOSPC (or EDQUOT). Any other error is returned as it is.
 */
function full(err: unknown, size: number): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  const dir = treeDir();
  const error = restated(
    `${code}: no space left on device, write of a ${size}-byte item to ${dir}: ` +
      `items over an eighth of their ring travel in files there, in the shared-memory file system; ` +
      `free space in it or make it larger (Docker: --shm-size), or send smaller items`,
    err,
  );
  error.path = dir;
  return error;
}

/**
 * Reads a spill file and removes it (the one consumer that took its frame).
 * With the addon, when the caller allows it (`mayMap`: the item's bytes
 * may be the file's own) and this process holds less than its budget
 * mapped, the file is mapped rather than read: the item's bytes are the
 * file's pages, never copied again (the file is unlinked at once, so nobody
 * else can reach them). A file over READ_MAX_BYTES is always mapped, since
 * `readFileSync` refuses it. The file is removed whatever happens: the
 * frame that named it is taken already.
 */
export function unspill(name: string, mayMap: boolean): Buffer {
  const path = `${treeDir()}/${name}`;
  try {
    const addon = native();
    if (!addon) return readFileSync(path);
    // The size is looked up only when the file would be read: mapping takes any size.
    const map = (mayMap && addon.mappedFileBytes !== undefined && addon.mappedFileBytes() < mapBudgetBytes()) || statSync(path).size > READ_MAX_BYTES;
    return map ? Buffer.from(addon.mapFile(path)) : readFileSync(path);
  } finally {
    unlinkQuietly(name);
  }
}

/** Removes a spill file whose item will never be read. */
export function unlinkQuietly(name: string): void {
  try {
    unlinkSync(`${treeDir()}/${name}`);
  } catch {
    // Gone already.
  }
}
