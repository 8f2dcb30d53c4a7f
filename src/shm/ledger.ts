/**
 * Ledgers: which segment references a child isolate holds, written down
 * where its parent can read them after the child is gone.
 *
 * A child that is SIGKILLed (or a worker that is terminated) never runs its
 * exit hook, so the references it holds on segments would stay counted until
 * the whole tree ends. Each child (process or thread) therefore has a ledger,
 * an append-only file `<treeDir>/ledgers/<id>`:
 *   - the parent writes into it, before the child can run, the references it
 *     hands the child (handles in flight in the child's arguments);
 *   - the child appends `+name` after it takes a reference of its own
 *     (creates a segment, or attaches a handle that did not come from its
 *     parent) and `-name` BEFORE it gives one back;
 *   - a pool worker, while it decodes the arguments of its unit `seq`, marks
 *     each reference in flight it takes over from them: `+name #seq`, a
 *     reference held, like `+name` (a surplus one, on a path it maps
 *     already, is kept with that mapping and given back with it, rather
 *     than dropped at once: see `takingOverUnit`). For the unit its dead
 *     worker was running, the pool gives back exactly the references the
 *     ledger does not mark for that seq (pool/worker-handle.ts
 *     `giveBackUntaken`): taken over, the replay settles them; not yet, the
 *     pool does. Only the last unit's marks matter, since a worker runs its
 *     units one at a time (`parseLedger` keeps those, and so does compaction).
 * When the parent sees the child gone it replays the ledger (settle.ts): for
 * each segment, the `+` lines minus the `-` lines is what the child still
 * held, and the parent drops that many references. Logging a drop before
 * doing it means a child killed in between leaks one reference (the tree's
 * reaper still removes the file at the end) instead of having it dropped
 * twice, which would free a segment others still use. Drops are logged in
 * batches; the child counts the drops of its last batch in shared memory
 * as it does them, so that a kill inside a batch leaks at most the one
 * drop in hand, not the rest of the batch (drop-progress.ts).
 *
 * Format, one entry per line:
 *   t               the owner is a worker thread (it lives in its parent's process)
 *   p <pid> <start> the owner is that process (<start>: its start time,
 *                   liveness.ts `startTimeOf`, telling a reused pid apart; `-` if unknown)
 *   p               the owner is a process that has not received its spec yet
 *   c               the owner has started children (whose ids extend its own)
 *   +<name> / -<name>  a reference on `<treeDir>/<name>` taken / given back
 *   +<name> #<seq>  a reference taken, the one in flight in unit <seq>'s arguments
 *   =<batch>        the `-` lines right after it are one batch of drops
 *                   (drop-progress.ts: how many of them were done)
 * The owner line comes first and is written in the same write(2) as the
 * parent's entries. Ids are `<root>.<n>.<n>…`: a random root per isolate that
 * is no child (the main process), then one number per generation, so a
 * ledger's descendants are the ids that start with its own plus a dot.
 *
 * Cost: only children log, one write(2) per create/attach/release on a
 * descriptor kept open. (A worker's descriptors would outlive it, being the
 * process's, but Node closes those a worker opened with `fs.open` when it
 * ends, terminated or not: Worker's `trackUnmanagedFds`, on by default.)
 * The file is compacted when it grows.
 */
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { startTimeOf } from '../liveness.js';
import { runtime } from '../runtime.js';
import { ExitStage, atExit } from '../finalize.js';
import { beginBatch, createDropProgress, nextBatch, type DropCounter, type LoggedBatch } from './drop-progress.js';

/**
 * What a ledger says about its owner. A process's `start` is its start time
 * (liveness.ts `startTimeOf`), null when it was not known.
 */
export type LedgerOwner =
  | { readonly kind: 'thread' }
  | { readonly kind: 'process'; readonly pid: number | null; readonly start: number | null };

/** A ledger's contents, replayed. */
export interface LedgerContents {
  readonly owner: LedgerOwner | null;
  /** Whether the owner started children. */
  readonly startedChildren: boolean;
  /** For each segment name: `+` lines minus `-` lines. */
  readonly nets: Map<string, number>;
  /** The references the last unit marked (`+name #seq`) took over from its arguments; null when none is marked. */
  readonly takenOver: TakenOver | null;
  /** The last batch of drops (`=<batch>` and the `-` lines after it); null when none is marked. */
  readonly lastBatch: LoggedBatch | null;
}

