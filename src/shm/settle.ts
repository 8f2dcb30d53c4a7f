/**
 * A child's account of segment references, from the parent's side: written
 * when the child is handed its arguments, settled when the child is gone.
 *
 * Settling replays the child's ledger (ledger.ts) and gives back what it
 * still held: nothing after a normal exit (its exit hook gave everything
 * back and logged it), everything after a kill or a terminate — including
 * handles in its arguments it never got to attach. Its descendants die with
 * it (a process child's children by their parent-death signal, a thread's
 * sub-threads with it) and have no living parent left to settle them, so
 * their ledgers are settled here too, each once it is sure that its owner
 * is dead; a process descendant may take a moment to die, and is looked at
 * again a few times before it is left to the tree's reaper.
 */
import { closeSync, openSync, readFileSync, readSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { processGone } from '../liveness.js';
import { runtime } from '../runtime.js';
import {
  LEDGER_ID,
  childLedgerId,
  ledgerDir,
  noteStartingChild,
  ownerLine,
  parseLedger,
  writeChildLedger,
  type LedgerContents,
  type LedgerOwner,
} from './ledger.js';
import { dropOwedInArena, parseArenaName } from './arena.js';
import { dropOwed, type InFlight } from './segment.js';
import { batchOutcome } from './drop-progress.js';

/** The parent's handle on one child's ledger. */
export interface ChildLedger {
  /** The id the child is told (`ChildIdentity.ledger`). */
  readonly id: string;
  /**
   * Writes the references handed to the child. Call after the child exists
   * (a process child's `pid` is known) and before it can receive its spec.
   */
  handed(pid?: number): void;
  /** The child was never started: forget the ledger (the handles are abandoned by the caller). */
  discard(): void;
  /**
   * The child is gone: give back what it held, and what its dead
   * descendants held. Returns its ledger as replayed, or null when there
   * was none to replay (the child never wrote one, or could not).
   */
  settle(): LedgerContents | null;
}

/**
 * A ledger for this isolate's child number `n`, accounting `handed` (one
 * entry per reference in flight in its arguments). Null without a tree
 * directory, or when this isolate, a child itself, cannot mark that it has
 * children (then its own parent could not find theirs; the child then runs
 * without a ledger, as if killed children leaked).
 */
export function openChildLedger(n: number, method: 'process' | 'thread', handed: readonly InFlight[]): ChildLedger | null {
  const dir = runtime().treeDir;
  if (!dir) return null;
  if (!noteStartingChild()) return null;
  const id = childLedgerId(n);
  const names = handed.flatMap((ref) => (ref.ledgerName === null ? [] : [ref.ledgerName]));
  let written = false;
  return {
    id,
    handed(pid) {
      if (names.length === 0) return; // the child starts its ledger itself if it needs one
      const owner = ownerLine(method === 'thread' ? { kind: 'thread' } : { kind: 'process', pid });
      written = writeChildLedger(dir, id, owner, names);
    },
    discard() {
      if (written) unlinkQuietly(`${ledgerDir(dir)}/${id}`);
    },
    settle() {
      const contents = claim(dir, id);
      if (!contents) return null;
      replay(dir, contents);
      if (contents.startedChildren) settleDescendants(dir, id, 0);
      return contents;
    },
  };
}

/**
 * Takes a ledger for settling: renamed first, so that of two settlers only
 * one replays it, and a settler killed halfway leaves a name nobody replays
 * again (a leak until the tree ends, never a double drop).
 */
function claim(dir: string, id: string): LedgerContents | null {
  const path = `${ledgerDir(dir)}/${id}`;
  const claimed = `${path}~settling`;
  try {
    renameSync(path, claimed);
  } catch {
    return null; // the child had no ledger, or another settler took it
  }
  let text = '';
  try {
    text = readFileSync(claimed, 'latin1');
  } catch {
    return null;
  }
  unlinkQuietly(claimed);
  const contents = parseLedger(text);
  const { undone, lastDone } = batchOutcome(path, contents.lastBatch);
  // Drops of its last batch it never got to: logged, so not in the nets, yet still held.
  for (const name of undone) contents.nets.set(name, (contents.nets.get(name) ?? 0) + 1);
  if (lastDone) removeIfUnheld(dir, lastDone);
  return contents;
}

/**
 * Removes the file of segment or arena `name` if nobody holds a reference
 * on it: the child's last drop may have taken its count to 0 and been
 * killed before it removed the file. (A count at 0 is garbage: a reference
 * is needed to attach, and one in flight counts. A block freed halfway
 * cannot be told from one freed whole, so it stays until the tree ends.)
 */
function removeIfUnheld(dir: string, name: string): void {
  const arena = parseArenaName(name);
  if (arena && arena.offset !== null) return;
  const path = `${dir}/${arena ? arena.arena : name}`;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return; // removed already
  }
  try {
    // The count is the file's first word, in the machine's byte order.
    const refs = new Int32Array(1);
    if (readSync(fd, new Uint8Array(refs.buffer), 0, 4, 0) === 4 && refs[0] === 0) unlinkQuietly(path);
  } finally {
    closeSync(fd);
  }
}

