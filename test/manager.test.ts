/**
 * SyncManager: its containers and synchronization objects, proxies in
 * children of both start methods, nested proxies, reference counting.
 * Ported from CPython's _TestContainers, TestSyncManagerTypes and the
 * manager parts of _TestQueue and _TestEvent, plus our own.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as fx from './fixtures/manager-targets.js';
import { METHODS, eventually, waitForValue } from './helpers.js';
import { Op, Reply, readMessages } from '../src/managers/protocol.js';
import { frame, idOf, rawClient } from './manager-wire.js';

const gc = (globalThis as { gc?: () => void }).gc!;

for (const method of METHODS) {
  describe(`SyncManager (${method})`, () => {
    const ctx = mp.getContext(method);
    let manager: mp.SyncManager;

    before(async () => {
      manager = await ctx.Manager();
    });
    after(async () => {
      await manager.shutdown();
    });

    /** Runs `target(...args)` in a child of this start method; its exit code must be 0. */
    async function inChild(target: (...args: any[]) => unknown, ...args: unknown[]): Promise<void> {
      const p = new ctx.Process({ target, args, module: fx.MANAGER_TARGETS });
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0, `${target.name} exited ${p.exitCode}`);
    }

    it('lists: slices, extend, nested lists of proxies (CPython test_list)', async () => {
      const a = await manager.list(Array.from({ length: 10 }, (_, i) => i));
      assert.deepEqual(await a.toArray(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const b = await manager.list<number>();
      assert.deepEqual(await b.toArray(), []);
      await b.extend([0, 1, 2, 3, 4]);
      assert.deepEqual(await b.toArray(), [0, 1, 2, 3, 4]);
      assert.equal(await b.get(2), 2);
      assert.deepEqual(await b.slice(2, 10), [2, 3, 4]);
      await b.extend(await b.toArray()); // b *= 2
      assert.deepEqual(await b.toArray(), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
      const e = await manager.list([a, b]);
      const inner = (await e.toArray()) as unknown as mp.ListProxy<number>[];
      assert.ok(inner[0] instanceof mp.ListProxy);
      assert.deepEqual(await Promise.all(inner.map((l) => l.toArray())), [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [0, 1, 2, 3, 4, 0, 1, 2, 3, 4],
      ]);
      const f = await manager.list([a]);
      await (a as mp.ListProxy<unknown>).append('hello');
      const first = (await f.get(0)) as unknown as mp.ListProxy<unknown>;
      assert.deepEqual(await first.toArray(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 'hello']);
    });

    it('lists: Python semantics of indices, pop, remove, index, count, sort, insert', async () => {
      const l = await manager.list<unknown>([3, 1, 2]);
      assert.equal(await l.get(-1), 2);
      await assert.rejects(l.get(3), mp.IndexError);
      await assert.rejects(l.get(1.5 as number), mp.ValueError);
      await l.sort();
      assert.deepEqual(await l.toArray(), [1, 2, 3]);
      await l.sort({ reverse: true });
      assert.deepEqual(await l.toArray(), [3, 2, 1]);
      await l.insert(-1, ['Sam', 10]);
      assert.equal(await l.index(['Sam', 10]), 2, 'items compare by content');
      assert.equal(await l.count(['Sam', 10]), 1);
      assert.equal(await l.includes(['Sam', 10]), true);
      await l.remove(['Sam', 10]);
      await assert.rejects(l.remove('absent'), mp.ValueError);
      await l.append('x');
      await assert.rejects(l.sort(), TypeError, 'numbers and strings do not order, as in Python');
      assert.deepEqual(await l.toArray(), [3, 2, 1, 'x'], 'a failed sort leaves the list as it was');
      assert.equal(await l.pop(), 'x');
      assert.equal(await l.pop(0), 3);
      await l.delete(-1);
      assert.deepEqual(await l.toArray(), [2]);
      await l.clear();
      await assert.rejects(l.pop(), mp.IndexError);
    });

    it('lists: for await is live (CPython test_list_iter)', async () => {
      const a = await manager.list(Array.from({ length: 10 }, (_, i) => i));
      const seen: number[] = [];
      for await (const x of a) seen.push(x);
      assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const it = a[Symbol.asyncIterator]();
      await a.set(0, 100);
      assert.deepEqual(await it.next(), { value: 100, done: false });
      const grown: number[] = [];
      for await (const x of a) {
        grown.push(x);
        if (grown.length === 10) await a.append(10);
      }
      assert.equal(grown.length, 11, 'an append before the end is seen');
    });

    it('lists of list proxies stay live (CPython test_list_proxy_in_list)', async () => {
      const a = await manager.list([await manager.list([0, 1, 2]), await manager.list([0, 1, 2]), await manager.list([0, 1, 2])]);
      const inner = async (i: number) => (await a.get(i)) as unknown as mp.ListProxy<number>;
      await (await inner(0)).set(-1, 55);
      assert.deepEqual(await (await inner(0)).toArray(), [0, 1, 55]);
      for (const i of [1, 2]) assert.deepEqual(await (await inner(i)).toArray(), [0, 1, 2]);
      assert.equal(await (await inner(1)).pop(), 2);
      assert.equal(await (await inner(1)).len(), 2);
      for (const i of [0, 2]) assert.equal(await (await inner(i)).len(), 3);
      const b = await manager.list<unknown>();
      await b.append(b);
      const self = (await b.get(0)) as mp.ListProxy<unknown>;
      assert.equal(await self.len(), 1);
    });

    it('dicts: Map key semantics, tuple-like keys, copy, keys, items (CPython test_dict)', async () => {
      const d = await manager.dict<unknown, string>();
      for (let i = 65; i < 70; i++) await d.set(i, String.fromCharCode(i));
      assert.deepEqual(await d.copy(), new Map([65, 66, 67, 68, 69].map((i) => [i, String.fromCharCode(i)])));
      assert.deepEqual((await d.keys()).sort(), [65, 66, 67, 68, 69]);
      assert.deepEqual((await d.values()).sort(), ['A', 'B', 'C', 'D', 'E']);
      assert.deepEqual(await d.items(), [65, 66, 67, 68, 69].map((i) => [i, String.fromCharCode(i)]));
      await d.set('65', 'string key');
      assert.equal(await d.get(65), 'A', "1 and '1' are different keys");
      assert.equal(await d.get('65'), 'string key');
      await d.set([1, 2], 'pair');
      assert.equal(await d.get([1, 2]), 'pair', 'an equal array finds the entry');
      assert.equal(await d.get([2, 1]), undefined);
      assert.equal(await d.get('missing', 'fallback'), 'fallback');
      assert.equal(await d.pop([1, 2]), 'pair');
      await assert.rejects(d.pop('missing'), mp.KeyError);
      assert.equal(await d.pop('missing', 'fallback'), 'fallback');
      assert.equal(await d.setdefault('new', 'made'), 'made');
      assert.equal(await d.setdefault('new', 'other'), 'made');
      assert.deepEqual(await d.popitem(), ['new', 'made']);
      const keys: unknown[] = [];
      for await (const k of d) keys.push(k);
      assert.deepEqual(keys, [65, 66, 67, 68, 69, '65']);
      assert.equal(await d.delete(65), true);
      assert.equal(await d.delete(65), false);
      await d.update(new Map<unknown, string>([[7, 'seven']]));
      await d.update({ s: 'from an object' });
      assert.equal(await d.len(), 7);
      assert.equal((await d.toObject())['s'], 'from an object');
      await d.clear();
      assert.equal(await d.len(), 0);
    });

    it('dict keys: 0 and -0 are one key inside objects too, an object key whatever its property order, a Set whatever its order', async () => {
      const d = await manager.dict<unknown, string>();
      await d.set([0], 'zero');
      assert.equal(await d.get([-0]), 'zero', '[-0] finds [0], as -0 finds 0 in a Map');
      await d.set([-0], 'again');
      await d.set(-0, 'bare');
      assert.equal(await d.get(0), 'bare');
      await d.set({ a: 1, b: [2, { c: 3, d: 4 }] }, 'object');
      assert.equal(await d.get({ b: [2, { d: 4, c: 3 }], a: 1 }), 'object', 'property order does not matter');
      await d.set(new Set([1, 2]), 'set');
      assert.equal(await d.get(new Set([2, 1])), 'set');
      await d.set([NaN], 'nan');
      assert.equal(await d.get([NaN]), 'nan');
      assert.equal(await d.len(), 5);
      assert.equal(await d.get([1]), undefined);
      assert.equal(await d.get(['0']), undefined, "[0] and ['0'] differ, as 0 and '0' do");
      assert.equal(await d.get({ a: 1 }), undefined);
      assert.equal(await d.get({ a: 1, b: [2, { c: 3, d: 4 }], e: undefined }), undefined, 'a property more is another key');
      assert.equal(await d.pop([-0]), 'again');
      assert.equal(await d.len(), 4);
    });

    it('dicts of dict proxies stay live (CPython test_dict_proxy_nested)', async () => {
      let pets: mp.DictProxy<string, number> | null = await manager.dict({ ferrets: 2, hamsters: 4 });
      let supplies: mp.DictProxy<string, number> | null = await manager.dict({ water: 10, feed: 3 });
      const d = await manager.dict<string, mp.DictProxy<string, number>>({ pets, supplies });
      const at = async (k: string) => (await d.get(k))!;
      assert.equal(await supplies.get('water'), 10);
      assert.equal(await (await at('supplies')).get('water'), 10);
      await (await at('supplies')).set('blankets', 5);
      assert.equal(await supplies.get('blankets'), 5);
      await (await at('supplies')).set('water', 7);
      assert.equal(await supplies.get('water'), 7);
      const ids = [idOf(pets), idOf(supplies)];
      const dropped = [new WeakRef(pets), new WeakRef(supplies)];
      pets = null;
      supplies = null;
      for (const ref of dropped) await collected(ref);
      await uncounted(manager, ids);
      assert.equal(await (await at('pets')).get('ferrets'), 2, 'stored proxies keep their objects');
      await (await at('supplies')).set('blankets', 11);
      assert.equal(await (await at('supplies')).get('blankets'), 11);
      const pets2 = await at('pets');
      const supplies2 = await at('supplies');
      await d.clear();
      assert.equal(await d.len(), 0);
      assert.equal(await supplies2.get('water'), 7, 'a proxy read back keeps its object after the dict is cleared');
      assert.equal(await pets2.get('hamsters'), 4);
      const l = await manager.list([pets2, supplies2]);
      await ((await l.get(0)) as mp.DictProxy<string, number>).set('marmots', 1);
      assert.equal(await pets2.get('marmots'), 1);
      const outer = await manager.list<unknown>([[88, 99], l]);
      assert.ok(Array.isArray(await outer.get(0)), 'plain data stays data, not a proxy');
      const last = (await outer.get(-1)) as mp.ListProxy<mp.DictProxy<string, number>>;
      assert.equal(await (await last.get(-1)).get('feed'), 3);
    });

    it('a Queue inside a list and a dict (CPython test_nested_queue)', async () => {
      const a = await manager.list<mp.QueueProxy<number>>();
      await a.append(await manager.Queue<number>());
      await (await a.get(0)).put(123);
      assert.equal(await (await a.get(0)).get(), 123);
      const b = await manager.dict<number, mp.QueueProxy<number>>();
      await b.set(0, await manager.Queue<number>());
      await (await b.get(0))!.put(456);
      assert.equal(await (await b.get(0))!.get(), 456);
    });

    it('Namespace get, set, has, delete (CPython test_namespace)', async () => {
      const n = await manager.Namespace();
      await n.set('name', 'Bob');
      await n.set('job', 'Builder');
      assert.deepEqual([await n.get('name'), await n.get('job')], ['Bob', 'Builder']);
      assert.equal(await n.delete('job'), true);
      assert.deepEqual(await n.toObject(), { name: 'Bob' });
      assert.equal(await n.has('name'), true);
      assert.equal(await n.has('job'), false);
      assert.equal(await n.get('job'), undefined);
      await assert.rejects(n.set(1 as unknown as string, 'x'), mp.ValueError);
    });

    it('Value and Array hold their typecode; a child changes them', async () => {
      const v = await manager.Value('i', 41);
      const a = await manager.Array('d', [1.5, 2.5, 3.5]);
      const big = await manager.Value('q', 2n ** 40n);
      assert.equal(await big.get(), 2n ** 40n);
      await assert.rejects(v.set(1.5), mp.ValueError);
      await assert.rejects(manager.Value('z' as mp.Typecode), mp.ValueError);
      await inChild(fx.valueWorker, v, a);
      assert.equal(await v.get(), 42);
      assert.deepEqual(await a.toArray(), [1.5, 2.5, 99]);
      assert.equal(await a.len(), 3);
      await assert.rejects(a.get(3), mp.IndexError);
      const i = await manager.Value('b', 0);
      await i.set(200);
      assert.equal(await i.get(), -56, "a 'b' Value wraps as a signed byte does");
    });

    it('Queue: order, Empty and Full with timeouts, qsize; a waiting get holds up no other call', async () => {
      const q = await manager.Queue<number>(2);
      const waiting = q.get();
      assert.equal(await q.qsize(), 0, 'answered while a get waits on the same connection');
      await q.put(1);
      assert.equal(await waiting, 1);
      await q.put(2);
      await q.putNowait(3);
      assert.equal(await q.full(), true);
      await assert.rejects(q.putNowait(4), mp.Full);
      const t0 = performance.now();
      await assert.rejects(q.put(4, { timeout: 100 }), mp.Full);
      assert.ok(performance.now() - t0 >= 90);
      assert.equal(await q.get(), 2);
      assert.equal(await q.getNowait(), 3);
      assert.equal(await q.empty(), true);
      await assert.rejects(q.getNowait(), mp.Empty);
      await assert.rejects(q.get({ timeout: 50 }), mp.Empty);
      await assert.rejects(q.get({ block: false, timeout: 10_000 }), mp.Empty);
      const full = await manager.Queue<number>(1);
      await full.put(1);
      const blocked = full.put(2);
      assert.equal(await full.get(), 1);
      await blocked;
      assert.equal(await full.get(), 2, 'a waiting put goes in once there is room');
    });

    it('JoinableQueue: taskDone and join', async () => {
      const q = await manager.JoinableQueue<string>();
      await q.put('a');
      await q.put('b');
      let joined = false;
      const joining = q.join().then(() => (joined = true));
      await q.get();
      await q.taskDone();
      assert.equal(joined, false);
      await q.get();
      await q.taskDone();
      await joining;
      await assert.rejects(q.taskDone(), mp.ValueError);
    });

    it('Event: set, clear, wait with timeouts (CPython _TestEvent, test_event)', async () => {
      const e = await manager.Event();
      assert.equal(await e.isSet(), false);
      assert.equal(await e.wait(0), false);
      const t0 = performance.now();
      assert.equal(await e.wait(100), false);
      assert.ok(performance.now() - t0 >= 90);
      const waiting = e.wait();
      await e.set();
      assert.equal(await waiting, true);
      await inChild(fx.eventWorker, e);
      assert.equal(await e.isSet(), false, 'the child cleared it');
      assert.equal(await e.wait(1), false);
    });

    it('Lock, RLock, Semaphore, BoundedSemaphore, Condition, Barrier used in a child (CPython TestSyncManagerTypes)', async () => {
      const [lock, rlock, sem, bounded, cond, barrier] = await Promise.all([
        manager.Lock(),
        manager.RLock(),
        manager.Semaphore(),
        manager.BoundedSemaphore(),
        manager.Condition(),
        manager.Barrier(5),
      ]);
      await inChild(fx.syncTypesWorker, lock, rlock, sem, bounded, cond, barrier);
      // Unlike Python: the child ended holding the Lock, and the server let it go.
      assert.equal(await lock.acquire({ block: false }), true);
      await lock.release();
      await assert.rejects(lock.release(), mp.ValueError, 'released twice');
      assert.equal(await rlock.acquire(), true);
      assert.equal(await rlock.acquire(), true);
      await rlock.release();
      await rlock.release();
      await assert.rejects(rlock.release(), mp.ValueError);
      assert.equal(await sem.getValue(), 0, 'a semaphore has no holder: the unit stays taken');
      await sem.release();
      await bounded.release();
      await assert.rejects(bounded.release(), mp.ValueError);
      assert.equal(await cond.acquire({ block: false }), true, 'the child released the condition');
      await cond.release();
      assert.equal(await barrier.broken(), false);
    });

    it('Lock: timeouts, withLock, and a waiter handed the lock in order', async () => {
      const lock = await manager.Lock();
      assert.equal(await lock.acquire(), true);
      assert.equal(await lock.acquire({ timeout: 50 }), false);
      assert.equal(await lock.acquire({ block: false }), false);
      const waiting = lock.acquire();
      await lock.release();
      assert.equal(await waiting, true);
      assert.equal(await lock.locked(), true);
      await lock.release();
      assert.equal(await lock.withLock(async () => 'inside'), 'inside');
      assert.equal(await lock.locked(), false);
    });

    it('Condition: wait, notify and waitFor across processes', async () => {
      const cond = await manager.Condition(await manager.Lock());
      const ns = await manager.Namespace({ flag: false });
      const stage = mp.Value('i', 0);
      await assert.rejects(cond.notify(), mp.StateError, 'notify needs the lock');
      const p = new ctx.Process({ target: fx.conditionWaiter, args: [cond, ns, stage], module: fx.MANAGER_TARGETS });
      p.start();
      // The child sets the stage holding the lock: once we hold it, the child waits.
      await waitForValue(stage, 1);
      await cond.withLock(() => cond.notify());
      await waitForValue(stage, 2);
      await cond.withLock(async () => {
        await ns.set('flag', true);
        await cond.notifyAll();
      });
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.equal(await ns.get('waited'), true, "the child's wait() was notified");
      assert.equal(await ns.get('waitedFor'), true, "the child's waitFor() saw the flag");
      await cond.acquire();
      assert.equal(await cond.wait(50), false, 'no notify: the timeout');
      await cond.release();
    });

    it('RLock and Lock: concurrent withLock tasks of one process exclude each other; nested withLock re-enters', async () => {
      const ns = await manager.Namespace({ x: 0 });
      for (const lock of [await manager.RLock(), await manager.Lock()]) {
        await ns.set('x', 0);
        await Promise.all(
          Array.from({ length: 8 }, () =>
            lock.withLock(async () => {
              const x = await ns.get<number>('x');
              await ns.get('x'); // another round trip inside the critical section
              await ns.set('x', (x ?? 0) + 1);
            }),
          ),
        );
        assert.equal(await ns.get('x'), 8, 'no increment lost');
      }
      const rlock = await manager.RLock();
      assert.equal(await rlock.withLock(() => rlock.withLock(async () => 'nested')), 'nested');
      let inside = false;
      let leave = (): void => {};
      const holding = rlock.withLock(() => {
        inside = true;
        return new Promise<void>((resolve) => (leave = resolve));
      });
      await eventually(() => inside, 5_000, 'a task to hold the RLock');
      assert.equal(await rlock.acquire({ block: false }), false, 'another task of this process does not re-enter it');
      await assert.rejects(rlock.release(), mp.ValueError, 'nor release it');
      leave();
      await holding;
      assert.equal(await rlock.locked(), false);
    });

    it('Condition (default RLock): a task woken by another task of its process resumes only once the notifier lets go', async () => {
      const cond = await manager.Condition();
      const ns = await manager.Namespace({ x: 0 });
      let waiting = false;
      let notifierInside = false;
      let overlap: boolean | undefined;
      const waiter = cond.withLock(async () => {
        waiting = true;
        const notified = await cond.wait(10_000);
        overlap = notifierInside;
        return notified;
      });
      await eventually(() => waiting, 5_000, 'a task to wait on the Condition');
      await cond.withLock(async () => {
        notifierInside = true;
        await cond.notify();
        // Round trips to the server while holding the lock: the woken task must not run meanwhile.
        for (let i = 0; i < 5; i++) await ns.get('x');
        notifierInside = false;
      });
      assert.equal(await waiter, true, 'notified');
      assert.equal(overlap, false, 'the woken task waited for the notifier to release');
      let inside = false;
      let leave = (): void => {};
      const holding = cond.withLock(() => {
        inside = true;
        return new Promise<void>((resolve) => (leave = resolve));
      });
      await eventually(() => inside, 5_000, 'a task to hold the Condition');
      await assert.rejects(cond.notify(), mp.StateError, 'notify from a task that does not hold the lock');
      leave();
      await holding;
    });

    it('Barrier: indices, timeout breaks it, reset', async () => {
      const b = await manager.Barrier(3);
      const indices = await Promise.all([b.wait(), b.wait(), b.wait()]);
      assert.deepEqual([...indices].sort(), [0, 1, 2]);
      await assert.rejects(b.wait(50), mp.BrokenBarrierError);
      assert.equal(await b.broken(), true);
      await b.reset();
      assert.equal(await b.broken(), false);
      assert.equal(await b.nWaiting(), 0);
      await assert.rejects(manager.Barrier(2, { action: (() => {}) as never }), mp.ValueError);
    });

    it('8 children × 1,000 appends to one list give exactly 8,000', async () => {
      const list = await manager.list<number>();
      const children = Array.from({ length: 8 }, (_, i) => new ctx.Process({ target: fx.appendMany, args: [list, 1000, i], module: fx.MANAGER_TARGETS }));
      for (const p of children) p.start();
      for (const p of children) await p.join(60_000);
      assert.deepEqual(children.map((p) => p.exitCode), [0, 0, 0, 0, 0, 0, 0, 0]);
      const items = await list.toArray();
      assert.equal(items.length, 8000);
      for (let i = 0; i < 8; i++) assert.equal(items.filter((x) => x === i).length, 1000);
    });

    it('a proxy reaches a child through an mp.Queue and an mp.Pipe, and reconnects there', async () => {
      const list = await manager.list<string>();
      const q = new mp.Queue<mp.ListProxy<string>>();
      const p = new ctx.Process({ target: fx.appendFromQueue, args: [q, 'through a queue'], module: fx.MANAGER_TARGETS });
      p.start();
      await q.put(list);
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      const [mine, theirs] = mp.Pipe();
      const p2 = new ctx.Process({ target: fx.appendFromPipe, args: [theirs], module: fx.MANAGER_TARGETS });
      p2.start();
      theirs.close();
      await mine.send(list);
      await p2.join(30_000);
      assert.equal(p2.exitCode, 0);
      mine.close();
      assert.deepEqual(await list.toArray(), ['through a queue', 'through a pipe']);
    });

    it('objects are freed when no proxy anywhere needs them, even when the sender drops its proxy at once', async () => {
      // A manager of its own: no other test's proxies are collected meanwhile.
      const own = await ctx.Manager();
      // In a function of its own, so that no frame of this one still holds the proxy.
      const sendAndDrop = async () => {
        const list = await own.list<string>(['made']);
        assert.equal((await own.debugInfo()).objects, 1);
        const p = new ctx.Process({ target: fx.appendChild, args: [list, 'child'], module: fx.MANAGER_TARGETS });
        p.start();
        return { p, keep: new WeakRef(list) };
      };
      const { p, keep } = await sendAndDrop();
      // The parent's proxy goes before the child has connected: the handle in flight keeps the object.
      await collected(keep);
      await p.join(30_000);
      assert.equal(p.exitCode, 0, 'the child used the list after its sender dropped it');
      assert.equal(await waitForObjects(own, 0), 0, 'the child ended and the parent dropped its proxy: the object is freed');
      await own.shutdown();
    });

    it("a proxy a child sends up and then ends keeps its object until the receiver's proxy is dropped", async () => {
      const own = await ctx.Manager();
      const out = new mp.Queue<mp.ListProxy<string>>();
      const p = new ctx.Process({ target: fx.makeAndSendUp, args: [own.address!, out], module: fx.MANAGER_TARGETS });
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      const received = async () => {
        const list = await out.get({ timeout: 10_000 });
        assert.deepEqual(await list.toArray(), ['made by a child that has ended']);
        return new WeakRef(list);
      };
      await collected(await received());
      assert.equal(await waitForObjects(own, 0), 0);
      await own.shutdown();
    });

    it('a proxy a child sends just before process.exit() arrives live, after the sender of its args dropped its own', async () => {
      const out = new mp.Queue<mp.ListProxy<string>>();
      const [p, mine] = await (async () => {
        const list = await manager.list(['made']);
        const child = new ctx.Process({ target: fx.forwardAndExit, args: [list, out], module: fx.MANAGER_TARGETS });
        child.start();
        return [child, new WeakRef(list)] as const;
      })();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      await collected(mine);
      const back = await out.get({ timeout: 10_000 });
      assert.deepEqual(await back.toArray(), ['made', 'child was here']);
    });

    it('a proxy a child forwards from its args without using it, then exits before connecting, arrives live', async () => {
      const out = new mp.Queue<mp.ListProxy<string>>();
      const [p, mine] = await (async () => {
        const list = await manager.list(['made']);
        const child = new ctx.Process({ target: fx.forwardUnusedAndExit, args: [list, out], module: fx.MANAGER_TARGETS });
        child.start();
        return [child, new WeakRef(list)] as const;
      })();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      await collected(mine);
      const back = await out.get({ timeout: 10_000 });
      assert.deepEqual(await back.toArray(), ['made']);
    });

    it("with a non-default authkey, a proxy a child takes from a Queue while its args' proxy is still connecting uses that key", async () => {
      const own = new mp.SyncManager({ authkey: 'not the default', startMethod: method });
      await own.start();
      try {
        const [a, b] = [await own.list([1]), await own.list([1, 2])];
        const q = new mp.Queue<mp.ListProxy>();
        const out = new mp.Queue<unknown[]>();
        await q.put(b);
        const p = new ctx.Process({ target: fx.lengthsOfArgAndQueued, args: [a, q, out], module: fx.MANAGER_TARGETS });
        p.start();
        assert.deepEqual(await out.get({ timeout: 20_000 }), [1, 2]);
        await p.join(20_000);
      } finally {
        await own.shutdown();
      }
    });

    it('short strings with lone surrogates, and holes and extra properties of short arrays, arrive as they were', async () => {
      const l = await manager.list<unknown>();
      await l.append('a\ud800b');
      assert.equal(await l.get(0), 'a\ud800b');
      const d = await manager.dict<string, string>();
      await d.set('\ud800', 'high');
      await d.set('\udc00', 'low');
      assert.deepEqual(await d.keys(), ['\ud800', '\udc00']);
      await l.append([1, , 3]);
      assert.equal(1 in ((await l.get(1)) as unknown[]), false, 'a hole stays a hole');
      await l.append(Object.assign([1, 2], { tag: 'x' }));
      assert.equal(((await l.get(2)) as unknown as { tag: string }).tag, 'x');
    });

    it('refuses what a manager cannot hold, naming it', async () => {
      const l = await manager.list<unknown>();
      await assert.rejects(l.append(() => 1), (e: Error) => e instanceof mp.SerializationError && /args\[0\] is a function/.test(e.message));
      await assert.rejects(l.append({ deep: [new mp.Lock()] }), (e: Error) => e instanceof mp.SerializationError && /args\[0\]\.deep\[0\]/.test(e.message));
      await assert.rejects(l.append(new WeakMap()), mp.SerializationError);
      await assert.rejects(manager.create('nonsense'), (e: Error) => e instanceof mp.ValueError && /unknown typeid 'nonsense'/.test(e.message));
      await assert.rejects(
        manager.Array('d', 2 ** 23 + 1),
        (e: Error) => e instanceof mp.ValueError && /needs 67108872 bytes, more than this manager's limit of 67108864 \(maxArrayBytes\)/.test(e.message),
      );
      await assert.rejects(l.callMethod('__proto__'), mp.RemoteError);
      await assert.rejects(l.callMethod('constructor'), mp.RemoteError);
      await assert.rejects(l.callMethod('items'), (e: Error) => e instanceof mp.RemoteError && /not an exposed method/.test(e.message));
      assert.equal(await l.len(), 0);
    });
  });
}

