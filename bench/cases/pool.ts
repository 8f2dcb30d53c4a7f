/**
 * Pool cases, at the anchors' own sizes (../shared/bench/anchors: groups f,
 * g and h), 2 workers, defaults:
 *
 * - `pool`: no-op tasks. Ours: `map(noop, 0..n-1, 1)` (chunksize 1) and
 *   `n × applyAsync` at once, with the default start method ('process')
 *   and with 'thread'. Anchors in the same run: piscina's default (n
 *   `run()` at once, 2 threads; the anchor suite's g) and CPython's
 *   `Pool(2).map(ident, range(n), chunksize=1)` (fork). One sample: a new
 *   pool, a warm-up of 2,000 tasks (workers up, JIT warm), the n timed,
 *   the pool ended, as the anchor suite does.
 * - `pool-cpu`: 64 tasks of the `h` workload (the sum of i*i for i < 2e6),
 *   `map` with the default chunksize, against the same 64 run serially in
 *   this thread: the speed-up on 2 cores, as tasks/s over the serial rate.
 *   piscina for context, and the physical limit: two bare Workers, no pool,
 *   each running half of the 64 (whatever the two vCPUs give at once; if
 *   they are SMT siblings or share a host core, less than 2×).
 * - `pool-start`: a program's first pool of 2, from construction to its
 *   first result (`apply`; ending the pool is not timed), as a program that
 *   makes one pool pays it; ours and piscina timed alike by one driver
 *   (../ts/pool-driver.ts), compiled JavaScript and the `.ts` under tsx
 *   (`tsx main.ts`), a fresh driver per sample. Later pools of the same
 *   program are a view. The physical limits, timed by the same driver: a
 *   bare `new Worker` and a bare spawn of node, each to its first message.
 *   CPython's fork pool for context.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import * as mp from 'multiprocessing-ts';
import { PACKAGE_ROOT } from '../paths.js';
import { runPythonAnchor } from '../python.js';
import { cpuTask, noopTask, TARGETS_URL } from '../targets.js';
import type { Case, CaseDefinition, Sample, Variant, View } from '../types.js';

const WORKERS = 2;
const WARM = 2_000;
const PISCINA_TASKS = fileURLToPath(new URL('../fixtures/piscina-task.js', import.meta.url));

const nowS = (): number => performance.now() / 1e3;

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Checks a no-op run's results: all there, in order. */
function checkIdentity(res: readonly unknown[], n: number): string | undefined {
  if (res.length !== n || res[0] !== 0 || res[n - 1] !== n - 1 || res[n >> 1] !== n >> 1) return `wrong results (${res.length} of ${n})`;
  return undefined;
}

type Shape = 'map' | 'applyAsync';

async function oursNoop(method: mp.StartMethod, shape: Shape, n: number): Promise<Sample> {
  const pool = new mp.Pool(WORKERS, { context: method, module: TARGETS_URL });
  try {
    await pool.map(noopTask, range(WARM), 1);
    const xs = range(n);
    const t0 = nowS();
    const res = shape === 'map' ? await pool.map(noopTask, xs, 1) : await Promise.all(xs.map((x) => pool.applyAsync(noopTask, [x])));
    const elapsed = nowS() - t0;
    const error = checkIdentity(res, n);
    return { value: n / elapsed, extra: { n, elapsed_s: elapsed }, ...(error ? { error } : {}) };
  } finally {
    pool.terminate();
    await pool.join();
  }
}

function oursNoopVariant(method: mp.StartMethod, shape: Shape, n: number): Variant {
  const isDefault = method === mp.getStartMethod();
  return {
    id: `mpts.${shape}.${method}`,
    system: 'multiprocessing-ts',
    label: `ours '${method}'${isDefault ? ' (default)' : ''}, ${shape === 'map' ? 'map chunksize 1' : `${n.toLocaleString('en-US')} applyAsync at once`}`,
    target: { anchor: 'piscina.noop', op: '>=', ratio: 2 },
    views: [{ id: `mpts.${shape}.${method}.vs-python`, label: `  same, vs Python's Pool.map chunksize=1`, metric: 'per_s', target: { anchor: 'python.pool-map', op: '>=', ratio: 2 } }],
    sample: async () => {
      const s = await oursNoop(method, shape, n);
      return { ...s, extra: { ...s.extra, per_s: s.value } };
    },
  };
}

