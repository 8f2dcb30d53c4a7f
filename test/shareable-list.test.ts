/**
 * ShareableList in Python's own block layout: real python3 processes create
 * lists we attach, and attach lists we create, each side reading and writing
 * the other's. Then the size limit and live sharing with children.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as mp from '../src/index.js';
import * as fx from './fixtures/targets.js';
import { METHODS, eventually, run } from './helpers.js';

const native = mp.nativeAvailable();
/** python3's minor version: 3.8 wrote an older header (sizes, not offsets) and cannot read ours. */
const pythonMinor = Number(spawnSync('python3', ['-c', 'import sys; print(sys.version_info[1])']).stdout?.toString().trim());

/** A python3 process we talk to by lines: `line()` is its next stdout line, `send()` writes a stdin line. */
function startPython(script: string, args: string[] = []) {
  const child = spawn('python3', ['-c', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => (clearTimeout(timer), resolve(code))));
  return {
    async line(): Promise<string> {
      const next = await lines.next();
      if (next.done) throw new Error(`python3 ended early (code ${await exited}): ${stderr}`);
      return next.value;
    },
    send: (text: string) => child.stdin.write(`${text}\n`),
    async exitCode(): Promise<number | null> {
      const code = await exited;
      assert.equal(code, 0, stderr);
      return code;
    },
  };
}

/** The items both sides make, in Python and in TypeScript (ASCII and short non-ASCII text: see gh-88336 below). */
const PY_ITEMS = "[7, 2**60, -2**63, 2.5, 'héllo', b'\\x00\\x01\\xff', True, False, None, 'ab\\x00', '']";
const TS_ITEMS = (): mp.ShareableItem[] => [7, 2n ** 60n, -(2n ** 63n), 2.5, 'héllo', new Uint8Array([0, 1, 255]), true, false, null, 'ab\0', ''];
/** What a reader gets back: the trailing NUL of 'ab\0' is stripped, on both sides. */
const READ_BACK = [7, 2n ** 60n, -(2n ** 63n), 2.5, 'héllo', new Uint8Array([0, 1, 255]), true, false, null, 'ab', ''];
const PY_FORMAT = 'qqqd8s8sxxxxxxx?xxxxxxx?xxxxxx?x8s8s';

