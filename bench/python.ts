/**
 * Runs the CPython anchor script (bench/python/mp_anchor.py) for one sample.
 */
import { execFile } from 'node:child_process';
import { PYTHON_ANCHOR as SCRIPT } from './paths.js';

/** The interpreter; `PYTHON=/path/to/python3 npm run bench` picks another. */
const PYTHON = process.env['PYTHON'] ?? 'python3';

/** What every invocation of the script reports besides its figures. */
export interface PythonReport {
  readonly python: string;
  /** CPU of the forkserver / resource tracker, which nobody reaps (see noise.ts). */
  readonly helper_cpu_s: number;
  readonly [key: string]: unknown;
}

/** Runs `mp_anchor.py ...args` and returns the JSON object it prints. */
export function runPythonAnchor(args: readonly string[]): Promise<PythonReport> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, ...args], { timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`${PYTHON} mp_anchor.py ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        return;
      }
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as PythonReport);
      } catch {
        reject(new Error(`mp_anchor.py printed no JSON: ${JSON.stringify(stdout.slice(-200))}`));
      }
    });
  });
}
