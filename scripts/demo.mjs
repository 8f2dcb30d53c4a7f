#!/usr/bin/env node
/**
 * Runs every example (examples/*.ts) under both start methods, the way a
 * user would (`node --import tsx`), prints what it printed, and checks the
 * seed examples against what Python prints (examples/expected/*.txt).
 *
 * Usage: npm run demo [-- name-filter]
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { matchesPython } from './example-output.mjs';
import { runClusterExamples } from './demo-cluster.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const filter = process.argv[2] ?? '';
const examples = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.ts') && f.includes(filter)).sort();
let failures = 0;

for (const file of examples) {
  const expectedFile = join(root, 'examples', 'expected', file.replace(/\.ts$/, '.txt'));
  const expected = existsSync(expectedFile) ? readFileSync(expectedFile, 'utf8') : null;
  for (const method of ['process', 'thread']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join('examples', file)], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, MULTIPROCESSING_TS_START_METHOD: method },
      timeout: 60_000,
    });
    const ok = r.status === 0 && (expected === null || matchesPython(file, r.stdout, expected));
    if (!ok) failures++;
    const verdict = expected === null ? (ok ? '✓ ran (an example of ours: no Python output to compare)' : '✗ failed') : ok ? '✓ prints what Python prints' : '✗ differs from Python';
    console.log(`── ${file} (start method '${method}') ${verdict}`);
    process.stdout.write(r.stdout);
    if (r.stderr) process.stdout.write(r.stderr);
    if (!ok && expected !== null) process.stdout.write(`── expected:\n${expected}`);
  }
}
// The cluster examples need a Redis: a redis-server of their own, when the machine has one.
let clusterRuns = 0;
if (!filter || 'cluster'.includes(filter)) {
  const { skipped, runs } = await runClusterExamples();
  if (skipped) console.log(`── examples/cluster skipped: ${skipped}`);
  for (const r of runs) {
    clusterRuns++;
    if (!r.ok) failures++;
    console.log(`── examples/${r.name} ${r.ok ? '✓' : '✗ failed'}`);
    process.stdout.write(r.output);
  }
}
console.log(failures ? `${failures} demo run(s) failed or differ from Python` : `all ${examples.length * 2 + clusterRuns} demo runs passed (the seed examples print what Python prints)`);
process.exitCode = failures ? 1 : 0;