/** References in flight in one unit's arguments that a pool worker took over: how many per segment name. */
export interface TakenOver {
  readonly seq: number;
  readonly names: Map<string, number>;
}

/** Ledger ids are made of these; anything else in the directory (a claimed or half-compacted file) is not a ledger. */
export const LEDGER_ID = /^[0-9a-z]+(\.[0-9]+)*$/;

/** The ledgers' directory of a tree. */
export function ledgerDir(treeDir: string): string {
  return `${treeDir}/ledgers`;
}

/** Replays a ledger's text. A torn last line (the writer killed mid-write) is ignored. */
export function parseLedger(text: string): LedgerContents {
  let owner: LedgerOwner | null = null;
  let startedChildren = false;
  const nets = new Map<string, number>();
  let takenOver = null as TakenOver | null;
  let lastBatch = null as { batch: number; names: string[] } | null;
  /** The batch whose `-` lines are being read: only those right after its `=` line are its own. */
  let batchNames: string[] | null = null;
  const end = text.lastIndexOf('\n');
  for (const line of text.slice(0, end + 1).split('\n')) {
    const sign = line[0];
    if (sign === '-' && batchNames) batchNames.push(line.slice(1));
    else batchNames = null;
    if (sign === '=') {
      lastBatch = { batch: Number(line.slice(1)), names: [] };
      batchNames = lastBatch.names;
    } else if (sign === '+' || sign === '-') {
      // Names hold no spaces (segment.ts, arena.ts).
      const mark = sign === '+' ? line.indexOf(' #') : -1;
      const name = mark < 0 ? line.slice(1) : line.slice(1, mark);
      nets.set(name, (nets.get(name) ?? 0) + (sign === '+' ? 1 : -1));
      if (mark >= 0) {
        const seq = Number(line.slice(mark + 2));
        // A later unit's marks replace an earlier one's: its units ran one after the other.
        if (takenOver?.seq !== seq) takenOver = { seq, names: new Map() };
        count(takenOver.names, name, 1);
      }
    } else if (line === 't') {
      owner = { kind: 'thread' };
    } else if (sign === 'p') {
      const [, pid, start] = line.split(' ');
      owner = { kind: 'process', pid: pid ? Number(pid) : null, start: start && start !== '-' ? Number(start) : null };
    } else if (line === 'c') {
      startedChildren = true;
    }
  }
  return { owner, startedChildren, nets, takenOver, lastBatch };
}

/** A process's start time as an owner line gives it: `-` when /proc cannot tell. */
function startField(pid: number | 'self'): string {
  return String(startTimeOf(pid) ?? '-');
}

/** The owner line a parent writes for a child. */
export function ownerLine(owner: { kind: 'thread' } | { kind: 'process'; pid: number | undefined }): string {
  if (owner.kind === 'thread') return 't\n';
  return owner.pid === undefined ? 'p\n' : `p ${owner.pid} ${startField(owner.pid)}\n`;
}

// ---------------------------------------------------------------------------
// The owner's side: this isolate's own ledger, when it is a child.

interface OwnLedger {
  readonly path: string;
  /** The descriptor entries are appended through; -1 when the file cannot be written. */
  fd: number;
  /** References the parent logged and this isolate has not yet taken over or given back. */
  readonly parentOwed: Map<string, number>;
  /** What the file says, per name (for compaction). */
  readonly nets: Map<string, number>;
  /** What the file marks as taken over from the last marked unit's arguments (for compaction: the pool needs it). */
  takenOver: TakenOver | null;
  readonly ownerLine: string;
  startedChildren: boolean;
  /** Bytes in the file. */
  size: number;
  /** The size at which to consider compacting next (doubles while the entries are mostly live, so the check stays O(1) amortised). */
  compactAt: number;
}

interface LedgerGlobal {
  /** undefined until first needed; null when this isolate has no ledger (it is no child). */
  own?: OwnLedger | null;
  /** The id root of children of an isolate that is no child. */
  root?: string;
  /** The pool unit whose arguments are being decoded (`takingOverFor`); 0 or undefined: none. */
  unit?: number;
  /** This isolate's drop progress words (drop-progress.ts); undefined until its first batch, null when they cannot be had. */
  progress?: Int32Array | null;
  /** The number of the last batch of drops logged. */
  batch?: number;
}

/**
 * On `globalThis` under a registered symbol, like the runtime state: two
 * copies of the package in one isolate must log into one ledger, and read
 * the parent's entries once.
 */
