/**
 * Locks and the async tasks of one thread; locks whose holder died without
 * being reaped. Real children, real shared memory.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as mp from '../src/index.js';
import { METHODS, eventually } from './helpers.js';
import * as fx from './fixtures/lock-tasks.js';
import { holderIdOf } from '../src/liveness.js';
import { currentFrame } from '../src/async-context.js';

const module = fx.LOCK_TASKS;

/** The state letter of /proc/<pid>/stat (Z for a zombie), or null when gone. */
function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat[stat.lastIndexOf(')') + 2]!;
  } catch {
    return null;
  }
}

describe('async tasks of one thread', () => {
  it('ten concurrent withLock tasks on a Value\'s default lock run one at a time across their awaits', async () => {
    const v = mp.Value('i', 0);
    const { value, maxInside } = await fx.tenTasks(v);
    assert.equal(maxInside, 1, 'never two tasks inside at once');
    assert.equal(value, 10, 'no update lost');
  });

  it('concurrent withLock tasks exclude each other on a Lock too', async () => {
    const lock = new mp.Lock();
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 5 }, () =>
        lock.withLock(async () => {
          most = Math.max(most, ++inside);
          await sleep(2);
          inside--;
        }),
      ),
    );
    assert.equal(most, 1);
  });

  for (const method of METHODS) {
    it(`ten withLock tasks inside a '${method}' child run one at a time`, async () => {
      const v = mp.Value('i', 0);
      const most = mp.Value('i', -1);
      const p = new (mp.getContext(method).Process)({ target: fx.tenTasksInChild, args: [v, most], module });
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.equal(most.value, 1);
      assert.equal(v.value, 10);
    });
  }

  it('an RLock re-enters along one chain across awaits, and sibling tasks inside one withLock still exclude each other', async () => {
    const outer = new mp.RLock();
    const inner = new mp.RLock();
    let inside = 0;
    let most = 0;
    const depth = await outer.withLock(async () => {
      await sleep(1);
      // Re-entry after an await, by withLock, by acquireSync and by release.
      return outer.withLock(async () => {
        await sleep(1);
        assert.equal(outer.acquireSync({ block: false }), true);
        outer.release();
        // Three siblings opened in this chain: each is its own task for `inner`.
        await Promise.all(
          [1, 2, 3].map(() =>
            inner.withLock(async () => {
              most = Math.max(most, ++inside);
              await sleep(2);
              inside--;
            }),
          ),
        );
        return 2;
      });
    });
    assert.equal(depth, 2);
    assert.equal(most, 1, 'siblings excluded each other');
    assert.equal(outer.acquireSync({ block: false }), true, 'fully released afterwards');
    outer.release();
  });

  it('a synchronous acquire that would wait on another task of the thread throws DeadlockError naming withLock; nothing is left taken', async () => {
    const v = mp.Value('i', 7);
    const arr = mp.Array('i', 2);
    const rlock = new mp.RLock();
    const lock = new mp.Lock();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const holders = [
      v.getLock().withLock(() => gate),
      arr.getLock().withLock(() => gate),
      rlock.withLock(() => gate),
      lock.withLock(() => gate),
      mp.Value('i', 0, { lock: lock }).getLock().withLock(() => undefined).catch(() => 'waited'),
    ];
    const deadlock = (e: unknown) => e instanceof mp.DeadlockError && /await .*withLock/.test((e as Error).message);
    // Accessors, whatever the lock: the holder task could never run.
    assert.throws(() => v.value, deadlock);
    assert.throws(() => {
      v.value = 1;
    }, deadlock);
    assert.throws(() => arr[0], deadlock);
    assert.throws(() => mp.Value('i', 0, { lock }).value, deadlock);
    // An RLock only its holder thread can release: no timeout is a deadlock, a timeout is a plain no.
    assert.throws(() => rlock.acquireSync(), deadlock);
    const t0 = performance.now();
    assert.equal(rlock.acquireSync({ timeout: 5_000 }), false);
    assert.ok(performance.now() - t0 < 1_000, 'answered without waiting out a wait that could not succeed');
    assert.equal(rlock.acquireSync({ block: false }), false);
    // A Lock may be released by another thread, as in Python: a timed wait just times out.
    assert.equal(lock.acquireSync({ timeout: 10 }), false);
    assert.equal(lock.acquireSync({ block: false }), false);
    assert.equal(await lock.acquire({ block: false }), false);
    release();
    await Promise.all(holders);
    // Everything usable again, values intact.
    assert.equal(v.value, 7);
    arr[1] = 3;
    assert.deepEqual(Array.from(arr), [0, 3]);
    for (const l of [lock, rlock]) {
      assert.equal(l.acquireSync({ block: false }), true);
      l.release();
    }
  });

  it('a Lock held by this thread is released by another thread while a blocking acquire waits (Python\'s Lock as a signal)', async () => {
    const lock = new mp.Lock();
    const ready = mp.RawArray('i', 1);
    lock.acquireSync();
    const p = new (mp.getContext('thread').Process)({ target: fx.releaseWhenReady, args: [lock, ready], module });
    p.start();
    Atomics.store(ready, 0, 1);
    assert.equal(lock.acquireSync({ timeout: 20_000 }), true, 'the other thread\'s release let us in');
    lock.release();
    await p.join();
    assert.equal(p.exitCode, 0);
  });

  it('a bare acquire() inside a withLock callback belongs to the thread, not to that callback', async () => {
    const outer = new mp.Lock();
    const v = mp.Value('i', 1);
    await outer.withLock(async () => {
      await v.getLock().acquire();
    });
    // The callback is over; the thread still holds the Value's lock and can use it.
    v.value += 1;
    v.getLock().release();
    assert.equal(v.getLock().acquireSync({ block: false }), true, 'released for good');
    v.getLock().release();
    assert.equal(v.value, 2);
    // The same when the bare acquire re-entered the callback's own RLock.
    const r = new mp.RLock();
    await r.withLock(async () => {
      await r.acquire();
    });
    assert.equal(r.acquireSync({ block: false }), true, 'the thread still holds it and re-enters');
    r.release();
    r.release();
    assert.throws(() => r.release(), mp.ValueError);
  });

  it('sibling tasks re-entering an RLock that their parent task holds take turns (read, await, write loses nothing)', async () => {
    const v = mp.Value('i', 0);
    let inside = 0;
    let most = 0;
    await v.getLock().withLock(async () => {
      await Promise.all(
        [1, 2, 3, 4].map(() =>
          v.getLock().withLock(async () => {
            most = Math.max(most, ++inside);
            const x = v.value;
            await sleep(2);
            v.value = x + 1;
            inside--;
          }),
        ),
      );
      // Back in the parent task: it holds the lock again.
      v.value += 10;
    });
    assert.equal(most, 1);
    assert.equal(v.value, 14);
  });

  it('releases out of order keep exclusion: a nested withLock that leaves a bare hold, one that outlives its parent, a bare release around a withLock', async () => {
    const r = new mp.RLock();
    // (a) C leaves a bare acquire behind inside B; a sibling D at the root must still wait for B.
    let inB = false;
    let overlap = false;
    const b = r.withLock(async () => {
      await r.withLock(async () => {
        await r.acquire();
      });
      inB = true;
      await sleep(20);
      inB = false;
    });
    await sleep(5);
    await r.withLock(() => {
      overlap = inB;
    });
    await b;
    assert.equal(overlap, false, 'D never ran inside B');
    r.release(); // the bare hold C left belongs to the thread
    assert.equal(r.acquireSync({ block: false }), true);
    r.release();
    assert.throws(() => r.release(), mp.ValueError);
    // (b) A nested withLock that outlives its parent's callback.
    let inner!: Promise<void>;
    await r.withLock(async () => {
      inner = r.withLock(() => sleep(15));
    });
    await inner;
    assert.equal(r.acquireSync({ block: false }), true, 'fully released when the last hold ends');
    r.release();
    // (c) A bare acquire released while a withLock of this thread holds on top.
    assert.equal(await r.acquire(), true);
    const w = r.withLock(() => sleep(10));
    r.release();
    await w;
    assert.equal(r.acquireSync({ block: false }), true);
    r.release();
  });

  it('withLock reports a callback that released the lock itself by rejecting, never by throwing', async () => {
    const r = new mp.RLock();
    let promise!: Promise<unknown>;
    assert.doesNotThrow(() => (promise = r.withLock(() => r.release())));
    await assert.rejects(promise, mp.ValueError);
    assert.equal(r.acquireSync({ block: false }), true);
    r.release();
  });

  it('a same-thread wait with a timeout too large for a timer waits until the holder lets go', async () => {
    const r = new mp.RLock();
    const held = r.withLock(() => sleep(30));
    const t0 = performance.now();
    assert.equal(await r.acquire({ timeout: 2 ** 31 }), true);
    assert.ok(performance.now() - t0 >= 20, 'it waited for the holder');
    r.release();
    await held;
  });

  it('a timer callback inside a frame sees its Timeout as this (clearInterval(this) stops it)', async () => {
    const lock = new mp.Lock();
    let ticks = 0;
    await lock.withLock(
      () =>
        new Promise<void>((resolve) => {
          setInterval(function (this: NodeJS.Timeout) {
            if (++ticks === 3) {
              clearInterval(this);
              setTimeout(resolve, 20);
            }
          }, 1);
        }),
    );
    assert.equal(ticks, 3);
  });

  it('frames opened by a polling loop of withLock calls do not chain up', async () => {
    const lock = new mp.Lock();
    let depth = 0;
    await new Promise<void>((resolve) => {
      let n = 0;
      const tick = () =>
        void lock.withLock(() => {
          if (++n === 200) {
            for (let f = currentFrame(); f; f = f.parent ?? null) depth++;
            resolve();
          } else setImmediate(tick);
        });
      tick();
    });
    assert.ok(depth <= 2, `chain of ${depth} frames`);
  });

  it('timer and tick callbacks scheduled inside withLock run as part of its task', async () => {
    const v = mp.Value('i', 0);
    await v.getLock().withLock(async () => {
      await new Promise<void>((resolve) => setTimeout(() => ((v.value += 1), resolve()), 1));
      await new Promise<void>((resolve) => setImmediate(() => ((v.value += 1), resolve())));
      await new Promise<void>((resolve) => process.nextTick(() => ((v.value += 1), resolve())));
      await new Promise<void>((resolve) => queueMicrotask(() => ((v.value += 1), resolve())));
    });
    assert.equal(v.value, 4);
  });

  it('bare acquire()/release() outside withLock count the whole thread as one holder (documented)', async () => {
    const r = new mp.RLock();
    assert.equal(await r.acquire(), true);
    assert.equal(await r.acquire({ block: false }), true, 'a second task of the root re-enters');
    r.release();
    r.release();
    assert.throws(() => r.release(), mp.ValueError);
  });
});

