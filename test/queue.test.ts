/**
 * Queue, JoinableQueue and SimpleQueue across real children. Ported from
 * CPython's _test_multiprocessing.py _TestQueue (test_put, test_get,
 * test_fork, test_qsize, test_task_done, test_timeout, closed-queue errors),
 * plus the cases: many producers and consumers, kills mid-put and
 * mid-get, a large item and join, bad items, copies at put, shared objects
 * inside items.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as fx from './fixtures/queue-targets.js';
import { Channel } from '../src/channel/channel.js';
import { METHODS, eventually, waitForValue } from './helpers.js';

const module = fx.QUEUE_TARGETS;

/** Runs `fn` and returns how long it took, in ms. */
async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** The sequence number `putForever` wrote into an item. */
function seqOf(item: Uint8Array): number {
  return new DataView(item.buffer, item.byteOffset, item.byteLength).getUint32(0, true);
}

async function joined(p: mp.Process, ms = 30_000): Promise<void> {
  await p.join(ms);
  assert.notEqual(p.exitCode, null, `${p.name} did not end within ${ms} ms`);
}

describe('Queue in one process', () => {
  it('test_put: a bounded queue fills, refuses with Full, and drains in order', async () => {
    const q = new mp.Queue<number>(6);
    assert.equal(q.empty(), true);
    assert.equal(q.full(), false);
    await q.put(1);
    await q.put(2, { block: true });
    await q.put(3, { block: true, timeout: undefined });
    await q.put(4, { block: true, timeout: 1000 });
    q.putSync(5, { block: false });
    q.putNowait(6);
    assert.equal(q.empty(), false);
    assert.equal(q.full(), true);
    assert.equal(q.qsize(), 6);
    assert.throws(() => q.putNowait(7), mp.Full);
    assert.throws(() => q.putSync(7, { block: false, timeout: 5000 }), mp.Full, 'block: false ignores the timeout');
    await assert.rejects(q.put(7, { block: false }), mp.Full);
    await assert.rejects(q.put(7, { timeout: -5 }), mp.Full);
    const out = [];
    for (let i = 0; i < 6; i++) out.push(i % 2 ? q.getSync() : await q.get());
    assert.deepEqual(out, [1, 2, 3, 4, 5, 6]);
    assert.equal(q.empty(), true);
    assert.throws(() => q.getNowait(), mp.Empty);
  });

  it('test_timeout: timed get and put give up within 50 ms of the timeout (async and sync)', async () => {
    const q = new mp.Queue<number>(1);
    for (const ms of [100, 0, -10]) {
      const want = Math.max(0, ms);
      let e = await timed(() => assert.rejects(q.get({ timeout: ms }), mp.Empty));
      assert.ok(e >= want - 1 && e < want + 50, `async get(${ms}) took ${e} ms`);
      e = await timed(() => assert.throws(() => q.getSync({ timeout: ms }), mp.Empty));
      assert.ok(e >= want - 1 && e < want + 50, `getSync(${ms}) took ${e} ms`);
    }
    await q.put(1);
    let e = await timed(() => assert.rejects(q.put(2, { timeout: 100 }), mp.Full));
    assert.ok(e >= 99 && e < 150, `put took ${e} ms`);
    e = await timed(() => assert.throws(() => q.putSync(2, { timeout: 100 }), mp.Full));
    assert.ok(e >= 99 && e < 150, `putSync took ${e} ms`);
    e = await timed(() => assert.rejects(q.put(2, { block: false, timeout: 10_000 }), mp.Full));
    assert.ok(e < 50, `put({ block: false }) took ${e} ms`);
  });

  it('refuses bad options and sizes with ValueError naming the value', async () => {
    for (const bad of [-1, 1.5, '3', NaN]) assert.throws(() => new mp.Queue(bad as number), (e: Error) => e instanceof mp.ValueError && e.message.includes(String(bad)));
    const q = new mp.Queue();
    await assert.rejects(q.get({ timeout: 'soon' as never }), (e: Error) => e instanceof mp.ValueError && /'soon'/.test(e.message));
    assert.throws(() => q.putSync(1, { timeout: NaN }), mp.ValueError);
  });

  it('carries numbers, bigints, strings, bytes and structured-cloneable values unchanged', async () => {
    const q = new mp.Queue();
    const items = [0, -0, 1, -1, 2 ** 31, 2.5, NaN, Infinity, 5n, -(2n ** 63n), 2n ** 100n, '', 'héllo ✓', 'x'.repeat(5000), true, false, null, undefined,
      new Uint8Array([1, 2, 3]), new Uint8Array(100_000).fill(9), [1, [2]], { a: { b: 1 } }, new Map([[1, 'a']]), new Set([2]), new Date(5), new Float64Array([1.5]), new RangeError('boom'),
      new Float64Array(0), new Float64Array([-0, NaN, Infinity, -Infinity, 2 ** 53 + 2, 5e-324]), new Float64Array(8).fill(3).subarray(2, 5), new Float64Array(50_000).map((_, i) => i / 3)];
    for (const item of items) await q.put(item);
    assert.equal(q.qsize(), items.length);
    for (const item of items) {
      const got = await q.get();
      if (item instanceof Error) {
        assert.ok(got instanceof RangeError);
        assert.equal((got as Error).message, 'boom');
      } else {
        assert.deepStrictEqual(got, item);
        if (item instanceof Float64Array) {
          // Its own copy, whole: a view of a larger buffer arrives as just its elements.
          assert.equal((got as Float64Array).byteOffset, 0);
          assert.equal((got as Float64Array).buffer.byteLength, item.byteLength);
          if (item.length > 0) assert.ok(Object.is((got as Float64Array)[0], item[0]));
        }
      }
    }
  });

  it('refuses a Uint8Array whose resizable buffer shrank below it (out of bounds) with a SerializationError at put(); the queue keeps working, and a Pipe sends its 0 bytes', async () => {
    const q = new mp.Queue();
    const rab = new ArrayBuffer(64, { maxByteLength: 128 });
    const view = new Uint8Array(rab, 8, 16);
    rab.resize(4);
    const refused = (e: Error) => e instanceof mp.SerializationError && /resized below it/.test(e.message);
    assert.throws(() => q.putSync(view), refused);
    await assert.rejects(q.put(view), refused);
    // Before the fix, the copy threw inside the ring's writer slot, which stayed taken: this put timed out.
    q.putSync('next', { timeout: 2000 });
    assert.equal(q.getSync({ timeout: 2000 }), 'next');
    // sendBytes reads the bytes the view reports (none), as it reads any offset and size given.
    const [a, b] = mp.Pipe();
    await a.sendBytes(view);
    assert.deepEqual(await b.recvBytes(), new Uint8Array(0));
    await a.sendBytes(new Uint8Array([1]));
    assert.deepEqual(await b.recvBytes(), new Uint8Array([1]));
    a.close();
    b.close();
  });

  it('a Uint8Array whose own byteLength lies is copied by its real length (no unread item overwritten); a Proxy of one is a SerializationError; the queue keeps working', () => {
    // 16 bytes free, right before the oldest unread frame: a frame reserved by
    // the lie (1 byte) and written by the real length (16) would overrun it.
    const ch = Channel.create(0, 1024);
    for (let i = 0; i < 2; i++) {
      ch.putSync(-1, false, 0, false);
      ch.getSync(false, 0);
    }
    for (let i = 0; i < 126; i++) assert.equal(ch.putSync(i, false, 0, false), true);
    const liar = new Uint8Array(new Int32Array([7, 7, 2, 999]).buffer);
    Object.defineProperty(liar, 'byteLength', { value: 1 });
    assert.equal(ch.putSync(liar, false, 0, false), false, 'its real 16 bytes do not fit');
    assert.throws(() => ch.putSync(new Proxy(new Uint8Array([1, 2, 3]), {}), false, 0, false), mp.SerializationError);
    for (let i = 0; i < 126; i++) assert.equal(ch.getSync(false, 0), i);
    assert.equal(ch.putSync(liar, false, 0, false), true);
    assert.deepEqual(ch.getSync(false, 0), new Uint8Array(new Int32Array([7, 7, 2, 999]).buffer));
    assert.equal(ch.putSync('next', false, 0, false), true);
    assert.equal(ch.getSync(false, 0), 'next');
  });

  it('an async put of a Float64Array that waits for room sends the array as it was at put()', async () => {
    const q = new mp.Queue(1);
    q.putSync(0);
    const floats = new Float64Array([1, 2, 3]);
    const pending = q.put(floats);
    floats[0] = 99;
    assert.equal(q.getSync(), 0);
    await pending;
    assert.deepStrictEqual(q.getSync(), new Float64Array([1, 2, 3]));
  });

  it('refuses a Uint8Array or Float64Array whose buffer was detached with a SerializationError at put(); nothing is enqueued and the queue keeps working', async () => {
    const q = new mp.Queue();
    for (const make of [() => new Uint8Array(4), () => new Float64Array(4)]) {
      const array = make();
      structuredClone(array.buffer, { transfer: [array.buffer] });
      const refused = (e: Error) => e instanceof mp.SerializationError && /whose ArrayBuffer was detached/.test(e.message) && e.message.includes(array.constructor.name);
      assert.throws(() => q.putSync(array), refused);
      await assert.rejects(q.put(array), refused);
      assert.equal(q.qsize(), 0);
      // Before the fix, the failed copy left the ring's slot taken: the next put hung.
      q.putSync('next');
      assert.equal(await q.get({ timeout: 5000 }), 'next');
    }
    assert.deepStrictEqual(await (async () => { await q.put(new Float64Array(0)); return q.get({ timeout: 5000 }); })(), new Float64Array(0));
  });

  it('copies the item at put(): later mutation does not leak', async () => {
    const q = new mp.Queue();
    const list = [1, 2];
    const bytes = new Uint8Array([1, 2, 3]);
    const floats = new Float64Array([1, 2]);
    await q.put(list);
    q.putSync(bytes);
    const pending = q.put(floats);
    list.push(3);
    bytes[0] = 99;
    floats[0] = 99;
    await pending;
    assert.deepEqual(await q.get(), [1, 2]);
    assert.deepEqual(q.getSync(), new Uint8Array([1, 2, 3]));
    assert.deepStrictEqual(q.getSync(), new Float64Array([1, 2]));
  });

  it('refuses an uncloneable item at put() with its path; nothing is enqueued and the queue keeps working', async () => {
    const q = new mp.Queue();
    await assert.rejects(q.put({ a: [1, { cb: () => 1 }] }), (e: Error) => e instanceof mp.SerializationError && e.message.startsWith('item.a[1].cb is a function'));
    assert.throws(() => q.putSync(Symbol('s')), (e: Error) => e instanceof mp.SerializationError && /item is a symbol/.test(e.message));
    assert.throws(() => q.putSync([new WeakMap()]), (e: Error) => e instanceof mp.SerializationError && /item\[0\] is a WeakMap/.test(e.message));
    assert.equal(q.qsize(), 0);
    assert.equal(q.empty(), true);
    await q.put('fine');
    assert.equal(await q.get(), 'fine');
  });

  it('after close(), put and get throw ValueError; a pending get and a for-await loop end', async () => {
    const q = new mp.Queue<number>();
    const pending = q.get();
    const loop = (async () => {
      const seen = [];
      for await (const x of q) seen.push(x);
      return seen;
    })();
    q.close();
    await assert.rejects(pending, mp.ValueError);
    assert.deepEqual(await loop, []);
    await assert.rejects(q.put(1), mp.ValueError);
    assert.throws(() => q.getSync(), mp.ValueError);
    await q.joinThread();
    q.cancelJoinThread();
    const open = new mp.Queue();
    await assert.rejects(open.joinThread(), mp.StateError, 'joinThread before close, as Python asserts');
  });

  it('a put pending on a full queue when close() runs rejects with ValueError, as a pending get does', async () => {
    const closedWhile = (e: unknown): boolean => e instanceof mp.ValueError && /closed while put\(\) waited/.test((e as Error).message);
    // close() right after the call, and once the put sleeps for room.
    const q = new mp.Queue<number>(1);
    await q.put(1);
    const pending = q.put(2);
    q.close();
    await assert.rejects(pending, closedWhile);
    const r = new mp.Queue<number>(1);
    await r.put(1);
    const sleeping = r.put(2);
    const sleepers = (r.channel as unknown as { interrupters: Set<unknown> }).interrupters;
    await eventually(() => sleepers.size > 0, 10_000, 'the put to sleep');
    r.close();
    await assert.rejects(sleeping, closedWhile);
  });

  it('any falsy block but undefined does not wait (block: 0, null), as in Python', async () => {
    const q = new mp.Queue<number>(1);
    const bound = (): Promise<string> => new Promise((r) => setTimeout(r, 5000, 'waited').unref());
    const settle = (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: unknown) => e);
    assert.ok((await Promise.race([settle(q.get({ block: 0 as never, timeout: 60_000 })), bound()])) instanceof mp.Empty);
    assert.ok((await Promise.race([settle(q.get({ block: null as never })), bound()])) instanceof mp.Empty);
    await q.put(1, { block: undefined });
    assert.ok((await Promise.race([settle(q.put(2, { block: 0 as never, timeout: 60_000 })), bound()])) instanceof mp.Full);
    assert.throws(() => q.putSync(2, { block: '' as never }), mp.Full);
    assert.equal(q.getSync({ block: 0 as never }), 1);
    assert.throws(() => q.getSync({ block: null as never }), mp.Empty);
    q.close();
  });

  it('strings with lone surrogates arrive unchanged (short, long, spilled), through a Queue and a Pipe', async () => {
    const q = new mp.Queue<string>();
    const strings = ['\uD800', 'a\uDFFFb', 'x\uD83Dy', '\uD800'.repeat(2000), `${'z'.repeat(70_000)}\uDC00`, 'ok \u{1F600}'];
    for (const s of strings) q.putSync(s);
    for (const s of strings) assert.ok(q.getSync() === s, `${JSON.stringify(s.slice(0, 8))}… came back unchanged`);
    const [a, b] = mp.Pipe();
    for (const s of strings) await a.send(s);
    for (const s of strings) assert.ok((await b.recv()) === s, `${JSON.stringify(s.slice(0, 8))}… through a Pipe`);
    q.close();
    a.close();
    b.close();
  });

  it('a put into a ring full of unread items waits for a consumer and goes on as it makes room', async () => {
    const q = new mp.Queue<string>();
    const filler = 'y'.repeat(1000);
    const n = 2000; // ~2 MB of frames: four times the ring
    let put = 0;
    const producer = (async () => {
      for (; put < n; put++) await q.put(`${put} ${filler}`);
    })();
    await eventually(() => put > 100 && q.qsize() === put, 5000, 'the producer to fill the ring');
    const stalled = put;
    assert.ok(stalled < n, 'the producer waits');
    assert.throws(() => q.putNowait(`${n} ${filler}`), mp.Full);
    for (let i = 0; i < n; i++) assert.equal((await q.get({ timeout: 5000 })).split(' ')[0], String(i));
    await producer;
    assert.equal(q.empty(), true);
  });

  it('SimpleQueue: put, get, empty, close', async () => {
    const q = new mp.SimpleQueue<number>();
    assert.equal(q.empty(), true);
    await q.put(1);
    q.putSync(2);
    assert.equal(q.empty(), false);
    assert.equal(await q.get(), 1);
    assert.equal(q.getSync(), 2);
    q.close();
    await assert.rejects(q.put(3), mp.ValueError);
  });

  it('JoinableQueue: taskDone too many times is a ValueError; join waits for every task', async () => {
    const q = new mp.JoinableQueue<number>();
    assert.throws(() => q.taskDone(), mp.ValueError);
    await q.put(1);
    await q.put(2);
    let joined = false;
    const j = q.join().then(() => (joined = true));
    await q.get();
    q.taskDone();
    await new Promise((r) => setImmediate(r));
    assert.equal(joined, false);
    await q.get();
    q.taskDone();
    await j;
    q.joinSync();
    assert.throws(() => q.taskDone(), mp.ValueError);
  });
});

