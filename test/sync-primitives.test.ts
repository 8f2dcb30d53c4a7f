/**
 * Semaphore, BoundedSemaphore, Condition, Event and Barrier across real
 * children of both start methods. From CPython's _test_multiprocessing.py:
 * _TestSemaphore, _TestCondition (notify, notify_all, notify_n, timeout,
 * waitfor, waitfor_timeout, wait_result), _TestEvent, _TestBarrier; plus
 * ours: killed waiters swallow nothing a live waiter needs, timeouts within
 * 50 ms, many async tasks of one thread, the Sync forms, bad input.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as fx from './fixtures/sync-targets.js';
import { readFileSync, readdirSync } from 'node:fs';
import { METHODS, eventually } from './helpers.js';
import { isAlive, threadIdOf } from '../src/liveness.js';

const module = fx.SYNC_TARGETS;

/** The SLEEPERS word of a primitive: how many waits may be asleep on it now. */
function sleepers(obj: mp.Semaphore | mp.Event | mp.Condition | mp.Barrier): number {
  const words = (obj as unknown as { words: Int32Array }).words;
  return Atomics.load(words, obj instanceof mp.Condition ? 1 : 2);
}

/**
 * Asserts `call` settles false (or rejects with `error`) no earlier than
 * `ms` and within 50 ms after it. Never early; a late return is tried again
 * (twice at most), since on a loaded machine the scheduler can delay any
 * wake-up: each try calls `call` afresh, so it must start from the same state.
 */
async function timesOutAfter(ms: number, call: () => unknown, error?: Function): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const start = performance.now();
    if (error) await assert.rejects(async () => await call(), error as never);
    else assert.equal(await call(), false);
    const took = performance.now() - start;
    assert.ok(took >= ms - 1, `returned after ${took.toFixed(1)} ms, before its ${ms} ms timeout`);
    if (took < ms + 50) return;
    assert.ok(attempt < 3, `returned after ${took.toFixed(1)} ms, more than 50 ms past its ${ms} ms timeout (3 tries)`);
  }
}

/**
 * Whether a thread of process `pid` sleeps in futex_waitv (syscall 449 on
 * x86-64): only the addon's async waiter thread calls it, and it is made
 * for the first async wait, so this says that wait is queued in the kernel.
 */
