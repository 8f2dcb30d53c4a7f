/**
 * Processes a worker thread started are reaped once the thread has ended
 * (src/process/thread-children.ts, native/src/children.cc), instead of
 * staying zombies of the process until it exits; one a tracer still holds
 * after it died is retried, not polled in a busy loop.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as mp from '../src/index.js';
import { eventually, fixture, run } from './helpers.js';
import { exitCode, lineReader, tracingUnavailable } from './tracing.js';

for (const how of ['terminate', 'return'] as const) {
  it(`the processes a worker thread started (a Process, a 'process' Pool, a Manager, its tree's reaper) leave no zombie once the thread ${how === 'terminate' ? 'is terminated' : 'has ended on its own'}`, { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, async () => {
    const r = await run(process.execPath, [fixture('thread-children.js'), how], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { started: number; stale: number[]; left: string[] };
    assert.ok(out.started >= 5, `the thread had ${out.started} children running (a Process, 2 pool workers, a manager, a reaper)`);
    assert.deepEqual(out.stale, [], 'pidfds kept for children whose exit the thread saw');
    assert.deepEqual(out.left, [], 'children left behind (Z: zombies)');
  });
}

/** A process's state, parent and CPU time (all its threads, in clock ticks) from /proc/<pid>/stat; null once it is gone. */
function procStat(pid: number): { state: string; ppid: number; cpuTicks: number } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields from the third (state) on; the command before them may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0]!, ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

/** USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture Node.js runs on. */
const CLOCK_TICKS_PER_S = 100;

/**
 * Attaches to pid argv[1] with PTRACE_SEIZE (which stops nothing by itself),
 * says `seized` (or `error <errno name>`), then never waits for it: once the
 * tracee exits, only this tracer may reap it, until the tracer exits (when
 * its stdin closes), which detaches it and hands it back to its parent.
 */
const TRACER = `
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
PTRACE_SEIZE = 0x4206
if libc.ptrace(PTRACE_SEIZE, int(sys.argv[1]), None, None) != 0:
    print('error', errno.errorcode.get(ctypes.get_errno(), '?'), flush=True)
    sys.exit(1)
print('seized', flush=True)
sys.stdin.read()
`;

it('a dead child left to the reaping thread, while a tracer holds it, does not keep the parent busy, and is reaped once the tracer exits', { skip: tracingUnavailable() }, async (t) => {
  const parent = spawn(process.execPath, [fixture('thread-child-traced.js')], { stdio: ['pipe', 'pipe', 'inherit'] });
  let tracer: ChildProcess | undefined;
  try {
    const parentLine = lineReader(parent.stdout, 'the parent');
    const child = Number((await parentLine(/^child \d+$/, 20_000)).split(' ')[1]);
    assert.equal(procStat(child)?.ppid, parent.pid, 'the Process is a child of the parent process');

    tracer = spawn('python3', ['-c', TRACER, String(child)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const seized = await lineReader(tracer.stdout!, 'the tracer')(/^(seized|error \S+)$/, 10_000);
    if (seized === 'error EPERM') {
      t.skip('ptrace(PTRACE_SEIZE) is not permitted here (no CAP_SYS_PTRACE, or a seccomp filter)');
      return;
    }
    assert.equal(seized, 'seized');

    // The thread's end hands the child's pidfd to the reaping thread and kills the child (its parent-death signal).
    parent.stdin!.write('end\n');
    await parentLine(/^ended$/, 20_000);
    await eventually(() => procStat(child)?.state === 'Z', 5_000, 'the traced child to die and stay a zombie');

    // Its pidfd is readable now, yet waitid() cannot reap it: a reaper that polled it again at once would
    // spin, a whole core (0.9-1 s per s here); retried every 100 ms it costs next to nothing. 30% leaves
    // room for a loaded 2-core machine either way.
    const before = procStat(parent.pid!)!.cpuTicks;
    const start = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const busy = (procStat(parent.pid!)!.cpuTicks - before) / CLOCK_TICKS_PER_S;
    const window = (performance.now() - start) / 1000;
    assert.ok(busy < 0.3 * window, `the parent used ${busy.toFixed(2)} s of CPU in ${window.toFixed(2)} s while the tracer held its dead child`);
    assert.equal(procStat(child)?.state, 'Z', 'the tracer held the child through the measure');

    tracer.stdin!.end();
    assert.equal(await exitCode(tracer, 10_000, 'the tracer'), 0);
    await eventually(() => {
      const s = procStat(child);
      return s === null || s.ppid !== parent.pid || s.state !== 'Z';
    }, 3_000, 'the parent to reap its child once the tracer exited');

    parent.stdin!.end();
    assert.equal(await exitCode(parent, 10_000, 'the parent'), 0);
  } finally {
    tracer?.kill('SIGKILL');
    parent.kill('SIGKILL');
  }
});