const KEY = Symbol.for('multiprocessing-ts.ledger');

function shared(): LedgerGlobal {
  const g = globalThis as typeof globalThis & { [KEY]?: LedgerGlobal };
  return (g[KEY] ??= {});
}

/** Compaction threshold: a ledger grows by about 25 bytes per logged reference. */
const COMPACT_AT = 64 * 1024;

function openOwn(): OwnLedger | null {
  const state = shared();
  if (state.own !== undefined) return state.own;
  const child = runtime().child;
  const dir = runtime().treeDir;
  if (!child?.ledger || !dir) return (state.own = null);
  const path = `${ledgerDir(dir)}/${child.ledger}`;
  let text = '';
  try {
    text = readFileSync(path, 'latin1');
  } catch {
    // The parent handed nothing: this isolate starts the file.
  }
  const parsed = parseLedger(text);
  const line =
    child.startMethod === 'thread' ? 't\n' : `p ${process.pid} ${startField('self')}\n`;
  const own: OwnLedger = {
    path,
    fd: -1,
    parentOwed: new Map([...parsed.nets].filter(([, n]) => n > 0)),
    nets: parsed.nets,
    takenOver: parsed.takenOver,
    ownerLine: text ? text.slice(0, text.indexOf('\n') + 1) : line,
    startedChildren: parsed.startedChildren,
    size: text.length,
    compactAt: COMPACT_AT,
  };
  state.own = own;
  // If it cannot be opened, every `log` fails, so no reference the parent
  // accounts is ever dropped here (a leak until the tree ends, never a double free).
  reopen(own, text ? '' : line);
  return own;
}

/** Opens the file for appending, and writes `first`. */
function reopen(own: OwnLedger, first: string): void {
  try {
    own.fd = openSync(own.path, 'a');
    if (first) append(own, first);
  } catch {
    closeOwn(own);
  }
}

function closeOwn(own: OwnLedger): void {
  if (own.fd !== -1) closeSync(own.fd);
  own.fd = -1;
}

function append(own: OwnLedger, text: string): void {
  if (own.fd === -1) throw new Error('ledger unavailable');
  if (writeSync(own.fd, text) !== text.length) {
    // A short write (a full /dev/shm) leaves a torn line, which the parent
    // ignores; writing on would glue the next entry to it. Stop logging.
    closeOwn(own);
    throw new Error('ledger write cut short');
  }
  own.size += text.length;
}

/** Appends `text`; false when it could not be written (then a drop must not happen). */
function log(own: OwnLedger, text: string): boolean {
  try {
    append(own, text);
    return true;
  } catch {
    return false;
  }
}

function count(map: Map<string, number>, name: string, delta: number): void {
  const n = (map.get(name) ?? 0) + delta;
  if (n === 0) map.delete(name);
  else map.set(name, n);
}

/** Consumes one of the parent's logged references on `name`, if any is left. */
function takeParents(own: OwnLedger, name: string): boolean {
  const n = own.parentOwed.get(name);
  if (!n) return false;
  count(own.parentOwed, name, -1);
  return true;
}

/**
 * `-` entries not yet written, and the drops that wait for them. Logging
 * each release with its own write(2) made a child that lets go of many
 * objects (a collection freeing thousands of Values) a system call per
 * object; releases are gathered and written together at the end of the
 * running job (a microtask), or sooner when many pile up, and the drops
 * done after. A delay never breaks the ledger's rule: a child killed before
 * the write never did the drops either, and its parent does them, once.
 * `+` entries stay synchronous: a reference taken but not logged leaks if
 * the child is killed, and a child may show what it made to others (and be
 * killed for it) in the very same job.
 */
interface Pending {
  lines: string[];
  changes: Array<[name: string, delta: -1]>;
  /** The drop of each line, in their order. */
  drops: Array<(counter: DropCounter) => void>;
  scheduled: boolean;
}

const pending: Pending = { lines: [], changes: [], drops: [], scheduled: false };

/** Entries past which a batch is written at once rather than at the end of the job. */
const BATCH_LIMIT = 4096;

function queueDrop(name: string, drop: (counter: DropCounter) => void): void {
  pending.lines.push(`-${name}\n`);
  pending.changes.push([name, -1]);
  pending.drops.push(drop);
  if (pending.lines.length >= BATCH_LIMIT && !dropping) flushLedger();
  else scheduleFlush();
}

