/**
 * The on-disk cache of tsx's output that ts-hooks.ts serves TypeScript
 * modules from: where it lives, whether it may be trusted, how an entry is
 * named, read, written and eventually removed.
 *
 * Whatever this cache holds is run by every child, so it must be writable
 * by this user alone: a directory another user can write to (a world-writable
 * `/tmp/…` they created first, a symlink they planted) would let them run
 * code as us. The directory is used only when it is a real directory owned
 * by us with no group or other write bit, and each file only when it is a
 * regular file owned by us with no such bit (checked on the open descriptor,
 * so it cannot be swapped between the check and the read). Otherwise there is
 * no cache: tsx compiles, as it would without us.
 *
 * Runs in Node's loader thread: builtins only.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  futimesSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';

/**
 * Where the cache lives: `$XDG_CACHE_HOME/multiprocessing-ts-<uid>/tsx-cache`,
 * else `~/.cache/…`; the temporary directory only for a user without a home
 * (the ownership checks make that safe too, if not private from the start).
 * The uid is in the name because another user may share the home: `sudo`
 * without `-H` runs root with the user's HOME, and a directory root made
 * there would otherwise be refused to the user (not theirs) for good.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const mine = `multiprocessing-ts-${process.getuid?.() ?? 'user'}`;
  const xdg = env['XDG_CACHE_HOME'];
  if (xdg && isAbsolute(xdg)) return join(xdg, mine, 'tsx-cache');
  let home = '';
  try {
    home = homedir();
  } catch {
    // No home (a system user): the temporary directory.
  }
  if (home && isAbsolute(home)) return join(home, '.cache', mine, 'tsx-cache');
  return join(tmpdir(), mine, 'tsx-cache');
}

/** Group or other may write. */
const SHARED_WRITE = 0o022;

function ours(stats: Stats): boolean {
  const uid = process.getuid?.();
  return (uid === undefined || stats.uid === uid) && (stats.mode & SHARED_WRITE) === 0;
}

/** True when `dir` is a real directory (not a symlink) that only we can write to. */
export function trustedDir(dir: string): boolean {
  try {
    const stats = lstatSync(dir);
    return stats.isDirectory() && ours(stats);
  } catch {
    return false;
  }
}

/**
 * `dir` made if missing (private), or null when it, or the directory made for
 * us that holds it, is not ours alone: then there is no cache.
 */
export function openCacheDir(dir: string): string | null {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    // Cannot be made here: no cache (nothing to warn about, it cannot be used).
    return null;
  }
  if (trustedDir(dirname(dir)) && trustedDir(dir)) return dir;
  // Not silently: the user may fix it, and every child compiles until then.
  warnOnce(`multiprocessing-ts: the TypeScript cache directory ${dir} (or the one holding it) is not a real directory of this user alone; TypeScript children compile without a cache. Remove it, or make it yours (mode 0700), to use the cache.`);
  return null;
}

let warned = false;

function warnOnce(message: string): void {
  if (warned) return;
  warned = true;
  process.emitWarning(message, { code: 'MULTIPROCESSING_TS_CACHE_UNTRUSTED' });
}

/** Cache file of a module: `key` and `source` are everything tsx's output depends on. */
export function entryFile(dir: string, key: readonly string[], source: Uint8Array): string {
  const hash = createHash('sha256').update(key.join('\0') + '\0').update(source).digest('hex');
  return join(dir, hash.slice(0, 2), `${hash.slice(2)}.mjs`);
}

/** The text of a cache file, or null when it is missing, or not a regular file of ours alone. */
export function readEntry(file: string): string | null {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return null;
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile() || !ours(stats) || !trustedDir(dirname(file))) return null;
    const text = readFileSync(fd, 'utf8');
    // Age is counted from the last use, not the write (the sweep reads mtime); at most one touch a day.
    const now = Date.now();
    if (now - stats.mtimeMs > TOUCH_INTERVAL_MS) {
      try {
        futimesSync(fd, now / 1000, now / 1000);
      } catch {
        // Swept a month from its write, then made again: no harm.
      }
    }
    return text;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** A hit moves an entry's mtime to now when it is older than this. */
const TOUCH_INTERVAL_MS = 24 * 3600 * 1000;
/** An entry unused this long is removed (entries are cheap to make again). */
const ENTRY_MAX_AGE_MS = 30 * 24 * 3600 * 1000;
/** A temporary file this old was left by a child killed while writing. */
const TEMP_MAX_AGE_MS = 3600 * 1000;
/** At most this many files of a bucket are looked at per write. */
const SWEEP_LIMIT = 256;
const TEMP_FILE = /\.mjs\.\d+\.[a-z0-9]+$/;

/**
 * Writes an entry, whole or not at all (children may race on the same one),
 * then sweeps the entry's bucket and one other of stale files: the bucket is
 * random (a hash), so over many writes every bucket is swept, and the work
 * per write stays bounded.
 */
export function writeEntry(dir: string, file: string, source: string | ArrayBuffer | Uint8Array): void {
  const bucket = dirname(file);
  try {
    mkdirSync(bucket, { mode: 0o700 });
  } catch {
    // There already (checked below), or we cannot write: no cache.
  }
  if (!trustedDir(bucket)) return;
  try {
    const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    writeFileSync(temp, typeof source === 'string' ? source : new Uint8Array(source as ArrayBuffer), { mode: 0o600, flag: 'wx' });
    renameSync(temp, file);
  } catch {
    // No cache: the next child compiles again.
  }
  sweep(bucket);
  sweep(join(dir, Math.floor(Math.random() * 256).toString(16).padStart(2, '0')));
}

/** Removes old entries and temporary files of one bucket. */
function sweep(bucket: string): void {
  let names: string[];
  try {
    names = readdirSync(bucket);
  } catch {
    return;
  }
  const now = Date.now();
  const start = Math.floor(Math.random() * names.length);
  for (let i = 0; i < Math.min(names.length, SWEEP_LIMIT); i++) {
    const name = names[(start + i) % names.length]!;
    const file = join(bucket, name);
    try {
      const age = now - lstatSync(file).mtimeMs;
      if (age > (TEMP_FILE.test(name) ? TEMP_MAX_AGE_MS : ENTRY_MAX_AGE_MS)) unlinkSync(file);
    } catch {
      // Gone already.
    }
  }
}