for (const method of METHODS) {
  describe(`Queue across '${method}' children`, () => {
    const ctx = mp.getContext(method);

    it('test_get/test_fork: items put before and by a child arrive in order; qsize follows', async () => {
      const q = new mp.Queue<number>();
      await q.put(1);
      assert.equal(q.qsize(), 1);
      const p = new ctx.Process({ target: fx.putMore, args: [q], module });
      p.start();
      await joined(p);
      assert.equal(p.exitCode, 0);
      assert.equal(q.qsize(), 5);
      const got = [];
      for (let i = 0; i < 5; i++) got.push(await q.get({ timeout: 5000 }));
      assert.deepEqual(got, [1, 2, 3, 4, 5]);
      assert.equal(q.qsize(), 0);
      assert.throws(() => q.getNowait(), mp.Empty);
    });

    it('4 producers × 2 consumers: every item arrives exactly once', async () => {
      const per = method === 'process' ? 50_000 : 25_000;
      const q = new mp.Queue<number>();
      const seen = mp.RawArray('B', 4 * per);
      const consumers = [0, 1].map(() => new ctx.Process({ target: fx.consumeMarking, args: [q, seen], module }));
      const producers = [0, 1, 2, 3].map((k) => new ctx.Process({ target: fx.produce, args: [q, k * per, per], module }));
      for (const p of [...consumers, ...producers]) p.start();
      for (const p of producers) await joined(p);
      await q.put(-1);
      await q.put(-1);
      for (const p of consumers) await joined(p);
      for (const p of [...consumers, ...producers]) assert.equal(p.exitCode, 0);
      let once = 0;
      const wrong: number[] = [];
      for (let i = 0; i < seen.length; i++) if (seen[i] === 1) once++; else if (wrong.length < 5) wrong.push(i);
      assert.equal(once, 4 * per, `items not delivered exactly once, e.g. ${wrong.join(', ')}`);
      assert.equal(q.empty(), true);
    });

    it('a producer SIGKILLed in a loop of puts loses at most its last item; the queue keeps working', async () => {
      const q = new mp.Queue<Uint8Array>();
      const progress = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.putForever, args: [q, progress], module });
      p.start();
      const got: number[] = [];
      while (got.length < 3000) got.push(seqOf(await q.get({ timeout: 20_000 })));
      p.kill();
      await joined(p);
      for (;;) {
        try {
          got.push(seqOf(q.getNowait()));
        } catch (e) {
          assert.ok(e instanceof mp.Empty);
          break;
        }
      }
      got.forEach((v, i) => assert.equal(v, i, `item ${i} is ${v}: lost or duplicated`));
      assert.ok(got.length >= progress.value - 1, `${progress.value} puts returned, ${got.length} items arrived`);
      await q.put(new Uint8Array([7]), { timeout: 5000 });
      assert.deepEqual(await q.get({ timeout: 5000 }), new Uint8Array([7]));
    });

    it('a consumer SIGKILLed in a loop of gets loses at most one item; the queue keeps working', async () => {
      const q = new mp.Queue<number>();
      const count = mp.Value('i', 0);
      const last = mp.Value('i', -1);
      const p = new ctx.Process({ target: fx.getForever, args: [q, count, last], module });
      p.start();
      const n = 20_000;
      for (let i = 0; i < n; i++) q.putSync(i);
      await eventually(() => count.value > 2000, 20_000, 'the consumer to get 2000 items');
      p.kill();
      await joined(p);
      const rest: number[] = [];
      for (;;) {
        try {
          rest.push(q.getNowait());
        } catch {
          break;
        }
      }
      const taken = count.value;
      const lost = n - taken - rest.length;
      assert.ok(lost === 0 || lost === 1, `${taken} taken by the child, ${rest.length} left: ${lost} lost`);
      rest.forEach((v, i) => assert.equal(v, n - rest.length + i, 'the items left are the tail, in order, once each'));
      await q.put(5);
      assert.equal(await q.get({ timeout: 5000 }), 5);
    });

    it('a producer killed inside its slot, mid-write: no half frame is ever read, the count is taken back, puts go on', async () => {
      const q = new mp.Queue<unknown>();
      await q.put('before');
      const inside = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.dieInsidePut, args: [q, inside], module });
      p.start();
      await waitForValue(inside, 1);
      p.kill();
      await joined(p);
      assert.equal(p.exitCode, -9);
      const e = await timed(() => q.put('after', { timeout: 5000 }));
      assert.ok(e < 2000, `the slot was reclaimed in ${e} ms`);
      assert.equal(q.qsize(), 2);
      assert.equal(await q.get(), 'before');
      assert.equal(await q.get(), 'after');
      assert.equal(q.empty(), true);
    });

    it('JoinableQueue: a producer killed inside its slot after counting its put leaves no phantom task once the next put repairs it; join() resolves', async () => {
      const q = new mp.JoinableQueue<unknown>();
      await q.put('before');
      const inside = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.dieInsidePut, args: [q, inside], module });
      p.start();
      await waitForValue(inside, 1);
      p.kill();
      await joined(p);
      await q.put('after', { timeout: 5000 });
      assert.equal(await q.get(), 'before');
      q.taskDone();
      assert.equal(await q.get(), 'after');
      q.taskDone();
      assert.throws(() => q.taskDone(), mp.ValueError, 'no task is left: the dead put was not counted');
      const bound = new Promise((r) => setTimeout(r, 5000, 'still waiting').unref());
      assert.equal(await Promise.race([q.join().then(() => 'joined'), bound]), 'joined');
    });

    it('a consumer killed inside its slot before taking: the item is still there for the next', async () => {
      const q = new mp.Queue<unknown>();
      await q.put('kept');
      const inside = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.dieInsideGet, args: [q, inside], module });
      p.start();
      await waitForValue(inside, 1);
      p.kill();
      await joined(p);
      assert.equal(p.exitCode, -9);
      assert.equal(await q.get({ timeout: 5000 }), 'kept');
      await q.put('next');
      assert.equal(q.qsize(), 1, 'the dead consumer\'s count was taken back');
    });

    it('a producer or consumer stopped inside its slot: timed and nowait puts and gets give Full/Empty at their deadline', async () => {
      const bound = (): Promise<string> => new Promise((r) => setTimeout(r, 10_000, 'still waiting').unref());
      const settle = (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: unknown) => e);
      for (const which of ['get', 'put'] as const) {
        const q = new mp.Queue<unknown>();
        await q.put('item');
        const inside = mp.Value('i', 0);
        const p = new ctx.Process({ target: fx.holdSlot, args: [q, which, inside], module });
        p.start();
        await waitForValue(inside, 1);
        const Expected = which === 'get' ? mp.Empty : mp.Full;
        const timed = which === 'get' ? q.get({ timeout: 200 }) : q.put('more', { timeout: 200 });
        assert.ok((await Promise.race([settle(timed), bound()])) instanceof Expected, `a ${which} with a timeout gave up`);
        assert.throws(() => (which === 'get' ? q.getNowait() : q.putNowait('more')), Expected);
        p.kill();
        await joined(p);
        // The slot is taken over from the dead holder: the queue goes on.
        await q.put('after', { timeout: 5000 });
        assert.equal(await q.get({ timeout: 5000 }), 'item');
        assert.equal(await q.get({ timeout: 5000 }), 'after');
        q.close();
      }
    });

    it('joining a child that put a 10 MB item does not deadlock; the item arrives whole', async () => {
      const q = new mp.Queue<Uint8Array>();
      const p = new ctx.Process({ target: fx.putLarge, args: [q], module });
      p.start();
      await joined(p, 20_000);
      assert.equal(p.exitCode, 0);
      const big = await q.get({ timeout: 5000 });
      assert.equal(big.length, 10 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4096) if (big[i] !== ((i >> 12) & 0xff)) assert.fail(`byte ${i} is ${big[i]}`);
    });

    it('a Value, a Lock and a Queue inside an item arrive live', async () => {
      const q = new mp.Queue<{ v: mp.Value; lock: mp.Lock; reply: mp.Queue<string> }>();
      const v = mp.Value('i', 41);
      const reply = new mp.Queue<string>();
      const p = new ctx.Process({ target: fx.useSharedItems, args: [q], module });
      p.start();
      await q.put({ v, lock: new mp.Lock(), reply });
      assert.equal(await reply.get({ timeout: 20_000 }), 'got 42');
      await joined(p);
      assert.equal(v.value, 42);
    });

    it('test_task_done: workers mark every item done and join() returns after the last', async () => {
      const q = new mp.JoinableQueue<number | null>();
      const sum = mp.Value('i', 0);
      const workers = [0, 1].map(() => new ctx.Process({ target: fx.doTasks, args: [q, sum], module }));
      for (const w of workers) w.start();
      for (let i = 0; i < 10; i++) await q.put(i);
      await q.join();
      assert.equal(sum.value, 45);
      await q.put(null);
      await q.put(null);
      await q.join();
      for (const w of workers) await joined(w);
    });

    it('async iteration in a child yields items in order until its sentinel', async () => {
      const q = new mp.Queue<number | null>();
      const out = new mp.Queue<number>();
      const p = new ctx.Process({ target: fx.iterateUntilSentinel, args: [q, out], module });
      p.start();
      for (const x of [1, 2, 3, null]) await q.put(x);
      await joined(p);
      assert.deepEqual([await out.get(), await out.get(), await out.get()], [10, 20, 30]);
    });
  });
}

