/**
 * Warm spare children (process/spares.ts): a parent under tsx keeps one
 * child of each start method it used ready, and the next start takes it.
 * A taken spare must be indistinguishable from a cold child; a spare must
 * not be taken when the environment changed since it was made, must not
 * keep its parent alive or outlive it, and `MULTIPROCESSING_TS_SPARES=0`
 * turns spares off.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { METHODS, eventually, pidAlive, run } from './helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsxCli = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
// Inside the package, so that 'multiprocessing-ts' resolves (its self-reference) and the scope is ESM.
const scratch = mkdtempSync(join(root, 'dist', 'test', 'spares-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * The parent, run under tsx. `behave <method>`: a cold start, then starts
 * that each wait for the idle spare and report whether they took it (an
 * identity and args with a shared Value and exit code 3, a terminate, a
 * kill, a start after process.env changed), then ends with a spare idle.
 * `hold <method>`: one start, then reports the idle spare and stays.
 * `cold`: two starts of each method, then the spare counters.
 */
const MAIN = `
import * as mp from 'multiprocessing-ts';

interface Stats { made: number; taken: number; discarded: number; idle: Record<string, number | undefined>; ready?: Record<string, number | undefined> }
const stats = (): Stats => (globalThis as any)[Symbol.for('multiprocessing-ts.spares')] ?? { made: 0, taken: 0, discarded: 0, idle: {} };
const out = (line: object) => console.log(JSON.stringify(line));

export function report(v: mp.SynchronizedValue, n: number): void {
  v.value += n;
  const me = mp.currentProcess();
  out({ child: { name: me.name, pid: me.pid, threadId: me.threadId, parent: mp.parentProcess()!.pid, probe: process.env['MPTS_SPARE_PROBE'] ?? null } });
  process.exitCode = 3;
}

export function hold(v: mp.SynchronizedValue): void {
  v.value = 1;
  setInterval(() => {}, 1000);
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function idleSpare(method: mp.StartMethod): Promise<number> {
  await until(() => stats().idle[method] !== undefined, 'a spare');
  return stats().idle[method]!;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** Starts p once a spare is idle; says whether p is that spare. */
async function startOnSpare(method: mp.StartMethod, p: mp.Process, withReady = false): Promise<object> {
  const spare = await idleSpare(method);
  const before = { taken: stats().taken, discarded: stats().discarded, active: mp.activeChildren().length };
  const ready = stats().ready?.[method] ?? 0;
  const spareAlive = method === 'process' ? alive(spare) : true;
  p.start();
  const id = method === 'process' ? p.pid : p.threadId;
  return {
    took: stats().taken - before.taken,
    discarded: stats().discarded - before.discarded,
    isSpare: id === spare,
    spareAlive,
    activeBefore: before.active,
    ...(withReady ? { readyBefore: ready } : {}),
  };
}

if (mp.isMainProcess()) {
  const [mode, method] = [process.argv[2], process.argv[3] as mp.StartMethod];
  if (mode === 'behave') {
    const { Process } = mp.getContext(method);
    const v = mp.Value('i', 0);
    const first = new Process({ target: report, args: [v, 1] });
    first.start();
    await first.join();

    const p = new Process({ target: report, args: [v, 10] });
    const took = await startOnSpare(method, p);
    await p.join();
    out({ step: 'report', ...took, name: p.name, pid: p.pid, threadId: p.threadId, exitCode: p.exitCode, value: v.value, parent: process.pid });

    for (const end of ['terminate', 'kill'] as const) {
      const held = mp.Value('i', 0);
      const q = new Process({ target: hold, args: [held] });
      const tookHold = await startOnSpare(method, q);
      await until(() => held.value === 1, 'the child to run');
      q[end]();
      await q.join(20_000);
      out({ step: end, ...tookHold, exitCode: q.exitCode });
    }

    const spare = await idleSpare(method);
    process.env['MPTS_SPARE_PROBE'] = 'changed';
    const e = new Process({ target: report, args: [v, 100] });
    const tookEnv = await startOnSpare(method, e, true);
    await e.join();
    out({ step: 'env', ...tookEnv, name: e.name, exitCode: e.exitCode, oldSpareAlive: method === 'process' ? alive(spare) : null });

    out({ step: 'end', spare: await idleSpare(method), at: Date.now() });
  } else if (mode === 'hold') {
    const p = new (mp.getContext(method).Process)({ target: report, args: [mp.Value('i', 0), 1] });
    p.start();
    await p.join();
    out({ step: 'hold', spare: await idleSpare(method) });
    setInterval(() => {}, 1000);
  } else {
    for (const m of mp.getAllStartMethods()) {
      for (let i = 0; i < 2; i++) {
        const p = new (mp.getContext(m).Process)({ target: report, args: [mp.Value('i', 0), 1] });
        p.start();
        await p.join();
      }
    }
    out({ step: 'cold', ...stats() });
  }
}
`;

