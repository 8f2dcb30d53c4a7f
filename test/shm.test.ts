/**
 * SharedMemory and ShareableList: naming, attaching, unlinking, and the
 * bad-input cases. From CPython's _TestSharedMemory (test_shared_memory_basics,
 * test_shared_memory_across_processes, test_shared_memory_ShareableList_basics).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as mp from '../src/index.js';
import * as fx from './fixtures/targets.js';
import { METHODS, run } from './helpers.js';

const native = mp.nativeAvailable();

describe('SharedMemory', () => {
  it('creates, attaches by name, and unlinks once', () => {
    const a = new mp.SharedMemory({ create: true, size: 100 });
    assert.match(a.name, /^psm_/);
    assert.equal(a.size, 100);
    if (native) assert.ok(existsSync(`/dev/shm/${a.name}`));
    a.buf.set([1, 2, 3]);
    const b = new mp.SharedMemory({ name: a.name });
    assert.deepEqual([...b.buf.subarray(0, 3)], [1, 2, 3]);
    b.buf[3] = 4;
    assert.equal(a.buf[3], 4);
    // Attaching ignores `size`, larger or smaller: the block keeps its own (Python's rule).
    for (const size of [10_240, 10]) {
      const c = new mp.SharedMemory({ name: a.name, size });
      assert.equal(c.size, 100);
      assert.equal(c.buf.length, 100);
      c.close();
    }
    b.close();
    assert.throws(() => b.buf, mp.StateError);
    assert.equal(a.buf[0], 1, 'closing an attachment leaves the block');
    a.unlink();
    assert.throws(() => a.unlink(), mp.FileNotFoundError);
    assert.equal(a.buf[3], 4, 'a mapping outlives unlink');
    assert.throws(() => new mp.SharedMemory({ name: a.name }), mp.FileNotFoundError);
  });

  it('takes a chosen name; a taken name and bad options are errors of exported classes', () => {
    const name = `mpts_test_${process.pid}`;
    const a = new mp.SharedMemory({ name, create: true, size: 8 });
    assert.equal(a.name, name);
    assert.throws(() => new mp.SharedMemory({ name, create: true, size: 8 }), mp.FileExistsError);
    assert.throws(() => new mp.SharedMemory({ create: true, size: 0 }), mp.ValueError);
    assert.throws(() => new mp.SharedMemory({ create: true, size: -1 }), mp.ValueError);
    assert.throws(() => new mp.SharedMemory({ name: 'a/b' }), mp.ValueError);
    assert.throws(() => new mp.SharedMemory({}), /name is required/);
    assert.throws(() => new mp.SharedMemory({ name: `never_made_${process.pid}` }), mp.FileNotFoundError);
    a.unlink();
  });
});

describe('SharedMemory and Python', { skip: native ? false : 'needs the native addon' }, () => {
  it("Python's multiprocessing.shared_memory attaches our block by name, and we attach Python's", async () => {
    const ours = new mp.SharedMemory({ create: true, size: 8 });
    ours.buf.set([7, 8, 9]);
    const script = [
      'import sys',
      'from multiprocessing import shared_memory, resource_tracker',
      'theirs = shared_memory.SharedMemory(name=sys.argv[1])',
      // Python 3.11 would unlink a block it merely attached when it exits: opt out.
      'resource_tracker.unregister(theirs._name, "shared_memory")',
      'print(list(theirs.buf[:3]))',
      'theirs.buf[3] = 42',
      'made = shared_memory.SharedMemory(create=True, size=4)',
      'resource_tracker.unregister(made._name, "shared_memory")',
      'made.buf[0] = 99',
      'print(made.name)',
    ].join('\n');
    const r = await run('python3', ['-c', script, ours.name]);
    assert.equal(r.code, 0, r.stderr);
    const [bytes, pythonName] = r.stdout.trim().split('\n');
    assert.equal(bytes, '[7, 8, 9]');
    assert.equal(ours.buf[3], 42);
    const theirs = new mp.SharedMemory({ name: pythonName!.replace(/^\//, '') });
    assert.equal(theirs.buf[0], 99);
    theirs.unlink();
    ours.unlink();
  });
});

describe('ShareableList', () => {
  it('holds numbers, booleans, strings, bytes and null; attaches by name', () => {
    const sl = new mp.ShareableList([1, 2.5, true, 'hé', new Uint8Array([1, 2]), null, -3]);
    assert.equal(sl.length, 7);
    assert.deepEqual(sl.toArray(), [1, 2.5, true, 'hé', new Uint8Array([1, 2]), null, -3]);
    assert.equal(sl.format, 'qdxxxxxxx?8s8sxxxxxx?xq', "Python's struct formats");
    const same = new mp.ShareableList(null, { name: sl.shm.name });
    same.set(0, 10);
    same.set(-1, 'ok');
    assert.equal(sl.get(0), 10);
    assert.equal(sl.get(6), 'ok');
    assert.equal(sl.count(10), 1);
    assert.equal(sl.index(2.5), 1);
    assert.throws(() => sl.index(99), mp.ValueError);
    assert.throws(() => sl.get(7), mp.IndexError);
    assert.throws(() => sl.set(3, 'much longer than eight bytes'), /cannot grow past its original size/);
    assert.equal(sl.get(3), 'hé', 'a refused write changes nothing');
    assert.throws(() => new mp.ShareableList([{}] as never), /sequence\[0\]/);
    sl.shm.unlink();
  });
});

for (const method of METHODS) {
  describe(`SharedMemory across children (${method})`, () => {
    it('a child creates a block and hands it up; its exit does not delete it', async () => {
      const names = new mp.ShareableList(['x'.repeat(40)]);
      const p = new (mp.getContext(method).Process)({ target: fx.createBlock, args: [names], module: fx.TARGETS });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      const block = new mp.SharedMemory({ name: names.get(0) as string });
      assert.equal(block.buf[0], 7);
      block.unlink();
      names.shm.unlink();
    });

    it("an attacher's exit never deletes the block (Python's resource-tracker bug)", async () => {
      const shm = new mp.SharedMemory({ create: true, size: 16 });
      const names = new mp.ShareableList(['x'.repeat(40)]);
      const p = new (mp.getContext(method).Process)({ target: fx.attachAndWrite, args: [shm.name, names], module: fx.TARGETS });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.equal(names.get(0), shm.name);
      if (native) assert.ok(existsSync(`/dev/shm/${shm.name}`));
      assert.equal(new mp.SharedMemory({ name: shm.name }).buf[1], 0xcd);
      shm.unlink();
      names.shm.unlink();
    });
  });
}
