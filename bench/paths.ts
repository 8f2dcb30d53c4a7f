/**
 * Files the harness needs outside the compiled tree. The benchmarks run from
 * dist/bench/ (compiled) or bench/ (tsx), so paths are found from the package
 * root rather than relative to this file.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}

export const PACKAGE_ROOT = findPackageRoot();
/** The CPython anchor script (not compiled: always the source file). */
export const PYTHON_ANCHOR = join(PACKAGE_ROOT, 'bench', 'python', 'mp_anchor.py');
/** Where `latest.jsonl` goes (git-ignored). */
export const RESULTS_DIR = join(PACKAGE_ROOT, 'bench', 'results');
