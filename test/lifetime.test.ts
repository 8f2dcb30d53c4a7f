/**
 * Shared memory of children that do not exit on their own: a child killed
 * or terminated gives back (through its parent, which replays its ledger)
 * every segment reference it held or was handed, so the files leave
 * /dev/shm then and not only when the whole tree ends; what others still
 * use stays. Also: segment names that cannot collide with leftovers, and a
 * tree whose reaper cannot be spawned.
 */
import { describe, it, type TestContext } from 'node:test';
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import * as mp from '../src/index.js';
import { Segment } from '../src/shm/segment.js';
import { treeDir } from '../src/shm/tree.js';
import * as lt from './fixtures/lifetime.js';
import { METHODS, eventually, fixture, regionOf, run } from './helpers.js';
import { exitCode, lineReader, tracingUnavailable } from './tracing.js';

const MiB = 1 << 20;
const gc = (globalThis as { gc?: () => void }).gc;
const needs = !mp.nativeAvailable() ? 'needs the native addon' : !gc ? 'run node with --expose-gc' : false;

/** Names of the segment files in this tree's directory. */
function segmentFiles(): Set<string> {
  return new Set(readdirSync(treeDir()).filter((name) => name !== 'names' && name !== 'ledgers'));
}

function added(now: Set<string>, before: Set<string>): string[] {
  return [...now].filter((name) => !before.has(name));
}

function stillThere(names: string[]): string[] {
  return names.filter((name) => existsSync(`${treeDir()}/${name}`));
}

/** The reference count in a segment file's header. */
function refsOf(name: string): number {
  const fd = openSync(`${treeDir()}/${name}`, 'r');
  try {
    const header = Buffer.alloc(4);
    readSync(fd, header, 0, 4, 0);
    return header.readInt32LE(0);
  } finally {
    closeSync(fd);
  }
}

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Bytes in use on /dev/shm, as `df` reports them. */
function shmUsed(): number {
  const fs = statfsSync('/dev/shm');
  return (fs.blocks - fs.bfree) * fs.bsize;
}

/** Starts `children`, and kills whichever still runs when the test ends (an assertion failed). */
function startAll(t: TestContext, children: mp.Process[]): void {
  t.after(() => children.forEach((p) => p.kill()));
  children.forEach((p) => p.start());
}

async function allReady(ready: mp.RawSharedArray<'i'>, count: number): Promise<void> {
  await eventually(() => ready.slice(0, count).every((flag) => flag === 1), 30_000, `${count} children to be ready`);
}

/**
 * Traces thread argv[1] (PTRACE_SEIZE, then a stop at each system call),
 * says `seized` (or `error <errno name>`), and stops it for good as it
 * returns from a system call of its next batch of drops: the write(2) of
 * the batch (`=<batch>` and `-` lines: ledger.ts) when argv[2] is 0, else
 * its argv[2]-th unlink after that write. Says how many drops the batch
 * logged and how many unlinks it saw, then, with argv[3] `kill`, SIGKILLs
 * the process (a process stopped there runs no more instruction of its
 * own); with `hold`, waits for a line on stdin (the test terminates the
 * worker thread meanwhile) and lets the thread go on. x86-64.
 */
