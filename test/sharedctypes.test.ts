/**
 * Value, Array, RawValue, RawArray and their locks, across real children.
 * From CPython's _test_multiprocessing.py: _TestValue, _TestArray,
 * test_getobj_getlock, test_rawvalue, test_array_from_size, plus the
 * issue's contention and crash cases.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as fx from './fixtures/targets.js';
import { METHODS, eventually, waitForValue } from './helpers.js';

const module = fx.TARGETS;

describe('Value and RawValue', () => {
  it('holds every typecode with its range and type', () => {
    const cases: Array<[mp.Typecode, number | bigint, number | bigint]> = [
      ['c', 97, 97],
      ['b', -7, -7],
      ['B', 250, 250],
      ['h', -30000, -30000],
      ['H', 65000, 65000],
      ['i', -(2 ** 31), -(2 ** 31)],
      ['I', 2 ** 32 - 1, 2 ** 32 - 1],
      ['l', -(2n ** 63n), -(2n ** 63n)],
      ['L', 2n ** 64n - 1n, 2n ** 64n - 1n],
      ['q', 5, 5n],
      ['Q', 7n, 7n],
      ['f', 1.5, 1.5],
      ['d', Math.PI, Math.PI],
    ];
    for (const [code, init, expected] of cases) {
      assert.equal(mp.Value(code, init as never).value, expected, code);
      assert.equal(mp.RawValue(code, init as never).value, expected, code);
    }
    assert.equal(mp.Value('i').value, 0);
    assert.equal(mp.Value('i', 10).value, 10);
  });

  it('refuses an unknown typecode and a bad initial value, naming them', () => {
    assert.throws(() => mp.Value('x' as never), (e: Error) => e instanceof mp.ValueError && /'x'/.test(e.message));
    assert.throws(() => mp.Value('i', 1.5), /1.5.*integers/);
    assert.throws(() => mp.Value('q', 1.5), /bigint/);
    assert.throws(() => mp.Value('i', 'seven' as never), /"seven"/);
    assert.throws(() => mp.Value('i', 0, { lock: 'yes' as never }), mp.ValueError);
  });

  it('getLock/getObj: true gives an RLock, false the raw object itself (as Python), a given lock is used', () => {
    const v = mp.Value('i', 3);
    assert.ok(v.getLock() instanceof mp.RLock);
    assert.equal(v.getObj().value, 3);
    const raw = mp.Value('i', 4, { lock: false });
    assert.ok(raw instanceof mp.SharedRawValue);
    assert.equal(raw.value, 4);
    assert.equal('getLock' in raw, false);
    assert.equal('getObj' in raw, false);
    const rawArray = mp.Array('i', [1, 2], { lock: false });
    assert.ok(rawArray instanceof Int32Array, 'a RawArray is a typed array');
    assert.deepEqual(Array.from(rawArray), [1, 2]);
    assert.equal('getLock' in rawArray, false);
    assert.equal('getObj' in rawArray, false);
    assert.equal('getObj' in mp.RawArray('i', 2), false);
    const lock = new mp.Lock();
    const shared = mp.Value('d', 0, { lock });
    assert.equal(shared.getLock(), lock);
    // Holding a plain Lock around `value` does not deadlock this thread.
    lock.acquireSync();
    shared.value += 1;
    lock.release();
    assert.equal(shared.value, 1);
  });
});

describe('Array and RawArray', () => {
  it('indexes, iterates and converts like a typed array', () => {
    const a = mp.Array('i', [1, 2, 3, 4]);
    assert.equal(a.length, 4);
    assert.equal(a[2], 3);
    assert.equal(a[-1], 4);
    a[0] = 10;
    assert.deepEqual(Array.from(a), [10, 2, 3, 4]);
    assert.deepEqual([...a], [10, 2, 3, 4]);
    assert.ok(2 in a);
    assert.equal(Object.keys(a).filter((k) => /^\d+$/.test(k)).length, 4);
    assert.throws(() => a[4], mp.IndexError);
    assert.throws(() => (a[0] = 'x' as never), mp.ValueError);
    assert.deepEqual(Array.from(mp.SharedArray('d', 3)), [0, 0, 0]);
    const raw = mp.RawArray('q', [1, 2]);
    assert.ok(raw instanceof BigInt64Array);
    raw[0]! += 5n;
    assert.deepEqual([...raw], [6n, 2n]);
    assert.ok(!(raw.map((x) => x) instanceof mp.RawArray('q', 0).constructor));
  });

  it("'c' arrays take text and expose .value up to the first NUL", () => {
    const c = mp.Array('c', 'hello');
    assert.equal(c.length, 5);
    assert.equal(c.value, 'hello');
    c.value = 'hi';
    assert.equal(c.value, 'hi');
    assert.throws(() => (c.value = 'too long!'), mp.ValueError);
    assert.equal(mp.Array('c', 10).value, '');
  });

  it('refuses bad sizes and initializers, naming the element', () => {
    assert.throws(() => mp.Array('i', -1), mp.ValueError);
    assert.throws(() => mp.Array('i', [1, 'x' as never]), /initializer\[1\] is "x"/);
    assert.throws(() => mp.Array('z' as never, 3), /'z'/);
    const a = mp.Array('i', 3);
    assert.throws(() => a.set([1, 2, 3, 4]), /cannot place 4 values/);
    a.set([7, 8], 1);
    assert.deepEqual(a.toArray(), [0, 7, 8]);
  });
});

for (const method of METHODS) {
  const ctx = mp.getContext(method);
  describe(`shared values across children (${method})`, () => {
    it('4 children × 10,000 locked increments give exactly 40,000 (sync and async locking)', async () => {
      const v = mp.Value('i', 0);
      const procs = [fx.incrementSync, fx.incrementAsync, fx.incrementSync, fx.incrementAsync].map(
        (target) => new ctx.Process({ target, args: [v, 10_000], module }),
      );
      procs.forEach((p) => p.start());
      await Promise.all(procs.map((p) => p.join()));
      assert.deepEqual(procs.map((p) => p.exitCode), [0, 0, 0, 0]);
      assert.equal(v.value, 40_000);
    });

    it('a lock held by a child that is SIGKILLed passes to the next acquirer, who learns the owner died', async () => {
      const lock = new mp.Lock();
      const held = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.holdLock, args: [lock, held], module });
      p.start();
      await waitForValue(held, 1);
      assert.equal(await lock.acquire({ block: false }), false);
      p.kill();
      await p.join();
      assert.equal(await lock.acquire({ timeout: 20_000 }), true);
      assert.equal(lock.ownerDied, true);
      lock.release();
      assert.equal(await lock.acquire({ block: false }), true);
      assert.equal(lock.ownerDied, false);
      lock.release();
    });

    it('a child SIGKILLed at random moments of a tight acquire/release loop never leaves the lock stuck', async () => {
      const lock = new mp.Lock();
      for (let round = 0; round < 4; round++) {
        const started = mp.RawArray('i', 1);
        const p = new ctx.Process({ target: fx.hammerLock, args: [lock, started], module });
        p.start();
        await eventually(() => Atomics.load(started, 0) === 1, 20_000, 'the child to start hammering');
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
        p.kill();
        await p.join();
        assert.equal(await lock.acquire({ timeout: 20_000 }), true, `round ${round}: the lock was recovered`);
        lock.release();
      }
    });

    it('terminate() ends a child blocked in acquireSync (a native futex wait)', async () => {
      const lock = new mp.Lock();
      lock.acquireSync();
      const started = mp.RawArray('i', 1);
      const p = new ctx.Process({ target: fx.blockOnLock, args: [lock, started], module });
      p.start();
      await eventually(() => Atomics.load(started, 0) === 1, 20_000, 'the child to block');
      p.terminate();
      await p.join(10_000);
      assert.equal(p.exitCode, -15);
      lock.release();
    });

    it('nested shared objects in args arrive live; plain data is copied', async () => {
      const value = mp.Value('i', 0);
      const deep = mp.Array('i', 2);
      const raw = mp.RawValue('q', 0);
      const shm = new mp.SharedMemory({ create: true, size: 16 });
      const sl = new mp.ShareableList(['----']);
      const plain = { n: 5, when: new Date(Date.UTC(2024, 0, 1)), big: 99n };
      const p = new ctx.Process({
        target: fx.fillNested,
        args: [{ list: [value, { deep }], map: new Map<string, any>([['raw', raw], ['shm', shm]]), set: new Set([sl]), plain }],
        module,
      });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.equal(value.value, 5);
      assert.equal(deep[0], 2024);
      assert.equal(raw.value, 99n);
      assert.equal(shm.buf[0], 0xab);
      assert.equal(sl.get(0), 'seen');
      shm.unlink();
      sl.shm.unlink();
    });
  });
}

describe('Lock and RLock', () => {
  it('Lock: non-blocking and timed acquire, over-release is an error', async () => {
    const lock = new mp.Lock();
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire({ block: false }), false);
    assert.equal(await lock.acquire({ timeout: 20 }), false);
    assert.equal(await lock.acquire({ timeout: -5 }), false);
    lock.release();
    assert.throws(() => lock.release(), mp.ValueError);
    assert.equal(await lock.withLock(async () => 'done'), 'done');
    await assert.rejects(lock.withLock(() => {
      throw new Error('inside');
    }), /inside/);
    assert.equal(lock.acquireSync({ block: false }), true, 'withLock released even when fn threw');
    lock.release();
  });

  it('RLock: re-entry counts; release by a non-owner is an error', async () => {
    const r = new mp.RLock();
    assert.throws(() => r.release(), mp.ValueError);
    assert.equal(await r.acquire(), true);
    assert.equal(r.acquireSync(), true);
    r.release();
    r.release();
    assert.throws(() => r.release(), mp.ValueError);
  });
});
