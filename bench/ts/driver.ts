/**
 * Driver of the `start-ts` case, run under tsx (`tsx driver.ts` or
 * `node --import tsx driver.ts`) so that its children inherit tsx as a
 * user's would. Times `reps` start+join of a no-op target from a TypeScript
 * module after `warmup` untimed ones, and prints the median as JSON: its own
 * start-up (tsx, the package) is outside the figure. The timed starts take
 * a warm spare (src/process/spares.ts), as repeated starts do; the first
 * start, which has none, is reported apart as `first_ms`.
 *
 * Usage: driver.ts <process|thread> <reps> <warmup>
 */
import * as mp from 'multiprocessing-ts';
import { noop } from './noop.js';

const TARGET_MODULE = new URL('./noop.ts', import.meta.url);

if (mp.isMainProcess()) {
  const [method, reps, warmup] = [process.argv[2] as mp.StartMethod, Number(process.argv[3]), Number(process.argv[4])];
  const Process = mp.getContext(method).Process;
  const times: number[] = [];
  let first = 0;
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    const p = new Process({ target: noop, module: TARGET_MODULE });
    p.start();
    await p.join();
    const dt = performance.now() - t0;
    if (p.exitCode !== 0) throw new Error(`noop child exited with ${p.exitCode}`);
    if (i === 0) first = dt;
    if (i >= warmup) times.push(dt);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2;
  console.log(JSON.stringify({ median_ms: median, min_ms: times[0], max_ms: times.at(-1), first_ms: first }));
}
