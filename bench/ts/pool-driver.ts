/**
 * Driver of the `pool-start` case: times `reps` pools of 2 from construction
 * to their first result, ours or piscina's, and prints the median as JSON
 * (its own start-up outside the figure). Run compiled (`node
 * dist/bench/ts/pool-driver.js`) and as a `.ts` under tsx (`tsx
 * bench/ts/pool-driver.ts`), so ours and piscina share each runtime.
 *
 * Usage: pool-driver <ours-process|ours-thread|piscina> <reps>
 */
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import * as mp from 'multiprocessing-ts';
import { noop } from './noop.js';

const TARGET_MODULE = import.meta.url.endsWith('.ts') ? new URL('./noop.ts', import.meta.url) : new URL('./noop.js', import.meta.url);
// piscina's workers are plain JavaScript in both runs: a Node 20 Worker cannot load .ts by itself.
const PISCINA_TASKS = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../../dist/bench/fixtures/piscina-task.js' : '../fixtures/piscina-task.js', import.meta.url));

async function once(who: string): Promise<void> {
  if (who === 'piscina') {
    const pool = new Piscina({ filename: PISCINA_TASKS, name: 'noop', minThreads: 2, maxThreads: 2 });
    await pool.run(0);
    await pool.destroy();
    return;
  }
  const pool = new mp.Pool(2, { context: who === 'ours-thread' ? 'thread' : 'process', module: TARGET_MODULE });
  await pool.apply(noop);
  pool.terminate();
  await pool.join();
}

if (mp.isMainProcess()) {
  const [who, reps] = [process.argv[2]!, Number(process.argv[3])];
  const times: number[] = [];
  let first = 0;
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    await once(who);
    const dt = performance.now() - t0;
    if (i === 0) first = dt;
    else times.push(dt);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2;
  console.log(JSON.stringify({ median_ms: median, first_ms: first }));
}
