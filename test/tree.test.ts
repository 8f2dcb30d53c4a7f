/**
 * The process tree as a whole: entry scripts run as real mains, crash
 * safety of segments, children dying with their parent, the import guard.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { METHODS, eventually, fixture, nothingLeftInShm, pidAlive, run, shmEntries } from './helpers.js';

interface TreeReport {
  treeDir: string;
  pids: number[];
  shm: string[];
}

/** Starts tree-main.js and reads its report line. */
async function startTree(mode: 'hold' | 'exit') {
  const child = spawn(process.execPath, [fixture('tree-main.js'), mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const report = await new Promise<TreeReport>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tree-main did not report in 30 s')), 30_000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
    child.once('exit', (code) => reject(new Error(`tree-main exited early with ${code}`)));
  });
  const exited = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  return { child, report, exited };
}

function leftovers(report: TreeReport): string[] {
  return [report.treeDir, ...report.shm.map((n) => `/dev/shm/${n}`)].filter((p) => existsSync(p));
}

describe('process tree', () => {
  it('after the main process is SIGKILLed: children die and nothing is left in /dev/shm', async () => {
    const { child, report, exited } = await startTree('hold');
    try {
      assert.equal(leftovers(report).length, 1 + report.shm.length, 'segments exist while the tree runs');
      assert.ok(pidAlive(report.pids[0]!));
      assert.ok(pidAlive(report.pids[2]!), 'the grandchild runs');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    await eventually(() => !pidAlive(report.pids[0]!), 10_000, 'the orphaned child to die');
    await eventually(() => !pidAlive(report.pids[2]!), 10_000, 'the orphaned grandchild to die');
    await eventually(() => leftovers(report).length === 0, 10_000, `cleanup of ${leftovers(report).join(', ')}`);
  });

  it('after children are SIGKILLed and the main process exits: nothing is left in /dev/shm', async () => {
    const { report, exited } = await startTree('exit');
    await exited;
    await eventually(() => leftovers(report).length === 0, 10_000, `cleanup of ${leftovers(report).join(', ')}`);
  });

  it('a non-daemon child keeps the main alive until it ends; a daemon ends with the main', async () => {
    for (const method of METHODS) {
      const r = await run(process.execPath, [fixture('daemon-main.js')], { env: { MULTIPROCESSING_TS_START_METHOD: method } });
      assert.equal(r.code, 0, r.stderr);
      const [pids, end] = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(end, { workerDone: 1 }, `${method}: the main waited for its non-daemon child`);
      if (method === 'process') await eventually(() => !pidAlive(pids.daemon), 10_000, 'the daemon to end');
    }
  });

  it('an entry script that starts children unguarded gets an error naming the guard, not a fork bomb', async () => {
    for (const method of METHODS) {
      const r = await run(process.execPath, [fixture('unguarded.js')], { env: { MULTIPROCESSING_TS_START_METHOD: method } });
      assert.match(r.stderr, /mp\.isMainProcess\(\)/, method);
      assert.match(r.stdout, /exitCode 1/, method);
    }
  });

  it('code an unguarded entry left running (async main(), timers, I/O callbacks) cannot start grandchildren; a target\'s own timer can', async () => {
    for (const method of METHODS) {
      for (const mode of ['async', 'timer', 'late-timer', 'fs-callback', 'named-timer']) {
        const r = await run(process.execPath, [fixture('unguarded-async.js'), mode], {
          env: { MULTIPROCESSING_TS_START_METHOD: method },
        });
        assert.match(r.stderr, /mp\.isMainProcess\(\)/, `${method} ${mode}: ${r.stderr}`);
        assert.match(r.stdout, /^main exitCode 1$/m, `${method} ${mode}: the child failed`);
        assert.doesNotMatch(r.stdout, /^child exitCode/m, `${method} ${mode}: no grandchild was started`);
      }
      const r = await run(process.execPath, [fixture('unguarded-async.js'), 'target-timer'], {
        env: { MULTIPROCESSING_TS_START_METHOD: method },
      });
      assert.match(r.stdout, /^main exitCode 0 grandchild 1$/m, `${method}: ${r.stderr}`);
    }
  });

  it('an entry script whose unguarded async main() makes a Pool gets its map\'s results, while each worker\'s copy of main() is refused with the guard\'s StateError (bounded, exit code 0, nothing left in /dev/shm)', async () => {
    for (const method of METHODS) {
      for (const mode of ['sync', 'after-await', 'unhandled']) {
        const what = `${method} ${mode}`;
        const before = shmEntries();
        const r = await run(process.execPath, [fixture('pool-unguarded.js'), mode], {
          env: { MULTIPROCESSING_TS_START_METHOD: method },
          timeoutMs: 30_000,
        });
        const lines = r.stdout.trim().split('\n');
        const mains = lines.filter((l) => l.startsWith('main '));
        // The parent's main(), then one per worker that imported the script: a pool of 2, none replaced.
        assert.ok(mains.length >= 2 && mains.length <= 3, `${what}: main() ran ${mains.length} times:\n${r.stdout}${r.stderr}`);
        assert.equal(new Set(mains).size, mains.length, `${what}: each in a process or thread of its own`);
        assert.deepEqual(lines.filter((l) => l.startsWith('results ')), ['results [1,4,9,16,25,36,49,64]'], `${what}: ${r.stderr}`);
        const guard = /^StateError: a child process tried to start another child from code that its import of the entry module ran.*mp\.isMainProcess\(\)/;
        const refusals = mode === 'unhandled'
          ? r.stderr.split('\n').filter((l) => l.startsWith('StateError: '))
          : lines.filter((l) => l.startsWith('refused ')).map((l) => l.slice('refused '.length));
        assert.equal(refusals.length, mains.length - 1, `${what}: every worker's new Pool was refused:\n${r.stdout}${r.stderr}`);
        for (const refusal of refusals) assert.match(refusal, guard, what);
        assert.equal(r.code, 0, `${what}: ${r.stderr}`);
        // The parent's line comes first: its workers start after it.
        await nothingLeftInShm(Number(/^main (\d+):0$/.exec(mains[0]!)![1]), before, what);
      }
    }
  });

  it('a target exported by the entry script travels by reference, with its own module state', async () => {
    for (const method of METHODS) {
      const r = await run(process.execPath, [fixture('entry-by-reference.js')], { env: { MULTIPROCESSING_TS_START_METHOD: method } });
      assert.deepEqual(JSON.parse(r.stdout), { exitCode: 0, childSeen: 1, parentSeen: 0 }, `${method}: ${r.stderr}`);
    }
  });
});
