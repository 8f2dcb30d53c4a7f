/**
 * A parent run from `node -e`, `node -p` or `node --input-type=module -e`
 * has no entry module. Its children must run the bootstrap (not the eval
 * code again), run their by-source target, and exit 0; a by-reference
 * attempt that cannot work is refused at `start()` with a clear error.
 *
 * The eval code marks itself in the environment, which children inherit,
 * so a child that re-runs it says so and starts nothing: the test sees the
 * defect instead of a fork bomb. The same holds for a Pool's workers, whose
 * by-source task functions must work through every kind of call.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { childExecArgv, runsStringInput, threadExecArgv } from '../src/process/exec-argv.js';
import { METHODS, nothingLeftInShm, run, shmEntries } from './helpers.js';

const PACKAGE_URL = new URL('../src/index.js', import.meta.url).href;

/** The eval program; `moduleUrl` is what the code knows as its own file name. */
function program(moduleUrl: string): string {
  return `
if (process.env.MPTS_EVAL_TEST_RAN) {
  console.log('eval re-ran in a child');
} else {
  process.env.MPTS_EVAL_TEST_RAN = '1';
  console.log('eval ran');
  import(${JSON.stringify(PACKAGE_URL)}).then(async (mp) => {
    const v = mp.Value('i', 0);
    const p = new mp.Process({ target: (out) => { out.value = 42; }, args: [v] });
    p.start();
    await p.join(30000);
    const refused = (options) => {
      try { new mp.Process(options).start(); return 'started'; } catch (err) { return err.name + ': ' + err.message; }
    };
    const k = 1;
    console.log(JSON.stringify({
      exitCode: p.exitCode,
      value: v.value,
      outerVariable: refused({ target: function usesOuter() { return k; } }),
      evalModule: refused({ target: function work() {}, module: ${moduleUrl} }),
    }));
  });
}`;
}

const runners: Array<[string, string[]]> = [
  ['node -e', ['-e', program('__filename')]],
  ['node -p', ['-p', program('__filename')]],
  // --expose-gc: a Worker refuses it in an explicit execArgv, which --input-type calls for.
  ['node --expose-gc --input-type=module -e', ['--expose-gc', '--input-type=module', '-e', program('import.meta.url')]],
];

describe('a parent run from eval code', () => {
  for (const [runner, argv] of runners) {
    it(`runs its children's by-source targets (exit code 0) without re-running the eval code, and refuses by-reference targets clearly (${runner})`, async () => {
      for (const method of METHODS) {
        const r = await run(process.execPath, [...argv, 'a', 'b'], { env: { MULTIPROCESSING_TS_START_METHOD: method } });
        const lines = r.stdout.trim().split('\n');
        assert.deepEqual(lines.filter((l) => l.startsWith('eval ')), ['eval ran'], `${method}: ${r.stdout}${r.stderr}`);
        const report = JSON.parse(lines.at(-1)!);
        assert.equal(report.exitCode, 0, `${method}: ${r.stderr}`);
        assert.equal(report.value, 42, `${method}: the child's target ran`);
        assert.match(report.outerVariable, /^ValueError: target usesOuter uses outer variable 'k'.*code given to node -e/, method);
        assert.match(report.evalModule, /^ValueError: module .*\[eval\d*\].*code given to node -e/, method);
        assert.equal(r.code, 0, `${method}: ${r.stderr}`);
      }
    });
  }
});

/**
 * The eval program for a Pool: by-source task functions through map, apply,
 * applyAsync and imap, two refused ones (an outer variable), the pool still
 * serving after them, then close() and join().
 */
function poolProgram(): string {
  return `
if (process.env.MPTS_EVAL_POOL_TEST_RAN) {
  console.log('eval re-ran in a child');
} else {
  process.env.MPTS_EVAL_POOL_TEST_RAN = '1';
  console.log('eval ran');
  import(${JSON.stringify(PACKAGE_URL)}).then(async (mp) => {
    const { readdirSync } = await import('node:fs');
    const refusal = (err) => err.name + ': ' + err.message;
    const pool = new mp.Pool(2);
    const report = { pid: process.pid };
    report.map = await pool.map((x) => x * x, [1, 2, 3, 4, 5]);
    report.apply = await pool.apply((a, b) => a + b, [2, 3]);
    const tenfold = async (x) => { await new Promise((r) => setTimeout(r, 1)); return x * 10; };
    report.applyAsync = await Promise.all([1, 2, 3].map((x) => pool.applyAsync(tenfold, [x])));
    report.imap = [];
    for await (const y of pool.imap((x) => -x, [1, 2, 3])) report.imap.push(y);
    const k = 3;
    try {
      pool.applyAsync(function usesOuter(x) { return x + k; }, [1]);
      report.outerApplyAsync = 'accepted';
    } catch (err) {
      report.outerApplyAsync = refusal(err);
    }
    report.outerMap = await pool.map(function usesOuter(x) { return x * k; }, [1]).then(() => 'accepted', refusal);
    report.after = await pool.map((x) => x + 1, [1, 2, 3]);
    report.treeDirs = readdirSync('/dev/shm').filter((name) => name.startsWith('mpts-' + process.pid + '-')).length;
    pool.close();
    await pool.join();
    report.alive = mp.activeChildren().length;
    console.log(JSON.stringify(report));
  });
}`;
}

