/**
 * Shared memory of children that do not exit on their own: a child killed
 * or terminated gives back (through its parent, which replays its ledger)
 * every segment reference it held or was handed, so the files leave
 * /dev/shm then and not only when the whole tree ends; what others still
 * use stays. Also: segment names that cannot collide with leftovers, and a
 * tree whose reaper cannot be spawned.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import * as mp from '../src/index.js';
import { Segment } from '../src/shm/segment.js';
import { treeDir } from '../src/shm/tree.js';
import * as lt from './fixtures/lifetime.js';
import { METHODS, eventually, fixture, regionOf, run } from './helpers.js';

const MiB = 1 << 20;
const gc = (globalThis as { gc?: () => void }).gc;
const needs = !mp.nativeAvailable() ? 'needs the native addon' : !gc ? 'run node with --expose-gc' : false;

/** Names of the segment files in this tree's directory. */
function segmentFiles(): Set<string> {
  return new Set(readdirSync(treeDir()).filter((name) => name !== 'names' && name !== 'ledgers'));
}

function added(now: Set<string>, before: Set<string>): string[] {
  return [...now].filter((name) => !before.has(name));
}

function stillThere(names: string[]): string[] {
  return names.filter((name) => existsSync(`${treeDir()}/${name}`));
}

/** The reference count in a segment file's header. */
function refsOf(name: string): number {
  const fd = openSync(`${treeDir()}/${name}`, 'r');
  try {
    const header = Buffer.alloc(4);
    readSync(fd, header, 0, 4, 0);
    return header.readInt32LE(0);
  } finally {
    closeSync(fd);
  }
}

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Bytes in use on /dev/shm, as `df` reports them. */
function shmUsed(): number {
  const fs = statfsSync('/dev/shm');
  return (fs.blocks - fs.bfree) * fs.bsize;
}

/** Starts `children`, and kills whichever still runs when the test ends (an assertion failed). */
function startAll(t: TestContext, children: mp.Process[]): void {
  t.after(() => children.forEach((p) => p.kill()));
  children.forEach((p) => p.start());
}

async function allReady(ready: mp.RawSharedArray<'i'>, count: number): Promise<void> {
  await eventually(() => ready.slice(0, count).every((flag) => flag === 1), 30_000, `${count} children to be ready`);
}

