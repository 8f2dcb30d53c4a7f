/**
 * Warm spare children (process/spares.ts): a parent under tsx keeps one
 * child of each start method it used ready, and the next start takes it.
 * A taken spare must be indistinguishable from a cold child; a spare must
 * not be taken when the environment, working directory, umask or
 * credentials changed since it was made, must survive its group's Ctrl-C,
 * must not keep its parent alive or outlive it, is not made when a user
 * preload would run in it or when every start changes the environment, and
 * `MULTIPROCESSING_TS_SPARES=0` turns spares off.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { METHODS, eventually, pidAlive, run } from './helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsxCli = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
// Inside the package, so that 'multiprocessing-ts' resolves (its self-reference) and the scope is ESM.
const scratch = mkdtempSync(join(root, 'dist', 'test', 'spares-'));

/** A child that runs as nobody must read the package: every directory above it must let others in. */
function privilegesSkip(): string | false {
  if (process.getuid?.() !== 0) return 'only root can drop privileges';
  for (let dir = root; ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o005) !== 0o005) return `${dir} is not readable by other users, so a child running as nobody cannot load the package`;
    if (dirname(dir) === dir) return false;
  }
}

function credsOf(all: Line[], tag: string): Line {
  return (all.find((l) => (l['creds'] as Line | undefined)?.['tag'] === tag)?.['creds'] as Line) ?? assert.fail(`no ${tag} child`);
}
chmodSync(scratch, 0o755); // readable by a parent that drops its privileges
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
import { mkdirSync, readFileSync } from 'node:fs';

interface Stats { made: number; taken: number; discarded: number; idle: Record<string, number | undefined>; ready?: Record<string, number | undefined> }
const stats = (): Stats => (globalThis as any)[Symbol.for('multiprocessing-ts.spares')] ?? { made: 0, taken: 0, discarded: 0, idle: {} };
const out = (line: object) => console.log(JSON.stringify(line));

export function report(v: mp.SynchronizedValue, n: number): void {
  v.value += n;
  const me = mp.currentProcess();
  out({ child: { name: me.name, pid: me.pid, threadId: me.threadId, parent: mp.parentProcess()!.pid, probe: process.env['MPTS_SPARE_PROBE'] ?? null, cwd: process.cwd(), nodeOptions: process.env['NODE_OPTIONS'] ?? null } });
  process.exitCode = 3;
}

/** What a process cannot change in a child once it runs: its credentials and umask. */
export function credentials(tag: string): void {
  const umask = /^Umask:\\s*(\\d+)/m.exec(readFileSync('/proc/self/status', 'latin1'))![1];
  out({ creds: { tag, uid: process.getuid!(), euid: process.geteuid!(), gid: process.getgid!(), egid: process.getegid!(), umask } });
}