const STOP_IN_DROP_BATCH = `
import ctypes, errno, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
PTRACE_DETACH, PTRACE_SYSCALL, PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_GET_SYSCALL_INFO = 17, 24, 0x4206, 0x4207, 0x420e
PTRACE_O_TRACESYSGOOD, WALL = 1, 0x40000000
SYS_WRITE, SYS_UNLINK, SYS_UNLINKAT = 1, 87, 263
class Info(ctypes.Structure):
    _fields_ = [('op', ctypes.c_uint8), ('pad', ctypes.c_uint8 * 3), ('arch', ctypes.c_uint32),
                ('ip', ctypes.c_uint64), ('sp', ctypes.c_uint64), ('nr', ctypes.c_uint64), ('args', ctypes.c_uint64 * 6)]
tid, unlinks, then = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if libc.ptrace(PTRACE_SEIZE, tid, None, PTRACE_O_TRACESYSGOOD) != 0:
    print('error', errno.errorcode.get(ctypes.get_errno(), '?'), flush=True)
    sys.exit(1)
libc.ptrace(PTRACE_INTERRUPT, tid, None, None)
os.waitpid(tid, WALL)
info = Info()
# PTRACE_GET_SYSCALL_INFO came with Linux 5.3.
if libc.ptrace(PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(info), ctypes.byref(info)) < 0:
    print('error', errno.errorcode.get(ctypes.get_errno(), '?'), flush=True)
    sys.exit(1)
mem = os.open('/proc/%d/mem' % tid, os.O_RDONLY)
print('seized', flush=True)
nr, batch, seen, sig = -1, None, 0, 0
while True:
    libc.ptrace(PTRACE_SYSCALL, tid, None, sig)
    sig = 0
    _, status = os.waitpid(tid, WALL)
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        print('the thread ended first', flush=True)
        sys.exit(1)
    stop = os.WSTOPSIG(status)
    if stop != signal.SIGTRAP | 0x80:
        # A signal for it (passed on), or a ptrace event stop (nothing to pass).
        sig = stop if status >> 16 == 0 else 0
        continue
    libc.ptrace(PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(info), ctypes.byref(info))
    if info.op == 1:
        nr = info.nr
        if nr == SYS_WRITE and batch is None:
            data = os.pread(mem, min(info.args[2], 1 << 16), info.args[1])
            if data[:1] in (b'=', b'-'):
                batch = data.count(b'\\n-') + (data[:1] == b'-')
        continue
    if info.op != 2 or batch is None:
        continue
    if nr in (SYS_UNLINK, SYS_UNLINKAT):
        seen += 1
    if (nr == SYS_WRITE and unlinks == 0) or (nr in (SYS_UNLINK, SYS_UNLINKAT) and seen == unlinks):
        break
if then == 'kill':
    os.kill(tid, signal.SIGKILL)
print('stopped after a batch of %d drops and %d of its unlinks' % (batch, seen), flush=True)
if then == 'hold':
    sys.stdin.readline()
    libc.ptrace(PTRACE_DETACH, tid, None, None)
`;