describe('ShareableList and Python', { skip: native ? false : 'Python attaches /dev/shm blocks: needs the native addon' }, () => {
  it("we attach Python's list by name, read each item as its JS type, and Python sees our writes", async () => {
    const py = startPython(
      [
        'import sys',
        'from multiprocessing import shared_memory',
        `sl = shared_memory.ShareableList(${PY_ITEMS})`,
        'print(sl.shm.name, flush=True)',
        'print(sl.format, flush=True)',
        'sys.stdin.readline()',
        'print(repr(list(sl)), flush=True)',
        'print(sl.format, flush=True)',
        'sl.shm.close(); sl.shm.unlink()',
      ].join('\n'),
    );
    const name = (await py.line()).replace(/^\//, '');
    const theirFormat = await py.line();
    const sl = new mp.ShareableList(null, { name });
    assert.equal(sl.length, 11);
    assert.deepEqual(sl.toArray(), READ_BACK);
    assert.equal(typeof sl.get(0), 'number', 'a small Python int is a number');
    assert.equal(typeof sl.get(1), 'bigint', 'an int beyond 2^53 is a bigint');
    assert.equal(sl.format, theirFormat);
    assert.equal(sl.format, PY_FORMAT);

    sl.set(0, 'π≈3'); // text into a number's 8 bytes (6 bytes in UTF-8)
    sl.set(1, -1);
    sl.set(2, 3n ** 39n);
    sl.set(3, null);
    sl.set(4, 'é');
    sl.set(5, new Uint8Array([9, 8]));
    sl.set(6, 0.5);
    sl.set(8, true);
    sl.set(-1, 'eight ch'); // exactly fills its 8 bytes
    py.send('go');
    assert.equal(
      await py.line(),
      "['π≈3', -1, 4052555153018976267, None, 'é', b'\\t\\x08', 0.5, False, True, 'ab', 'eight ch']",
    );
    assert.equal(await py.line(), '8sqqxxxxxx?x8s8sdxxxxxxx?xxxxxxx?8s8s');
    await py.exitCode();
  });

  it(
    'Python attaches our list by name (its repr exact, the block byte-for-byte its own), and we see its writes',
    { skip: pythonMinor === 8 ? "Python 3.8's header holds sizes, not offsets: it cannot read the 3.9+ layout" : false },
    async () => {
      const sl = new mp.ShareableList([...TS_ITEMS(), 'héllo ✓ wide']);
      const r = await run('python3', [
        '-c',
        [
          'import sys',
          'from multiprocessing import shared_memory, resource_tracker',
          'sl = shared_memory.ShareableList(name=sys.argv[1])',
          // Python 3.8-3.13 would unlink a block it merely attached when it exits: opt out.
          'resource_tracker.unregister(sl.shm._name, "shared_memory")',
          'print(repr(list(sl)))',
          'print(sl.format)',
          `made = shared_memory.ShareableList(${PY_ITEMS})`,
          'print(bytes(made.shm.buf).hex())',
          'made.shm.close(); made.shm.unlink()',
          "sl[0] = 'py'; sl[1] = 2**62 + 1; sl[2] = 1.5; sl[4] = 'ok'; sl[5] = None; sl[6] = b'xy'; sl[8] = -42; sl[11] = 'ünï'",
        ].join('\n'),
        sl.shm.name,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const [repr, format, pythonsBlock] = r.stdout.trim().split('\n');
      assert.equal(
        repr,
        "[7, 1152921504606846976, -9223372036854775808, 2.5, 'héllo', b'\\x00\\x01\\xff', True, False, None, 'ab', '', 'héllo ✓ wide']",
      );
      // Text is sized by its UTF-8 bytes (16 for the last), where Python counts characters (gh-88336).
      assert.equal(format, `${PY_FORMAT}16s`);
      const same = new mp.ShareableList(TS_ITEMS());
      assert.equal(Buffer.from(same.shm.buf).toString('hex'), pythonsBlock, 'the same items make the same bytes as Python');
      same.shm.unlink();
      assert.deepEqual(sl.toArray(), ['py', 2n ** 62n + 1n, 1.5, 2.5, 'ok', null, new Uint8Array([120, 121]), false, -42, 'ab', '', 'ünï']);
      sl.shm.unlink();
    },
  );
});

describe('ShareableList limits', () => {
  it('text or bytes past an item’s capacity is refused, naming the item, its capacity and the fix; the list stays usable', () => {
    const sl = new mp.ShareableList(['abc', new Uint8Array(9), 1]);
    assert.throws(() => sl.set(0, 'x'.repeat(9)), (e: Error) => {
      assert.ok(e instanceof mp.ValueError);
      assert.match(e.message, /item 0 holds 8 bytes and the string given is 9 in UTF-8/);
      assert.match(e.message, /placeholder of at least 9 bytes at index 0/);
      return true;
    });
    assert.throws(() => sl.set(1, new Uint8Array(17)), /item 1 holds 16 bytes and the bytes given are 17/);
    assert.throws(() => sl.set(2, 'ninechars'), /item 2 holds 8 bytes/);
    assert.throws(() => sl.set(2, 2n ** 63n), /outside Python's 'q'/);
    assert.deepEqual(sl.toArray(), ['abc', new Uint8Array(0), 1], 'refused writes change nothing (all-NUL bytes read as empty)');
    sl.set(0, 'eight ch');
    sl.set(1, new Uint8Array(16).fill(1));
    sl.set(2, 'fits');
    assert.deepEqual(sl.toArray(), ['eight ch', new Uint8Array(16).fill(1), 'fits']);
    sl.shm.unlink();
  });
});

for (const method of METHODS) {
  describe(`ShareableList shared with a child (${method})`, () => {
    it("the child sees the parent's writes and the parent sees the child's, while both run", async () => {
      const sl = new mp.ShareableList(['', 'x'.repeat(8), 0, 'x'.repeat(8)]);
      const p = new (mp.getContext(method).Process)({ target: fx.answerThroughList, args: [sl], module: fx.TARGETS });
      p.start();
      await eventually(() => sl.get(1) === 'child up', 20_000, 'the child to write into the list');
      sl.set(0, 'go');
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.equal(sl.get(2), 2n ** 62n);
      assert.equal(sl.get(3), 'go!');
      sl.shm.unlink();
    });
  });
}

describe('ShareableList headers that are not ours', () => {
  it('a corrupt item count is a clean error, read before anything is allocated for it', () => {
    const shm = new mp.SharedMemory({ create: true, size: 1 << 20 });
    try {
      const view = new DataView(shm.buf.buffer, shm.buf.byteOffset, shm.size);
      view.setBigInt64(0, BigInt((1 << 20) / 8), true);
      assert.throws(
        () => new mp.ShareableList(null, { name: shm.name }),
        (err: Error) => err instanceof mp.ValueError && /does not hold a ShareableList \(131072 items need more than its/.test(err.message),
      );
    } finally {
      shm.unlink();
    }
  });

  const py38 = spawnSync('pyenv', ['versions', '--bare']).stdout?.toString().split('\n').find((v) => v.startsWith('3.8.'));
  it("Python 3.8's lists attach, the empty one included", { skip: py38 ? false : 'needs Python 3.8 from pyenv' }, async () => {
    const script = [
      'import sys',
      'from multiprocessing import shared_memory, resource_tracker',
      'a = shared_memory.ShareableList([7, "eight", 9.5, b"x", True, None])',
      'b = shared_memory.ShareableList([])',
      'print(a.shm.name, b.shm.name, flush=True)',
      'sys.stdin.readline()',
      'print(a[0], a[1], flush=True)',
      'a.shm.unlink(); b.shm.unlink()',
    ].join('\n');
    const child = spawn('python3', ['-c', script], { env: { ...process.env, PYENV_VERSION: py38! }, stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    try {
      const [aName, bName] = ((await lines.next()).value as string).split(' ');
      const a = new mp.ShareableList(null, { name: aName! });
      assert.deepEqual([a.get(0), a.get(1), a.get(2), a.get(3), a.get(4), a.get(5)], [7, 'eight', 9.5, new Uint8Array([120]), true, null]);
      a.set(0, 70);
      a.set(1, 'EIGHT');
      const b = new mp.ShareableList(null, { name: bName! });
      assert.equal(b.length, 0);
      child.stdin.write('\n');
      assert.equal((await lines.next()).value, '70 EIGHT');
    } finally {
      clearTimeout(timer);
      child.kill();
    }
  });
});
