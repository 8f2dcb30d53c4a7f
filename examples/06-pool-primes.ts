// A CPU-bound map on a Pool: count the primes below 6,000,000, cut into 120
// ranges, first in a serial loop, then on a pool of one worker per core,
// with a progress bar (on stderr). Prints both counts and the speed-up.
import * as mp from 'multiprocessing-ts';
import { progressBar } from './lib/progress-bar.js';
import { countPrimes } from './lib/primes.js';

// Exported by this entry script, so the pool's workers take it by reference.
export { countPrimes };

if (mp.isMainProcess()) {
  const LIMIT = 6_000_000;
  const PARTS = 120;
  const ranges: Array<[number, number]> = Array.from({ length: PARTS }, (_, i) => [(i * LIMIT) / PARTS, ((i + 1) * LIMIT) / PARTS]);

  let t0 = performance.now();
  const serial = ranges.map(countPrimes).reduce((a, b) => a + b, 0);
  const serialMs = performance.now() - t0;
  console.log(`serial loop: ${serial} primes below ${LIMIT} in ${Math.round(serialMs)} ms`);

  t0 = performance.now();
  await using pool = new mp.Pool();
  const counts = await pool.map(countPrimes, ranges, 1, { onProgress: progressBar(`pool of ${pool.processes}`) });
  const parallel = counts.reduce((a, b) => a + b, 0);
  const poolMs = performance.now() - t0;
  console.log(`pool of ${pool.processes}: ${parallel} primes below ${LIMIT} in ${Math.round(poolMs)} ms (pool start included)`);
  console.log(`speed-up: ${(serialMs / poolMs).toFixed(2)}x on ${mp.cpuCount()} cores; same count: ${parallel === serial}`);
}