describe('shared memory of killed children', { skip: needs }, () => {
  for (const method of METHODS) {
    it(`children handed a fresh 4 MiB RawArray, then terminated or killed, leave none of them in /dev/shm (${method})`, async (t) => {
      const Process = mp.getContext(method).Process;
      const count = 8;
      const ready = mp.RawArray('i', count);
      const before = segmentFiles();
      const baseline = shmUsed();
      const descriptors = openDescriptors();
      let arrays: mp.RawSharedArray<'b'>[] | null = Array.from({ length: count }, () => mp.RawArray('b', 4 * MiB).fill(1));
      const handed = added(segmentFiles(), before);
      assert.equal(handed.length, count);
      const children = arrays.map((arr, slot) => new Process({ target: lt.holdHanded, args: [arr, ready, slot], module: lt.LIFETIME }));
      startAll(t, children);
      await allReady(ready, count);
      children.forEach((p, i) => (i % 2 ? p.kill() : p.terminate()));
      await Promise.all(children.map((p) => p.join(20_000)));
      assert.deepEqual(children.map((p) => p.exitCode), children.map((_, i) => (i % 2 ? -9 : -15)));
      // The children's references are back: the parent's own mapping is all that counts.
      assert.deepEqual(handed.map(refsOf), handed.map(() => 1));
      // Each child's ledger descriptor is closed with it (a thread's belongs to this process). A
      // process child's IPC socket closes shortly after its exit, which join() does not wait for.
      await eventually(() => openDescriptors() <= descriptors + 2, 5_000, `descriptors to return near ${descriptors}`);
      arrays = null;
      await eventually(() => (gc!(), stillThere(handed).length === 0), 10_000, `the files to go: ${stillThere(handed)}`);
      // And the memory with them (other test files may use a little meanwhile).
      await eventually(() => (gc!(), shmUsed() - baseline < 12 * MiB), 10_000, `/dev/shm usage to return near ${baseline}`);
    });

    it(`a child killed right after start() leaves no reference on the arguments it was handed (${method})`, async () => {
      const before = segmentFiles();
      const arr = mp.RawArray('b', 64 * 1024);
      const [name] = added(segmentFiles(), before);
      const p = new (mp.getContext(method).Process)({ target: lt.holdHanded, args: [arr, mp.RawArray('i', 1), 0], module: lt.LIFETIME });
      p.start();
      p.kill();
      await p.join(20_000);
      assert.equal(p.exitCode, -9);
      assert.equal(refsOf(name!), 1, 'only the parent holds the array');
    });

    it(`a child that made its own 4 MiB segment and is killed leaves no file behind (${method})`, async (t) => {
      const ready = mp.RawArray('i', 1);
      const before = segmentFiles();
      const p = new (mp.getContext(method).Process)({ target: lt.holdOwn, args: [ready, 0], module: lt.LIFETIME });
      startAll(t, [p]);
      await allReady(ready, 1);
      const own = added(segmentFiles(), before);
      assert.equal(own.length, 1);
      p.kill();
      await p.join(20_000);
      assert.deepEqual(stillThere(own), []);
    });

    it(`a Value the parent still uses survives the kill of a child that held it, and can be handed on (${method})`, async (t) => {
      const Process = mp.getContext(method).Process;
      const v = mp.Value('i', 0);
      const region = regionOf(v);
      const ready = mp.RawArray('i', 1);
      const first = new Process({ target: lt.holdValue, args: [v, ready, 0], module: lt.LIFETIME });
      startAll(t, [first]);
      await allReady(ready, 1);
      assert.ok(region.refs() >= 2, 'the child holds a reference');
      first.kill();
      await first.join(20_000);
      assert.equal(region.refs(), 1, 'the parent keeps its reference');
      const second = new Process({ target: lt.holdValue, args: [v, ready, 0], module: lt.LIFETIME });
      ready[0] = 0;
      startAll(t, [second]);
      await allReady(ready, 1);
      assert.equal(v.value, 2);
      second.terminate();
      await second.join(20_000);
      assert.equal(region.refs(), 1);
      assert.ok(existsSync(region.file));
    });
  }

  for (const method of METHODS) {
    it(`a child that made and dropped thousands of segments keeps a small ledger, and its kill still settles exactly (${method})`, async (t) => {
      const ready = mp.RawArray('i', 1);
      const before = segmentFiles();
      const v = mp.Value('i', 0);
      const value = regionOf(v);
      const p = new (mp.getContext(method).Process)({ target: lt.churn, args: [v, ready, 16], module: lt.LIFETIME });
      startAll(t, [p]);
      await allReady(ready, 1);
      const own = added(segmentFiles(), before).filter((name) => `${treeDir()}/${name}` !== value.file);
      // The child waited for each batch to be given back before the next (see lt.churn).
      assert.equal(own.length, 1, `only the array the child keeps is left of its own (${own.length} files)`);
      const ledgers = readdirSync(`${treeDir()}/ledgers`).filter((name) => !name.includes('~'));
      assert.equal(ledgers.length, 1);
      // About 8000 entries of some 22 bytes were logged, never more than 251
      // live at once: each time the file reached 64 KiB it was compacted.
      const size = statSync(`${treeDir()}/ledgers/${ledgers[0]}`).size;
      assert.ok(size < 64 * 1024, `ledger of ${size} bytes after about 8000 entries`);
      p.kill();
      await p.join(20_000);
      assert.equal(v.value, 1);
      assert.equal(value.refs(), 1, 'the parent keeps its reference');
      assert.deepEqual(stillThere(own), []);
    });
  }

  // A child logs each reference it gives back before dropping it, many in one write (ledger.ts); a
  // tracer kills it right after that write, or after some of the batch's drops (each of which removes
  // a file here, so it can be seen). Drop progress (drop-progress.ts) tells the parent which were done.
  for (const method of METHODS) {
    for (const unlinked of [0, 3]) {
      const skip = process.arch !== 'x64' ? 'the tracer knows the system calls of x86-64 only' : tracingUnavailable();
      it(`a child ${method === 'thread' ? 'terminated' : 'killed'} after it logged a batch of drops and did ${unlinked} of them: its parent does the rest, each once (${method})`, { skip }, async (t) => {
        const count = 10;
        const ready = mp.RawArray('i', 2);
        const go = new mp.Event();
        const shared = mp.RawArray('i', 100);
        const [mine, its] = mp.Pipe();
        const before = segmentFiles();
        const p = new (mp.getContext(method).Process)({ target: lt.dropInOneBatch, args: [count, ready, go, its], module: lt.LIFETIME });
        startAll(t, [p]);
        mine.send(shared);
        await eventually(() => Atomics.load(ready, 0) === 1, 20_000, 'the child to make its segments');
        const own = added(segmentFiles(), before);
        assert.equal(own.length, count, `the child made ${count} segments`);
        // The thread the child runs in: a process child's main thread, a thread child's own thread of this process.
        const tid = String(ready[1]);
        if (method === 'process') assert.equal(tid, String(p.pid));
        const then = method === 'thread' ? 'hold' : 'kill';
        const tracer = spawn('python3', ['-c', STOP_IN_DROP_BATCH, tid, String(unlinked), then], { stdio: ['pipe', 'pipe', 'inherit'] });
        t.after(() => tracer.kill('SIGKILL'));
        const line = lineReader(tracer.stdout!, 'the tracer');
        const seized = await line(/^(seized|error \S+)$/, 10_000);
        if (seized === 'error EPERM') return t.skip('ptrace(PTRACE_SEIZE) is not permitted here');
        if (seized === 'error EIO' || seized === 'error EINVAL') return t.skip('PTRACE_GET_SYSCALL_INFO needs Linux 5.3');
        assert.equal(seized, 'seized');
        go.set();
        const stopped = await line(/^stopped after a batch of \d+ drops and \d+ of its unlinks$/, 20_000);
        // Its own segments and its reference on the parent's.
        assert.equal(stopped, `stopped after a batch of ${count + 1} drops and ${unlinked} of its unlinks`);
        if (method === 'thread') {
          // Served at the first check the thread makes once it runs again, right after that system call.
          p.kill();
          tracer.stdin!.end('go on\n');
        }
        assert.equal(await exitCode(tracer, 10_000, 'the tracer'), 0);
        await p.join(20_000);
        assert.equal(p.exitCode, -9);
        await eventually(() => stillThere(own).length === 0, 5_000, 'the parent to give back the rest of the batch').catch(() => {});
        assert.deepEqual(stillThere(own), [], 'the segments of the drops the child logged but never did');
        // The count in its segment's header.
        const refs = Atomics.load(new Int32Array(shared.buffer, 0, 1), 0);
        assert.equal(refs, 1, "the parent's array is back to its one reference (2: lost; 0: dropped twice)");
      });
    }
  }


  it("grandchildren's segments are given back when the child that started them is killed (both methods, all pairs)", async (t) => {
    const ready = mp.RawArray('i', 3 * METHODS.length);
    const before = segmentFiles();
    const children = METHODS.map(
      (method, i) => new (mp.getContext(method).Process)({ target: lt.holdGrandchildren, args: [ready, 3 * i], module: lt.LIFETIME }),
    );
    startAll(t, children);
    await allReady(ready, ready.length);
    const theirs = added(segmentFiles(), before);
    // Each grandchild was handed one array and made one.
    assert.equal(theirs.length, 2 * METHODS.length * METHODS.length);
    children.forEach((p) => p.kill());
    await Promise.all(children.map((p) => p.join(20_000)));
    await eventually(() => stillThere(theirs).length === 0, 15_000, `the files to go: ${stillThere(theirs)}`);
  });

  it('a leftover file with the name the next segment would get does not make Array() fail', () => {
    const seg = Segment.create(8);
    const next = seg.path!.replace(/\d+$/, (n) => String(Number(n) + 1));
    writeFileSync(next, 'left by a killed process whose pid this one reuses');
    const arr = mp.Array('i', [7, ...Array<number>(99).fill(0)]);
    assert.equal(arr[0], 7);
    assert.ok(existsSync(next), 'the leftover is not ours to remove');
  });
});