function scheduleFlush(): void {
  if (pending.scheduled) return;
  pending.scheduled = true;
  queueMicrotask(flushLedger);
  if (!flushAtExit) flushAtExit = atExit(ExitStage.Segments, flushLedger);
}

/**
 * Set while a batch's drops are being done: a drop that gives back another
 * reference (a block's drop emptying its arena) queues it for the next
 * batch, never starts one inside this one, whose count it would reset.
 */
let dropping = false;

/** Whether the exit-time flush is registered (once: an exit runs no microtasks). */
let flushAtExit: (() => void) | null = null;

/**
 * Writes the gathered entries in one write(2), then does the drops that
 * waited for them, counting each in the drop progress before it is done.
 * If the write fails, the drops are not done (the parent will do them: see
 * the module comment).
 */
export function flushLedger(): void {
  if (dropping) return scheduleFlush();
  pending.scheduled = false;
  if (pending.lines.length === 0 && pending.drops.length === 0) return;
  const { lines, changes, drops } = pending;
  pending.lines = [];
  pending.changes = [];
  pending.drops = [];
  const own = openOwn();
  if (!own) return;
  if (lines.length > 0 && logBatch(own, lines) === null) return;
  for (const [name, delta] of changes) count(own.nets, name, delta);
  const counter = shared().progress ?? null;
  dropping = true;
  try {
    for (const drop of drops) drop(counter);
  } finally {
    dropping = false;
  }
  // After the drops: compaction drops the batch's `=` line, after which the parent takes the batch as done.
  compactIfLarge(own);
}

/**
 * Logs `lines` (`-` entries) as one batch of drops, marked `=<batch>` when
 * the drop progress can count it, and starts counting it. The batch's
 * number (0 unmarked), or null when it could not be written.
 */
function logBatch(own: OwnLedger, lines: readonly string[]): number | null {
  const state = shared();
  if (state.progress === undefined) state.progress = createDropProgress(own.path);
  const progress = state.progress;
  const batch = progress ? nextBatch(state.batch ?? 0) : 0;
  if (!log(own, (progress ? `=${batch}\n` : '') + lines.join(''))) return null;
  if (progress) {
    state.batch = batch;
    beginBatch(progress, batch);
  }
  return batch;
}

/**
 * Records that this isolate now holds a reference on segment `name`, after
 * taking it: a new segment (`fromFlight` false), or a handle's in-flight
 * reference taken over by a new mapping (true; if the parent logged that
 * one, its entry stands for the mapping now). Written with the next batch.
 */
export function noteTaken(name: string, fromFlight: boolean): void {
  const own = openOwn();
  if (!own || (fromFlight && takeParents(own, name))) return;
  // Behind any `-` entries still waiting, so the file keeps the order things happened in.
  flushLedger();
  const seq = fromFlight ? (shared().unit ?? 0) : 0;
  if (log(own, seq === 0 ? `+${name}\n` : `+${name} #${seq}\n`)) {
    count(own.nets, name, 1);
    if (seq !== 0) markTaken(own, name, seq);
    compactIfLarge(own);
  }
}

/**
 * Says that the references in flight taken over from now on come from the
 * arguments of pool unit `seq` (0: from none; worker-loop.ts sets it
 * around each decoding of a unit's payload). Their entries then carry the
 * mark the pool reads when the worker dies in that unit (see the module
 * comment).
 */
export function takingOverFor(seq: number): void {
  shared().unit = seq;
}

/**
 * Whether the references in flight taken over now are a pool unit's
 * arguments' and this isolate logs them: then a surplus one (a path mapped
 * already) is kept with that mapping and logged as taken (`noteTaken`),
 * not dropped at once. A drop logged for the pool could be cut off from its
 * entry by a kill (the entry written, the drop not done: a leak); a kept
 * reference needs only the entry, and goes with its mapping.
 */
export function takingOverUnit(): boolean {
  return (shared().unit ?? 0) !== 0 && openOwn() !== null;
}

/** The pool unit whose arguments are being decoded (0: none). */
export function unitTakingOver(): number {
  return shared().unit ?? 0;
}

function markTaken(own: OwnLedger, name: string, seq: number): void {
  if (own.takenOver?.seq !== seq) own.takenOver = { seq, names: new Map() };
  count(own.takenOver.names, name, 1);
}

