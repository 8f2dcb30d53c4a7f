/**
 * How a map's input is cut: Python's default chunk size, with the last
 * round dispatched in half-size chunks; an explicit chunksize, and a pool
 * with maxtasksperchild (which counts chunks), keep Python's chunks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { defaultChunking, evenChunking, type Chunking } from '../src/pool/chunking.js';
import * as fx from './fixtures/pool-targets.js';

/** The chunk sizes a map of `n` items gets (as MapCall cuts them). */
function sizes(n: number, chunking: Chunking): number[] {
  const out: number[] = [];
  for (let first = 0; first < n; ) {
    const size = Math.min(n - first, n - first <= chunking.tailItems ? chunking.tailSize : chunking.size);
    out.push(size);
    first += size;
  }
  return out;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('map chunking', () => {
  it('the default keeps Python\'s chunk size and splits only the last round in half-size chunks', () => {
    assert.deepEqual(sizes(64, defaultChunking(64, 2)), [8, 8, 8, 8, 8, 8, 4, 4, 4, 4]);
    // ceil(1000 / 16) = 63, Python's rule; the last 4 × 63 items go 32 at a time.
    assert.deepEqual(sizes(1000, defaultChunking(1000, 4)), [...Array(12).fill(63), ...Array(7).fill(32), 20]);
    assert.deepEqual(sizes(3, defaultChunking(3, 2)), [1, 1, 1]);
    assert.deepEqual(sizes(64, evenChunking(8)), Array(8).fill(8));
  });

  it('a pool\'s map answers in input order with the split tail; an explicit chunksize and maxtasksperchild keep Python\'s chunks (counted by the pool as units)', async (t) => {
    const pool = new mp.Pool(2, { context: 'thread', module: fx.POOL_TARGETS });
    const counted = new mp.Pool(2, { context: 'thread', module: fx.POOL_TARGETS, maxtasksperchild: 1_000 });
    t.after(() => {
      pool.terminate();
      counted.terminate();
    });
    const squares = range(64).map((x) => x * x);
    const units = async (p: mp.Pool, run: () => Promise<number[]>) => {
      const before = p.stats().completed;
      assert.deepEqual(await run(), squares);
      return p.stats().completed - before;
    };
    assert.equal(await units(pool, () => pool.map(fx.square, range(64))), 10);
    assert.equal(await units(pool, () => pool.map(fx.square, range(64), 8)), 8);
    assert.equal(await units(counted, () => counted.map(fx.square, range(64))), 8);
    pool.terminate();
    counted.terminate();
    await Promise.all([pool.join(), counted.join()]);
  });
});
