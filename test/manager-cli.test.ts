/**
 * The `multiprocessing-ts` command, run as users run it (the file
 * package.json's `bin` names): `serve` in the foreground over TCP and Unix
 * sockets, clients of this process using what it serves, SIGINT and
 * SIGTERM ending it cleanly, `--register` modules, and bad input.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as mp from '../src/index.js';
import { Op, Reply, readMessages } from '../src/managers/protocol.js';
import { fixture, run } from './helpers.js';
import { frame, rawClient } from './manager-wire.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin;
const CLI = join(root, bin['multiprocessing-ts']!);
const WAIT_MS = 15_000;

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A running `serve`: its banner (first line), the address it names, and its end. */
interface Serving {
  child: ChildProcess;
  banner: string;
  address: mp.Address;
  ended: Promise<Ended>;
}

/** Starts `multiprocessing-ts serve …args` and waits (bounded) for its banner. */
async function serve(args: string[], options: { cwd?: string } = {}): Promise<Serving> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { cwd: options.cwd ?? root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const ended = new Promise<Ended>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const banner = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within ${WAIT_MS} ms; stdout ${stdout}; stderr ${stderr}`)), WAIT_MS);
    child.stdout!.on('data', (d) => {
      stdout += d;
      if (stdout.includes('\n')) {
        clearTimeout(timer);
        resolve(stdout.split('\n')[0]!);
      }
    });
    void ended.then(() => {
      clearTimeout(timer);
      reject(new Error(`serve ended before its banner: ${JSON.stringify({ stdout, stderr })}`));
    });
  });
  const shown = /^multiprocessing-ts: serving \w+ at (\S+); Ctrl-C stops it$/.exec(banner)?.[1];
  assert.ok(shown, `the banner: ${banner}`);
  const address: mp.Address = shown.startsWith('unix:') ? shown.slice(5) : [shown.slice(0, shown.lastIndexOf(':')), Number(shown.slice(shown.lastIndexOf(':') + 1))];
  return { child, banner, address, ended };
}

/** Sends `signal` (if any) and waits (bounded) for the end. */
async function stop(serving: Serving, signal: NodeJS.Signals | null): Promise<Ended> {
  if (signal) serving.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`serve did not end within ${WAIT_MS} ms of ${signal ?? 'the shutdown request'}`)), WAIT_MS)));
  try {
    return await Promise.race([serving.ended, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the command to its end (bounded). */
function cli(args: string[], cwd = root): Promise<Ended> {
  return run(process.execPath, [CLI, ...args], { cwd, timeoutMs: WAIT_MS });
}

describe('multiprocessing-ts (the CLI)', () => {
  let dir: string;
  let keyFile: string;
  const running: ChildProcess[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mpts-cli-'));
    keyFile = join(dir, 'key.txt');
    writeFileSync(keyFile, 'secret\n'); // as `echo secret > key.txt` writes it: the key is 'secret'
  });
  after(() => {
    for (const child of running) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const started = async (args: string[], options: { cwd?: string } = {}): Promise<Serving> => {
    const serving = await serve(args, options);
    running.push(serving.child);
    return serving;
  };

  it("package.json's bin is an executable file with a node shebang; --help, help serve and no command say how to use it", async () => {
    accessSync(CLI, constants.X_OK);
    assert.ok(readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n'));
    const [help, serveHelp, none] = await Promise.all([
      run(CLI, ['--help'], { timeoutMs: WAIT_MS }), // as a command, through its shebang
      cli(['help', 'serve']),
      cli([]),
    ]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: multiprocessing-ts <command>/);
    assert.match(help.stdout, /serve +serve a manager/);
    assert.equal(serveHelp.code, 0);
    assert.match(serveHelp.stdout, /--address <address>[\s\S]*--authkey-file <file>[\s\S]*--register <module>[\s\S]*Exit codes/);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /^Usage: multiprocessing-ts <command>/);
  });

  it('serves over TCP on the port it names (port 0: a free one); a client with the key from the same file uses a list, a wrong key is refused; SIGHUP (the terminal gone) ends it with exit 0', async () => {
    const serving = await started(['--address', '127.0.0.1:0', '--authkey-file', keyFile]);
    assert.match(serving.banner, /^multiprocessing-ts: serving SyncManager at 127\.0\.0\.1:\d+; Ctrl-C stops it$/);
    const [, port] = serving.address as [string, number];
    assert.ok(port > 0);
    const manager = new mp.SyncManager({ address: ['127.0.0.1', port], authkey: 'secret' });
    await manager.connect();
    const list = await manager.list<number>([1]);
    await Promise.all([list.append(2), list.append(3)]);
    assert.deepEqual(await list.toArray(), [1, 2, 3]);
    await assert.rejects(new mp.SyncManager({ address: ['127.0.0.1', port], authkey: 'secret\n' }).connect(), mp.AuthenticationError);
    assert.equal(await list.len(), 3, 'served on after the refusal');
    const end = await stop(serving, 'SIGHUP');
    assert.deepEqual({ code: end.code, signal: end.signal, stderr: end.stderr }, { code: 0, signal: null, stderr: '' });
    assert.match(end.stdout, /\nmultiprocessing-ts: stopped \(SIGHUP\)\n$/);
    await assert.rejects(list.len(), mp.EOFError);
  });

  for (const [form, signal] of [
    ['unix:<path>', 'SIGTERM'],
    ['a relative path with a slash', 'SIGINT'],
  ] as const) {
    it(`serves on a Unix socket given as ${form}; ${signal} ends it with exit 0 and removes the socket file`, async () => {
      const sub = join(dir, signal);
      mkdirSync(sub);
      const path = join(sub, 'mgr.sock');
      const serving =
        form === 'unix:<path>'
          ? await started(['--address', `unix:${path}`, '--authkey-file', keyFile])
          : await started(['--address', './mgr.sock', '--authkey-file', relative(sub, keyFile)], { cwd: sub });
      assert.equal(serving.banner, `multiprocessing-ts: serving SyncManager at unix:${form === 'unix:<path>' ? path : './mgr.sock'}; Ctrl-C stops it`);
      assert.ok(existsSync(path));
      const manager = new mp.SyncManager({ address: path, authkey: 'secret' });
      await manager.connect();
      const d = await manager.dict<string, number>();
      await d.set('a', 1);
      assert.equal(await d.get('a'), 1);
      const end = await stop(serving, signal);
      assert.deepEqual({ code: end.code, stderr: end.stderr }, { code: 0, stderr: '' });
      assert.match(end.stdout, new RegExp(`stopped \\(${signal}\\)\\n$`));
      assert.equal(existsSync(path), false, 'the socket file is removed');
    });
  }

  it("a client's shutdown request ends it like a signal: exit 0, the socket file removed", async () => {
    const path = join(dir, 'shutdown.sock');
    const serving = await started(['--address', `unix:${path}`, '--authkey-file', keyFile]);
    const conn = await rawClient(path, 'secret');
    await conn.sendBytes(frame([Op.SHUTDOWN, 1]));
    assert.equal(readMessages(await conn.recvBytes())[0]![0], Reply.OK);
    const end = await stop(serving, null);
    assert.deepEqual({ code: end.code, stderr: end.stderr }, { code: 0, stderr: '' });
    assert.match(end.stdout, /stopped \(a client asked it to shut down\)\n$/);
    assert.equal(existsSync(path), false);
  });

  it('--register: a module that registers on SyncManager gives clients its typeids beside the built-in ones', async () => {
    const serving = await started(['--address', '127.0.0.1:0', '--authkey-file', keyFile, '--register', relative(root, fixture('manager-cli-types.js'))]);
    assert.match(serving.banner, /serving SyncManager at/);
    const manager = new mp.SyncManager({ address: serving.address, authkey: 'secret' });
    await manager.connect();
    const counter = (await manager.create('Counter')) as mp.BaseProxy & { add(by: number): Promise<number> };
    assert.equal(await counter.add(2), 2);
    assert.equal(await counter.add(3), 5);
    // The board is one object for every client: a list given under a name comes back to all.
    const board = (await manager.create('board')) as mp.BaseProxy & { setdefault(name: string, made: unknown): Promise<unknown> };
    const first = (await board.setdefault('shared', await manager.list(['x']))) as mp.ListProxy<string>;
    const other = new mp.SyncManager({ address: serving.address, authkey: 'secret' });
    await other.connect();
    const otherBoard = (await other.create('board')) as typeof board;
    const again = (await otherBoard.setdefault('shared', await other.list(['y']))) as mp.ListProxy<string>;
    await again.append('z');
    assert.deepEqual(await first.toArray(), ['x', 'z']);
    assert.deepEqual(await (await manager.list([1])).toArray(), [1], 'the built-in typeids are still served');
    assert.equal((await stop(serving, 'SIGTERM')).code, 0);
  });

  it('--register: a module that exports a manager class has that class served instead of SyncManager', async () => {
    const serving = await started(['--address', '127.0.0.1:0', '--authkey-file', keyFile, '--register', fixture('manager-cli-class.js')]);
    assert.match(serving.banner, /^multiprocessing-ts: serving MathsManager at /);
    const manager = new mp.SyncManager({ address: serving.address, authkey: 'secret' });
    await manager.connect();
    const maths = (await manager.create('Maths')) as mp.BaseProxy & { add(a: number, b: number): Promise<number> };
    assert.equal(await maths.add(2, 3), 5);
    await assert.rejects(manager.list(), (e: Error) => e instanceof mp.ValueError && /unknown typeid 'list'; this server makes Maths/.test(e.message));
    assert.equal((await stop(serving, 'SIGINT')).code, 0);
  });

  it('bad input: one line naming the value and the fix, exit 2 for the command line, 1 for what it names; no stack', async () => {
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '');
    const newline = join(dir, 'newline.txt');
    writeFileSync(newline, '\n');
    const throws = join(dir, 'throws.mjs');
    writeFileSync(throws, "throw new Error('boom at import');\n");
    const syntax = join(dir, 'syntax.mjs');
    writeFileSync(syntax, 'export const x = ;\n');
    const taken = join(dir, 'taken');
    writeFileSync(taken, 'a file, not a socket');
    const occupied: Server = createServer();
    await new Promise<void>((resolve) => occupied.listen(0, '127.0.0.1', resolve));
    const busyPort = (occupied.address() as { port: number }).port;
    const key = ['--authkey-file', keyFile];
    const tcp = ['--address', '127.0.0.1:0'];
    const cases: Array<[string, string[], number, RegExp]> = [
      ['an unknown command', ['serv'], 2, /unknown command "serv"; the commands are: serve/],
      ['an unknown option', ['serve', ...tcp, ...key, '--authkey', 'x'], 2, /unknown option --authkey; 'serve' takes --address, --authkey-file, --register/],
      ['a missing --address', ['serve', ...key], 2, /--address is required: e\.g\. --address 0\.0\.0\.0:50000/],
      ['a missing --authkey-file', ['serve', ...tcp], 2, /--authkey-file is required/],
      ['an option without its value', ['serve', ...key, '--address'], 2, /--address needs a value/],
      ['an address without a port', ['serve', '--address', 'localhost', ...key], 2, /--address "localhost" has no port; give host:port/],
      ['a port out of range', ['serve', '--address', '127.0.0.1:99999', ...key], 2, /--address "127\.0\.0\.1:99999" has the port "99999", not a number from 0 to 65535/],
      ['an IPv6 host without a port', ['serve', '--address', '[::1]', ...key], 2, /--address "\[::1\]" has no port/],
      ['an IPv6 host without brackets', ['serve', '--address', '::1:5000', ...key], 2, /IPv6 host without brackets \(write \[::1\]:50000\)/],
      ['an address without a host', ['serve', '--address', ':5000', ...key], 2, /has no host \(0\.0\.0\.0 for every interface/],
      ['unix: without a path', ['serve', '--address', 'unix:', ...key], 2, /--address "unix:" names no path/],
      ['a missing authkey file', ['serve', ...tcp, '--authkey-file', join(dir, 'nope.txt')], 1, /--authkey-file ".*nope\.txt" does not exist .*create it, e\.g\. openssl rand -hex 32 >/],
      ['an authkey file that is a directory', ['serve', ...tcp, '--authkey-file', dir], 1, /--authkey-file ".*" is a directory; give the file that holds the key/],
      ['an empty authkey file', ['serve', ...tcp, '--authkey-file', empty], 1, /--authkey-file ".*empty\.txt" is empty; put a secret in it/],
      ['an authkey file of one line break', ['serve', ...tcp, '--authkey-file', newline], 1, /--authkey-file ".*newline\.txt" is empty/],
      ['a TCP address in use', ['serve', '--address', `127.0.0.1:${busyPort}`, ...key], 1, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busyPort}: the address is in use; choose another port`)],
      ['a socket path that exists', ['serve', '--address', `unix:${taken}`, ...key], 1, /cannot listen on ".*taken": the path exists .* choose another path/],
      ['a --register module that does not exist', ['serve', ...tcp, ...key, '--register', './no-such-types.js'], 1, /--register "\.\/no-such-types\.js": no such module .*no-such-types\.js \(the path is relative to the current directory\)/],
      ['a --register module that throws', ['serve', ...tcp, ...key, '--register', throws], 1, /--register ".*throws\.mjs" failed to import: Error: boom at import \(at file:.*throws\.mjs:1:7\)/],
      ['a --register module with a syntax error', ['serve', ...tcp, ...key, '--register', syntax], 1, /--register ".*syntax\.mjs" failed to import: SyntaxError: Unexpected token/],
    ];
    if (process.getuid?.() !== 0) {
      const locked = join(dir, 'locked.txt');
      writeFileSync(locked, 'secret', { mode: 0o000 });
      cases.push(['an unreadable authkey file', ['serve', ...tcp, '--authkey-file', locked], 1, /cannot be read by this user \(permission denied\)/]);
    }
    try {
      const results = await Promise.all(cases.map(([, args]) => cli(args)));
      cases.forEach(([what, , code, message], i) => {
        const r = results[i]!;
        assert.equal(r.code, code, `${what}: exit code (stderr: ${r.stderr})`);
        assert.match(r.stderr, /^multiprocessing-ts: [^\n]+\n$/, `${what}: one line on stderr`);
        assert.match(r.stderr, message, what);
        assert.equal(r.stdout, '', `${what}: nothing on stdout (no banner)`);
      });
    } finally {
      occupied.close();
    }
    assert.equal(readFileSync(taken, 'utf8'), 'a file, not a socket', 'a path that exists is never replaced');
  });
});