async function piscinaRun<T>(task: 'noop' | 'cpu', args: readonly T[]): Promise<{ pool: Piscina; results: Promise<unknown[]> }> {
  const pool = new Piscina({ filename: PISCINA_TASKS, name: task, minThreads: WORKERS, maxThreads: WORKERS });
  return { pool, results: Promise.all(args.map((x) => pool.run(x))) };
}

function piscinaNoop(n: number): Variant {
  return {
    id: 'piscina.noop',
    system: 'piscina',
    label: `piscina default, ${n.toLocaleString('en-US')} run() at once`,
    async sample() {
      const pool = new Piscina({ filename: PISCINA_TASKS, name: 'noop', minThreads: WORKERS, maxThreads: WORKERS });
      try {
        await Promise.all(range(WARM).map((x) => pool.run(x)));
        const t0 = nowS();
        const res = await Promise.all(range(n).map((x) => pool.run(x)));
        const elapsed = nowS() - t0;
        const error = checkIdentity(res, n);
        return { value: n / elapsed, extra: { n, elapsed_s: elapsed }, ...(error ? { error } : {}) };
      } finally {
        await pool.destroy();
      }
    },
  };
}

function pythonPoolMap(n: number): Variant {
  return {
    id: 'python.pool-map',
    system: 'python-multiprocessing',
    label: 'python fork Pool(2).map chunksize=1',
    async sample() {
      const r = await runPythonAnchor(['pool-map', '--n', String(n), '--chunksize', '1']);
      return { value: n / (r['elapsed_s'] as number), untrackedCpuS: r.helper_cpu_s, extra: { n, python: r.python } };
    },
  };
}

export const poolNoop: CaseDefinition = {
  name: 'pool',
  summary: 'Pool of 2, no-op tasks: map chunksize 1 and 100,000 applyAsync, vs piscina and Python (tasks/s)',
  make({ quick }): Case {
    const n = quick ? 30_000 : 100_000;
    return {
      name: 'pool',
      title: 'Pool throughput, no-op tasks, 2 workers',
      unit: 'tasks/s',
      better: 'higher',
      method: `a new pool per sample, ${WARM.toLocaleString('en-US')} warm-up tasks, then ${n.toLocaleString('en-US')} timed (the anchor suite's g and f)`,
      variants: [
        oursNoopVariant('process', 'map', n),
        oursNoopVariant('process', 'applyAsync', n),
        oursNoopVariant('thread', 'map', n),
        oursNoopVariant('thread', 'applyAsync', n),
        piscinaNoop(n),
        pythonPoolMap(n),
      ],
    };
  },
};

// ---------------------------------------------------------------------------
// pool-cpu

const CPU_N = 2_000_000;
const CPU_TASKS = 64;

function cpuSerial(): Variant {
  return {
    id: 'serial.cpu',
    system: 'node-main-thread',
    label: `serial in this thread, ${CPU_TASKS} tasks`,
    async warmup() {
      for (let i = 0; i < 3; i++) cpuTask(CPU_N);
    },
    async sample() {
      const t0 = nowS();
      let sum = 0;
      for (let i = 0; i < CPU_TASKS; i++) sum += cpuTask(CPU_N);
      const elapsed = nowS() - t0;
      return { value: CPU_TASKS / elapsed, extra: { elapsed_s: elapsed, sum } };
    },
  };
}

function oursCpu(method: mp.StartMethod): Variant {
  let pool: mp.Pool | null = null;
  return {
    id: `mpts.cpu.${method}`,
    system: 'multiprocessing-ts',
    label: `ours '${method}' map, default chunksize`,
    target: { anchor: 'serial.cpu', op: '>=', ratio: 1.9 },
    views: [{ id: `mpts.cpu.${method}.vs-raw`, label: `  ours '${method}', vs 2 raw Workers`, metric: 'per_s', anchor: 'raw.cpu' }],
    async warmup() {
      pool = new mp.Pool(WORKERS, { context: method, module: TARGETS_URL });
      await pool.map(cpuTask, [CPU_N, CPU_N, CPU_N, CPU_N], 1);
    },
    async sample() {
      const t0 = nowS();
      const res = await pool!.map(cpuTask, Array(CPU_TASKS).fill(CPU_N));
      const elapsed = nowS() - t0;
      const bad = res.some((v) => v !== res[0]);
      return { value: CPU_TASKS / elapsed, extra: { elapsed_s: elapsed, per_s: CPU_TASKS / elapsed }, ...(bad ? { error: 'results differ' } : {}) };
    },
  };
}