describe('holder ids and thread id reuse', () => {
  it('a lock whose recorded holder id now belongs to another thread (same id, other start time) is recovered; a live holder is not', async () => {
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const live = holderIdOf(sleeper.pid!);
      assert.notEqual(live, 0);
      const lock = new mp.Lock();
      // The live process itself holds it: not recovered.
      Atomics.store(lock.words, 0, live);
      assert.equal(lock.acquireSync({ timeout: 250 }), false);
      // A dead holder whose id the live process reuses: other start-time tag, same thread id.
      const tag = live >>> 22;
      const reused = (live & ((1 << 22) - 1)) | ((tag === 255 ? 1 : tag + 1) << 22);
      Atomics.store(lock.words, 0, reused);
      assert.equal(lock.acquireSync({ timeout: 5_000 }), true);
      assert.equal(lock.ownerDied, true);
      lock.release();
    } finally {
      sleeper.kill('SIGKILL');
    }
  });
});

for (const method of METHODS) {
  const ctx = mp.getContext(method);
  describe(`locks whose holder died (${method})`, () => {
    it('an async waiter wakes when another thread or process releases, without blocking the event loop', async () => {
      const lock = new mp.Lock();
      const gate = new mp.Lock();
      const held = mp.RawArray('i', 1);
      gate.acquireSync();
      const p = new ctx.Process({ target: fx.holdUntilGate, args: [lock, gate, held], module });
      p.start();
      await eventually(() => Atomics.load(held, 0) === 1, 20_000, 'the child to hold the lock');
      let ticks = 0;
      const timer = setInterval(() => ticks++, 2);
      const waiting = lock.acquire({ timeout: 20_000 });
      await sleep(30);
      gate.release();
      assert.equal(await waiting, true);
      clearInterval(timer);
      assert.equal(lock.ownerDied, false, 'released, not recovered');
      assert.ok(ticks >= 3, `the event loop kept running (${ticks} ticks)`);
      lock.release();
      await p.join();
      assert.equal(p.exitCode, 0);
    });

    it('a blocking acquire recovers a lock whose killed holder is not reaped yet, within a second', async () => {
      const lock = new mp.Lock();
      const held = mp.RawArray('i', 1);
      const p = new ctx.Process({ target: fx.holdForever, args: [lock, held], module });
      p.start();
      await eventually(() => Atomics.load(held, 0) === 1, 20_000, 'the child to hold the lock');
      p.kill();
      if (method === 'process') {
        // No event-loop turn from here on, so nothing can reap the child: it is a zombie.
        const until = Date.now() + 10_000;
        while (procState(p.pid!) !== 'Z' && Date.now() < until);
        assert.equal(procState(p.pid!), 'Z', 'the holder is a zombie while we wait');
      }
      const t0 = performance.now();
      assert.equal(lock.acquireSync({ timeout: 5_000 }), true);
      assert.ok(performance.now() - t0 < 1_000, `recovered in ${Math.round(performance.now() - t0)} ms`);
      assert.equal(lock.ownerDied, true);
      lock.release();
      await p.join();
    });

    it('a Value read recovers the lock of a killed, unreaped holder (no timeout given)', { timeout: 30_000 }, async () => {
      const v = mp.Value('i', 42);
      const held = mp.RawArray('i', 1);
      const p = new ctx.Process({ target: fx.holdForever, args: [v.getLock(), held], module });
      p.start();
      await eventually(() => Atomics.load(held, 0) === 1, 20_000, 'the child to hold the lock');
      p.kill();
      assert.equal(v.value, 42);
      await p.join();
    });

    it('an async waiter recovers the lock of a killed holder that nobody joined', async () => {
      const lock = new mp.Lock();
      const held = mp.RawArray('i', 1);
      const p = new ctx.Process({ target: fx.holdForever, args: [lock, held], module });
      p.start();
      await eventually(() => Atomics.load(held, 0) === 1, 20_000, 'the child to hold the lock');
      const waiting = lock.acquire({ timeout: 10_000 });
      p.kill();
      assert.equal(await waiting, true);
      assert.equal(lock.ownerDied, true);
      lock.release();
      await p.join();
    });
  });
}
