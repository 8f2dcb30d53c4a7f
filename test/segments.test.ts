/**
 * Segment lifetime: a segment's file goes away when its last user is gone,
 * never while a handle to it is still on its way; and the package works
 * without its native addon for thread children.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as mp from '../src/index.js';
import { Segment, collectHandles } from '../src/shm/segment.js';
import { abandon, encode } from '../src/serialize/encode.js';
import * as fx from './fixtures/targets.js';
import { METHODS, eventually, fixture, regionOf, run } from './helpers.js';

const gc = (globalThis as { gc?: () => void }).gc;

describe('segment lifetime', { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, () => {
  it('the file is removed when the last user releases it, not before', async () => {
    const seg = Segment.create(64);
    const path = seg.path!;
    assert.ok(existsSync(path));
    const handle = seg.toHandle(); // a reference in flight
    assert.equal(Atomics.load(seg.refs, 0), 2);
    const again = Segment.attach(handle); // same isolate: the in-flight reference is given back
    assert.equal(again, seg);
    assert.equal(Atomics.load(seg.refs, 0), 1);
  });

  it('a start() refused for bad args leaves no reference behind', () => {
    const v = mp.Value('i', 0);
    const region = regionOf(v);
    for (const method of METHODS) {
      const p = new (mp.getContext(method).Process)({ target: fx.noop, args: [v, { later: () => 1 }] as never, module: fx.TARGETS });
      assert.throws(() => p.start(), mp.SerializationError);
    }
    assert.equal(region.refs(), 1);
  });

  it('a handle whose segment is gone gives a clear error on attach', () => {
    const seg = Segment.create(64);
    const { result: original, segments } = collectHandles(() => seg.toHandle());
    const handle = { ...original, path: `${seg.path}-gone` };
    assert.throws(() => Segment.attach(handle), (err: Error) => {
      assert.ok(err instanceof mp.FileNotFoundError);
      assert.match(err.message, /no longer exists/);
      return true;
    });
    Segment.abandonAll(segments);
    assert.equal(Atomics.load(seg.refs, 0), 1);
  });

  for (const method of METHODS) {
    it(`a child's mapping is released when it exits (${method})`, async () => {
      const v = mp.Value('i', 0);
      const region = regionOf(v);
      const p = new (mp.getContext(method).Process)({ target: fx.asyncSet, args: [v, 3], module: fx.TARGETS });
      p.start();
      await p.join();
      assert.equal(v.value, 3);
      // The parent's own reference is all that is left.
      await eventually(() => region.refs() === 1, 5_000, 'the child to give back its reference');
      assert.ok(existsSync(region.file));
    });
  }

  it('a view that outlived its shared object still travels; once every holder let go, encoding it says why it cannot', { skip: gc ? false : 'run node with --expose-gc' }, async () => {
    const collected = async (raw: WeakRef<object>, refs: Int32Array, expected: number) =>
      eventually(() => {
        gc!();
        return raw.deref() === undefined && Atomics.load(refs, 0) === expected;
      }, 5_000, 'the array to be collected and its reference given back');

    let raw: mp.RawArray<'i'> | null = mp.RawArray('i', 4);
    const view = raw.subarray(1);
    const refs = new Int32Array(raw.buffer, 0, 1);
    Atomics.add(refs, 0, 1); // another holder keeps the segment
    const gone = new WeakRef(raw);
    raw = null;
    await collected(gone, refs, 1);
    const encoded = encode([view], 'args');
    assert.equal(Atomics.load(refs, 0), 3, 'a new mapping reference, and one in flight');
    abandon(encoded);
    Atomics.sub(refs, 0, 1); // the other holder lets go

    let last: mp.RawArray<'i'> | null = mp.RawArray('i', 4);
    const orphan = last.subarray(1);
    const orphanRefs = new Int32Array(last.buffer, 0, 1);
    const lastGone = new WeakRef(last);
    last = null;
    await collected(lastGone, orphanRefs, 0);
    assert.throws(() => encode([orphan], 'args'), (err: Error) => err instanceof mp.FileNotFoundError && /keep that object alive/.test(err.message));
  });

  it('collecting the last JS object removes the file', { skip: gc ? false : 'run node with --expose-gc' }, async () => {
    let seg: Segment | null = Segment.create(64);
    const path = seg.path!;
    seg = null;
    await eventually(() => {
      gc!();
      return !existsSync(path);
    }, 5_000, 'the finalizer to remove the file');
  });
});

describe('without the native addon', () => {
  it("'thread' children share memory, a killed holder's lock is recovered, withLock tasks exclude each other; 'process' is refused with a clear message", async () => {
    const r = await run(process.execPath, [fixture('fallback.js')], { env: { MULTIPROCESSING_TS_NO_NATIVE: '1' } });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.methods, ['thread']);
    assert.equal(out.method, 'thread');
    assert.equal(out.total, 10_000);
    assert.equal(out.recovered, true, 'the killed holder was seen dead');
    assert.deepEqual(out.tasks, { value: 10, maxInside: 1 });
    assert.deepEqual(out.wrappers, { value: 2, most: 1, exitCode: 0 }, 'two wrappers of one lock in one thread share its holder record');
    assert.match(out.processError, /^NativeUnavailableError: .*native addon.*'thread' start method/);
    assert.match(r.stderr, /Children start as threads/);
  });
});
