/**
 * `holdingWakes` (src/sync/futex.ts): the wakes asked for inside it are
 * issued when it ends, and before the thread itself blocks inside it, so
 * holding them can never keep a waiter from an answer its holder waits for.
 * The waiter is a thread of this process asleep in the kernel (its
 * /proc syscall shows the futex call), so only a wake can end its sleep.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as mp from '../src/index.js';
import { native } from '../src/native/addon.js';
import { WaitResult, holdingWakes, resumeHeldWakes, suspendHeldWakes, waitSync, wake, wakeSoon } from '../src/sync/futex.js';
import * as fx from './fixtures/held-wakes.js';
import { eventually } from './helpers.js';

/** Futex syscalls on x86_64 and arm64: futex, futex_waitv. */
const FUTEX_SYSCALLS = new Set(process.arch === 'arm64' ? ['98', '449'] : ['202', '449']);

/** Whether thread `tid` of this process is inside a futex call (asleep on it). */
function inFutex(tid: number): boolean {
  try {
    return FUTEX_SYSCALLS.has(readFileSync(`/proc/self/task/${tid}/syscall`, 'utf8').split(' ')[0]!);
  } catch {
    return false;
  }
}

it('a wake asked for inside holdingWakes is issued when it ends, before a blocking wait inside it, and at once while the hold is lifted', { skip: native() ? false : 'needs the native addon' }, async (t) => {
  const words = mp.RawArray('i', 3);
  const p = new (mp.getContext('thread').Process)({ target: fx.waiter, args: [words], module: fx.HELD_WAKES });
  p.start();
  t.after(() => {
    // A thread asleep in a native call cannot be terminated: let it finish first.
    Atomics.store(words, fx.GO, 3);
    wake(words, fx.GO, 1);
    p.terminate();
  });
  await eventually(() => Atomics.load(words, fx.TID) !== 0, 10_000, 'the waiter to start');
  const tid = Atomics.load(words, fx.TID);

  await eventually(() => inFutex(tid), 10_000, 'the waiter to sleep');
  holdingWakes(() => {
    Atomics.store(words, fx.GO, 1);
    wakeSoon(words, fx.GO, 1);
    // Held: the waiter sleeps on although its word changed.
    const until = performance.now() + 100;
    while (performance.now() < until) assert.equal(Atomics.load(words, fx.ANSWER), 0, 'the waiter answered while its wake was held');
  });
  await eventually(() => Atomics.load(words, fx.ANSWER) === 1, 10_000, 'the waiter to answer once the wake was issued');

  await eventually(() => inFutex(tid), 10_000, 'the waiter to sleep again');
  const result = holdingWakes(() => {
    Atomics.store(words, fx.GO, 2);
    wakeSoon(words, fx.GO, 1);
    // Blocking here for the answer: the held wake must go out first, or this waits out its 20 s.
    return waitSync(words, fx.ANSWER, 1, 20_000);
  });
  assert.notEqual(result, WaitResult.TimedOut, 'the blocking wait inside holdingWakes timed out: its wake was still held');
  assert.equal(Atomics.load(words, fx.ANSWER), 2);

  // User code run with the hold lifted (the pool's callbacks): its wakes go out at once.
  await eventually(() => inFutex(tid), 10_000, 'the waiter to sleep a third time');
  const answered = holdingWakes(() => {
    const held = suspendHeldWakes();
    try {
      Atomics.store(words, fx.GO, 3);
      wakeSoon(words, fx.GO, 1);
    } finally {
      resumeHeldWakes(held);
    }
    // A spin of this test's own, which releases nothing: only a wake already issued is answered.
    const until = performance.now() + 10_000;
    while (Atomics.load(words, fx.ANSWER) !== 3 && performance.now() < until);
    return Atomics.load(words, fx.ANSWER) === 3;
  });
  assert.equal(answered, true, 'a wake asked for while the hold was lifted was held');
  await p.join(10_000);
  assert.equal(p.exitCode, 0);
});