/** Shows it ran, then interrupts itself: a taken spare has SIGINT's default again, and dies of it. */
export function interruptSelf(ran: mp.SynchronizedValue): void {
  ran.value = 1;
  process.kill(process.pid, 'SIGINT');
  setTimeout(() => {}, 5_000);
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

    // Each change discards the idle spares; the next start takes one made
    // after it (so that the two unfit starts in a row that stop spares never happen).
    const changes: Record<string, () => void> = {
      env: () => void (process.env['MPTS_SPARE_PROBE'] = 'changed'),
      cwd: () => { mkdirSync('sub', { recursive: true }); process.chdir('sub'); },
      nodeOptions: () => void (process.env['NODE_OPTIONS'] = ((process.env['NODE_OPTIONS'] ?? '') + ' --max-old-space-size=200').trim()),
    };
    for (const [change, make] of Object.entries(changes)) {
      const spare = await idleSpare(method);
      make();
      const e = new Process({ target: report, args: [v, 100] });
      const tookEnv = await startOnSpare(method, e, true);
      await e.join();
      out({ step: change, ...tookEnv, name: e.name, exitCode: e.exitCode, oldSpareAlive: method === 'process' ? alive(spare) : null });
      const again = new Process({ target: report, args: [v, 1000] });
      const tookAgain = await startOnSpare(method, again);
      await again.join();
      out({ step: change + ' again', ...tookAgain, exitCode: again.exitCode });
    }

    out({ step: 'end', spare: await idleSpare(method), at: Date.now() });
  } else if (mode === 'signals') {
    // Ctrl-C, as a terminal sends it to the whole foreground group (ours: we lead it), while a spare is idle, and a start in the same tick.
    const first = new mp.Process({ target: report, args: [mp.Value('i', 0), 1] });
    first.start();
    await first.join();
    const ran = mp.Value('i', 0);
    const p = new mp.Process({ target: interruptSelf, args: [ran] });
    process.on('SIGINT', () => {});
    const spare = await idleSpare('process');
    process.kill(-process.pid, 'SIGINT');
    p.start();
    await p.join(20_000);
    out({ step: 'signals', isSpare: p.pid === spare, ran: ran.value, exitCode: p.exitCode });
  } else if (mode === 'creds') {
    const first = new mp.Process({ target: credentials, args: ['cold'] });
    first.start();
    await first.join();
    const spare = await idleSpare('process');
    process.umask(0o077);
    const masked = new mp.Process({ target: credentials, args: ['umask'] });
    masked.start();
    await masked.join();
    out({ step: 'umask', isSpare: masked.pid === spare });
    if (process.getuid!() === 0 && !process.env['MPTS_KEEP_PRIVILEGES']) {
      const spare = await idleSpare('process');
      process.setgid!(65534);
      process.setuid!(65534);
      const dropped = new mp.Process({ target: credentials, args: ['nobody'] });
      dropped.start();
      await dropped.join();
      out({ step: 'nobody', isSpare: dropped.pid === spare });
    }
  } else if (mode === 'churn') {
    // A parent that sets the environment before every start: every spare would be unfit.
    for (const m of mp.getAllStartMethods()) {
      const made = stats().made;
      for (let i = 0; i < 4; i++) {
        process.env['MPTS_JOB'] = String(i);
        const p = new (mp.getContext(m).Process)({ target: report, args: [mp.Value('i', 0), 1] });
        p.start();
        await p.join();
        await new Promise((r) => setTimeout(r, 20)); // time for a spare to be made
      }
      out({ step: 'churn', method: m, made: stats().made - made, taken: stats().taken });
    }
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

/** Runs node with `args` in scratch as the leader of a new process group, which it may signal whole. */
function runGroupLeader(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: scratch, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      process.kill(-child.pid!, 'SIGKILL');
      reject(new Error(`${args.join(' ')} did not finish in 30 s\n${stdout}\n${stderr}`));
    }, 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

type Line = Record<string, unknown>;
const lines = (stdout: string): Line[] => stdout.trim().split('\n').map((line) => JSON.parse(line) as Line);
/** The fields of `line` that `like` has. */
const pick = (line: Line, like: object): Line => Object.fromEntries(Object.keys(like).map((k) => [k, line[k]]));
const step = (all: Line[], name: string): Line => all.find((l) => l['step'] === name) ?? assert.fail(`no ${name} step`);

describe('warm spare children under tsx', () => {
  for (const method of METHODS) {
    it(`a start takes the idle spare, which behaves as a cold child; a changed environment, working directory or NODE_OPTIONS discards it; the parent exits promptly with one idle (${method})`, async () => {
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
      assert.deepEqual(
        pick(seen ?? {}, { name: 0, pid: 0, threadId: 0, parent: 0, probe: 0 }),
        { name: rep['name'], pid: rep['pid'], threadId: rep['threadId'], parent: rep['parent'], probe: null },
        'the child knows itself as its parent knows it',
      );

      assert.deepEqual(step(all, 'terminate'), { step: 'terminate', ...taken, exitCode: -15 });
      assert.deepEqual(step(all, 'kill'), { step: 'kill', ...taken, exitCode: -9 });

      // Every idle spare was made before the change: all are discarded (threads keep up to two).
      const seenBy = (l: Line) => children.find((c) => c['name'] === l['name']) ?? assert.fail(`no child ${l['name']}`);
      for (const change of ['env', 'cwd', 'nodeOptions']) {
        const c = step(all, change);
        const readyBefore = c['readyBefore'] as number;
        assert.ok(readyBefore >= 1 && readyBefore <= 2, `${change}: ${readyBefore} spares idle`);
        assert.deepEqual({ took: c['took'], discarded: c['discarded'], exitCode: c['exitCode'] }, { took: 0, discarded: readyBefore, exitCode: 3 }, change);
        if (method === 'process') assert.equal(c['oldSpareAlive'], false, `${change}: the discarded spare was ended`);
        assert.deepEqual(step(all, change + ' again'), { step: change + ' again', ...taken, exitCode: 3 }, `${change}: a spare made after it is taken`);
      }
      assert.equal(seenBy(step(all, 'env'))['probe'], 'changed', 'the child sees the environment of its start');
      assert.equal(seenBy(step(all, 'cwd'))['cwd'], join(scratch, 'sub'), 'the child has the working directory of its start');
      assert.match(String(seenBy(step(all, 'nodeOptions'))['nodeOptions']), /--max-old-space-size=200$/, 'the child has the NODE_OPTIONS of its start');

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

  it('Ctrl-C to the parent\'s process group leaves its idle spare alive: a start in the same tick takes it, and it runs with SIGINT\'s default', async () => {
    const r = await runGroupLeader(['--import', 'tsx', mainFile, 'signals']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(step(lines(r.stdout), 'signals'), { step: 'signals', isSpare: true, ran: 1, exitCode: -2 }, r.stderr);
  });

  it('a child started after the parent changed its umask has it (a spare made before is not taken)', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', mainFile, 'creds'], { cwd: scratch, timeoutMs: 60_000, env: { MPTS_KEEP_PRIVILEGES: '1' } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const all = lines(r.stdout);
    assert.equal(credsOf(all, 'cold')['umask'], '0022');
    assert.equal(credsOf(all, 'umask')['umask'], '0077');
    assert.equal(step(all, 'umask')['isSpare'], false);
  });

  it('a child started after the parent dropped its privileges has them (a spare made before is not taken)', { skip: privilegesSkip() }, async () => {
    const r = await run(process.execPath, ['--import', 'tsx', mainFile, 'creds'], { cwd: scratch, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const all = lines(r.stdout);
    assert.deepEqual(pick(credsOf(all, 'nobody'), { uid: 0, euid: 0, gid: 0, egid: 0 }), { uid: 65534, euid: 65534, gid: 65534, egid: 65534 });
    assert.equal(step(all, 'nobody')['isSpare'], false);
  });

  it('a parent that changes process.env before every start stops making spares after two unfit starts in a row (both methods)', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', mainFile, 'churn'], { cwd: scratch, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const churn = lines(r.stdout).filter((l) => l['step'] === 'churn');
    // One process, or two threads, made before each of the two unfit starts; none after.
    assert.deepEqual(
      churn.map((l) => ({ method: l['method'], taken: l['taken'], fewSpares: (l['made'] as number) <= 4 })),
      [{ method: 'process', taken: 0, fewSpares: true }, { method: 'thread', taken: 0, fewSpares: true }],
      JSON.stringify(churn),
    );
  });

  it('a preload of the user\'s (--import ./pre.mjs): no spare is made, so it runs only in the parent and its children (both methods)', async () => {
    const log = join(scratch, 'preload.log');
    writeFileSync(join(scratch, 'pre.mjs'), `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(log)}, JSON.stringify(process.argv) + '\\n');\n`);
    const r = await run(process.execPath, ['--import', './pre.mjs', '--import', 'tsx', mainFile, 'cold'], { cwd: scratch, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(step(lines(r.stdout), 'cold')['made'], 0);
    const ran = readFileSync(log, 'utf8').trim().split('\n');
    // The parent, two processes and two threads.
    assert.equal(ran.length, 5, ran.join('\n'));
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
