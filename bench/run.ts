/**
 * Benchmark entry: `npm run bench` (= build, then `node dist/bench/run.js`).
 *
 * Runs each selected case for several rounds, every variant once per round,
 * and prints one table per case: median, RATIO against the row's anchor,
 * target and PASS/MISS, and the foreign CPU load seen while it ran. Rows also
 * go to bench/results/latest.jsonl. See bench/README.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as mp from 'multiprocessing-ts';
import { parseCli, USAGE } from './cli.js';
import { startJoin } from './cases/start-join.js';
import { startTs } from './cases/start-ts.js';
import { valueIncr } from './cases/value-incr.js';
import { valuesCreate, valuesPass } from './cases/values.js';
import { queueLarge, queueSmall } from './cases/queue.js';
import { pipeOneWay, pipeRoundTrip } from './cases/pipe.js';
import { managerOps } from './cases/manager.js';
import { poolCpu, poolNoop, poolStart } from './cases/pool.js';
import { clusterRoundTrip, clusterThroughput } from './cases/cluster.js';
import { RESULTS_DIR, PACKAGE_ROOT } from './paths.js';
import { renderCase, rowRecord } from './report.js';
import { runCase } from './runner.js';
import type { CaseDefinition } from './types.js';

const CASES: readonly CaseDefinition[] = [startJoin, startTs, valueIncr, valuesCreate, valuesPass, queueSmall, queueLarge, pipeOneWay, pipeRoundTrip, managerOps, poolNoop, poolCpu, poolStart, clusterThroughput, clusterRoundTrip];

function git(args: readonly string[]): string | null {
  try {
    const out = execFileSync('git', args, { cwd: PACKAGE_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.replace(/\n+$/, ''); // not trim(): porcelain lines start with a status column
  } catch {
    return null;
  }
}

/**
 * What was measured: the commit, plus library files changed since it. The
 * library is edited while benchmarks run, so the commit alone can mislead.
 */
function sourceVersion(): { commit: string | null; modified: string[] } {
  const status = git(['status', '--porcelain', '--', 'src', 'native']) ?? '';
  return {
    commit: git(['rev-parse', '--short', 'HEAD']),
    modified: status.split('\n').filter(Boolean).map((l) => l.slice(3)),
  };
}

async function main(): Promise<number> {
  let cli;
  try {
    cli = parseCli(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const list = CASES.map((c) => `  ${c.name.padEnd(8)} ${c.summary}`).join('\n');
  if (!cli) {
    console.log(`${USAGE}\n\ncases:\n${list}`);
    return 0;
  }
  const unknown = cli.cases.filter((n) => !CASES.some((c) => c.name === n));
  if (unknown.length) {
    console.error(`unknown case(s): ${unknown.join(', ')}\n\ncases:\n${list}`);
    return 2;
  }
  const selected = cli.cases.length ? CASES.filter((c) => cli.cases.includes(c.name)) : CASES;
  const missing = mp.getAllStartMethods().includes('process') ? '' : ` (native addon missing: ${mp.nativeLoadError()?.message})`;

  const date = new Date().toISOString();
  const version = sourceVersion();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const records: Record<string, unknown>[] = [
    {
      type: 'meta',
      date,
      node: process.version,
      cpus: availableParallelism(),
      ...version,
      argv: process.argv.slice(2),
      rounds: cli.rounds,
      quick: cli.quick,
      foreign_max: cli.foreignMax,
    },
  ];
  const dirty = version.modified.length ? ` + uncommitted ${version.modified.join(', ')}` : '';
  console.log(`multiprocessing-ts benchmarks — ${date}, node ${process.version}, ${availableParallelism()} CPUs${missing}`);
  console.log(`library: commit ${version.commit ?? '?'}${dirty}`);
  console.log('only ratios within one run mean anything on a shared machine; see bench/README.md\n');

  let failed = false;
  for (const def of selected) {
    const c = def.make({ quick: cli.quick });
    log(`[${c.name}] ${c.title}`);
    const rows = await runCase(c, { rounds: cli.rounds, foreignMax: cli.foreignMax, maxRetries: cli.maxRetries, log });
    console.log(renderCase(c, rows, cli.rounds) + '\n');
    for (const r of rows) {
      records.push(rowRecord(r, date));
      if (r.error) failed = true;
    }
  }

  mkdirSync(RESULTS_DIR, { recursive: true });
  const out = join(RESULTS_DIR, 'latest.jsonl');
  writeFileSync(out, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  console.log(`results: ${out}`);
  // A failed correctness check is a failure of the run; a MISS is a finding, not an error.
  return failed ? 1 : 0;
}

if (mp.isMainProcess()) process.exitCode = await main();
