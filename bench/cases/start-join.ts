/**
 * Case `start`: start a child that does nothing and wait for it to end.
 *
 * Ours: `new Process({ target: noop, module }).start(); await p.join()` with
 * the 'process' and 'thread' start methods. Anchors: what those start methods
 * are built on (`child_process.fork(empty)` and `new Worker(empty)` until
 * 'exit'), and CPython's `Process(target=noop).start(); join()` with fork,
 * spawn and forkserver. One sample = the median of `reps` timed repetitions
 * after `warmup` untimed ones, so one slow start does not decide a round.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import * as mp from 'multiprocessing-ts';
import { runPythonAnchor } from '../python.js';
import { median } from '../stats.js';
import { noop, TARGETS_URL } from '../targets.js';
import type { Case, CaseDefinition, Sample, Variant } from '../types.js';

const EMPTY_MODULE = new URL('../fixtures/empty.js', import.meta.url);

/** Times `once()` `warmup + reps` times; the sample is the median of the timed ones. */
async function timeReps(reps: number, warmup: number, once: () => Promise<void>): Promise<Sample> {
  const times: number[] = [];
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    await once();
    const dt = performance.now() - t0;
    if (i >= warmup) times.push(dt);
  }
  return { value: median(times), extra: { reps, warmup, min_ms: Math.min(...times), max_ms: Math.max(...times) } };
}

export function ours(method: mp.StartMethod, anchor: string, reps: number, warmup: number): Variant {
  const Process = mp.getContext(method).Process;
  return {
    id: `mpts.${method}`,
    system: 'multiprocessing-ts',
    label: `ours '${method}'`,
    target: { anchor, op: '<=', ratio: 1.1 },
    sample: () =>
      timeReps(reps, warmup, async () => {
        const p = new Process({ target: noop, module: TARGETS_URL });
        p.start();
        await p.join();
        if (p.exitCode !== 0) throw new Error(`noop child exited with ${p.exitCode}`);
      }),
  };
}

export function rawWorker(reps: number, warmup: number): Variant {
  return {
    id: 'node.worker',
    system: 'node-worker_threads',
    label: 'raw new Worker → exit',
    sample: () =>
      timeReps(reps, warmup, async () => {
        const w = new Worker(EMPTY_MODULE);
        const [code] = (await once(w, 'exit')) as [number];
        if (code !== 0) throw new Error(`empty worker exited with ${code}`);
      }),
  };
}

export function rawFork(reps: number, warmup: number): Variant {
  return {
    id: 'node.fork',
    system: 'node-child_process',
    label: 'raw fork() → exit',
    sample: () =>
      timeReps(reps, warmup, async () => {
        const c = fork(EMPTY_MODULE);
        const [code] = (await once(c, 'exit')) as [number | null];
        if (code !== 0) throw new Error(`empty child exited with ${code}`);
      }),
  };
}

export function python(method: 'fork' | 'spawn' | 'forkserver', reps: number, warmup: number): Variant {
  return {
    id: `python.${method}`,
    system: 'python-multiprocessing',
    label: `python ${method}`,
    async sample() {
      const r = await runPythonAnchor(['start', '--method', method, '--reps', String(reps), '--warmup', String(warmup)]);
      return {
        value: r['median_ms'] as number,
        untrackedCpuS: r.helper_cpu_s,
        extra: { reps, warmup, python: r.python },
      };
    },
  };
}

export const startJoin: CaseDefinition = {
  name: 'start',
  summary: 'process start + join of a no-op child (ms)',
  make({ quick }): Case {
    const reps = quick ? 8 : 20;
    const warmup = 2;
    return {
      name: 'start',
      title: 'process start + join (no-op target)',
      unit: 'ms',
      better: 'lower',
      method: `median of ${reps} start+join after ${warmup} warm-ups per sample`,
      variants: [
        ours('process', 'node.fork', reps, warmup),
        ours('thread', 'node.worker', reps, warmup),
        rawFork(reps, warmup),
        rawWorker(reps, warmup),
        python('fork', reps, warmup),
        python('spawn', reps, warmup),
        python('forkserver', reps, warmup),
      ],
    };
  },
};