const mainFile = join(scratch, 'main.ts');
mkdirSync(scratch, { recursive: true });
writeFileSync(mainFile, MAIN);

type Line = Record<string, unknown>;
const lines = (stdout: string): Line[] => stdout.trim().split('\n').map((line) => JSON.parse(line) as Line);
/** The fields of `line` that `like` has. */
const pick = (line: Line, like: object): Line => Object.fromEntries(Object.keys(like).map((k) => [k, line[k]]));
const step = (all: Line[], name: string): Line => all.find((l) => l['step'] === name) ?? assert.fail(`no ${name} step`);

describe('warm spare children under tsx', () => {
  for (const method of METHODS) {
    it(`a start takes the idle spare, which behaves as a cold child; a changed environment discards it; the parent exits promptly with one idle (${method})`, async () => {
      const r = await run(process.execPath, [tsxCli, mainFile, 'behave', method], { cwd: scratch, timeoutMs: 60_000 });
      const closedAt = Date.now();
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const all = lines(r.stdout);
      const children = all.flatMap((l) => (l['child'] ? [l['child'] as Line] : []));
      const taken = { took: 1, discarded: 0, isSpare: true, spareAlive: true, activeBefore: 0 };

      const rep = step(all, 'report');
      assert.deepEqual(pick(rep, taken), taken, 'the start took the idle spare');
      assert.deepEqual(pick(rep, { exitCode: 0, value: 0 }), { exitCode: 3, value: 11 }, 'exit code and shared Value as a cold child');
      const seen = children.find((c) => c['name'] === rep['name']);
      assert.deepEqual(seen, { name: rep['name'], pid: rep['pid'], threadId: rep['threadId'], parent: rep['parent'], probe: null }, 'the child knows itself as its parent knows it');

      assert.deepEqual(step(all, 'terminate'), { step: 'terminate', ...taken, exitCode: -15 });
      assert.deepEqual(step(all, 'kill'), { step: 'kill', ...taken, exitCode: -9 });

      const env = step(all, 'env');
      // Every idle spare was made before the change: all are discarded (threads keep up to two).
      assert.ok((env['readyBefore'] as number) >= 1 && (env['readyBefore'] as number) <= (method === 'thread' ? 2 : 1));
      assert.deepEqual(
        { took: env['took'], discarded: env['discarded'], exitCode: env['exitCode'] },
        { took: 0, discarded: env['readyBefore'], exitCode: 3 },
      );
      assert.equal(children.find((c) => c['name'] === env['name'])?.['probe'], 'changed', 'the child sees the environment of its start');
      if (method === 'process') assert.equal(env['oldSpareAlive'], false, 'the discarded spare was ended');

      const end = step(all, 'end');
      assert.ok(closedAt - (end['at'] as number) < 5_000, `the parent took ${closedAt - (end['at'] as number)} ms to exit with a spare idle`);
      if (method === 'process') await eventually(() => !pidAlive(end['spare'] as number), 10_000, 'the idle spare to end with its parent');
    });
  }

  it('a SIGKILLed parent leaves no spare process behind', async () => {
    const parent = spawn(process.execPath, ['--import', 'tsx', mainFile, 'hold', 'process'], { cwd: scratch, stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((resolve) => parent.once('exit', () => resolve()));
    let spare = 0;
    try {
      const input = createInterface({ input: parent.stdout });
      spare = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the parent did not report its spare in 30 s')), 30_000);
        input.on('line', (line) => {
          const l = JSON.parse(line) as Line;
          if (l['step'] !== 'hold') return;
          clearTimeout(timer);
          resolve(l['spare'] as number);
        });
        parent.once('exit', (code) => reject(new Error(`the parent exited early with ${code}`)));
      });
      assert.ok(pidAlive(spare), 'the spare runs while its parent does');
    } finally {
      parent.stdout.destroy(); // nothing of a surviving tree may keep this test open
      parent.kill('SIGKILL');
      await exited;
    }
    await eventually(() => !pidAlive(spare), 10_000, 'the orphaned spare to die');
  });

  it('MULTIPROCESSING_TS_SPARES=0: no spare is made, every start is cold (both methods)', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', mainFile, 'cold'], { cwd: scratch, env: { MULTIPROCESSING_TS_SPARES: '0' } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const cold = step(lines(r.stdout), 'cold');
    assert.deepEqual(
      { made: cold['made'], taken: cold['taken'], discarded: cold['discarded'], idle: cold['idle'] },
      { made: 0, taken: 0, discarded: 0, idle: {} },
    );
  });
});
