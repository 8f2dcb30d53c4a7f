/**
 * A parent run from `node -e`, `node -p` or `node --input-type=module -e`
 * has no entry module. Its children must run the bootstrap (not the eval
 * code again), run their by-source target, and exit 0; a by-reference
 * attempt that cannot work is refused at `start()` with a clear error.
 *
 * The eval code marks itself in the environment, which children inherit,
 * so a child that re-runs it says so and starts nothing: the test sees the
 * defect instead of a fork bomb.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { childExecArgv, runsStringInput, threadExecArgv } from '../src/process/exec-argv.js';
import { METHODS, run } from './helpers.js';

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
