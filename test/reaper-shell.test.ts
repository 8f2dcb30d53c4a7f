/** The reaper started through the addon (posix_spawn). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { eventually, fixture } from './helpers.js';

describe('the reaper', () => {
  it('MULTIPROCESSING_TS_REAPER_SHELL naming a shell on the PATH (sh) runs the reaper, which cleans up after a SIGKILL', async () => {
    const child = spawn(process.execPath, [fixture('reaper-kill.js')], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, MULTIPROCESSING_TS_REAPER_SHELL: 'sh' },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await eventually(() => out.includes('\n'), 20_000, 'the fixture to print');
    const info = JSON.parse(out) as { treeDir: string; shm: string; reaper: boolean };
    child.kill('SIGKILL');
    await exited;
    const block = `/dev/shm/${info.shm.replace(/^\//, '')}`;
    try {
      assert.equal(info.reaper, true, 'a reaper runs');
      await eventually(() => !existsSync(info.treeDir) && !existsSync(block), 5_000, 'the reaper to remove the tree and the block');
    } finally {
      rmSync(info.treeDir, { recursive: true, force: true });
      rmSync(block, { force: true });
    }
  });
});
