/**
 * A unit's fate is decided once (pool/protocol.ts `decideUnit`): the parent
 * cancelling a unit handed over and its worker starting it race on one word
 * of the control block, and exactly one of them wins, which the other then
 * learns. Raced here for real by two threads on both cores.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { CONTROL_DOUBLES, cancelledMark, controlViews, decideUnit, startedMark } from '../src/pool/protocol.js';

const ROUNDS = 5_000;

/**
 * One side of the race: for unit seq = 1, 2, …, meets the other side (a
 * barrier: spins, then sleeps), writes its mark, and records whether it won.
 */
const SIDE = `
const { workerData } = require('node:worker_threads');
const { protocol, ints, sync, won, side } = workerData;
import(protocol).then(({ cancelledMark, decideUnit, startedMark }) => {
  for (let seq = 1; seq <= won.length; seq++) {
    const arrived = Atomics.add(sync, 0, 1) + 1;
    if (arrived === 2 * seq) Atomics.notify(sync, 0);
    for (let spins = 0; Atomics.load(sync, 0) < 2 * seq; spins++) {
      if (spins > 10000) Atomics.wait(sync, 0, arrived, 10);
    }
    const mine = side === 'parent' ? cancelledMark(seq) : startedMark(seq);
    const theirs = side === 'parent' ? startedMark(seq) : cancelledMark(seq);
    won[seq - 1] = decideUnit(ints, seq, mine, theirs) === mine ? 1 : 0;
  }
});
`;

/** Resolves once `worker` has exited, bounded. */
function exited(worker: Worker, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`a side of the race did not finish in ${ms} ms`)), ms);
    worker.once('error', reject);
    worker.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

it('decideUnit: a worker starting a unit and the parent cancelling it at the same moment, on its cancel word: exactly one wins, and both see which', async () => {
  const block = new Float64Array(new SharedArrayBuffer(CONTROL_DOUBLES * 8));
  const { ints } = controlViews(block);
  const sync = new Int32Array(new SharedArrayBuffer(4));
  const won = { parent: new Uint8Array(new SharedArrayBuffer(ROUNDS)), worker: new Uint8Array(new SharedArrayBuffer(ROUNDS)) };
  const protocol = new URL('../src/pool/protocol.js', import.meta.url).href;
  const sides = (['parent', 'worker'] as const).map(
    (side) => new Worker(SIDE, { eval: true, workerData: { protocol, ints, sync, won: won[side], side } }),
  );
  try {
    await Promise.all(sides.map((w) => exited(w, 60_000)));
  } finally {
    await Promise.all(sides.map((w) => w.terminate()));
  }
  let parentWon = 0;
  for (let k = 0; k < ROUNDS; k++) {
    assert.equal(won.parent[k]! + won.worker[k]!, 1, `unit ${k + 1}: the parent ${won.parent[k] ? 'won' : 'lost'}, the worker ${won.worker[k] ? 'won' : 'lost'}`);
    parentWon += won.parent[k]!;
  }
  // Both orders happened, or the race was not run.
  assert.ok(parentWon > 0 && parentWon < ROUNDS, `the parent won ${parentWon} of ${ROUNDS}`);
  // The marks of a unit and of the units a window later, which share its word, are all different.
  assert.notEqual(cancelledMark(1), startedMark(1));
  assert.notEqual(cancelledMark(1), cancelledMark(1 + 512));
});
