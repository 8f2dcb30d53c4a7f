/**
 * A dead child's ledger replayed by its parent (shm/settle.ts), with the
 * drop progress of its last batch (shm/drop-progress.ts): the parent gives
 * back exactly the references the child held — those it logged as given
 * back in its last batch but never dropped included, none it dropped. The
 * child's side is played here on real segments and real files (a ledger
 * and its progress file as a child writes them); test/lifetime.test.ts
 * kills real children in the middle of a batch.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import * as mp from '../src/index.js';
import { Segment } from '../src/shm/segment.js';
import { native } from '../src/native/addon.js';
import { ledgerDir } from '../src/shm/ledger.js';
import { openChildLedger } from '../src/shm/settle.js';
import { treeDir } from '../src/shm/tree.js';

let children = 1000;

/** Four arrays the parent (this test) holds, each also held once by the child to be. */
function heldByChild(): { names: string[]; refs: Int32Array[] } {
  const arrays = Array.from({ length: 4 }, () => mp.RawArray('i', 100));
  const names = arrays.map((a) => Segment.of(a.buffer as SharedArrayBuffer)!.path!.split('/').pop()!);
  const refs = arrays.map((a) => new Int32Array(a.buffer, 0, 1));
  for (const r of refs) Atomics.add(r, 0, 1);
  // Kept alive with the views: the arrays' own references are the test's.
  (globalThis as { keptArrays?: unknown[] }).keptArrays = [...((globalThis as { keptArrays?: unknown[] }).keptArrays ?? []), arrays];
  return { names, refs };
}

/**
 * Settles a child whose ledger says `text` and whose progress file (absent:
 * null) holds [batch, done], after it really dropped the references of
 * `dropped` (indices).
 */
function settle(text: string, progress: [number, number] | null, refs: Int32Array[], dropped: number[]): void {
  const ledger = openChildLedger(children++, 'process', [])!;
  const path = `${ledgerDir(treeDir())}/${ledger.id}`;
  writeFileSync(path, text);
  if (progress) writeFileSync(`${path}~drops`, Buffer.from(new Int32Array(progress).buffer));
  for (const k of dropped) Atomics.sub(refs[k]!, 0, 1);
  ledger.settle();
}

const counts = (refs: Int32Array[]) => refs.map((r) => Atomics.load(r, 0));

describe('replaying a dead child ledger with its drop progress', { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, () => {
  it('a batch cut after 2 of its 4 drops: the parent gives back the other 2 and the dropped ones not again', () => {
    const { names, refs } = heldByChild();
    const text = `p\n${names.map((n) => `+${n}\n`).join('')}=7\n${names.map((n) => `-${n}\n`).join('')}`;
    settle(text, [7, 2], refs, [0, 1]);
    assert.deepEqual(counts(refs), [1, 1, 1, 1]);
  });

  it('a batch logged and none of it dropped (its progress still on the batch before): all of it given back', () => {
    const { names, refs } = heldByChild();
    const text = `p\n${names.map((n) => `+${n}\n`).join('')}=1\n-${names[0]}\n=2\n${names.slice(1).map((n) => `-${n}\n`).join('')}`;
    settle(text, [1, 1], refs, [0]);
    assert.deepEqual(counts(refs), [1, 1, 1, 1]);
  });

  it('a batch whose drops were all done: nothing given back again, also past a wrap of the batch numbers', () => {
    for (const batch of [5, 2 ** 32 - 1]) {
      const { names, refs } = heldByChild();
      const text = `p\n${names.map((n) => `+${n}\n`).join('')}=${batch}\n${names.map((n) => `-${n}\n`).join('')}`;
      settle(text, [batch | 0, 4], refs, [0, 1, 2, 3]);
      assert.deepEqual(counts(refs), [1, 1, 1, 1], `batch ${batch}`);
    }
  });

  it('only the - lines right after a batch line are its own: a later + entry ends it', () => {
    const { names, refs } = heldByChild();
    // The batch is names[0]; names[1] was given back later, outside any batch (and dropped).
    const text = `p\n${names.map((n) => `+${n}\n`).join('')}=3\n-${names[0]}\n+${names[2]}\n-${names[1]}\n-${names[2]}\n`;
    settle(text, [3, 0], refs, [1]);
    assert.deepEqual(counts(refs), [1, 1, 1, 1]);
  });

  it('a progress file ahead of the last batch line (a later batch compacted away) takes that batch as done', () => {
    const { names, refs } = heldByChild();
    const text = `p\n${names.map((n) => `+${n}\n`).join('')}=3\n-${names[0]}\n-${names[1]}\n`;
    settle(text, [4, 0], refs, [0, 1]);
    assert.deepEqual(counts(refs), [1, 1, 1, 1]);
  });

  it('the last drop done took a segment to 0 but its file was not removed yet (killed in between): the parent removes it', () => {
    const { names, refs } = heldByChild();
    // A segment only the child held: its drop took the count to 0.
    const last = `sreplay${children}.1`;
    native()!.openSegment(`${treeDir()}/${last}`, 4096, true);
    const text = `p\n${names.map((n) => `+${n}\n`).join('')}+${last}\n=9\n-${names[0]}\n-${last}\n-${names[1]}\n`;
    settle(text, [9, 2], refs, [0]);
    assert.equal(existsSync(`${treeDir()}/${last}`), false, 'its file is removed');
    assert.deepEqual(counts(refs), [1, 1, 1, 1], 'the batch drop not done and the references still held given back');
  });

  it('batch lines without a progress file count as done: at worst a reference stays, never one dropped twice', () => {
    const { names, refs } = heldByChild();
    const text = `p\n${names.map((n) => `+${n}\n`).join('')}=1\n-${names[0]}\n-${names[1]}\n`;
    settle(text, null, refs, [0]);
    assert.deepEqual(counts(refs), [1, 2, 1, 1]);
  });
});