/**
 * Gives back a reference on `name` through the ledger: logs it (a `-` line,
 * with the next batch) and then calls `drop`, which gives it back, counting
 * itself on the counter it is passed (drop-progress.ts `dropCounted`).
 * `fromFlight`: the in-flight reference of a handle this isolate did not
 * need (only the parent's logged ones need an entry; a pool unit's are kept
 * instead: see `takingOverUnit`). Without a ledger `drop` runs at once.
 */
export function noteDroppingThen(name: string, fromFlight: boolean, drop: (counter: DropCounter) => void): void {
  const own = openOwn();
  if (!own || (fromFlight && !takeParents(own, name))) return drop(null);
  queueDrop(name, drop);
}

/**
 * Records, BEFORE they are dropped, references this isolate gives back, at
 * once (for exit, where nothing runs later): earlier batched entries are
 * written first. The caller then drops them in the order of `names`, each
 * drop counting itself on `counter` (drop-progress.ts `dropCounted`).
 * Returns null when the drops must not happen: the ledger could not be
 * written, so the parent would drop the same references again.
 */
export function noteDropping(names: readonly string[]): { counter: DropCounter } | null {
  flushLedger();
  const own = openOwn();
  if (!own || names.length === 0) return { counter: null };
  if (logBatch(own, names.map((name) => `-${name}\n`)) === null) return null;
  for (const name of names) count(own.nets, name, -1);
  return { counter: shared().progress ?? null };
}

/** Whether this isolate logs its references (it is a child with a ledger): else `noteDropping` needs no names. */
export function keepsLedger(): boolean {
  return openOwn() !== null;
}

/**
 * Marks (once) that this isolate starts children, so that its parent
 * settles their ledgers too if it dies first. False when the mark could not
 * be written: then its children must run without ledgers.
 */
export function noteStartingChild(): boolean {
  const own = openOwn();
  if (!own) return true;
  own.startedChildren ||= log(own, 'c\n');
  return own.startedChildren;
}

/**
 * Rewrites a grown ledger as what it amounts to. The new file replaces the
 * old by rename, so a reader (or a kill) sees one or the other, whole.
 */
function compactIfLarge(own: OwnLedger): void {
  if (own.size < own.compactAt) return;
  let body = own.ownerLine + (own.startedChildren ? 'c\n' : '');
  const marked = own.takenOver;
  for (const [name, n] of own.nets) if (!marked?.names.has(name)) for (let i = 0; i < n; i++) body += `+${name}\n`;
  if (marked) {
    // The last unit's marks stay (the pool may need them), with the nets unchanged: `-` lines for marks beyond the net.
    for (const [name, taken] of marked.names) {
      const n = Math.max(0, own.nets.get(name) ?? 0);
      for (let i = 0; i < taken; i++) body += `+${name} #${marked.seq}\n`;
      for (let i = taken; i < n; i++) body += `+${name}\n`;
      for (let i = n; i < taken; i++) body += `-${name}\n`;
    }
  }
  own.compactAt = Math.max(COMPACT_AT, 4 * body.length);
  if (body.length * 4 > own.size) return; // mostly live references: not worth it yet
  const temp = `${own.path}~compact`;
  try {
    writeFileSync(temp, body, 'latin1');
    renameSync(temp, own.path);
  } catch {
    return;
  }
  for (const [name, n] of own.nets) if (n < 0) own.nets.delete(name);
  closeOwn(own);
  own.size = body.length;
  reopen(own, '');
}

// ---------------------------------------------------------------------------
// The parent's side.

/** A fresh id for this isolate's child number `n` (its `Process-…` counter). */
export function childLedgerId(n: number): string {
  const state = shared();
  const mine = runtime().child?.ledger;
  if (mine) return `${mine}.${n}`;
  state.root ??= Math.floor(Math.random() * 36 ** 8).toString(36);
  return `${state.root}.${n}`;
}

/**
 * Writes a child's ledger: its owner line and the references handed to it.
 * Never overwrites; false when it could not be written (the handed
 * references then stay counted until the tree ends, never freed early).
 */
export function writeChildLedger(treeDir: string, id: string, owner: string, handed: readonly string[]): boolean {
  try {
    writeFileSync(`${ledgerDir(treeDir)}/${id}`, owner + handed.map((name) => `+${name}\n`).join(''), {
      encoding: 'latin1',
      flag: 'wx',
    });
    return true;
  } catch {
    return false;
  }
}
