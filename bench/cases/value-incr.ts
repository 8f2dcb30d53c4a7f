/**
 * Case `value`: 2 children each do n × (lock; v.value += 1; unlock) on one
 * shared `Value('i')`, all released at once.
 *
 * Each child first flags "ready" and then blocks on a gate lock the parent
 * holds, so child start-up is outside the clock. The clock runs from the
 * parent opening the gate until both children are joined (as the Python
 * anchor measures it); the children also stamp the end of their last
 * increment, and `incr_only_ops_s` in the JSON is the rate without the
 * children's exit. The final total is checked: a lost update fails the row.
 *
 * Ours with 'process' and 'thread' children, each with the blocking form
 * (`acquireSync`) and the event-loop form (`await acquire()`); the anchor is
 * CPython's `with v.get_lock(): v.value += 1` from 2 fork children. A bare
 * Atomics mutex between 2 worker threads is listed as well, without a
 * target: it shows what the machine allows, i.e. how much of the gap to a
 * target is library overhead.
 */
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import * as mp from 'multiprocessing-ts';
import { runPythonAnchor } from '../python.js';
import { incrementAsync, incrementSync, incrementWithLock, TARGETS_URL } from '../targets.js';
import type { Case, CaseDefinition, Sample, Variant } from '../types.js';

const CHILDREN = 2;
/** Give up on children that never report ready (a crash at import, say). */
const READY_TIMEOUT_MS = 30_000;

type Form = 'sync' | 'async' | 'withLock';

const nowNs = (): number => Number(process.hrtime.bigint());

/** Polls (without blocking the loop, which still has to send 'process' children their spec) until all are ready. */
async function allReady(ready: Int32Array, children: mp.Process[]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    let n = 0;
    for (let i = 0; i < ready.length; i++) n += Atomics.load(ready, i);
    if (n === ready.length) return;
    const dead = children.find((c) => c.exitCode !== null);
    if (dead) throw new Error(`${dead.name} exited with ${dead.exitCode} before it was ready`);
    if (Date.now() > deadline) throw new Error(`children not ready after ${READY_TIMEOUT_MS} ms`);
    await sleep(1);
  }
}

/** A sample of `CHILDREN × n` increments timed from `t0` (gate) to `t1` (all joined); `lastEnd` is the last child's own end stamp. */
function incrementSample(n: number, t0: number, t1: number, lastEnd: number, total: number, error: string | undefined): Sample {
  const expected = n * CHILDREN;
  return {
    value: expected / ((t1 - t0) / 1e9),
    extra: {
      n_per_child: n,
      children: CHILDREN,
      elapsed_s: (t1 - t0) / 1e9,
      incr_only_ops_s: expected / ((lastEnd - t0) / 1e9),
      total,
      expected,
    },
    ...(error ? { error } : {}),
  };
}

/** One run of ours: returns ops/s from gate release to both joined. */
async function runOurs(method: mp.StartMethod, form: Form, n: number): Promise<Sample> {
  const { Process } = mp.getContext(method);
  const v = mp.Value('i', 0);
  const gate = new mp.Lock();
  const ready = mp.RawArray('i', CHILDREN);
  const ends = mp.RawArray('d', CHILDREN);
  const target = { sync: incrementSync, async: incrementAsync, withLock: incrementWithLock }[form];
  gate.acquireSync();
  const children = Array.from(
    { length: CHILDREN },
    (_, slot) => new Process({ target, args: [v, n, gate, ready, ends, slot], module: TARGETS_URL }),
  );
  try {
    for (const c of children) c.start();
    await allReady(ready, children);
  } catch (err) {
    // Open the gate and stop whatever started, so nothing is left running.
    gate.release();
    for (const c of children) if (c.isAlive()) c.kill();
    throw err;
  }
  const t0 = nowNs();
  gate.release();
  await Promise.all(children.map((c) => c.join()));
  const t1 = nowNs();
  const total = v.value;
  const expected = n * CHILDREN;
  const codes = children.map((c) => c.exitCode);
  const lastEnd = Math.max(...ends);
  const error =
    total !== expected
      ? `total ${total} != ${expected}`
      : codes.some((c) => c !== 0)
        ? `exit codes ${codes.join(',')}`
        : undefined;
  return incrementSample(n, t0, t1, lastEnd, total, error);
}

const LABELS: Record<Form, string> = { sync: 'acquireSync', async: 'await acquire', withLock: 'await withLock' };

/**
 * The increment loop alone (gate open → last increment, no child exit)
 * against the bare Atomics mutex's loop in the same run: how much the
 * library adds to the physical limit. No target for `await acquire`, which
 * holds the lock across a microtask turn by design.
 */
const LOOP_TARGETS: Record<Form, number | undefined> = { sync: 0.5, async: undefined, withLock: 0.3 };