function replay(dir: string, contents: LedgerContents): void {
  const arenas = new Map<string, Int32Array | null>();
  for (const [name, net] of contents.nets) {
    if (net <= 0) continue;
    const arena = parseArenaName(name);
    if (arena) dropOwedInArena(`${dir}/${arena.arena}`, arena.offset, arena.gen, net, arenas);
    else dropOwed(`${dir}/${name}`, net);
  }
}

/** Delays between looks at descendants that are still dying; then the reaper's end-of-tree cleanup covers them. */
const RETRY_MS = [10, 20, 50, 100, 200, 500, 1000, 1000, 2000, 5000];

function settleDescendants(dir: string, root: string, attempt: number): void {
  let names: string[];
  try {
    names = readdirSync(ledgerDir(dir));
  } catch {
    return;
  }
  const prefix = `${root}.`;
  const owners = new Map<string, LedgerOwner | null | undefined>();
  const ownerOf = (id: string): LedgerOwner | null | undefined => {
    if (!owners.has(id)) owners.set(id, readOwner(dir, id));
    return owners.get(id);
  };
  let waiting = false;
  for (const id of names) {
    if (!id.startsWith(prefix) || !LEDGER_ID.test(id)) continue;
    if (!ownerGone(id, root, ownerOf)) {
      waiting = true;
      continue;
    }
    const contents = claim(dir, id);
    if (contents) replay(dir, contents);
  }
  const delay = RETRY_MS[attempt];
  if (waiting && delay !== undefined) setTimeout(() => settleDescendants(dir, root, attempt + 1), delay).unref();
}

/** undefined: no such ledger; null: no owner line yet, or unreadable. */
function readOwner(dir: string, id: string): LedgerOwner | null | undefined {
  try {
    return parseLedger(readFileSync(`${ledgerDir(dir)}/${id}`, 'latin1')).owner;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : null;
  }
}

/**
 * Whether the owner of descendant ledger `id` of the dead `root` is surely
 * dead. A thread lives inside its parent: it is dead once the nearest
 * process above it is (the dead root itself, if there is none in between;
 * Node stops and joins a worker's sub-workers before the worker's 'exit').
 * An ancestor whose ledger is gone was settled, so it is dead. Anything
 * unknown counts as alive: settling a live owner's ledger could drop a
 * reference it is about to give back itself.
 */
function ownerGone(id: string, root: string, ownerOf: (id: string) => LedgerOwner | null | undefined): boolean {
  for (let current = id; current !== root; current = current.slice(0, current.lastIndexOf('.'))) {
    const owner = ownerOf(current);
    if (owner === undefined) return current !== id;
    if (owner === null) return false;
    // Without a start time a reused pid cannot be told apart: then it may be alive.
    if (owner.kind === 'process') return owner.pid === null || (owner.start !== null && processGone(owner.pid, owner.start));
  }
  return true;
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}
