/**
 * Ours against the raw Workers, paired: per round one `map` of the `h`
 * workload (64 tasks, default chunks) on a `'process'` and a `'thread'`
 * Pool(2) and the same 64 tasks on 2 raw Workers (32 each in one
 * message), in an order that rotates each round (the one right after the
 * serial loop runs slower), then the serial loop on this thread (as
 * `pool-cpu` takes its rounds after the serial row). Prints the medians over the rounds and the
 * median of each pool's map minus the raw Workers' of the same round: a
 * difference taken within a round cancels most of the machine's swings,
 * which move `pool-cpu`'s single rounds by 15–20%.
 *
 * `node dist/bench/pool-cpu-pairs.js [rounds]` (default 24).
 */
import { Worker } from 'node:worker_threads';
import * as mp from '../src/index.js';
import { cpuTask, TARGETS_URL } from './targets.js';

const N = 2_000_000;
const TASKS = 64;
const RAW_WORKER = `const { parentPort } = require('node:worker_threads');
function cpu(n) { let s = 0; for (let i = 0; i < n; i++) s += i * i; return s; }
parentPort.on('message', ({ n, count }) => { let s = 0; for (let k = 0; k < count; k++) s += cpu(n); parentPort.postMessage(s); });`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await run();
  return performance.now() - t0;
}

const rounds = Number(process.argv[2] ?? 24);
const workers = [0, 1].map(() => new Worker(RAW_WORKER, { eval: true }));
const raw = (count: number) =>
  Promise.all(workers.map((w) => new Promise((resolve) => { w.once('message', resolve); w.postMessage({ n: N, count }); })));
const pools = { process: new mp.Pool(2, { context: 'process', module: TARGETS_URL }), thread: new mp.Pool(2, { context: 'thread', module: TARGETS_URL }) };
await raw(2);
for (const pool of Object.values(pools)) await pool.map(cpuTask, [N, N, N, N], 1);

const maps = { process: [] as number[], thread: [] as number[], raw: [] as number[], serial: [] as number[] };
const gaps = { process: [] as number[], thread: [] as number[] };
const ORDER = ['process', 'thread', 'raw'] as const;
for (let r = 0; r < rounds; r++) {
  const ours = { process: 0, thread: 0 };
  let rawMs = 0;
  for (let k = 0; k < ORDER.length; k++) {
    const row = ORDER[(r + k) % ORDER.length]!;
    if (row === 'raw') rawMs = await timed(() => raw(TASKS / 2));
    else ours[row] = await timed(() => pools[row].map(cpuTask, Array(TASKS).fill(N)));
  }
  const serialMs = await timed(async () => { for (let i = 0; i < TASKS; i++) cpuTask(N); });
  maps.raw.push(rawMs);
  maps.serial.push(serialMs);
  for (const method of ['process', 'thread'] as const) {
    maps[method].push(ours[method]);
    gaps[method].push(ours[method] - rawMs);
  }
}
const serial = median(maps.serial);
for (const row of ['process', 'thread', 'raw'] as const) {
  const ms = median(maps[row]);
  const gap = row === 'raw' ? '' : `, ${median(gaps[row]).toFixed(2)} ms more than the raw Workers (median of the rounds' differences)`;
  console.log(`${row.padEnd(8)} map ${ms.toFixed(2)} ms, speed-up ${(serial / ms).toFixed(2)}×${gap}`);
}
console.log(`serial   ${serial.toFixed(2)} ms (${rounds} rounds)`);
for (const pool of Object.values(pools)) await pool.terminate();
for (const w of workers) await w.terminate();