/** The workload as a Worker's source: the same loop as `cpuTask`, `count` times per message. */
const RAW_CPU_WORKER = `const { parentPort } = require('node:worker_threads');
function cpu(n) { let s = 0; for (let i = 0; i < n; i++) s += i * i; return s; }
parentPort.on('message', ({ n, count }) => { let s = 0; for (let k = 0; k < count; k++) s += cpu(n); parentPort.postMessage(s); });`;

/**
 * The physical limit: two bare Workers, each given half of the tasks in one
 * message, no pool. What the two vCPUs deliver at once.
 */
function rawWorkersCpu(): Variant {
  let workers: Worker[] = [];
  const run = (w: Worker, count: number) =>
    new Promise<number>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
      w.postMessage({ n: CPU_N, count });
    });
  return {
    id: 'raw.cpu',
    system: 'node-worker_threads',
    label: `2 raw Workers, ${CPU_TASKS / 2} tasks each, no pool`,
    anchor: 'serial.cpu',
    async warmup() {
      workers = [0, 1].map(() => new Worker(RAW_CPU_WORKER, { eval: true, execArgv: [] }));
      await Promise.all(workers.map((w) => run(w, 2)));
      for (const w of workers) w.unref();
    },
    async sample() {
      const t0 = nowS();
      const sums = await Promise.all(workers.map((w) => run(w, CPU_TASKS / 2)));
      const elapsed = nowS() - t0;
      return { value: CPU_TASKS / elapsed, extra: { elapsed_s: elapsed }, ...(sums[0] !== sums[1] ? { error: 'results differ' } : {}) };
    },
  };
}

function piscinaCpu(): Variant {
  let pool: Piscina | null = null;
  return {
    id: 'piscina.cpu',
    system: 'piscina',
    label: 'piscina default',
    anchor: 'serial.cpu',
    views: [{ id: 'piscina.cpu.vs-raw', label: '  piscina, vs 2 raw Workers', metric: 'per_s', anchor: 'raw.cpu' }],
    async warmup() {
      pool = new Piscina({ filename: PISCINA_TASKS, name: 'cpu', minThreads: WORKERS, maxThreads: WORKERS });
      await Promise.all([CPU_N, CPU_N, CPU_N, CPU_N].map((x) => pool!.run(x)));
    },
    async sample() {
      const t0 = nowS();
      await Promise.all(Array.from({ length: CPU_TASKS }, () => pool!.run(CPU_N)));
      const elapsed = nowS() - t0;
      return { value: CPU_TASKS / elapsed, extra: { elapsed_s: elapsed, per_s: CPU_TASKS / elapsed } };
    },
  };
}

export const poolCpu: CaseDefinition = {
  name: 'pool-cpu',
  summary: `Pool of 2, ${CPU_TASKS} CPU-bound tasks: the speed-up over a serial loop (tasks/s)`,
  make(): Case {
    return {
      name: 'pool-cpu',
      title: `Pool speed-up, ${CPU_TASKS} × sum(i*i, i < 2e6), 2 workers`,
      unit: 'tasks/s',
      better: 'higher',
      method: `one map of ${CPU_TASKS} tasks per sample on a pool started before the rounds; RATIO over the serial loop is the speed-up; views: ratio to 2 raw Workers (the machine's own speed-up)`,
      variants: [oursCpu('process'), oursCpu('thread'), piscinaCpu(), rawWorkersCpu(), cpuSerial()],
    };
  },
};

// ---------------------------------------------------------------------------
// pool-start