describe('shared memory of killed children', { skip: needs }, () => {
  for (const method of METHODS) {
    it(`children handed a fresh 4 MiB RawArray, then terminated or killed, leave none of them in /dev/shm (${method})`, async (t) => {
      const Process = mp.getContext(method).Process;
      const count = 8;
      const ready = mp.RawArray('i', count);
      const before = segmentFiles();
      const baseline = shmUsed();
      const descriptors = openDescriptors();
      let arrays: mp.RawSharedArray<'b'>[] | null = Array.from({ length: count }, () => mp.RawArray('b', 4 * MiB).fill(1));
      const handed = added(segmentFiles(), before);
      assert.equal(handed.length, count);
      const children = arrays.map((arr, slot) => new Process({ target: lt.holdHanded, args: [arr, ready, slot], module: lt.LIFETIME }));
      startAll(t, children);
      await allReady(ready, count);
      children.forEach((p, i) => (i % 2 ? p.kill() : p.terminate()));
      await Promise.all(children.map((p) => p.join(20_000)));
      assert.deepEqual(children.map((p) => p.exitCode), children.map((_, i) => (i % 2 ? -9 : -15)));
      // The children's references are back: the parent's own mapping is all that counts.
      assert.deepEqual(handed.map(refsOf), handed.map(() => 1));
      // Each child's ledger descriptor is closed with it (a thread's belongs to this process). A
      // process child's IPC socket closes shortly after its exit, which join() does not wait for.
      await eventually(() => openDescriptors() <= descriptors + 2, 5_000, `descriptors to return near ${descriptors}`);
      arrays = null;
      await eventually(() => (gc!(), stillThere(handed).length === 0), 10_000, `the files to go: ${stillThere(handed)}`);
      // And the memory with them (other test files may use a little meanwhile).
      await eventually(() => (gc!(), shmUsed() - baseline < 12 * MiB), 10_000, `/dev/shm usage to return near ${baseline}`);
    });

    it(`a child killed right after start() leaves no reference on the arguments it was handed (${method})`, async () => {
      const before = segmentFiles();
      const arr = mp.RawArray('b', 64 * 1024);
      const [name] = added(segmentFiles(), before);
      const p = new (mp.getContext(method).Process)({ target: lt.holdHanded, args: [arr, mp.RawArray('i', 1), 0], module: lt.LIFETIME });
      p.start();
      p.kill();
      await p.join(20_000);
      assert.equal(p.exitCode, -9);
      assert.equal(refsOf(name!), 1, 'only the parent holds the array');
    });

    it(`a child that made its own 4 MiB segment and is killed leaves no file behind (${method})`, async (t) => {
      const ready = mp.RawArray('i', 1);
      const before = segmentFiles();
      const p = new (mp.getContext(method).Process)({ target: lt.holdOwn, args: [ready, 0], module: lt.LIFETIME });
      startAll(t, [p]);
      await allReady(ready, 1);
      const own = added(segmentFiles(), before);
      assert.equal(own.length, 1);
      p.kill();
      await p.join(20_000);
      assert.deepEqual(stillThere(own), []);
    });

    it(`a Value the parent still uses survives the kill of a child that held it, and can be handed on (${method})`, async (t) => {
      const Process = mp.getContext(method).Process;
      const v = mp.Value('i', 0);
      const region = regionOf(v);
      const ready = mp.RawArray('i', 1);
      const first = new Process({ target: lt.holdValue, args: [v, ready, 0], module: lt.LIFETIME });
      startAll(t, [first]);
      await allReady(ready, 1);
      assert.ok(region.refs() >= 2, 'the child holds a reference');
      first.kill();
      await first.join(20_000);
      assert.equal(region.refs(), 1, 'the parent keeps its reference');
      const second = new Process({ target: lt.holdValue, args: [v, ready, 0], module: lt.LIFETIME });
      ready[0] = 0;
      startAll(t, [second]);
      await allReady(ready, 1);
      assert.equal(v.value, 2);
      second.terminate();
      await second.join(20_000);
      assert.equal(region.refs(), 1);
      assert.ok(existsSync(region.file));
    });
  }

  for (const method of METHODS) {
    it(`a child that made and dropped thousands of segments keeps a small ledger, and its kill still settles exactly (${method})`, async (t) => {
      const ready = mp.RawArray('i', 1);
      const before = segmentFiles();
      const v = mp.Value('i', 0);
      const value = regionOf(v);
      const p = new (mp.getContext(method).Process)({ target: lt.churn, args: [v, ready, 16], module: lt.LIFETIME });
      startAll(t, [p]);
      await allReady(ready, 1);
      const own = added(segmentFiles(), before).filter((name) => `${treeDir()}/${name}` !== value.file);
      // The child waited for each batch to be given back before the next (see lt.churn).
      assert.equal(own.length, 1, `only the array the child keeps is left of its own (${own.length} files)`);
      const ledgers = readdirSync(`${treeDir()}/ledgers`).filter((name) => !name.includes('~'));
      assert.equal(ledgers.length, 1);
      // About 8000 entries of some 22 bytes were logged, never more than 251
      // live at once: each time the file reached 64 KiB it was compacted.
      const size = statSync(`${treeDir()}/ledgers/${ledgers[0]}`).size;
      assert.ok(size < 64 * 1024, `ledger of ${size} bytes after about 8000 entries`);
      p.kill();
      await p.join(20_000);
      assert.equal(v.value, 1);
      assert.equal(value.refs(), 1, 'the parent keeps its reference');
      assert.deepEqual(stillThere(own), []);
    });
  }

  it("grandchildren's segments are given back when the child that started them is killed (both methods, all pairs)", async (t) => {
    const ready = mp.RawArray('i', 3 * METHODS.length);
    const before = segmentFiles();
    const children = METHODS.map(
      (method, i) => new (mp.getContext(method).Process)({ target: lt.holdGrandchildren, args: [ready, 3 * i], module: lt.LIFETIME }),
    );
    startAll(t, children);
    await allReady(ready, ready.length);
    const theirs = added(segmentFiles(), before);
    // Each grandchild was handed one array and made one.
    assert.equal(theirs.length, 2 * METHODS.length * METHODS.length);
    children.forEach((p) => p.kill());
    await Promise.all(children.map((p) => p.join(20_000)));
    await eventually(() => stillThere(theirs).length === 0, 15_000, `the files to go: ${stillThere(theirs)}`);
  });

  it('a leftover file with the name the next segment would get does not make Array() fail', () => {
    const seg = Segment.create(8);
    const next = seg.path!.replace(/\d+$/, (n) => String(Number(n) + 1));
    writeFileSync(next, 'left by a killed process whose pid this one reuses');
    const arr = mp.Array('i', [7, ...Array<number>(99).fill(0)]);
    assert.equal(arr[0], 7);
    assert.ok(existsSync(next), 'the leftover is not ours to remove');
  });
});

describe('tree without a reaper', { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, () => {
  type Out = { treeDir: string; shm: string; value: number; reaperEvents: string[] };

  it('a reaper whose shell cannot be spawned leaves the cleanup to the main process exit, also after the failure is reported', async () => {
    const r = await run(process.execPath, [fixture('no-reaper-main.js')], {
      env: { MULTIPROCESSING_TS_REAPER_SHELL: '/nonexistent/sh' },
    });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Out;
    assert.equal(out.value, 1);
    assert.ok(out.reaperEvents.includes('error') && !out.reaperEvents.includes('spawn'), `reaper events: ${out.reaperEvents}`);
    assert.equal(existsSync(out.treeDir), false, 'the tree directory is removed');
    assert.equal(existsSync(`/dev/shm/${out.shm}`), false, 'the named block is removed');
  });

  it('a reaper killed after it spawned hands the cleanup back to the main process exit', async () => {
    const r = await run(process.execPath, [fixture('no-reaper-main.js'), 'kill-reaper']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Out;
    assert.equal(out.value, 1);
    assert.deepEqual(out.reaperEvents.slice(0, 2), ['spawn', 'exit'], 'spawned (the cleanup disarmed), then killed');
    assert.equal(existsSync(out.treeDir), false, 'the tree directory is removed');
    assert.equal(existsSync(`/dev/shm/${out.shm}`), false, 'the named block is removed');
  });
});
