/**
 * Case `start-ts`: start+join of a no-op target in a TypeScript module, the
 * parent running under tsx, as `tsx main.ts` and as
 * `node --import tsx main.ts`, with the 'process' and 'thread' start methods.
 *
 * The parent must itself run under tsx, so each sample runs a driver
 * (../ts/driver.ts) under tsx that times `reps` start+join after `warmup`
 * untimed ones and prints the median: the driver's own start-up is outside
 * the figure. Those starts take warm spares (src/process/spares.ts), as any
 * repeated start does; each row has a view of the driver's first start,
 * which has no spare to take. Anchors in the same run: raw `fork()` and `new Worker()` of an
 * empty JavaScript file, our plain-JavaScript rows, and CPython's spawn and
 * forkserver.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import type * as mp from 'multiprocessing-ts';
import { PACKAGE_ROOT } from '../paths.js';
import type { Case, CaseDefinition, Sample, Variant } from '../types.js';
import { ours, python, rawFork, rawWorker } from './start-join.js';

const DRIVER = join(PACKAGE_ROOT, 'bench', 'ts', 'driver.ts');
const TSX_CLI = join(PACKAGE_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');

const RUNNERS = {
  cli: { label: 'tsx main.ts', argv: [TSX_CLI, DRIVER] },
  import: { label: 'node --import tsx', argv: ['--import', 'tsx', DRIVER] },
} as const;

function driverSample(argv: readonly string[], method: mp.StartMethod, reps: number, warmup: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...argv, method, String(reps), String(warmup)],
      { cwd: PACKAGE_ROOT, timeout: 120_000, maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`driver under tsx failed: ${err.message}\n${stderr}`));
        const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { median_ms: number; min_ms: number; max_ms: number; first_ms: number };
        resolve({ value: r.median_ms, extra: { reps, warmup, min_ms: r.min_ms, max_ms: r.max_ms, first_ms: r.first_ms } });
      },
    );
  });
}

function oursTs(runner: keyof typeof RUNNERS, method: mp.StartMethod, anchor: string, reps: number, warmup: number): Variant {
  return {
    id: `mpts.ts.${runner}.${method}`,
    system: 'multiprocessing-ts',
    label: `ours '${method}', .ts under ${RUNNERS[runner].label}`,
    target: { anchor, op: '<=', ratio: 1.5 },
    // The driver's first start, before any spare exists: what a single start costs.
    views: [{ id: `mpts.ts.${runner}.${method}.first`, label: `  same, first start (cold, no spare yet)`, metric: 'first_ms', anchor }],
    sample: () => driverSample(RUNNERS[runner].argv, method, reps, warmup),
  };
}

export const startTs: CaseDefinition = {
  name: 'start-ts',
  summary: 'start + join of a no-op target in a TypeScript module, parent under tsx (ms)',
  make({ quick }): Case {
    const reps = quick ? 8 : 15;
    const warmup = 2;
    return {
      name: 'start-ts',
      title: 'start + join, TypeScript target under tsx (no-op target)',
      unit: 'ms',
      better: 'lower',
      method: `median of ${reps} start+join after ${warmup} warm-ups per sample, timed inside a driver under tsx`,
      variants: [
        oursTs('cli', 'process', 'node.fork', reps, warmup),
        oursTs('import', 'process', 'node.fork', reps, warmup),
        oursTs('cli', 'thread', 'node.worker', reps, warmup),
        oursTs('import', 'thread', 'node.worker', reps, warmup),
        ours('process', 'node.fork', reps, warmup),
        ours('thread', 'node.worker', reps, warmup),
        rawFork(reps, warmup),
        rawWorker(reps, warmup),
        python('spawn', reps, warmup),
        python('forkserver', reps, warmup),
      ],
    };
  },
};