describe('tree without a reaper', { skip: mp.nativeAvailable() ? false : 'needs the native addon' }, () => {
  type Out = { treeDir: string; shm: string; value: number; reaperEvents: string[] };

  it('a reaper whose shell cannot be spawned leaves the cleanup to the main process exit, also after the failure is reported', async () => {
    const r = await run(process.execPath, [fixture('no-reaper-main.js')], {
      env: { MULTIPROCESSING_TS_REAPER_SHELL: '/nonexistent/sh' },
    });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Out;
    assert.equal(out.value, 1);
    assert.ok(out.reaperEvents.includes('error') && !out.reaperEvents.includes('spawn'), `reaper events: ${out.reaperEvents}`);
    assert.equal(existsSync(out.treeDir), false, 'the tree directory is removed');
    assert.equal(existsSync(`/dev/shm/${out.shm}`), false, 'the named block is removed');
  });

  it('a reaper killed after it spawned hands the cleanup back to the main process exit', async () => {
    const r = await run(process.execPath, [fixture('no-reaper-main.js'), 'kill-reaper']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Out;
    assert.equal(out.value, 1);
    assert.deepEqual(out.reaperEvents.slice(0, 2), ['spawn', 'exit'], 'spawned (the cleanup disarmed), then killed');
    assert.equal(existsSync(out.treeDir), false, 'the tree directory is removed');
    assert.equal(existsSync(`/dev/shm/${out.shm}`), false, 'the named block is removed');
  });
});
