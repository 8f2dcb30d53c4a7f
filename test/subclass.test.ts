/**
 * Subclassing `Process` (Python's other idiom) under both start methods:
 * the child rebuilds the instance from its fields and calls `run()`.
 * Ported from CPython's _test_multiprocessing.py (_TestSubclassingProcess:
 * test_subclassing, test_stderr_flush, test_sys_exit), plus what the
 * TypeScript side adds: async `run()`, shared objects in fields, custom
 * error classes, classes exported as default or renamed, TypeScript entries.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as mp from '../src/index.js';
import { moduleExports } from '../src/process/entry-exports.js';
import * as fx from './fixtures/subclasses.js';
import { METHODS, fixture, run } from './helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsxCli = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');

for (const method of METHODS) {
  describe(`Process subclasses (${method})`, () => {
    // The fixtures extend mp.Process, which follows the global start method.
    before(() => mp.setStartMethod(method, { force: true }));
    after(() => mp.setStartMethod(null, { force: true }));

    it('runs run() with the fields set in the constructor and daemon set after it (CPython test_subclassing)', async () => {
      const p = new fx.UpperCaser(['hello', 'world']);
      p.daemon = true;
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.deepEqual(p.answers.toArray(), ['HELLO', 'WORLD']);
      p.answers.shm.unlink();
    });

    it("in run(), name, pid, daemon, isAlive() and currentProcess() are the child's, and the constructor did not run again", async () => {
      const out = new mp.ShareableList(['x'.repeat(40), 0, true, true, true, 0, 'x'.repeat(20), 'x'.repeat(40), 0]);
      const p = new fx.Introspect(out, 'fields travel', { name: 'introspect', daemon: true });
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.deepEqual(out.toArray(), [
        'introspect',
        p.pid,
        true,
        true, // exitCode null and alive, in itself
        true, // currentProcess() is the instance, of its class
        0, // no constructor call in the child
        'fields travel',
        'MainProcess',
        method === 'thread' ? p.threadId : 0,
      ]);
      out.shm.unlink();
    });

    it('awaits an async run() that increments a Value held in a field; the parent sees the count', async () => {
      const total = mp.Value('i', 0);
      const p = new fx.Counter(total, 25);
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.equal(total.value, 25);
    });

    it('exit codes of run(): process.exit(n) gives n, process.exitCode = n gives n, a throw or rejection gives 1 (CPython test_sys_exit)', async () => {
      const cases: Array<[fx.Ending, number]> = [
        [new fx.Ending('exit', 8), 8],
        [new fx.Ending('exit', 0), 0],
        [new fx.Ending('exitCode', 3), 3],
        [new fx.Ending('throw'), 1],
        [new fx.Ending('reject'), 1],
      ];
      for (const [p] of cases) p.start();
      await Promise.all(cases.map(([p]) => p.join(30_000)));
      assert.deepEqual(
        cases.map(([p]) => p.exitCode),
        cases.map(([, code]) => code),
      );
    });

    it('the default run() calls the target with its args, so an override can call super.run()', async () => {
      const before = mp.Value('i', 0);
      const out = mp.Value('i', 0);
      const p = new fx.WithTarget(before, out);
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.deepEqual([before.value, out.value], [1, 5]);
    });

    it('run() may start children of its own; their parent is the subclass instance', async () => {
      const out = new mp.ShareableList(['x'.repeat(40), 0, true, true, true, 0, 'x'.repeat(20), 'x'.repeat(40), 0]);
      const p = new fx.Grandparent(out);
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.equal(out.get(0), `${p.name}:1`);
      assert.equal(out.get(6), 'grandchild');
      assert.equal(out.get(7), p.name);
      out.shm.unlink();
    });

    it('refuses at start(), naming the field, a field that cannot be copied; nothing starts', () => {
      const p = new fx.Uncloneable();
      assert.throws(
        () => p.start(),
        (err: Error) => err instanceof mp.SerializationError && /^uncloneable\.conn\.onData is a function/.test(err.message),
      );
      assert.equal(p.pid, null);
      assert.ok(!mp.activeChildren().includes(p));
    });

    it('refuses at start() a subclass the child cannot import (declared here, not exported), naming it and the fix; nothing starts', () => {
      class NotExported extends mp.Process {
        override run(): void {}
      }
      const p = new NotExported();
      assert.throws(
        () => p.start(),
        (err: Error) =>
          err instanceof mp.ValueError &&
          /the Process subclass NotExported cannot reach a child/.test(err.message) &&
          /does not export it/.test(err.message) &&
          /pass \{ module: import\.meta\.url \} to super\(\)/.test(err.message),
      );
      assert.equal(p.pid, null);
      assert.ok(!mp.activeChildren().includes(p));
    });

    it("a subclass's target need not come from the class's module: one sent by source runs", async () => {
      const out = mp.Value('i', 0);
      const p = new fx.RunsGiven((value, n) => {
        value.value = n * 6;
      }, out);
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.equal(out.value, 42);
    });

    it('refuses at start() a subclass with a private member, naming it and the fix; nothing starts', () => {
      const p = new fx.WithPrivate();
      assert.throws(
        () => p.start(),
        (err: Error) =>
          err instanceof mp.ValueError && /uses the private member #count/.test(err.message) && /ordinary field/.test(err.message),
      );
      assert.equal(p.pid, null);
    });

    it('a subclass that keeps the default run() travels as its target, exported or not', async () => {
      class Named extends mp.Process {
        constructor(out: mp.Value) {
          super({ target: fx.setTo, args: [out, 9], module: fx.SUBCLASSES, name: 'named' });
        }
      }
      const out = mp.Value('i', 0);
      const p = new Named(out);
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.equal(out.value, 9);
    });
  });
}

describe('Process subclasses: construction', () => {
  it('a subclass with neither a run() override nor a target is refused as a Process without target is', () => {
    class Idle extends mp.Process {}
    assert.throws(() => new mp.Process({} as any), (err: Error) => err instanceof mp.ValueError && /needs a target/.test(err.message));
    assert.throws(() => new Idle(), (err: Error) => err instanceof mp.ValueError && /needs a target/.test(err.message));
  });

  it("a Process's own state is not among its enumerable fields", () => {
    const p = new fx.Counter(mp.Value('i', 0), 1);
    assert.deepEqual(Object.keys(p), ['total', 'times']);
    assert.deepEqual(Object.keys(new mp.Process({ target: fx.setTo })), []);
  });

  it('reads an anonymous `export default class` as the export `default`', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpts-subclass-'));
    const path = join(dir, 'a.mjs');
    writeFileSync(path, 'import { Process } from "x";\nexport default class extends Process { run() {} }\n');
    assert.deepEqual(Object.fromEntries(moduleExports(path).byLocal), { default: 'default' });
  });

  it('refuses a subclass from code given to node -e, naming it and the fix', async () => {
    const index = JSON.stringify(new URL('../src/index.js', import.meta.url).href);
    const code = [
      `const mp = await import(${index});`,
      'class Worker extends mp.Process { run() {} }',
      'try { new Worker().start(); } catch (err) { console.log(err.name + ": " + err.message); }',
    ].join('\n');
    const r = await run(process.execPath, ['--input-type=module', '-e', code]);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^ValueError: the Process subclass Worker cannot reach a child/);
    assert.match(r.stdout, /node -e\/-p/);
    assert.match(r.stdout, /pass \{ module \} naming that file to super\(\)/);
  });
});

describe('Process subclasses in an entry script', () => {
  for (const method of METHODS) {
    it(`finds a default and a renamed export by reference, reports run()'s own error class with its stack, refuses a local class; .js entry and .ts entry under tsx (${method})`, async () => {
      const entries: Array<[string, string[]]> = [
        ['js', [fixture('subclass-entry.js')]],
        ['ts', [tsxCli, join(root, 'test', 'fixtures', 'subclass-entry.ts')]],
      ];
      for (const [kind, argv] of entries) {
        const r = await run(process.execPath, argv, { cwd: root, env: { MULTIPROCESSING_TS_START_METHOD: method } });
        const seen = JSON.parse(r.stdout);
        // Each child's module state is its own (one run each); the parent's stayed empty.
        assert.deepEqual(seen.exitCodes, [0, 0, 1], kind);
        assert.deepEqual(seen.out, [11, 21], kind);
        assert.equal(seen.parentRan, 0, kind);
        assert.match(seen.refused, /^ValueError: the Process subclass LocalWorker cannot reach a child/, kind);
        assert.match(seen.refused, /subclass-entry\.[jt]s does not export it/, kind);
        assert.equal(seen.localPid, null, kind);
        // As CPython's test_stderr_flush: the whole error reached stderr, with the child's name and the throw site.
        const failing = seen.names[2];
        assert.match(r.stderr, new RegExp(`^Process ${failing}:\\n(Entry)?Error.*no luck in run\\(\\)`, 'm'), kind);
        assert.match(r.stderr, /EntryError/, kind);
        assert.match(r.stderr, /at FailingWorker\.run \(\S*subclass-entry\.[jt]s:\d+:\d+\)/, kind);
      }
    });
  }
});
