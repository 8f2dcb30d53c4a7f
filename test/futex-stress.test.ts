/**
 * No futex wake is lost: a counting semaphore (test/fixtures/futex-stress.ts)
 * on one word of a shared segment, with async and blocking takers in two
 * child processes, in this process and in one of its worker threads, fed
 * one token at a time by a poster thread, while decoy worker threads (async
 * waits registered on the same word, JS blocked so they never re-check)
 * keep being terminated. A wake the kernel charged to a decoy's wait must
 * reach a real taker, through the futex layer alone. No wait has a timeout,
 * so a lost wake shows up as a hang; the watchdog below turns that into a
 * failure with the semaphore's state.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { native } from '../src/native/addon.js';
import * as fx from './fixtures/futex-stress.js';

const addon = native();
const module = fx.STRESS;

const TAKERS = 6;
/** The poster posts at least this many tokens... */
const MIN_POSTS = 3000;
/** ...and goes on until this many decoys have been terminated. */
const MIN_DECOYS = 20;
/** Async waits each decoy registers. */
const DECOY_WAITS = 8;
/** A decoy is terminated 0..SPREAD event-loop turns after its waits are registered. */
const SPREAD = 8;
/** How long the whole run may take before it counts as hung. */
const WATCHDOG_MS = 60_000;

it('no futex wake is lost: semaphore across processes and threads, async and blocking takers, decoy threads terminated mid-wait', { skip: addon ? false : 'no native addon' }, async (t) => {
  const words = mp.RawArray('i', fx.WORDS);
  const processes = mp.getContext('process');
  const threads = mp.getContext('thread');

  // Takers 0-2: async, in one child process. 3: blocking, in a worker
  // thread of another, whose main thread runs the decoys. 4: blocking, in a
  // worker thread of this process. 5: async, right here.
  const children = [
    new processes.Process({ target: fx.asyncTakers, args: [words, 0, 3], module }),
    new processes.Process({ target: fx.decoyHost, args: [words, 3, DECOY_WAITS, SPREAD], module }),
    new threads.Process({ target: fx.blockingTaker, args: [words, 4], module }),
    new threads.Process({ target: fx.poster, args: [words, MIN_POSTS, MIN_DECOYS], module }),
  ];
  for (const p of children) p.start();
  const here = fx.asyncTakers(words, 5, 1);

  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), WATCHDOG_MS);
  });
  const finished = Promise.all([here, ...children.map((p) => p.join())]).then(() => 'done' as const);
  const outcome = await Promise.race([finished, watchdog]);
  clearTimeout(timer);
  const state = {
    tokens: Atomics.load(words, fx.TOKENS),
    posted: Atomics.load(words, fx.POSTED),
    taken: Atomics.load(words, fx.TAKEN),
    perTaker: Array.from(words.subarray(fx.TAKER0, fx.TAKER0 + TAKERS)),
    decoys: Atomics.load(words, fx.DECOYS),
  };
  if (outcome === 'hung') {
    // Release everyone so the file can end, then report.
    Atomics.store(words, fx.STOP, 1);
    for (const index of [fx.SEQ, fx.TAKEN]) {
      Atomics.add(words, index, 1);
      addon!.futexWake(words.buffer as SharedArrayBuffer, words.byteOffset + index * 4, Infinity);
    }
    for (const p of children) p.kill();
    await finished;
    assert.fail(`a waiter was left asleep: ${JSON.stringify(state)}`);
  }
  t.diagnostic(JSON.stringify(state));
  assert.ok(state.posted >= MIN_POSTS);
  assert.ok(state.decoys >= MIN_DECOYS);
  assert.equal(state.taken, state.posted);
  assert.equal(state.tokens, 0);
  assert.equal(state.perTaker.reduce((a, b) => a + b), state.posted);
  assert.ok(state.perTaker.every((n) => n > 0), 'every taker took tokens');
  for (const p of children) assert.equal(p.exitCode, 0);
});