const DRIVER_TS = join(PACKAGE_ROOT, 'bench', 'ts', 'pool-driver.ts');
const DRIVER_JS = fileURLToPath(new URL('../ts/pool-driver.js', import.meta.url));
const TSX_CLI = join(PACKAGE_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');

type Runner = 'js' | 'tsx';
type Starter = 'ours-process' | 'ours-thread' | 'piscina' | 'raw-worker' | 'raw-spawn';

function driverSample(runner: Runner, who: Starter, reps: number): Promise<Sample> {
  const argv = runner === 'js' ? [DRIVER_JS] : [TSX_CLI, DRIVER_TS];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...argv, who, String(reps)], { cwd: PACKAGE_ROOT, timeout: 120_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`pool driver (${runner}, ${who}) failed: ${err.message}\n${stderr}`));
      const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { median_ms: number; first_ms: number };
      resolve({ value: r.first_ms, extra: { reps, first_ms: r.first_ms, later_ms: r.median_ms } });
    });
  });
}

const STARTER_LABELS: Record<Starter, string> = {
  'ours-process': "ours 'process' (default)",
  'ours-thread': "ours 'thread'",
  piscina: 'piscina default',
  'raw-worker': "raw new Worker (eval'd one-liner) → first message",
  'raw-spawn': 'raw spawn(node -e) → first IPC message',
};

/** The physical limit each of our start methods is read against. */
const RAW_OF: Partial<Record<Starter, Starter>> = { 'ours-thread': 'raw-worker', 'ours-process': 'raw-spawn' };

function startVariant(runner: Runner, who: Starter, reps: number): Variant {
  const ours = who.startsWith('ours');
  const raw = who.startsWith('raw');
  const where = runner === 'js' ? 'compiled JS' : '.ts under tsx main.ts';
  const label = `${STARTER_LABELS[who]}${raw ? '' : `, ${where}`}`;
  const short = `${who.replace('ours-', "'").replace(/^'(\w+)$/, "'$1'")} ${runner === 'js' ? 'JS' : 'tsx'}`;
  const views: View[] = [];
  const limit = RAW_OF[who];
  if (limit) {
    // 'process' is judged against a bare spawn in compiled JS (the goal set for this case: ≤ 1.2×); the rest is for reading.
    const target = who === 'ours-process' && runner === 'js' ? { target: { anchor: `${limit}.js`, op: '<=' as const, ratio: 1.2 } } : { anchor: `${limit}.js` };
    views.push({ id: `${who}.${runner}.vs-raw`, label: `  ${short}, vs the raw row`, metric: 'first_ms', ...target });
  }
  if (!raw) {
    views.push({ id: `${who}.${runner}.later`, label: `  ${short}: later pools (median of ${reps})`, metric: 'later_ms', ...(ours ? { anchor: `piscina.${runner}.later` } : {}) });
  }
  return {
    id: `${who}.${runner}`,
    system: ours ? 'multiprocessing-ts' : raw ? 'node' : 'piscina',
    label,
    ...(ours ? { target: { anchor: `piscina.${runner}`, op: '<=' as const, ratio: 1 } } : {}),
    views,
    sample: () => driverSample(runner, who, reps),
  };
}

function pythonPoolStart(reps: number): Variant {
  return {
    id: 'python.pool-start',
    system: 'python-multiprocessing',
    label: 'python fork Pool(2) → apply',
    async sample() {
      const r = await runPythonAnchor(['pool-start', '--reps', String(reps)]);
      return { value: r['median_ms'] as number, untrackedCpuS: r.helper_cpu_s, extra: { reps, python: r.python } };
    },
  };
}

export const poolStart: CaseDefinition = {
  name: 'pool-start',
  summary: 'a new Pool of 2 to its first result, JS and .ts under tsx, vs piscina (ms)',
  make({ quick }): Case {
    const reps = quick ? 3 : 5;
    return {
      name: 'pool-start',
      title: 'Pool start to first result, 2 workers',
      unit: 'ms',
      better: 'lower',
      method: `a program's first pool (new pool to its first apply() result), timed inside a fresh driver per sample (its own start-up outside the figure); views: ${reps} later pools`,
      variants: [
        startVariant('js', 'ours-process', reps),
        startVariant('js', 'ours-thread', reps),
        startVariant('js', 'piscina', reps),
        startVariant('tsx', 'ours-process', reps),
        startVariant('tsx', 'ours-thread', reps),
        startVariant('tsx', 'piscina', reps),
        startVariant('js', 'raw-worker', reps),
        startVariant('js', 'raw-spawn', reps),
        pythonPoolStart(reps),
      ],
    };
  },
};
