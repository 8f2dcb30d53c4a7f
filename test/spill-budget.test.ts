/**
 * Items spilled to files, read by a consumer that drops them, under a small
 * /dev/shm (a real tmpfs mounted in a private mount namespace; needs root
 * and unshare, as CI has): the mappings V8 has not collected yet must not
 * fill it (src/channel/spill.ts, "Mapped garbage").
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as mp from '../src/index.js';
import { METHODS, fixture, run } from './helpers.js';

const canMount =
  process.getuid?.() === 0 && spawnSync('unshare', ['--mount', 'true']).status === 0 ? false : 'needs root and unshare --mount';

describe('spilled items read under a 16 MiB /dev/shm', { skip: mp.nativeAvailable() ? canMount : 'needs the native addon' }, () => {
  for (const method of METHODS) {
    it(`100 items of 1 MiB go through a Queue whose consumer drops most and keeps a tenth (${method})`, async () => {
      const script = `mount -t tmpfs -o size=16m tmpfs /dev/shm && exec "$0" "$1"`;
      const r = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, process.execPath, fixture('spill-drop.js')], {
        env: { MULTIPROCESSING_TS_START_METHOD: method },
        timeoutMs: 60_000,
      });
      assert.equal(r.signal, null, r.stderr);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { got: number; error: string | null; exitCode: number | null; intact: boolean; kept: number };
      assert.equal(out.error, null, r.stderr.slice(0, 2000));
      assert.equal(out.got, 100);
      assert.equal(out.exitCode, 0, `the producer's exit code (${r.stderr.slice(0, 2000)})`);
      assert.equal(out.kept, 10);
      assert.equal(out.intact, true, 'the items kept still read back whole');
    });
  }
});
