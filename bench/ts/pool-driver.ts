/**
 * Driver of the `pool-start` case: times `reps + 1` pools of 2 from
 * construction to their first result, ours or piscina's, and prints the
 * first and the median of the others as JSON (its own start-up and each
 * pool's ending outside the figures). Run compiled (`node
 * dist/bench/ts/pool-driver.js`) and as a `.ts` under tsx (`tsx
 * bench/ts/pool-driver.ts`), so ours and piscina share each runtime.
 *
 * Beside them, the physical limits in the same style: `raw-worker` (a bare
 * `new Worker` of an eval'd one-line script, to its first message) and
 * `raw-spawn` (a bare `child_process.spawn` of node with a one-line script,
 * to its first message over IPC, the channel our 'process' workers use).
 *
 * Usage: pool-driver <ours-process|ours-thread|piscina|raw-worker|raw-spawn> <reps>
 */
import { once as onceEvent } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import * as mp from 'multiprocessing-ts';
import { noop } from './noop.js';

const TARGET_MODULE = import.meta.url.endsWith('.ts') ? new URL('./noop.ts', import.meta.url) : new URL('./noop.js', import.meta.url);
// piscina's workers are plain JavaScript in both runs: a Node 20 Worker cannot load .ts by itself.
const PISCINA_TASKS = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../../dist/bench/fixtures/piscina-task.js' : '../fixtures/piscina-task.js', import.meta.url));

/** Ms from `t0` to now. */
const since = (t0: number): number => performance.now() - t0;

/** A bare Worker to its first message: no pool, no package, `execArgv: []` so no loader is inherited. */
async function rawWorker(): Promise<number> {
  // Loaded here, not at the top: the driver must not load for our rows what the package loads itself.
  const { Worker } = await import('node:worker_threads');
  const t0 = performance.now();
  const worker = new Worker("require('node:worker_threads').parentPort.postMessage(1)", { eval: true, execArgv: [] });
  await onceEvent(worker, 'message');
  const dt = since(t0);
  await worker.terminate();
  return dt;
}

/** A bare node process to its first message over IPC (our 'process' workers have the same channel). */
async function rawSpawn(): Promise<number> {
  const { spawn } = await import('node:child_process');
  const t0 = performance.now();
  const child = spawn(process.execPath, ['-e', 'process.send(1)'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = onceEvent(child, 'exit');
  await onceEvent(child, 'message');
  const dt = since(t0);
  child.disconnect();
  await exited;
  return dt;
}

/** One pool (or raw start): ms from construction to its first result. Ending it is not timed. */
async function once(who: string): Promise<number> {
  if (who === 'raw-worker') return rawWorker();
  if (who === 'raw-spawn') return rawSpawn();
  if (who === 'piscina') {
    const t0 = performance.now();
    const pool = new Piscina({ filename: PISCINA_TASKS, name: 'noop', minThreads: 2, maxThreads: 2 });
    await pool.run(0);
    const dt = since(t0);
    await pool.destroy();
    return dt;
  }
  const t0 = performance.now();
  const pool = new mp.Pool(2, { context: who === 'ours-thread' ? 'thread' : 'process', module: TARGET_MODULE });
  await pool.apply(noop);
  const dt = since(t0);
  pool.terminate();
  await pool.join();
  return dt;
}

if (mp.isMainProcess()) {
  const [who, reps] = [process.argv[2]!, Number(process.argv[3])];
  const times: number[] = [];
  let first = 0;
  for (let i = 0; i < reps + 1; i++) {
    const dt = await once(who);
    if (i === 0) first = dt;
    else times.push(dt);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2;
  console.log(JSON.stringify({ median_ms: median, first_ms: first }));
}
