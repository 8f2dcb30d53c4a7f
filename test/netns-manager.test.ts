/**
 * A manager shared by separate machines: `multiprocessing-ts serve` on a
 * server host, listening on that host's IP over TCP with an authkey, and
 * clients on other hosts (network namespaces of test/netns.ts, joined by a
 * bridge, reaching each other by IP only) that connect by IP and share
 * objects through it (fixtures/netns-manager-client).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ending, follow } from './child-lines.js';
import { fixture } from './helpers.js';
import { makeNetwork, netnsUnavailable, type NetnsHost } from './netns.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['multiprocessing-ts']!);
const CLIENT = fixture('netns-manager-client.js');
const WAIT_MS = 15_000;
/** Appends per client host. */
const N = 400;

/** The first line a child prints, waited for (bounded). */
function firstLine(child: ChildProcess, label: string): Promise<string> {
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: no line within ${WAIT_MS} ms; stderr: ${stderr}`)), WAIT_MS);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code}) before printing; stderr: ${stderr}`));
    });
  });
}

describe('a manager shared across hosts (network namespaces)', { skip: netnsUnavailable() }, () => {
  it("`serve` on one host's IP: clients on two other hosts connect by IP and share a list, a dict and a Barrier, each append arriving exactly once; a wrong key from a third host is refused with AuthenticationError meanwhile; SIGTERM ends the server with exit 0", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpts-netns-manager-'));
    const keyFile = join(dir, 'key.txt');
    writeFileSync(keyFile, 'the-right-key\n');
    const net = await makeNetwork({ hosts: ['server', 'a', 'b', 'c'] });
    const children: ChildProcess[] = [];
    try {
      const [serverHost, a, b, c] = ['server', 'a', 'b', 'c'].map((name) => net.hosts[name]!) as [NetnsHost, NetnsHost, NetnsHost, NetnsHost];
      const server = serverHost.exec(
        process.execPath,
        [CLI, 'serve', '--address', `${serverHost.ip}:0`, '--authkey-file', keyFile, '--register', fixture('manager-cli-types.js')],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      children.push(server);
      const banner = await firstLine(server, 'the server');
      const port = Number(new RegExp(`^multiprocessing-ts: serving SyncManager at ${serverHost.ip.replace(/\./g, '\\.')}:(\\d+);`).exec(banner)?.[1]);
      assert.ok(port > 0, `the banner names the server host's IP and a port: ${banner}`);

      const client = (host: NetnsHost, name: string, key: string) => {
        const child = host.exec(process.execPath, [CLIENT, serverHost.ip, String(port), key, name, String(N), '2'], { stdio: ['pipe', 'pipe', 'pipe'] });
        children.push(child);
        return { child, out: follow(child, `client ${name}`, WAIT_MS) };
      };
      const good = [client(a, 'a', 'the-right-key'), client(b, 'b', 'the-right-key')];
      // Both have connected and made half their appends before the wrong key arrives.
      await Promise.all(good.map(({ out }) => out.next((e) => e.ready === true, 'its first half of appends')));
      const bad = client(c, 'c', 'a-wrong-key');
      const refused = await bad.out.next(() => true, 'its outcome');
      assert.equal(refused.authenticationError, true, `the wrong key is refused: ${JSON.stringify(refused)}`);
      assert.equal(await ending(bad.child, 'the client with a wrong key', WAIT_MS), 3);

      for (const { child } of good) child.stdin!.end('go\n');
      const [seenByA, seenByB] = await Promise.all(good.map(({ out }) => out.next((e) => 'items' in e, 'the shared list')));
      const items = seenByA!.items as string[];
      assert.deepEqual(seenByB!.items, items, 'both hosts see the same list');
      assert.equal(items.length, 2 * N);
      for (const name of ['a', 'b']) {
        // Exactly once each, in the order that host sent them (one connection, pipelined).
        assert.deepEqual(
          items.filter((item) => item.startsWith(`${name}-`)),
          Array.from({ length: N }, (_, i) => `${name}-${i}`),
        );
      }
      assert.deepEqual(seenByA!.dict, { a: N, b: N });
      assert.deepEqual(seenByB!.dict, { a: N, b: N });
      for (const { child } of good) assert.equal(await ending(child, 'a client', WAIT_MS), 0);

      server.kill('SIGTERM');
      assert.equal(await ending(server, 'the server', WAIT_MS), 0);
    } finally {
      for (const child of children) child.kill('SIGKILL');
      await net.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
