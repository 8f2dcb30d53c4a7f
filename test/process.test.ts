/**
 * Process under both start methods: lifecycle, exit codes, names, errors,
 * targets by reference and by source. Ported in spirit from CPython's
 * _test_multiprocessing.py (test_process, test_terminate, test_kill,
 * test_exitcode, test_child_fd_inflation's neighbours…).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as fx from './fixtures/targets.js';
import { METHODS, eventually, waitForValue } from './helpers.js';

const module = fx.TARGETS;

for (const method of METHODS) {
  const ctx = mp.getContext(method);
  describe(`Process (${method})`, () => {
    it('runs the target and reports exit code 0; lifecycle members follow', async () => {
      const p = new ctx.Process({ target: fx.noop, module });
      assert.equal(p.exitCode, null);
      assert.equal(p.isAlive(), false);
      assert.equal(p.pid, null);
      assert.match(p.name, /^Process-\d+$/);
      p.start();
      assert.equal(p.isAlive(), true);
      assert.equal(typeof p.pid, 'number');
      if (method === 'thread') assert.equal(p.pid, process.pid);
      else assert.notEqual(p.pid, process.pid);
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.equal(p.isAlive(), false);
      assert.ok(!mp.activeChildren().includes(p));
      p.close();
      assert.throws(() => p.name, mp.StateError);
      assert.throws(() => p.start(), mp.StateError);
      p.close(); // a second close is harmless
    });

    it('exit codes: 1 when the target throws (Error or not), n from process.exit(n)', async () => {
      const cases: Array<[Function, unknown[], number]> = [
        [fx.throwError, ['bad thing'], 1],
        [fx.throwNonError, [], 1],
        [fx.exitWith, [7], 7],
        [fx.exitWith, [0], 0],
      ];
      const procs = cases.map(([target, args]) => new ctx.Process({ target: target as any, args, module }));
      procs.forEach((p) => p.start());
      await Promise.all(procs.map((p) => p.join()));
      assert.deepEqual(
        procs.map((p) => p.exitCode),
        cases.map((c) => c[2]),
      );
    });

    it('terminate() gives -15 and kill() gives -9, mid-run', async () => {
      for (const [how, code] of [['terminate', -15], ['kill', -9]] as const) {
        const started = mp.Value('i', 0);
        const p = new ctx.Process({ target: fx.runForever, args: [started], module });
        p.start();
        await waitForValue(started, 1);
        assert.equal(p.isAlive(), true);
        p[how]();
        await p.join(20_000);
        assert.equal(p.exitCode, code, how);
      }
    });

    it('join(timeout) returns with the child still running', async () => {
      const started = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.runForever, args: [started], module });
      p.start();
      await waitForValue(started, 1);
      await p.join(50);
      assert.equal(p.exitCode, null);
      assert.equal(p.isAlive(), true);
      assert.ok(mp.activeChildren().includes(p));
      assert.throws(() => p.close(), /still running/);
      p.kill();
      await p.join();
      assert.equal(p.exitCode, -9);
    });

    it('awaits async targets', async () => {
      const v = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.asyncSet, args: [v, 42], module });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.equal(v.value, 42);
    });

    it('children see their own name, their parent, and are not the main process', async () => {
      const out = new mp.ShareableList(['x'.repeat(40), 'x'.repeat(40), 0, true, 0, 0, true]);
      const p = new ctx.Process({ target: fx.describeSelf, args: [out], module, name: 'worker-a' });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.deepEqual(out.toArray().slice(0, 4), ['worker-a', 'MainProcess', process.pid, false]);
      assert.equal(out.get(4), p.pid);
      assert.equal(out.get(5), method === 'thread' ? p.threadId : 0);
      assert.equal(out.get(6), false);
      out.shm.unlink();
    });

    it("a child sees its parent's process.argv, as Python's spawn copies sys.argv", async () => {
      const out = new mp.ShareableList(['x'.repeat(2000)]);
      const p = new ctx.Process({ target: fx.reportArgv, args: [out], module });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.deepEqual(JSON.parse(out.get(0) as string), process.argv.slice(1));
      out.shm.unlink();
    });

    it('a child can start children of its own (names nest as in Python)', async () => {
      const out = new mp.ShareableList(['x'.repeat(40), 'x'.repeat(40), 0, true, 0, 0, true]);
      const p = new ctx.Process({ target: fx.startGrandchild, args: [out], module });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.equal(out.get(0), `${p.name}:1`.replace('Process-', 'Process-'));
      assert.equal(out.get(1), p.name);
      out.shm.unlink();
    });

    it('a daemon may not start children; daemon is inherited', async () => {
      const out = new mp.ShareableList(['x'.repeat(40), 'x'.repeat(40), 0, true, 0, 0, true]);
      const p = new ctx.Process({ target: fx.startGrandchild, args: [out], module, daemon: true });
      assert.equal(p.daemon, true);
      p.start();
      await p.join();
      assert.equal(p.exitCode, 1);
      assert.throws(() => (p.daemon = false), mp.StateError);
      out.shm.unlink();
    });

    it('self-contained functions travel by source', async () => {
      const v = mp.Value('i', 0);
      const p = new ctx.Process({
        target: (value: mp.Value, n: number) => {
          value.value = n * 2;
        },
        args: [v, 21],
      });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.equal(v.value, 42);
    });

    it('refuses, at start(), a by-source target that uses outer variables, naming them', () => {
      const factor = 3;
      const offset = 1;
      const p = new ctx.Process({ target: (x: number) => x * factor + offset, args: [1] });
      assert.throws(() => p.start(), (err: Error) => {
        assert.ok(err instanceof mp.ValueError);
        assert.match(err.message, /'factor', 'offset'/);
        assert.match(err.message, /export/);
        return true;
      });
      assert.equal(p.pid, null);
      assert.ok(!mp.activeChildren().includes(p));
    });

    it('refuses bad input with exported error classes, starting nothing', async () => {
      assert.throws(() => new ctx.Process({ target: 42 as any }), mp.ValueError);
      assert.throws(() => new ctx.Process({ target: fx.noop, args: 'no' as any }), mp.ValueError);
      const withFn = new ctx.Process({ target: fx.noop, args: [1, { cb: () => 1 }] as any, module });
      assert.throws(() => withFn.start(), (err: Error) => err instanceof mp.SerializationError && /args\[1\]\.cb is a function/.test(err.message));
      const withWeak = new ctx.Process({ target: fx.noop, args: [new Map([['k', new WeakMap()]])] as any, module });
      assert.throws(() => withWeak.start(), /args\[0\]\.get\("k"\) is a WeakMap/);
      assert.equal(withFn.pid, null);
      await assert.rejects(new ctx.Process({ target: fx.noop, module }).join(), mp.StateError);
    });

    it('many children at once: some end, some are terminated, some killed (CPython test_many_processes)', async () => {
      const n = method === 'thread' ? 12 : 6;
      const started = mp.Array('i', n);
      const procs = Array.from({ length: n }, (_, i) =>
        i % 3 === 0
          ? new ctx.Process({ target: fx.exitWith, args: [0], module })
          : new ctx.Process({ target: fx.runForeverAt, args: [started, i], module }),
      );
      procs.forEach((p) => p.start());
      await eventually(() => procs.every((p, i) => i % 3 === 0 || started[i] === 1), 30_000, 'children to start');
      procs.forEach((p, i) => (i % 3 === 1 ? p.terminate() : i % 3 === 2 ? p.kill() : undefined));
      await Promise.all(procs.map((p) => p.join(30_000)));
      assert.deepEqual(
        procs.map((p) => p.exitCode),
        procs.map((_, i) => [0, -15, -9][i % 3]),
      );
      assert.equal(mp.activeChildren().filter((c) => procs.includes(c)).length, 0);
    });

    it('start() twice throws', async () => {
      const p = new ctx.Process({ target: fx.noop, module });
      p.start();
      assert.throws(() => p.start(), /twice/);
      await p.join();
    });
  });
}

describe('start methods', () => {
  it('setStartMethod once; force to change; contexts are bound', () => {
    assert.deepEqual(mp.getAllStartMethods().sort(), ['process', 'thread']);
    assert.throws(() => mp.setStartMethod('fork' as any), mp.ValueError);
    mp.setStartMethod('thread');
    assert.equal(mp.getStartMethod(), 'thread');
    assert.throws(() => mp.setStartMethod('process'), mp.StateError);
    mp.setStartMethod('process', { force: true });
    assert.equal(mp.getStartMethod(), 'process');
    assert.equal(mp.getContext('thread').getStartMethod(), 'thread');
    mp.setStartMethod(null, { force: true });
  });

  it('the main process knows itself', () => {
    assert.equal(mp.isMainProcess(), true);
    assert.equal(mp.currentProcess().name, 'MainProcess');
    assert.equal(mp.parentProcess(), null);
    assert.ok(mp.cpuCount() >= 1);
  });
});