describe('channel positions past 2^32 bytes', { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, () => {
  it('a producer idle while 2 GiB went through the ring by others sees a full ring as full (no frame overwritten)', async () => {
    const { Channel } = await import('../src/channel/channel.js');
    const capacity = 4 << 20;
    const busy = Channel.create(0, capacity);
    const idle = Channel.attach(busy.toHandle());
    const item = new Uint8Array(256 * 1024 - 16);
    for (let moved = 0; moved < 2 ** 31 + capacity; moved += item.length + 16) {
      busy.putSync(item, false, 0, false);
      busy.getSync(false, 0);
    }
    let n = 0;
    while (busy.putSync(new Uint8Array(item.length).fill(n + 1), false, 0, false)) n++;
    assert.ok(n > 0);
    assert.equal(idle.putSync(new Uint8Array(1000).fill(0xee), false, 0, false), false, 'a full ring refuses a put');
    for (let i = 0; i < n; i++) {
      const v = busy.getSync(false, 0) as Uint8Array;
      assert.ok(v.length === item.length && v.every((x) => x === i + 1), `item ${i} intact`);
    }
  });
});

describe('channel: a blocking put waiting for room', () => {
  it('a frame that must wrap past a quarter-free ring sleeps and asks giveUp, it does not spin', () => {
    const ch = Channel.create(0, 1024);
    assert.equal(ch.putSync(new Uint8Array(120), false, 0, false), true);
    assert.equal((ch.getSync(false, 0) as Uint8Array).length, 120);
    for (let i = 0; i < 6; i++) assert.equal(ch.putSync(new Uint8Array(120), false, 0, false), true);
    // 768 bytes unread, the tail near the end: 256 free, but a 128-byte item must wrap and needs more.
    let asked = 0;
    const cpu = process.cpuUsage();
    const put = ch.putSync(new Uint8Array(128), true, performance.now() + 2_000, false, () => ++asked > 0);
    const used = process.cpuUsage(cpu);
    assert.equal(put, false);
    assert.equal(asked, 1, 'giveUp was asked after the first sleep');
    assert.ok((used.user + used.system) / 1e3 < 500, `spent ${(used.user + used.system) / 1e3} ms of CPU`);
  });

  it('a take between a full put\'s attempt and its sleep wakes it (no 200 ms slice lost)', () => {
    const ch = Channel.create(1, 4096);
    assert.equal(ch.putSync(1, false, 0, false), true);
    // The consumer takes right after the producer's attempt found the queue full.
    const chan = ch as unknown as { commitSync: (...a: unknown[]) => number };
    const attempt = chan.commitSync.bind(ch);
    let injected = false;
    chan.commitSync = (...a: unknown[]) => {
      const r = attempt(...a);
      if (r !== 0 && !injected) {
        injected = true;
        assert.equal(ch.getSync(false, 0), 1);
      }
      return r;
    };
    const t0 = performance.now();
    assert.equal(ch.putSync(2, true, performance.now() + 5_000, false), true);
    assert.ok(injected);
    assert.ok(performance.now() - t0 < 100, `the put took ${(performance.now() - t0).toFixed(0)} ms`);
  });
});
