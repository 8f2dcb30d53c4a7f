/**
 * Cases `values` and `pass`: many small shared objects.
 *
 * `values`: mean time to make one `Value('i')` (with its lock) while all
 * made so far stay alive. Ours makes a million in a fresh Node process per
 * sample (../fixtures/many-values.ts), and the same number CPython reaches,
 * so both are compared at equal counts too; CPython makes them until one
 * fails (near `vm.max_map_count`, with an OSError) and its mean over those
 * is the anchor. The details carry how many CPython made, and our shared
 * memory per Value and mappings.
 *
 * `pass`: start + join of a child that reads 10,000 `Value('i')` handed in
 * its args, against the same with one `RawArray('i', 10_000)`: what handing
 * many small objects over costs compared with one large one, per start method.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as mp from 'multiprocessing-ts';
import { PACKAGE_ROOT } from '../paths.js';
import { runPythonAnchor } from '../python.js';
import { median } from '../stats.js';
import { sumArray, sumValues, TARGETS_URL } from '../targets.js';
import type { Case, CaseDefinition, Sample, Variant } from '../types.js';

const MANY_VALUES = join(PACKAGE_ROOT, 'dist', 'bench', 'fixtures', 'many-values.js');
const MILLION = 1_000_000;
/** CPython's count when it has not reported one yet (it stops near vm.max_map_count). */
const PYTHON_COUNT_GUESS = 65_000;

function manyValues(n: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [MANY_VALUES, String(n)], { timeout: 120_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`many-values ${n} failed: ${err.message}\n${stderr}`));
      const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, number | boolean>;
      resolve({
        value: r['us_per_object'] as number,
        extra: r,
        error: r['exact'] === true && r['n'] === n ? undefined : `made ${String(r['n'])} of ${n}, or a value read back wrong`,
      });
    });
  });
}

export const valuesCreate: CaseDefinition = {
  name: 'values',
  summary: 'µs to make one Value(\'i\') while all made stay alive (a million for ours)',
  make({ quick }): Case {
    let pythonCount = PYTHON_COUNT_GUESS;
    const python: Variant = {
      id: 'python.values',
      system: 'python-multiprocessing',
      label: 'python Value(\'i\') until it fails',
      async sample() {
        const r = await runPythonAnchor(['values', '--cap', String(quick ? 20_000 : MILLION)]);
        pythonCount = r['n'] as number;
        return {
          value: r['us_per_object'] as number,
          untrackedCpuS: r.helper_cpu_s,
          extra: { made: r['n'], stopped: r['stopped'], python: r.python },
          error: r['exact'] === true ? undefined : 'a value read back wrong',
        };
      },
    };
    return {
      name: 'values',
      title: "many Value('i') alive in one process",
      unit: 'µs/Value',
      better: 'lower',
      method: 'mean creation time per Value, all kept alive; each sample a fresh process',
      variants: [
        {
          id: 'mpts.million',
          system: 'multiprocessing-ts',
          label: `ours, ${quick ? '100,000' : '1,000,000'}`,
          target: { anchor: 'python.values', op: '<=', ratio: 0.2 },
          sample: () => manyValues(quick ? 100_000 : MILLION),
        },
        {
          id: 'mpts.python-count',
          system: 'multiprocessing-ts',
          label: 'ours, as many as python made',
          anchor: 'python.values',
          sample: () => manyValues(pythonCount),
        },
        python,
      ],
    };
  },
};

/** Median of `reps` start+join of a child of `method` running `target` on `args`, after one untimed. */
async function timeChild(method: mp.StartMethod, target: (...a: any[]) => void, args: unknown[], expected: number, out: Float64Array, reps: number): Promise<Sample> {
  const Process = mp.getContext(method).Process;
  const times: number[] = [];
  for (let i = 0; i <= reps; i++) {
    out[0] = 0;
    const t0 = performance.now();
    const p = new Process({ target, args: args as never, module: TARGETS_URL });
    p.start();
    await p.join();
    const dt = performance.now() - t0;
    if (p.exitCode !== 0) throw new Error(`child exited with ${p.exitCode}`);
    if (out[0] !== expected) return { value: NaN, error: `the child summed ${out[0]}, not ${expected}` };
    if (i > 0) times.push(dt);
  }
  return { value: median(times), extra: { reps, min_ms: Math.min(...times), max_ms: Math.max(...times) } };
}

const PASSED = 10_000;

export const valuesPass: CaseDefinition = {
  name: 'pass',
  summary: 'start + join of a child handed 10,000 Value(\'i\') vs one RawArray of 10,000 (ms)',
  make({ quick }): Case {
    const reps = quick ? 3 : 7;
    const expected = (PASSED * (PASSED - 1)) / 2;
    // Made once, before the first round: the figure is handing them over, not making them.
    let values: mp.SynchronizedValue[] = [];
    let array: mp.RawSharedArray<'i'> | null = null;
    const out = mp.RawArray('d', 1);
    const variants: Variant[] = [];
    for (const method of ['process', 'thread'] as const) {
      variants.push(
        {
          id: `mpts.values.${method}`,
          system: 'multiprocessing-ts',
          label: `ours '${method}', 10,000 Values`,
          target: { anchor: `mpts.array.${method}`, op: '<=', ratio: 10 },
          async warmup() {
            if (values.length === 0) values = Array.from({ length: PASSED }, (_, i) => mp.Value('i', i));
          },
          sample: () => timeChild(method, sumValues, [values, out], expected, out, reps),
        },
        {
          id: `mpts.array.${method}`,
          system: 'multiprocessing-ts',
          label: `ours '${method}', one RawArray of 10,000`,
          async warmup() {
            if (!array) {
              array = mp.RawArray('i', PASSED);
              for (let i = 0; i < PASSED; i++) array[i] = i;
            }
          },
          sample: () => timeChild(method, sumArray, [array, out], expected, out, reps),
        },
      );
    }
    return {
      name: 'pass',
      title: 'handing 10,000 small shared objects to a child',
      unit: 'ms',
      better: 'lower',
      method: `median of ${reps} start+join after 1 untimed; the child reads every element`,
      variants,
    };
  },
};
