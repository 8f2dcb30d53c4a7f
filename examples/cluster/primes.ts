// The pool example's CPU-bound map, run on a cluster: the same countPrimes,
// by reference, on every worker that serves the pool, wherever it runs.
//
//   redis-server --port 6379 --save ''                                  # or any Redis you have
//   npx multiprocessing-ts worker --cluster redis://127.0.0.1:6379/0 --module examples/lib/primes.ts   # terminal 2 (a .ts module: run the CLI with node --import tsx)
//   npx multiprocessing-ts worker --cluster redis://127.0.0.1:6379/0 --module examples/lib/primes.ts   # terminal 3, or another machine
//   MULTIPROCESSING_TS_CLUSTER=redis://127.0.0.1:6379/0 node --import tsx examples/cluster/primes.ts
import * as mp from 'multiprocessing-ts';
import { countPrimes } from '../lib/primes.js';
import { progressBar } from '../lib/progress-bar.js';

if (mp.isMainProcess()) {
  const LIMIT = 6_000_000;
  const PARTS = 120;
  const ranges: Array<[number, number]> = Array.from({ length: PARTS }, (_, i) => [(i * LIMIT) / PARTS, ((i + 1) * LIMIT) / PARTS]);
  const ctx = mp.getContext('cluster'); // the URL from MULTIPROCESSING_TS_CLUSTER
  await using pool = new ctx.Pool();
  const { workers } = await pool.stats();
  const slots = workers.reduce((n, w) => n + w.concurrency, 0);
  console.log(`cluster: ${workers.length} worker(s), ${slots} task slot(s)`);
  const t0 = performance.now();
  const counts = await pool.map(countPrimes, ranges, 1, { onProgress: progressBar('cluster pool') });
  const total = counts.reduce((a, b) => a + b, 0);
  console.log(`cluster pool: ${total} primes below ${LIMIT} in ${Math.round(performance.now() - t0)} ms`);
}
