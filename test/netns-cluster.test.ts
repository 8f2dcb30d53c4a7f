/**
 * The cluster on several machines: Redis on one host of a test network
 * (test/netns.ts), a worker CLI on each of two other hosts, and the caller
 * on a fourth, all reaching each other by IP only. Tasks run on both
 * workers; a worker SIGKILLed mid-task has its task finished by the other,
 * each result once to the caller; Redis restarted empty mid-map loses no
 * task; a caller with a wrong password is refused.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { follow, ending } from './child-lines.js';
import { fixture } from './helpers.js';
import { makeNetwork, netnsUnavailable, type NetnsHost } from './netns.js';
import { redisUnavailable, startRedis } from './redis.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['multiprocessing-ts']!);
const WAIT_MS = 20_000;

function banner(child: ChildProcess, label: string): Promise<void> {
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: no banner within ${WAIT_MS} ms; stderr: ${stderr}`)), WAIT_MS);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.includes('serving pool')) return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code}); stderr: ${stderr}`));
    });
  });
}

describe('a cluster pool across hosts (network namespaces)', { skip: netnsUnavailable() ?? redisUnavailable() ?? false }, () => {
  it('Redis on one host, workers on two others, the caller on a fourth: tasks run on both workers; a worker SIGKILLed mid-task has its task finished by the other, each result once; Redis restarted empty mid-map loses no task; a wrong password is refused', async () => {
    const net = await makeNetwork({ hosts: ['redis', 'w1', 'w2', 'caller'] });
    const dir = mkdtempSync(join(tmpdir(), 'mpts-netns-cluster-'));
    const children: ChildProcess[] = [];
    try {
      const [redisHost, w1, w2, caller] = ['redis', 'w1', 'w2', 'caller'].map((n) => net.hosts[n]!) as [NetnsHost, NetnsHost, NetnsHost, NetnsHost];
      const redis = await startRedis({ bind: redisHost.ip, netns: redisHost.namespace, password: 'pw-on-the-wire' });
      const url = `redis://:pw-on-the-wire@${redisHost.ip}:${redis.port}/0`;
      const workers = [w1, w2].map((host) =>
        host.exec(process.execPath, [CLI, 'worker', '--cluster', url, '--module', fixture('cluster-tasks.js'), '--concurrency', '1', '--start-method', 'thread', '--visibility-timeout', '1000'], {
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
      children.push(...workers);
      await Promise.all(workers.map((w, i) => banner(w, `worker ${i + 1}`)));

      const client = caller.exec(process.execPath, [fixture('netns-cluster-caller.js'), url, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(client);
      const out = follow(client, 'the caller', WAIT_MS);
      const { ran } = (await out.next((e) => 'ran' in e, 'the where tasks')) as { ran: string[] };
      const pids = new Set(ran.map((r) => Number(r.split(':')[1])));
      assert.deepEqual(pids, new Set(workers.map((w) => w.pid)), `both workers ran tasks: ${ran}`);

      await out.next((e) => e.ready === true, 'a marked task to start');
      const started = readdirSync(dir);
      const victim = workers.find((w) => started.some((m) => m.endsWith(`-${w.pid}`)))!;
      victim.kill('SIGKILL');
      const { results, retried } = (await out.next((e) => 'results' in e, 'the results')) as { results: number[]; retried: number };
      assert.deepEqual(results, [0, 1, 2, 3]);
      assert.ok(retried >= 1, 'the killed worker’s task ran again');
      const survivor = workers.find((w) => w !== victim)!;
      for (const m of readdirSync(dir).filter((m) => m.endsWith(`-${victim.pid}`))) {
        assert.ok(readdirSync(dir).includes(`${m.split('-')[0]}-${survivor.pid}`), `task ${m} ran again on the survivor`);
      }

      // Redis restarted empty mid-map: no task lost.
      await out.next((e) => e.ready2 === true, 'a task of the second map to start');
      await redis.restart();
      const { results2 } = (await out.next((e) => 'results2' in e, 'the second results')) as { results2: number[] };
      assert.deepEqual(results2, [10, 11, 12, 13]);
      assert.equal(await ending(client, 'the caller', WAIT_MS), 0);

      const wrong = caller.exec(process.execPath, [fixture('netns-cluster-caller.js'), `redis://:not-the-password@${redisHost.ip}:${redis.port}/0`, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(wrong);
      const refused = await follow(wrong, 'the wrong caller', WAIT_MS).next(() => true, 'its outcome');
      assert.equal(refused.refused, true, JSON.stringify(refused));
      assert.doesNotMatch(String(refused.message), /not-the-password/);
      assert.equal(await ending(wrong, 'the wrong caller', WAIT_MS), 3);
      await redis.stop();
    } finally {
      for (const child of children) child.kill('SIGKILL');
      await net.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