/**
 * Waits (bounded) until the server counts no reference of objects `ids`:
 * the DECREFs of their proxies arrived, and a call naming them fails.
 */
async function uncounted(manager: mp.SyncManager, ids: number[]): Promise<void> {
  const raw = await rawClient(manager.address!, mp.currentProcess().authkey);
  try {
    const deadline = Date.now() + 10_000;
    for (let req = 1; ; req++) {
      await raw.sendBytes(frame(...ids.map((id, i) => [Op.CALL, req * 10 + i, id, 'len', [], false])));
      const answers: unknown[][] = [];
      while (answers.length < ids.length) answers.push(...readMessages(await raw.recvBytes()));
      if (answers.every((m) => m[0] === Reply.ERR && /holds no object/.test((m[2] as { message: string }).message))) return;
      if (Date.now() > deadline) assert.fail(`the server still counts references of ${ids.join(', ')}: ${JSON.stringify(answers)}`);
      gc();
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    raw.close();
  }
}

/** Collects garbage until `ref`'s object is gone (bounded). */
async function collected(ref: WeakRef<object>): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    // deref() keeps its object until the end of the job: collect in a later one.
    await new Promise((r) => setImmediate(r));
    gc();
    await new Promise((r) => setImmediate(r));
    if (ref.deref() === undefined) return;
    if (Date.now() > deadline) throw new Error('the proxy was not collected within 5 s');
  }
}

async function waitForObjects(manager: mp.SyncManager, expected: number): Promise<number> {
  let n = -1;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    gc();
    await new Promise((r) => setImmediate(r));
    n = (await manager.debugInfo()).objects;
    if (n === expected) return n;
    await new Promise((r) => setTimeout(r, 20));
  }
  return n;
}