function ours(method: mp.StartMethod, form: Form, n: number, warmN: number): Variant {
  return {
    id: `mpts.${method}.${form}`,
    system: 'multiprocessing-ts',
    label: `ours '${method}' ${LABELS[form]}`,
    // Python's `with lock:` blocks, like acquireSync; the event-loop forms pay an await per increment.
    target: { anchor: 'python.fork', op: '>=', ratio: form === 'sync' ? 10 : 5 },
    views: [
      {
        id: `mpts.${method}.${form}.loop`,
        label: `ours '${method}' ${LABELS[form]}, loop only`,
        metric: 'incr_only_ops_s',
        ...(LOOP_TARGETS[form] === undefined
          ? { anchor: 'node.sab-mutex.loop' }
          : { target: { anchor: 'node.sab-mutex.loop', op: '>=' as const, ratio: LOOP_TARGETS[form]! } }),
      },
    ],
    // First use creates the tree directory and its reaper; keep that out of round 1.
    warmup: async () => {
      await runOurs(method, form, warmN);
    },
    sample: () => runOurs(method, form, n),
  };
}

const SAB_MUTEX_WORKER = new URL('../fixtures/sab-mutex-worker.js', import.meta.url);

/** One run of the bare Atomics mutex (see fixtures/sab-mutex-worker.ts), timed like ours. */
async function runSabMutex(n: number): Promise<Sample> {
  const sab = new SharedArrayBuffer(32);
  const w = new Int32Array(sab, 0, 4);
  const ends = new Float64Array(sab, 16, 2);
  const workers = Array.from({ length: CHILDREN }, (_, slot) => new Worker(SAB_MUTEX_WORKER, { workerData: { sab, n, slot } }));
  const exits = workers.map((wk) => once(wk, 'exit'));
  while (Atomics.load(w, 3) < CHILDREN) await sleep(1);
  const t0 = nowNs();
  Atomics.store(w, 0, 1);
  Atomics.notify(w, 0);
  await Promise.all(exits);
  const t1 = nowNs();
  const total = Atomics.load(w, 2);
  const expected = n * CHILDREN;
  return incrementSample(n, t0, t1, Math.max(...ends), total, total === expected ? undefined : `total ${total} != ${expected}`);
}

function sabMutex(n: number, warmN: number): Variant {
  return {
    id: 'node.sab-mutex',
    system: 'node-worker_threads',
    label: 'raw Atomics mutex, 2 threads',
    anchor: 'python.fork',
    views: [{ id: 'node.sab-mutex.loop', label: 'raw Atomics mutex, 2 threads, loop only', metric: 'incr_only_ops_s', anchor: 'python.fork.loop' }],
    warmup: async () => {
      await runSabMutex(warmN);
    },
    sample: () => runSabMutex(n),
  };
}

function python(n: number): Variant {
  return {
    id: 'python.fork',
    system: 'python-multiprocessing',
    label: 'python fork with get_lock()',
    views: [{ id: 'python.fork.loop', label: 'python fork with get_lock(), loop only', metric: 'incr_only_ops_s' }],
    async sample() {
      const r = await runPythonAnchor(['value', '--method', 'fork', '--n', String(n), '--procs', String(CHILDREN)]);
      const expected = r['expected'] as number;
      const elapsed = r['elapsed_s'] as number;
      return {
        value: expected / elapsed,
        untrackedCpuS: r.helper_cpu_s,
        extra: {
          n_per_child: n,
          children: CHILDREN,
          elapsed_s: elapsed,
          incr_only_ops_s: expected / (r['incr_elapsed_s'] as number),
          total: r['total'],
          expected,
          python: r.python,
        },
        ...(r['exact'] ? {} : { error: `total ${String(r['total'])} != ${expected}` }),
      };
    },
  };
}

export const valueIncr: CaseDefinition = {
  name: 'value',
  summary: 'locked Value increments from 2 children (ops/s)',
  make({ quick }): Case {
    // Ours runs more increments than Python so that both take a few hundred
    // ms: long enough that child exit and timer granularity do not matter.
    const n = quick ? 200_000 : 1_000_000;
    const pyN = quick ? 100_000 : 200_000;
    // The bare mutex is ~10× faster again; more increments keep it measurable.
    const rawN = quick ? 1_000_000 : 5_000_000;
    const warmN = 10_000;
    return {
      name: 'value',
      title: 'locked Value increments, 2 children',
      unit: 'ops/s',
      better: 'higher',
      method:
        `${CHILDREN} children × n increments (ours n=${n.toLocaleString('en-US')}, python ${pyN.toLocaleString('en-US')}, ` +
        `raw ${rawN.toLocaleString('en-US')}); timed gate release → both joined`,
      variants: [
        ours('process', 'sync', n, warmN),
        ours('process', 'async', n, warmN),
        ours('thread', 'sync', n, warmN),
        ours('thread', 'async', n, warmN),
        ours('process', 'withLock', n, warmN),
        ours('thread', 'withLock', n, warmN),
        python(pyN),
        sabMutex(rawN, warmN),
      ],
    };
  },
};
