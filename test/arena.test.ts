/**
 * Arenas: small shared objects share files and mappings, freed blocks are
 * reused, empty arenas are given back, children map an arena once, and a
 * killed child's blocks and arenas are given back by its parent.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as mp from '../src/index.js';
import { treeDir } from '../src/shm/tree.js';
import { dropOwedInArena, sweep } from '../src/shm/arena.js';
import * as ar from './fixtures/arena.js';
import { METHODS, eventually, fixture, regionOf, run } from './helpers.js';

const gc = (globalThis as { gc?: () => void }).gc;
const needs = !mp.nativeAvailable() ? 'needs the native addon' : !gc ? 'run node with --expose-gc' : false;

function arenaFiles(): Set<string> {
  return new Set(readdirSync(treeDir()).filter((name) => name.startsWith('a')).map((name) => `${treeDir()}/${name}`));
}

/** An arena file's own reference count (its header's first word): its owner's hold plus its blocks in use. */
function arenaRefs(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const word = Buffer.alloc(4);
    readSync(fd, word, 0, 4, 0);
    return word.readInt32LE(0);
  } finally {
    closeSync(fd);
  }
}

/** Collects garbage until the arena's reference count is `expectedRefs`. */
async function collected(file: string, expectedRefs: number): Promise<void> {
  await eventually(
    () => {
      gc!();
      return arenaRefs(file) === expectedRefs;
    },
    10_000,
    `the arena's references to fall to ${expectedRefs} (now ${existsSync(file) ? arenaRefs(file) : 'removed'})`,
  );
}

/**
 * Collects garbage until the arenas' reference counts hold still for a few
 * rounds: earlier tests' objects are gone and their finalizers have run.
 * (Finalizers run in a platform task, which a chain of setImmediate can
 * starve: each round yields to the event loop through a timer.)
 */
async function settleGarbage(): Promise<void> {
  const snapshot = () => [...arenaFiles()].map((f) => (existsSync(f) ? arenaRefs(f) : -1)).join();
  let last = snapshot();
  for (let still = 0, round = 0; still < 3 && round < 200; round++) {
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const now = snapshot();
    still = now === last ? still + 1 : 0;
    last = now;
  }
}

function startAll(t: TestContext, children: mp.Process[]): void {
  t.after(() => children.forEach((p) => p.kill()));
  children.forEach((p) => p.start());
}

