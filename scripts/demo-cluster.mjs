/**
 * The cluster examples (examples/cluster/), run the way a user would: a
 * redis-server on a free loopback port, two `multiprocessing-ts worker`
 * processes serving the pool example's module, then the examples with
 * MULTIPROCESSING_TS_CLUSTER pointing at that Redis (the manager example
 * under both start methods, checked against what Python prints for seed
 * example 3). Everything started is stopped at the end.
 *
 * Exported for the demo command (scripts/demo.mjs) and the test
 * (test/example-cluster.test.ts); skipped with a note when there is no
 * redis-server (Debian: apt-get install redis-server).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { matchesPython } from './example-output.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(root, 'dist/bundle/cli.js');
const WAIT_MS = 30_000;

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function untilLine(child, pattern, label) {
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: not ready within ${WAIT_MS} ms; stderr: ${stderr}`)), WAIT_MS);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (!pattern.test(line)) return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code}); stderr: ${stderr}`));
    });
  });
}

/**
 * Runs the cluster examples; resolves to a list of `{ name, ok, output }`,
 * or to `null` (with the reason on `skipped`) when redis-server is missing.
 */
export async function runClusterExamples() {
  if (spawnSync('redis-server', ['--version']).status !== 0) return { skipped: 'redis-server is not installed (Debian: apt-get install redis-server)', runs: [] };
  const dir = mkdtempSync(join(tmpdir(), 'mpts-demo-redis-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}/0`;
  const children = [];
  const runs = [];
  try {
    const redis = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(redis);
    await untilLine(redis, /Ready to accept connections/, 'redis-server');
    for (let i = 0; i < 2; i++) {
      // The task module is TypeScript: the CLI runs under tsx, as a user would run it.
      const worker = spawn(process.execPath, ['--import', 'tsx', CLI, 'worker', '--cluster', url, '--module', 'examples/lib/primes.ts', '--concurrency', '1'], {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(worker);
      await untilLine(worker, /serving pool/, `worker ${i + 1}`);
    }
    const run = (file, method) =>
      spawnSync(process.execPath, ['--import', 'tsx', join('examples', 'cluster', file)], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, MULTIPROCESSING_TS_CLUSTER: url, MULTIPROCESSING_TS_START_METHOD: method },
        timeout: 120_000,
      });
    const primes = run('primes.ts', 'process');
    runs.push({
      name: 'cluster/primes.ts (2 workers)',
      ok: primes.status === 0 && /cluster: 2 worker\(s\)/.test(primes.stdout) && /: 412849 primes below 6000000/.test(primes.stdout),
      output: primes.stdout + (primes.status === 0 ? '' : primes.stderr),
    });
    const expected = readFileSync(join(root, 'examples', 'expected', '03-manager.txt'), 'utf8');
    for (const method of ['process', 'thread']) {
      const manager = run('manager.ts', method);
      runs.push({
        name: `cluster/manager.ts (start method '${method}')`,
        ok: manager.status === 0 && matchesPython('03-manager.ts', manager.stdout, expected),
        output: manager.stdout + (manager.status === 0 ? '' : manager.stderr),
      });
    }
  } finally {
    for (const child of children.reverse()) {
      if (child.exitCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
  return { skipped: null, runs };
}