const poolRunners: Array<[string, string[]]> = [
  ['node -e', ['-e', poolProgram()]],
  ['node --expose-gc --input-type=module -e', ['--expose-gc', '--input-type=module', '-e', poolProgram()]],
];

describe('a Pool in a parent run from eval code', () => {
  for (const [runner, argv] of poolRunners) {
    it(`runs by-source task functions through map, apply, applyAsync and imap, refuses one that uses an outer variable by name (and goes on), ends with exit code 0 and leaves nothing in /dev/shm (${runner})`, async () => {
      for (const method of METHODS) {
        const before = shmEntries();
        const r = await run(process.execPath, argv, { env: { MULTIPROCESSING_TS_START_METHOD: method }, timeoutMs: 30_000 });
        const lines = r.stdout.trim().split('\n');
        assert.deepEqual(lines.filter((l) => l.startsWith('eval ')), ['eval ran'], `${method}: ${r.stdout}${r.stderr}`);
        const report = JSON.parse(lines.at(-1)!);
        assert.deepEqual(report.map, [1, 4, 9, 16, 25], method);
        assert.equal(report.apply, 5, method);
        assert.deepEqual(report.applyAsync, [10, 20, 30], method);
        assert.deepEqual(report.imap, [-1, -2, -3], method);
        const outer = /^ValueError: pool\.\w+\(usesOuter\): the task function usesOuter uses outer variable 'k'.*code given to node -e/;
        assert.match(report.outerApplyAsync, outer, method);
        assert.match(report.outerMap, outer, method);
        assert.deepEqual(report.after, [2, 3, 4], `${method}: the pool serves after the refusals`);
        assert.equal(report.treeDirs, 1, `${method}: the pool's segments were in the run's tree directory`);
        assert.equal(report.alive, 0, `${method}: join() waited for every worker`);
        assert.equal(r.code, 0, `${method}: ${r.stderr}`);
        assert.equal(r.stderr, '', method);
        await nothingLeftInShm(report.pid, before, `${method}, ${runner}`);
      }
    });
  }
});

describe('the options a child gets', () => {
  it('drops eval, print, interactive, check, inspector, test-runner and watch options with their values, and keeps the rest', () => {
    const cases: Array<[string[], string[]]> = [
      [['--import', 'tsx', '-e', 'CODE', '--expose-gc'], ['--import', 'tsx', '--expose-gc']],
      [['-pe', '-1', '--max-old-space-size=100'], ['--max-old-space-size=100']],
      [['-p', '--eval', 'x'], []],
      [['-p', 'x', '--enable-source-maps'], ['--enable-source-maps']],
      [['--input-type', 'module', '--eval=x', '--loader', 'tsx'], ['--loader', 'tsx']],
      [['--inspect-brk=0', '--inspect-port', '9230', '--debug-port=1', '--inspect', '-r', './x.cjs'], ['-r', './x.cjs']],
      [['--test', '--test-reporter', 'tap', '--test-concurrency=2', '--test-only', '--expose-gc'], ['--expose-gc']],
      [['--watch', '--watch-path', '/src', '--watch-preserve-output', '--conditions', 'dev'], ['--conditions', 'dev']],
      [['-i', '-c', '--interactive', '--check', '--stack-trace-limit=50'], ['--stack-trace-limit=50']],
    ];
    for (const [execArgv, kept] of cases) assert.deepEqual(childExecArgv(execArgv), kept, execArgv.join(' '));
  });

  it('knows a process that runs a string, and gives a Worker its own options only when --input-type would reach it', () => {
    assert.equal(runsStringInput(['-pe', 'x']), true);
    assert.equal(runsStringInput(['--print', 'x']), true);
    assert.equal(runsStringInput(['--import', 'tsx', '--inspect']), false);
    assert.equal(threadExecArgv(['-e', 'x', '--expose-gc', '--inspect']), undefined);
    assert.deepEqual(threadExecArgv(['--expose-gc', '--input-type=module', '-e', 'x']), ['--expose-gc']);
  });
});
