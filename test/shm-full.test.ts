/**
 * A full /dev/shm: a real tmpfs of 1 MiB mounted over /dev/shm in a private
 * mount namespace (needs root and util-linux's unshare, as CI has).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as mp from '../src/index.js';
import { METHODS, fixture, run } from './helpers.js';

const canMount =
  process.getuid?.() === 0 && spawnSync('unshare', ['--mount', 'true']).status === 0 ? false : 'needs root and unshare --mount';

describe('a full /dev/shm', { skip: mp.nativeAvailable() ? canMount : 'needs the native addon' }, () => {
  for (const method of METHODS) {
    it(`an object or arena that does not fit is an ENOSPC error, not a SIGBUS; what exists still works (${method})`, async () => {
      const script = `mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" "$1"`;
      const r = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, process.execPath, fixture('shm-full.js')], {
        env: { MULTIPROCESSING_TS_START_METHOD: method },
      });
      assert.equal(r.signal, null, `not killed by a signal: ${r.stderr}`);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.errors.length, 4);
      for (const e of out.errors) assert.match(e, /^ENOSPC: .*\/dev\/shm/);
      assert.ok(out.made > 1000, `${out.made} Values before /dev/shm was full`);
      assert.equal(out.intact, true, 'every Value made before the error reads back');
      assert.equal(out.value, 42);
      assert.equal(out.exitCode, 0);
    });

    it(`a pool task whose arguments or result do not fit fails with ENOSPC naming the task and the fix; a task's error too large comes back cut down, ENOSPC its cause; the pool and a Queue go on (${method})`, async () => {
      const script = `mount -t tmpfs -o size=3m tmpfs /dev/shm && exec "$0" "$1"`;
      const r = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, process.execPath, fixture('pool-shm-full.js')], {
        env: { MULTIPROCESSING_TS_START_METHOD: method },
        timeoutMs: 60_000,
      });
      assert.equal(r.signal, null, `not killed by a signal: ${r.stderr}`);
      assert.equal(r.code, 0, `the parent died: ${r.stderr.slice(0, 2000)}`);
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out.warm, [1, 2]);
      assert.equal(out.args.code, 'ENOSPC', JSON.stringify(out.args));
      assert.match(out.args.message, /^pool\.map\(length\) item \d+ could not be handed to a worker: ENOSPC: .*\/dev\/shm\/.*--shm-size/);
      assert.deepEqual(out.beside[0], { ok: 3 }, 'the small task sent with the large one ran');
      assert.equal(out.beside[1].code, 'ENOSPC', JSON.stringify(out.beside[1]));
      assert.match(out.beside[1].message, /^pool\.apply\(length\) could not be handed to a worker: ENOSPC/);
      assert.deepEqual(out.beside[2], { ok: 2 });
      assert.deepEqual(out.small, [3, [1, 2, 3]]);
      assert.equal(out.result.code, 'ENOSPC', JSON.stringify(out.result));
      assert.match(out.result.message, /^pool\.apply\(text\): the result could not be sent back to the pool: ENOSPC: .*4194304-byte item/);
      // A task's error too large to come back: its class and the start of its message, cut down, the ENOSPC as its cause.
      assert.equal(out.huge.cls, 'HugeError', JSON.stringify(out.huge));
      assert.equal(out.huge.start, 'zzzzz');
      assert.ok(out.huge.length < 5_000, `a message of ${out.huge.length} characters came back`);
      assert.match(out.huge.message, /\.\.\. \(4190208 more characters\) \[cut down: the whole error could not be sent back to the pool; see its cause\]$/);
      assert.match(out.huge.stack, /^\s+at .*throwsHuge/, 'the stack keeps its frames');
      assert.equal(out.huge.code, undefined, 'its own properties are dropped');
      assert.equal(out.huge.cause.code, 'ENOSPC', JSON.stringify(out.huge.cause));
      assert.match(out.huge.cause.message, /^the task's error could not be sent back to the pool: ENOSPC/);
      // With under 64 KiB of /dev/shm free the cut-down error still comes back (it needs no file), and the worker goes on.
      assert.equal(out.tight.cls, 'HugeError', JSON.stringify(out.tight));
      assert.equal(out.tight.cause.code, 'ENOSPC');
      assert.deepEqual(out.afterTight, { ok: 3 }, 'the worker survived');
      // A shared object a dropped property held in flight is given back.
      assert.equal(out.holding.cls, 'HugeError', JSON.stringify(out.holding));
      assert.deepEqual(out.leftBig, [], 'the RawArray of the dropped property is gone from /dev/shm');
      assert.deepEqual(out.after, [1, 2, 3, 4]);
      assert.equal(out.failed, 6, 'one unit of the map, the large apply, the apply of a large result and three of a large error failed');
      assert.deepEqual(out.spills, [], 'no spill file is left in /dev/shm');
      assert.equal(out.put.code, 'ENOSPC', JSON.stringify(out.put));
      assert.equal(out.got, 'small');
    });
  }
});