describe('arenas', { skip: needs }, () => {
  it('thousands of Values share one arena file, at 32 bytes of shared memory each', () => {
    const before = arenaFiles();
    const values = Array.from({ length: 5000 }, (_, i) => mp.Value('i', i));
    const files = new Set(values.map((v) => regionOf(v).file));
    const made = [...arenaFiles()].filter((f) => !before.has(f));
    assert.ok(files.size <= 3, `${files.size} arenas for 5000 values`);
    const bytes = made.reduce((sum, f) => sum + statSync(f).size, 0);
    assert.ok(bytes / values.length <= 64, `${bytes / values.length} bytes of shared memory per Value`);
    assert.equal(values[4999]!.value, 4999);
  });

  it('freed blocks are reused before any new arena, and an empty arena is given back unless it is the one carved from', async () => {
    await settleGarbage();
    // Objects are made in functions of their own, so that no register of this async function keeps what is dropped.
    const holder: { kept: mp.SynchronizedValue[] | null; spill: mp.SynchronizedValue | null } = { kept: null, spill: null };
    const { file, next, blocks, dropped } = (() => {
      const first = [mp.Value('i', 0)];
      const file = regionOf(first[0]!).file;
      // Fill this arena to the last block and spill into the next one, which becomes the one carved from.
      while (regionOf(first[first.length - 1]!).file === file) first.push(mp.Value('i', first.length));
      holder.spill = first.pop()!;
      const blocks = (statSync(file).size - 64) / 32;
      assert.equal(arenaRefs(file), blocks + 1, "full: one reference per block, plus the owner's hold");
      holder.kept = first.filter((_, i) => i % 2 === 0);
      return { file, next: regionOf(holder.spill).file, blocks, dropped: first.length - holder.kept.length };
    })();
    assert.notEqual(next, file);
    // Half of ours dropped: their blocks come back.
    await collected(file, blocks + 1 - dropped);
    (() => {
      // The arena carved from is used up first; then the freed blocks of the older one, before any new arena.
      const before = arenaFiles();
      const made = [mp.Value('i', 0)];
      while (regionOf(made[made.length - 1]!).file === next) made.push(mp.Value('i', 0));
      const reused = made.length - 1;
      for (let i = 1; i < dropped; i++) made.push(mp.Value('i', i));
      assert.ok(made.slice(reused).every((v) => regionOf(v).file === file), 'then every freed block was handed out again');
      assert.deepEqual([...arenaFiles()].filter((f) => !before.has(f)), [], 'no new arena while freed blocks were left');
      assert.equal(arenaRefs(file), blocks + 1);
    })();
    // The older arena with free blocks became the one carved from. Everything dropped: the other one, empty, is
    // given back; the one carved from stays, for the next Value.
    holder.kept = null;
    holder.spill = null;
    await eventually(
      () => {
        gc!();
        return !existsSync(next);
      },
      10_000,
      'the empty arena to be given back',
    );
    assert.ok(existsSync(file), 'the arena carved from stays');
    await collected(file, 1);
  });

  it("a reused block's lock is a new lock: a lock dropped while held does not leave its successor held", async () => {
    await settleGarbage();
    // Made in a function of its own, so that no register of this async function keeps it.
    const { file, before } = (() => {
      const v = mp.Value('i', 1);
      const { file } = regionOf(v);
      assert.equal(v.getLock().acquireSync(), true);
      return { file, before: arenaRefs(file) };
    })();
    await collected(file, before - 1);
    // The free stack hands the most recently freed block out first.
    const successor = mp.Value('i', 2);
    assert.equal(successor.getLock().acquireSync({ block: false }), true, 'the new lock is free');
    successor.getLock().release();
    successor.value += 1;
    assert.equal(await successor.getLock().withLock(() => successor.value), 3);
  });

  it('a leftover file with the name of the next arena does not make Value() fail', () => {
    const values = [mp.Value('i', 0)];
    const file = regionOf(values[0]!).file;
    const [, stem, n] = /^(.*\.)(\d+)$/.exec(file)!;
    const next = `${stem}${Number(n) + 1}`;
    writeFileSync(next, 'left by a killed process whose pid this one reuses');
    while (regionOf(values[values.length - 1]!).file === file) values.push(mp.Value('i', values.length));
    assert.notEqual(regionOf(values[values.length - 1]!).file, next);
    assert.equal(values[values.length - 1]!.value, values.length - 1);
    assert.ok(existsSync(next), 'the leftover is not ours to remove');
  });

  for (const method of METHODS) {
    it(`a child handed 2000 Values of one arena maps it once (${method})`, async () => {
      const values = Array.from({ length: 2000 }, (_, i) => mp.Value('i', i));
      const file = regionOf(values[0]!).file;
      const sameArena = values.filter((v) => regionOf(v).file === file);
      const out = mp.RawArray('i', 2);
      const p = new (mp.getContext(method).Process)({ target: ar.sumAndCountMappings, args: [sameArena, file, out], module: ar.ARENA });
      p.start();
      await p.join(20_000);
      assert.equal(p.exitCode, 0);
      assert.equal(out[0], sameArena.reduce((sum, v) => sum + v.value, 0));
      // A thread shares its process's mappings: the parent's, and its own one.
      assert.equal(out[1], method === 'process' ? 1 : 2, `${out[1]} mappings of one arena`);
    });

    it(`a killed child gives back its blocks of our arena and its own arena (${method})`, async (t) => {
      const values = Array.from({ length: 100 }, () => mp.Value('i', 0));
      const regions = values.map((v) => regionOf(v));
      const ready = mp.RawArray('i', 1);
      const before = arenaFiles();
      const p = new (mp.getContext(method).Process)({ target: ar.holdAndMake, args: [values, 3000, ready], module: ar.ARENA });
      startAll(t, [p]);
      await eventually(() => ready[0] === 1, 20_000, 'the child to be ready');
      const own = [...arenaFiles()].filter((f) => !before.has(f));
      assert.ok(own.length >= 1, 'the child made an arena of its own');
      assert.ok(regions.every((r) => r.refs() === 2), 'the child holds a reference on each block it was handed');
      p.kill();
      await p.join(20_000);
      assert.equal(p.exitCode, -9);
      await eventually(() => regions.every((r) => r.refs() === 1), 5_000, "the parent to give back the child's references");
      await eventually(() => own.every((f) => !existsSync(f)), 5_000, "the child's arenas to be removed");
      assert.deepEqual(
        values.map((v) => v.value),
        values.map(() => 1),
      );
    });
  }

  for (const method of METHODS) {
    it(`an arena whose last blocks a child freed is given back by the owner's next sweep (${method})`, async (t) => {
      await settleGarbage();
      const out = mp.RawArray('i', 1);
      const go = mp.RawArray('i', 1);
      // Made in a function: once the child has them, the child alone holds the first arena's Values.
      const { file, blocks, spill, child } = (() => {
        const first = [mp.Value('i', 1)];
        const file = regionOf(first[0]!).file;
        while (regionOf(first[first.length - 1]!).file === file) first.push(mp.Value('i', 1));
        const spill = first.pop()!;
        const child = new (mp.getContext(method).Process)({ target: ar.readAndEndOnGo, args: [first, out, go], module: ar.ARENA });
        child.start();
        return { file, blocks: first.length, spill, child };
      })();
      t.after(() => child.kill());
      await eventually(() => out[0] === blocks, 20_000, 'the child to read every Value');
      // Ours dropped first: the owner sees the arena still in use by the child.
      await collected(file, blocks + 1);
      go[0] = 1;
      await child.join(20_000);
      assert.equal(child.exitCode, 0);
      await eventually(() => arenaRefs(file) === 1, 5_000, "the child's references to be given back");
      assert.ok(existsSync(file), 'no free in this process told the owner');
      sweep();
      await eventually(() => !existsSync(file), 5_000, 'the swept arena to be given back');
      assert.equal(spill.value, 1);
    });
  }

  it('a drop on a block that was freed and made anew is refused: the new object keeps its memory', async () => {
    const v = mp.Value('i', 5);
    const block = (v.getObj() as unknown as { segment: { map: { path: string; words: Int32Array }; offset: number } }).segment;
    const gen = Atomics.load(block.map.words, (block.offset >> 2) + 1);
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      // A stale ledger line: the previous allocation of this block.
      dropOwedInArena(block.map.path, block.offset, gen - 1, 1);
      // More references than the block has.
      dropOwedInArena(block.map.path, block.offset, gen, 5);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.equal(regionOf(v).refs(), 1, 'neither drop touched the count');
    assert.equal(v.value, 5);
    assert.ok(warnings.some((w) => /refused to drop a reference on shared block/.test(w)), warnings.join('\n'));
    // The right drop still works: the owed reference goes, the block with it.
    const before = arenaRefs(block.map.path);
    Atomics.add(block.map.words, block.offset >> 2, 1);
    dropOwedInArena(block.map.path, block.offset, gen, 1);
    assert.equal(regionOf(v).refs(), 1);
    assert.equal(arenaRefs(block.map.path), before);
  });

  it('a Value made in an exit listener after the shared memory was given back is a StateError', async () => {
    const r = await run(process.execPath, [fixture('arena-exit.js')], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^StateError: shared objects cannot be made once this process or thread is exiting/m);
  });

  it('a million Values live in one process', async () => {
    const r = await run(process.execPath, [fixture('million-values.js')], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { n: number; ok: boolean; last: number; sharedBytes: number; mappings: number; arenas: number };
    assert.equal(out.n, 1_000_000);
    assert.equal(out.ok, true);
    assert.equal(out.last, 1_000_000);
    assert.ok(out.sharedBytes / out.n <= 64, `${out.sharedBytes / out.n} bytes of shared memory per Value`);
    assert.ok(out.mappings < 100, `${out.mappings} mappings of the tree directory`);
  });
});