function inFutexWaitv(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((tid) => {
      try {
        return readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'latin1').startsWith('449 ');
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

const tick = () => new Promise((r) => setImmediate(r));

/** Whether thread `tid` exists and is not a zombie, read straight from /proc (no memo). */
function threadRuns(tid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${tid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** A primitive's int32 words. */
function wordsOf(obj: object): Int32Array {
  return (obj as { words: Int32Array }).words;
}

/** `promise`, or a rejection naming what is still pending once `ms` passed. */
async function settlesWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether process `pid` is stopped (state T in /proc). */
function isStopped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
}

/**
 * Kills `child` (for real) at a moment when `inWindow()` holds, if it can:
 * a 'process' child is stopped (SIGSTOP) at random moments and looked at
 * while it stands still, then SIGKILLed there or let go on; a 'thread'
 * child cannot be stopped alone, so it is killed at a random moment and
 * looked at afterwards. @returns whether the kill landed in the window.
 */
async function killInWindow(child: mp.Process, method: mp.StartMethod, inWindow: () => boolean): Promise<boolean> {
  const pause = () => new Promise((r) => setTimeout(r, Math.random() * 3));
  if (method === 'thread') {
    await pause();
    child.kill();
    await child.join(10_000);
    return inWindow();
  }
  for (let probe = 0; probe < 200; probe++) {
    await pause();
    process.kill(child.pid!, 'SIGSTOP');
    await eventually(() => isStopped(child.pid!), 10_000, 'the child to stop');
    if (inWindow()) {
      child.kill();
      await child.join(10_000);
      return true;
    }
    process.kill(child.pid!, 'SIGCONT');
  }
  child.kill();
  await child.join(10_000);
  return false;
}

describe('Semaphore and BoundedSemaphore', () => {
  it('counts units (CPython test_semaphore, test_bounded_semaphore)', async () => {
    for (const sem of [new mp.Semaphore(2), new mp.BoundedSemaphore(2)]) {
      assert.equal(await sem.acquire(), true);
      assert.equal(sem.getValue(), 1);
      assert.equal(sem.acquireSync(), true);
      assert.equal(sem.getValue(), 0);
      assert.equal(await sem.acquire({ block: false }), false);
      assert.equal(sem.acquireSync({ block: false }), false);
      sem.release();
      assert.equal(sem.getValue(), 1);
      sem.release();
      assert.equal(sem.getValue(), 2);
    }
    assert.equal(new mp.Semaphore().getValue(), 1);
    assert.equal(String(new mp.Semaphore(3)), '<Semaphore(value=3)>');
    assert.equal(String(new mp.BoundedSemaphore(3)), '<BoundedSemaphore(value=3, maxvalue=3)>');
    const plain = new mp.Semaphore(0);
    plain.release();
    plain.release();
    assert.equal(plain.getValue(), 2, 'a plain Semaphore may go past its initial value');
  });

  it('BoundedSemaphore: a release past the initial value throws ValueError and changes nothing', () => {
    const sem = new mp.BoundedSemaphore(1);
    assert.throws(() => sem.release(), (e: Error) => e instanceof mp.ValueError && /released too many times/.test(e.message));
    assert.equal(sem.getValue(), 1);
    sem.acquireSync();
    sem.release();
    assert.throws(() => sem.release(), mp.ValueError);
  });

  it('timeouts: honoured within 50 ms, negative means 0, { block: false } ignores it (CPython test_timeout)', async () => {
    const sem = new mp.Semaphore(0);
    await timesOutAfter(100, () => sem.acquire({ timeout: 100 }));
    await timesOutAfter(100, () => sem.acquireSync({ timeout: 100 }));
    await timesOutAfter(0, () => sem.acquire({ timeout: -5 }));
    await timesOutAfter(0, () => sem.acquire({ block: false, timeout: 10_000 }));
    await timesOutAfter(0, () => sem.acquireSync({ block: false, timeout: 10_000 }));
  });

  it('refuses bad input with errors naming the value and the fix', async () => {
    for (const bad of [-1, 1.5, '2', NaN]) {
      assert.throws(() => new mp.Semaphore(bad as number), (e: Error) => e instanceof mp.ValueError && e.message.includes(String(bad === '2' ? '"2"' : bad)) && /integer from 0/.test(e.message));
    }
    assert.throws(() => new mp.BoundedSemaphore(-1), (e: Error) => e instanceof mp.ValueError && /BoundedSemaphore value/.test(e.message));
    const sem = new mp.Semaphore(0);
    await assert.rejects(async () => sem.acquire({ timeout: '10' as never }), (e: Error) => e instanceof mp.ValueError && /"10"/.test(e.message));
    assert.throws(() => sem.acquire(100 as never), (e: Error) => e instanceof mp.ValueError && /options object/.test(e.message));
    assert.throws(() => sem.acquireSync({ timeout: {} as never }), mp.ValueError);
  });

  it('withLock and withLockSync release however the callback ends; many async tasks of one thread share the units', async () => {
    const sem = new mp.Semaphore(3);
    await assert.rejects(sem.withLock(async () => {
      await tick();
      throw new RangeError('inside');
    }), RangeError);
    assert.equal(sem.getValue(), 3);
    assert.equal(sem.withLockSync(() => sem.getValue()), 2);
    let inside = 0;
    let most = 0;
    const tasks = Array.from({ length: 30 }, (_, i) =>
      sem.withLock(async () => {
        most = Math.max(most, ++inside);
        await tick();
        await tick();
        inside--;
        return i;
      }),
    );
    assert.deepEqual(await Promise.all(tasks), Array.from({ length: 30 }, (_, i) => i));
    assert.equal(most, 3);
    assert.equal(sem.getValue(), 3);
  });

  for (const method of METHODS) {
    describe(`with '${method}' children`, () => {
      const ctx = mp.getContext(method);

      it('travels live: children never hold more units than it has', async () => {
        const sem = new mp.BoundedSemaphore(2);
        const inside = mp.Value('i', 0);
        const most = mp.Value('i', 0);
        const procs = [0, 1, 2].map(() => new ctx.Process({ target: fx.semaphoreUser, args: [sem, inside, most, 20], module }));
        procs.forEach((p) => p.start());
        await Promise.all(procs.map((p) => p.join(30_000)));
        assert.deepEqual(procs.map((p) => p.exitCode), [0, 0, 0]);
        assert.ok(most.value >= 1 && most.value <= 2, `at most 2 inside at once, saw ${most.value}`);
        assert.equal(sem.getValue(), 2);
      });

      it('a waiter killed mid-wait does not swallow the release a live waiter needs', async () => {
        const sem = new mp.Semaphore(0);
        const ready = new mp.Semaphore(0);
        // The live waiter blocks in its own futex wait.
        const live = new ctx.Process({ target: fx.semaphoreWaiter, args: [sem, ready, false], module });
        live.start();
        assert.equal(await ready.acquire({ timeout: 30_000 }), true);
        await eventually(() => sleepers(sem) === 1, 30_000, 'the live waiter to sleep');
        // The victim's async wait sleeps in its waiter thread while its own
        // thread never runs JavaScript again: the release wakes it, and it
        // cannot act on the wake (the moment a woken waiter dies), under both
        // start methods. The release must come within the wait's 1 s slice
        // (after it the victim is no longer asleep to be woken): a victim
        // seen asleep too late is killed and another one tried.
        const since = mp.Value('d', 0);
        for (let attempt = 1; ; attempt++) {
          assert.ok(attempt <= 5, 'no victim was seen asleep within 800 ms of its wait (5 tries)');
          const victim = new ctx.Process({ target: fx.semaphoreWaiterStuck, args: [sem, ready, since], module });
          victim.start();
          assert.equal(await ready.acquire({ timeout: 30_000 }), true);
          const inKernel = () => method === 'thread' || process.platform !== 'linux' || process.arch !== 'x64' || inFutexWaitv(victim.pid!);
          await eventually(inKernel, 30_000, 'the victim to sleep');
          const inTime = Date.now() - since.value < 800;
          if (inTime) sem.release();
          victim.kill();
          await victim.join(10_000);
          assert.equal(victim.exitCode, -9);
          if (inTime) break;
        }
        await live.join(20_000);
        assert.equal(live.exitCode, 0, 'the live waiter got the unit');
        assert.equal(sem.getValue(), 0);
      });
    });
  }
});

describe('Condition', () => {
  it('wait and notify need the lock held by the running code (StateError, Python\'s RuntimeError)', async () => {
    const cond = new mp.Condition();
    assert.throws(() => cond.notify(), (e: Error) => e instanceof mp.StateError && /withLock/.test(e.message));
    assert.throws(() => cond.notifyAll(), mp.StateError);
    await assert.rejects(cond.wait(10), mp.StateError);
    assert.throws(() => cond.waitSync(10), mp.StateError);
    assert.throws(() => new mp.Condition({} as never), (e: Error) => e instanceof mp.ValueError && /Lock or mp.RLock/.test(e.message));
    await cond.withLock(() => assert.throws(() => cond.notify('1' as never), mp.ValueError));
    await cond.withLock(async () => assert.rejects(cond.wait('x' as never), mp.ValueError));
  });

  it('wait times out within 50 ms and returns false; an RLock held deeply is released fully and restored (CPython test_timeout, wait_result)', async () => {
    const lock = new mp.RLock();
    const cond = new mp.Condition(lock);
    lock.acquireSync();
    lock.acquireSync();
    await timesOutAfter(100, () => cond.wait(100));
    await timesOutAfter(100, () => cond.waitSync(100));
    await timesOutAfter(0, () => cond.wait(-1));
    // Still held twice: two releases, then a third is an error.
    lock.release();
    lock.release();
    assert.throws(() => lock.release(), mp.ValueError);
    await cond.withLock(async () => timesOutAfter(100, () => cond.waitFor(() => false, 100)));
    assert.equal(await cond.withLock(() => cond.waitForSync(() => 7, 0)), 7);
  });

  it('notify(n) and notifyAll among many async tasks of one thread wake exactly that many', async () => {
    const cond = new mp.Condition(new mp.Lock());
    let woken = 0;
    let sleeping = 0;
    const waiters = Array.from({ length: 12 }, () =>
      cond.withLock(async () => {
        sleeping++;
        const ok = await cond.wait();
        woken++;
        return ok;
      }),
    );
    await eventually(() => sleeping === 12, 10_000, 'the tasks to wait');
    await cond.withLock(() => cond.notify(5));
    await eventually(() => woken === 5, 10_000, 'five tasks to wake');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(woken, 5, 'notify(5) woke five');
    await cond.withLock(() => cond.notify());
    await eventually(() => woken === 6, 10_000, 'one more');
    await cond.withLock(() => cond.notifyAll());
    assert.deepEqual(await Promise.all(waiters), Array(12).fill(true));
    assert.equal(woken, 12);
  });

  it('a task that starts waiting after a notify cannot take the notification meant for an earlier waiter of its thread', async () => {
    const cond = new mp.Condition(new mp.Lock());
    let waiting = false;
    const early = cond.withLock(async () => {
      waiting = true;
      return cond.wait(5_000);
    });
    await eventually(() => waiting, 10_000, 'the early task to wait');
    // Holding the lock, so the early wait was entered before this notify.
    await cond.withLock(() => cond.notify(1));
    // Before the early task has woken, a later task waits: it must not take the notification.
    const late = cond.withLock(() => cond.wait(300));
    assert.equal(await late, false, 'the later wait timed out');
    assert.equal(await early, true, 'the earlier wait got the notification');
    assert.match(String(cond), /, 0\)>$/, 'no wait is left counted');
  });

  it('notify(1.5) wakes two, as Python\'s, and leaves the condition usable', async () => {
    const cond = new mp.Condition(new mp.Lock());
    let sleeping = 0;
    const waiters = Array.from({ length: 3 }, () =>
      cond.withLock(async () => {
        sleeping++;
        return cond.wait(2_000);
      }),
    );
    await eventually(() => sleeping === 3, 10_000, 'the tasks to wait');
    await cond.withLock(() => cond.notify(1.5));
    const results = await Promise.all(waiters);
    assert.deepEqual(results, [true, true, false]);
    assert.match(String(cond), /, 0\)>$/);
    const again = cond.withLock(() => cond.wait(5_000));
    await eventually(() => /, 1\)>$/.test(String(cond)), 10_000, 'a new wait');
    await cond.withLock(() => cond.notify(1));
    assert.equal(await again, true);
  });

  for (const method of METHODS) {
    describe(`with '${method}' children`, () => {
      const ctx = mp.getContext(method);

      it('notify wakes one at a time, notifyAll the rest, notify(n) n (CPython test_notify, test_notify_all, test_notify_n)', async () => {
        const cond = new mp.Condition();
        const sleeping = new mp.Semaphore(0);
        const woken = new mp.Semaphore(0);
        const procs = [
          new ctx.Process({ target: fx.conditionWaiter, args: [cond, sleeping, woken], module }),
          new ctx.Process({ target: fx.conditionWaiterSync, args: [cond, sleeping, woken], module }),
          new ctx.Process({ target: fx.conditionWaiter, args: [cond, sleeping, woken], module }),
        ];
        procs.forEach((p) => p.start());
        // A task of this thread waits too.
        const mine = fx.conditionWaiter(cond, sleeping, woken);
        for (let i = 0; i < 4; i++) assert.equal(await sleeping.acquire({ timeout: 30_000 }), true);
        // Each waiter released `sleeping` holding the lock: once we hold it, all four wait.
        await cond.withLock(() => cond.notify());
        assert.equal(await woken.acquire({ timeout: 20_000 }), true);
        assert.equal(await woken.acquire({ timeout: 100 }), false, 'notify() woke only one');
        await cond.withLock(() => cond.notify(2));
        assert.equal(await woken.acquire({ timeout: 20_000 }), true);
        assert.equal(await woken.acquire({ timeout: 20_000 }), true);
        assert.equal(await woken.acquire({ timeout: 100 }), false, 'notify(2) woke two');
        await cond.withLock(() => cond.notifyAll());
        assert.equal(await woken.acquire({ timeout: 20_000 }), true);
        await Promise.all([mine, ...procs.map((p) => p.join(20_000))]);
        assert.deepEqual(procs.map((p) => p.exitCode), [0, 0, 0]);
      });

      it('waitFor sees a predicate another process makes true (CPython test_waitfor)', async () => {
        const cond = new mp.Condition(new mp.Lock());
        const state = mp.Value('i', -1);
        const result = mp.Value('i', 0);
        const p = new ctx.Process({ target: fx.waitForFour, args: [cond, state, result], module });
        p.start();
        await cond.withLock(() => cond.waitFor(() => state.value === 0, 30_000));
        for (let i = 0; i < 4; i++) {
          await cond.withLock(() => {
            state.value += 1;
            cond.notify();
          });
        }
        await p.join(20_000);
        assert.equal(p.exitCode, 0);
        assert.equal(result.value, 1);
      });

      it('notify(1) skips a waiter that was killed and wakes the live one', async () => {
        const cond = new mp.Condition();
        const sleeping = new mp.Semaphore(0);
        const woken = new mp.Semaphore(0);
        const victim = new ctx.Process({ target: fx.conditionWaiterSync, args: [cond, sleeping, woken], module });
        victim.start();
        assert.equal(await sleeping.acquire({ timeout: 30_000 }), true);
        const live = new ctx.Process({ target: fx.conditionWaiter, args: [cond, sleeping, woken], module });
        live.start();
        assert.equal(await sleeping.acquire({ timeout: 30_000 }), true);
        await cond.withLock(() => undefined); // both wait now
        victim.kill();
        await victim.join(10_000);
        await cond.withLock(() => cond.notify(1));
        await live.join(20_000);
        assert.equal(live.exitCode, 0, 'the live waiter was notified');
        assert.equal(await woken.acquire({ timeout: 100 }), true);
      });

      it('notify(1) skips a waiter killed just now, even one this process saw alive a moment before', async () => {
        const cond = new mp.Condition();
        const sleeping = new mp.Semaphore(0);
        const woken = new mp.Semaphore(0);
        const victim = new ctx.Process({ target: fx.conditionWaiterSync, args: [cond, sleeping, woken], module });
        victim.start();
        assert.equal(await sleeping.acquire({ timeout: 30_000 }), true);
        await cond.withLock(() => undefined); // the victim waits now
        // The victim's holder id, from its slot (the only one taken yet).
        const words = (cond as unknown as { words: Int32Array }).words;
        const owners = Array.from({ length: 254 }, (_, slot) => Atomics.load(words, 4 + slot * 2)).filter((o) => o !== 0);
        assert.equal(owners.length, 1);
        const victimId = owners[0]!;
        const live = new ctx.Process({ target: fx.conditionWaiter, args: [cond, sleeping, woken], module });
        live.start();
        assert.equal(await sleeping.acquire({ timeout: 30_000 }), true);
        await cond.withLock(() => undefined); // both wait now
        // Look at the victim as a lock waiter would (so "alive" is remembered
        // for a few ms) until the moment it is seen dead, then notify at once.
        victim.kill();
        const until = performance.now() + 10_000;
        while (threadRuns(threadIdOf(victimId))) {
          isAlive(victimId);
          assert.ok(performance.now() < until, 'the victim died');
        }
        await cond.withLock(() => cond.notify(1));
        await live.join(20_000);
        assert.equal(live.exitCode, 0, 'the live waiter was notified');
        await victim.join(10_000);
      });
    });
  }
});

describe('Event', () => {
  it('set, clear, isSet, wait with and without timeouts (CPython test_event)', async () => {
    const event = new mp.Event();
    assert.equal(event.isSet(), false);
    await timesOutAfter(100, () => event.wait(100));
    await timesOutAfter(100, () => event.waitSync(100));
    await timesOutAfter(0, () => event.wait(-3));
    event.set();
    assert.equal(event.isSet(), true);
    assert.equal(await event.wait(), true);
    assert.equal(event.waitSync(0), true);
    event.clear();
    assert.equal(event.isSet(), false);
    assert.equal(await event.wait(0), false);
    assert.throws(() => event.waitSync('1' as never), mp.ValueError);
    // Many tasks of this thread wake on one set().
    const waits = Array.from({ length: 20 }, () => event.wait(30_000));
    await eventually(() => sleepers(event) === 20, 10_000, 'the tasks to sleep');
    event.set();
    assert.deepEqual(await Promise.all(waits), Array(20).fill(true));
  });

  for (const method of METHODS) {
    it(`travels live to '${method}' children both ways (and contexts carry the constructors)`, async () => {
      const ctx = mp.getContext(method);
      for (const name of ['Semaphore', 'BoundedSemaphore', 'Condition', 'Event', 'Barrier'] as const) assert.equal(ctx[name], mp[name]);
      const event = new ctx.Event();
      const waiters = [fx.waitEvent, fx.waitEventSync].map((target) => new ctx.Process({ target, args: [event, 30_000], module }));
      waiters.forEach((p) => p.start());
      await eventually(() => sleepers(event) === 2, 30_000, 'the children to wait');
      event.set();
      await Promise.all(waiters.map((p) => p.join(20_000)));
      assert.deepEqual(waiters.map((p) => p.exitCode), [0, 0]);
      const other = new mp.Event();
      const waiting = other.wait(30_000);
      const setter = new ctx.Process({ target: fx.setEvent, args: [other], module });
      setter.start();
      assert.equal(await waiting, true);
      await setter.join(20_000);
    });
  }
});

describe('Waits of the SEQ-based primitives (waiting.ts)', () => {
  it('an async wait sees a change whose wake never came (its waker killed between the two) within a slice', async () => {
    // A kill cannot be aimed between a waker's store and its bump of SEQ
    // (two adjacent atomic operations), so the test writes what it leaves:
    // the state changed, SEQ not bumped, nobody woken.
    const event = new mp.Event();
    const waiting = event.wait(30_000);
    await eventually(() => sleepers(event) === 1, 10_000, 'the event wait to sleep');
    Atomics.store(wordsOf(event), 0, 1);
    assert.equal(await settlesWithin(waiting, 2_000, 'Event.wait()'), true);
    const sem = new mp.Semaphore(0);
    const acquiring = sem.acquire({ timeout: 30_000 });
    await eventually(() => sleepers(sem) === 1, 10_000, 'the acquire to sleep');
    Atomics.add(wordsOf(sem), 0, 1);
    assert.equal(await settlesWithin(acquiring, 2_000, 'Semaphore.acquire()'), true);
    assert.equal(sem.getValue(), 0);
  });

  it('async waits of one thread on one primitive share one native wait (no waiter thread per 127 of them)', async () => {
    const threads = () => readdirSync('/proc/self/task').length;
    const event = new mp.Event();
    const before = threads();
    const waits = Array.from({ length: 2_000 }, () => event.wait(30_000));
    await eventually(() => sleepers(event) === 2_000, 10_000, 'the waits to sleep');
    assert.ok(threads() - before <= 1, `${threads() - before} more threads for 2,000 waits on one word`);
    event.set();
    assert.deepEqual(await Promise.all(waits), Array(2_000).fill(true));
  });

  it('{ block: 0 } (any falsy block but undefined) does not block, as Python\'s block=0', async () => {
    const sem = new mp.Semaphore(0);
    const lock = new mp.Lock();
    lock.acquireSync();
    for (const block of [0, null, false]) {
      const options = { block, timeout: 300 } as never;
      await timesOutAfter(0, () => sem.acquire(options));
      await timesOutAfter(0, () => sem.acquireSync(options));
      await timesOutAfter(0, () => lock.acquireSync(options));
      await timesOutAfter(0, () => lock.acquire(options));
    }
    await timesOutAfter(100, () => sem.acquire({ block: undefined, timeout: 100 }));
    lock.release();
  });
});

describe('Barrier', () => {
  it('refuses bad input: 0 parties, a non-function action, a non-number timeout', async () => {
    assert.throws(() => new mp.Barrier(0), (e: Error) => e instanceof mp.ValueError && /got 0/.test(e.message));
    assert.throws(() => new mp.Barrier(1.5), mp.ValueError);
    assert.throws(() => new mp.Barrier(2, { action: 5 as never }), mp.ValueError);
    assert.throws(() => new mp.Barrier(2, { timeout: '5' as never }), mp.ValueError);
    await assert.rejects(new mp.Barrier(2).wait('x' as never), mp.ValueError);
  });

  it('releases each cycle with distinct indices, runs the action once per cycle in the last party (CPython test_barrier, test_wait_return, test_action)', async () => {
    let actions = 0;
    const barrier = new mp.Barrier(4, { action: () => void actions++ });
    assert.equal(barrier.parties, 4);
    for (let cycle = 1; cycle <= 3; cycle++) {
      const indices = await Promise.all([0, 1, 2, 3].map(() => barrier.wait()));
      assert.deepEqual(indices.sort(), [0, 1, 2, 3]);
      assert.equal(actions, cycle);
      assert.equal(barrier.nWaiting, 0);
    }
    const single = new mp.Barrier(1);
    assert.equal(single.waitSync(), 0);
    assert.equal(await single.wait(), 0);
  });

  it('an action that throws breaks the barrier: the last party gets its error, the others BrokenBarrierError', async () => {
    const barrier = new mp.Barrier(3, {
      action: () => {
        throw new RangeError('action failed');
      },
    });
    const results = await Promise.allSettled([barrier.wait(), barrier.wait(), barrier.wait()]);
    const reasons = results.map((r) => (r.status === 'rejected' ? (r.reason as Error).constructor.name : 'ok'));
    assert.deepEqual(reasons.sort(), ['BrokenBarrierError', 'BrokenBarrierError', 'RangeError']);
    assert.equal(barrier.broken, true);
    barrier.reset();
    assert.equal(barrier.broken, false);
  });

  it('abort, reset and timeouts break it for the waiters; reset makes it usable (CPython test_abort, test_reset, test_timeout, test_default_timeout)', async () => {
    const barrier = new mp.Barrier(3);
    let waiting = [barrier.wait(), barrier.wait()];
    await eventually(() => barrier.nWaiting === 2, 5_000, 'two parties');
    barrier.abort();
    for (const w of waiting) await assert.rejects(w, mp.BrokenBarrierError);
    assert.equal(barrier.broken, true);
    await assert.rejects(barrier.wait(), mp.BrokenBarrierError);
    barrier.reset();
    assert.equal(barrier.broken, false);
    waiting = [barrier.wait(), barrier.wait()];
    await eventually(() => barrier.nWaiting === 2, 5_000, 'two parties');
    barrier.reset();
    for (const w of waiting) await assert.rejects(w, mp.BrokenBarrierError);
    assert.equal(barrier.broken, false, 'reset leaves it whole');
    assert.deepEqual((await Promise.all([barrier.wait(), barrier.wait(), barrier.wait()])).sort(), [0, 1, 2]);
    const other = barrier.wait(5_000);
    await assert.rejects(barrier.wait(100), mp.BrokenBarrierError);
    await assert.rejects(other, mp.BrokenBarrierError);
    assert.equal(barrier.broken, true);
    await timesOutAfter(100, () => new mp.Barrier(2).wait(100), mp.BrokenBarrierError);
    await timesOutAfter(100, () => new mp.Barrier(2).waitSync(100), mp.BrokenBarrierError);
    await timesOutAfter(100, () => new mp.Barrier(2, { timeout: 100 }).wait(), mp.BrokenBarrierError);
    const byDefault = new mp.Barrier(2, { timeout: 100 });
    await assert.rejects(byDefault.wait(), mp.BrokenBarrierError);
    assert.equal(byDefault.broken, true, 'its default timeout broke it');
    assert.throws(() => byDefault.waitSync(), mp.BrokenBarrierError);
  });

  it('an arrival during the previous cycle\'s action waits for its end and never breaks that cycle; its timeout counts from then (Python\'s _enter)', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const barrier = new mp.Barrier(2, { action: () => gate });
    const first = barrier.wait();
    const last = barrier.wait();
    // The action runs now (it waits for the gate); a third party comes with a short timeout.
    let openedAt = 0;
    const third = barrier.wait(50).then(
      () => assert.fail('the third party has no partner: it cannot pass'),
      (err: unknown) => ({ err, after: performance.now() - openedAt }),
    );
    // Past its 50 ms, while the action still runs (the timeout would have run out, not a synchronisation).
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(barrier.broken, false, 'the cycle whose parties all arrived is not broken by a timeout of a later one');
    openedAt = performance.now();
    open();
    assert.deepEqual([await first, await last], [0, 1], 'the cycle that filled is released (Python: A returns 0, B 1)');
    const { err, after } = await third;
    assert.ok(err instanceof mp.BrokenBarrierError, `the late party's own timeout breaks its own cycle, got ${String(err)}`);
    assert.ok(after >= 49, `its 50 ms count from its arrival after the action, not from its call (${after.toFixed(1)} ms)`);
    assert.equal(barrier.broken, true);
  });

  for (const method of METHODS) {
    describe(`with '${method}' children`, () => {
      const ctx = mp.getContext(method);

      it('children and this thread pass cycles together; the action goes by reference and runs once per cycle', async () => {
        const counter = mp.Value('i', 0);
        fx.useActionCounter(counter);
        const barrier = new mp.Barrier(3, { action: fx.countCycle, module });
        const seen = mp.Array('i', 3 * 2);
        const procs = [true, false].map(
          (sync) => new ctx.Process({ target: fx.passBarrier, args: [barrier, seen, 2, sync, counter], module }),
        );
        procs.forEach((p) => p.start());
        await fx.passBarrier(barrier, seen, 2, false, counter);
        await Promise.all(procs.map((p) => p.join(20_000)));
        assert.deepEqual(procs.map((p) => p.exitCode), [0, 0]);
        assert.equal(counter.value, 2, 'the action ran once per cycle, wherever the last party was');
        assert.deepEqual(Array.from(seen), [1, 1, 1, 1, 1, 1], 'each index once per cycle');
      });

      it('a party killed while waiting: the others time out with BrokenBarrierError; one killed in the action breaks it', async () => {
        const barrier = new mp.Barrier(4);
        const victim = new ctx.Process({ target: fx.brokenWaiter, args: [barrier], module });
        victim.start();
        await eventually(() => barrier.nWaiting === 1, 30_000, 'the child to wait');
        victim.kill();
        await victim.join(10_000);
        const other = new ctx.Process({ target: fx.brokenWaiter, args: [barrier, 300], module });
        other.start();
        const start = performance.now();
        await assert.rejects(barrier.wait(300), mp.BrokenBarrierError);
        assert.ok(performance.now() - start >= 299, 'not before its timeout');
        await other.join(20_000);
        assert.equal(other.exitCode, 4, 'the child got BrokenBarrierError');

        const hanging = new mp.Barrier(2, { action: fx.blockForever, module });
        const mine = hanging.wait();
        await eventually(() => hanging.nWaiting === 1, 5_000, 'this thread to wait');
        const actor = new ctx.Process({ target: fx.brokenWaiter, args: [hanging], module });
        actor.start();
        // Full (count 2 of 2): the child arrived last and runs the action (CLOSER names it from just before its arrival).
        await eventually(() => (Atomics.load(wordsOf(hanging), 0) & 0xffff) === 2, 30_000, 'the action to run');
        actor.kill();
        await assert.rejects(mine, mp.BrokenBarrierError);
        await actor.join(10_000);
      });

      it('the last party killed between its arrival and its cycle\'s end breaks the barrier for later and waiting parties; reset() recovers it', async () => {
        const STATE = 0;
        const CLOSER = 4;
        let barrier: mp.Barrier | null = null;
        for (let attempt = 1; !barrier; attempt++) {
          assert.ok(attempt <= 40, 'never killed the child inside the window (40 children)');
          const b = new mp.Barrier(1);
          const started = new mp.Event();
          const victim = new ctx.Process({ target: fx.passBarrierForever, args: [b, started], module });
          victim.start();
          assert.equal(await started.wait(30_000), true);
          // The window: the child counted itself in (count 1 of 1) and has not moved the cycle on.
          if (await killInWindow(victim, method, () => (Atomics.load(wordsOf(b), STATE) & 0xffff) === 1)) barrier = b;
        }
        // A later arrival, with no timeout, learns that the cycle will never end.
        await assert.rejects(settlesWithin(barrier.wait(), 5_000, 'wait() after the kill'), mp.BrokenBarrierError);
        assert.equal(barrier.broken, true);
        assert.throws(() => barrier.waitSync(), mp.BrokenBarrierError);
        const deadCloser = Atomics.load(wordsOf(barrier), CLOSER);
        barrier.reset();
        assert.equal(barrier.broken, false);
        assert.equal(await settlesWithin(barrier.wait(), 5_000, 'wait() after reset()'), 0);
        assert.equal(barrier.waitSync(), 0);

        // A party waiting in such a cycle: what the kill leaves (count = parties, CLOSER the dead
        // party's id) is written here, as a kill cannot be aimed at that instant while another waits.
        const two = new mp.Barrier(2);
        const waiting = two.wait(200);
        await eventually(() => two.nWaiting === 1, 5_000, 'this thread to wait');
        Atomics.store(wordsOf(two), CLOSER, deadCloser);
        Atomics.add(wordsOf(two), STATE, 1);
        await assert.rejects(settlesWithin(waiting, 5_000, 'wait(200) in the full cycle'), mp.BrokenBarrierError);
        assert.equal(two.broken, true);
      });

      it('waitSync, as the last party, before its by-reference action arrived: StateError, and the barrier is left whole', async () => {
        const counter = mp.Value('i', 0);
        const first = mp.Value('i', 0);
        const barrier = new mp.Barrier(2, { action: fx.countCycle, module });
        const queue = new mp.Queue<mp.Barrier>();
        const mine = barrier.wait(30_000);
        await eventually(() => barrier.nWaiting === 1, 5_000, 'this thread to wait');
        const late = new ctx.Process({ target: fx.lateBarrierParty, args: [queue, counter, first], module });
        late.start();
        // In a queue item the barrier arrives after the child started: its action is then imported in the background.
        await queue.put(barrier);
        assert.equal(await mine, 0, 'this party was released, not broken');
        await late.join(20_000);
        assert.equal(late.exitCode, 0);
        assert.equal(first.value, 1, 'the early waitSync threw StateError');
        assert.equal(counter.value, 1, 'the action ran once, in the child');
        assert.equal(barrier.broken, false);
        queue.close();
      });
    });
  }
});
