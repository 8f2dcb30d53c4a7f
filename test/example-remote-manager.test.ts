/**
 * The two-terminal example (examples/remote-manager/), run as its README
 * commands run it: the server script (or `multiprocessing-ts serve
 * --register` with its shared module) in the background, the client script
 * twice, then Ctrl-C (SIGINT) for the server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ending } from './child-lines.js';
import { run } from './helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['multiprocessing-ts']!);
const EXAMPLE = join('examples', 'remote-manager');
const WAIT_MS = 30_000;

/** Starts a server in the background and reads the `host:port` its first line names. */
async function background(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; port: number; stdout: () => string }> {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no first line within ${WAIT_MS} ms; stderr: ${stderr}`)), WAIT_MS);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before it listened; stderr: ${stderr}`));
    });
  });
  const port = Number(/127\.0\.0\.1:(\d+); Ctrl-C stops it$/.exec(line)?.[1]);
  assert.ok(port > 0, `the first line names where it listens: ${line}`);
  return { child, port, stdout: () => stdout };
}

const client = (port: number, keyFile: string, name: string) =>
  run(process.execPath, ['--import', 'tsx', join(EXAMPLE, 'client.ts'), `127.0.0.1:${port}`, keyFile, name], { cwd: root, timeoutMs: WAIT_MS });

describe('example: a manager shared over TCP between two terminals (examples/remote-manager)', () => {
  let dir: string;
  let keyFile: string;
  const servers: ChildProcess[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mpts-example-'));
    keyFile = join(dir, 'key.txt');
    writeFileSync(keyFile, 'an example key\n');
  });
  after(() => {
    for (const server of servers) server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('server.ts in the background; client.ts twice: the second sees both lines of the shared list; Ctrl-C stops the server', async () => {
    const server = await background(['--import', 'tsx', join(EXAMPLE, 'server.ts'), '127.0.0.1:0', keyFile]);
    servers.push(server.child);
    const alice = await client(server.port, keyFile, 'alice');
    assert.deepEqual({ code: alice.code, stdout: alice.stdout, stderr: alice.stderr }, { code: 0, stdout: 'alice was here\n', stderr: '' });
    const bob = await client(server.port, keyFile, 'bob');
    assert.deepEqual({ code: bob.code, stdout: bob.stdout, stderr: bob.stderr }, { code: 0, stdout: 'alice was here\nbob was here\n', stderr: '' });
    server.child.kill('SIGINT');
    assert.equal(await ending(server.child, 'the example server', WAIT_MS), 0);
    assert.match(server.stdout(), /\nstopped\n$/);
  });

  it("the README's CLI form: multiprocessing-ts serve --register shared.ts (under tsx) serves the same clients", async () => {
    const server = await background(
      [CLI, 'serve', '--address', '127.0.0.1:0', '--authkey-file', keyFile, '--register', join(EXAMPLE, 'shared.ts')],
      { NODE_OPTIONS: '--import tsx' },
    );
    servers.push(server.child);
    const carol = await client(server.port, keyFile, 'carol');
    assert.deepEqual({ code: carol.code, stdout: carol.stdout, stderr: carol.stderr }, { code: 0, stdout: 'carol was here\n', stderr: '' });
    server.child.kill('SIGINT');
    assert.equal(await ending(server.child, 'multiprocessing-ts serve', WAIT_MS), 0);
    assert.match(server.stdout(), /serving BoardManager at 127\.0\.0\.1:\d+; Ctrl-C stops it\n.*stopped \(SIGINT\)\n$/);
  });
});
