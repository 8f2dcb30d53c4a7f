/**
 * Listener/Client against real CPython: 3.12+ speaks the same framing and
 * {sha256} handshake (bytes both ways, a pickle refused by recv(), a wrong
 * key refused on both sides); 3.11's legacy MD5 handshake is refused.
 * Pythons come from pyenv (`PYENV_VERSION=<v> python3`); a missing one
 * skips its tests with the reason.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as mp from '../src/index.js';

/** The installed pyenv versions matching `want`, oldest first. */
function pyenvVersions(want: RegExp): string[] {
  try {
    const out = execFileSync('pyenv', ['versions', '--bare'], { encoding: 'utf8', timeout: 10_000 });
    return out.split('\n').map((v) => v.trim()).filter((v) => want.test(v));
  } catch {
    return [];
  }
}

/** Every 3.12+ (each speaks the {sha256} handshake), or a placeholder whose tests skip. */
const MODERN = pyenvVersions(/^3\.(1[2-9]|[2-9]\d)\.\d+$/);
const PY311 = pyenvVersions(/^3\.11\.\d+$/).at(-1) ?? null;
const skip311 = PY311 ? false : 'no Python 3.11 in pyenv; the legacy-MD5 refusal not tested';

interface PythonRun {
  /** Resolves with the first line Python prints that matches `pattern` (bounded by the run's own limit). */
  line(pattern: RegExp): Promise<string>;
  /** Resolves with everything it printed, once it exited 0 (bounded). */
  readonly done: Promise<string>;
}

/** Runs `code` under pyenv's `version`, bounded to 20 s. */
function python(version: string, code: string): PythonRun {
  const child = spawn('python3', ['-c', dedent(code)], {
    env: { ...process.env, PYENV_VERSION: version },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const watchers: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  const check = (): void => {
    const lines = out.split('\n').slice(0, -1);
    for (const w of [...watchers]) {
      const line = lines.find((l) => w.pattern.test(l));
      if (line !== undefined) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout.on('data', (d) => {
    out += d;
    check();
  });
  child.stderr.on('data', (d) => (err += d));
  const done = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`python did not finish in 20 s\n${out}\n${err}`));
    }, 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`python exited ${code}\n${out}\n${err}`));
    });
  });
  done.catch(() => {});
  const line = (pattern: RegExp): Promise<string> =>
    Promise.race([
      new Promise<string>((resolve) => {
        watchers.push({ pattern, resolve });
        check();
      }),
      done.then(() => {
        throw new Error(`python ended without printing a line matching ${pattern}\n${out}`);
      }),
    ]);
  return { line, done };
}

/** `code` without the indentation its lines share (Python's is significant). */
function dedent(code: string): string {
  const lines = code.split('\n');
  const indents = lines.filter((l) => l.trim()).map((l) => /^ */.exec(l)![0].length);
  const common = Math.min(...indents);
  return lines.map((l) => l.slice(common)).join('\n');
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

for (const PY312 of MODERN.length > 0 ? MODERN : [null]) {
  const skip312 = PY312 ? false : 'no Python 3.12+ in pyenv (`pyenv versions --bare`); interop not tested';
  describe(`Python ${PY312 ?? '3.12+'} interop`, () => {
    it('Python Client -> our Listener: bytes both ways with an authkey, a pickle refused by recv()', { skip: skip312 }, async () => {
      const l = await mp.Listener({ address: ['127.0.0.1', 0], authkey: new Uint8Array([1, 2, 3, 250]) });
      const py = python(
        PY312!,
        `
  from multiprocessing.connection import Client
  c = Client(('127.0.0.1', ${(l.address as [string, number])[1]}), authkey=bytes([1, 2, 3, 250]))
  c.send_bytes(b'from python')
  c.send_bytes(b'z' * 100000)
  got = c.recv_bytes()
  print('python got', got.decode(), len(c.recv_bytes()))
  c.send({'a pickle': 1})
  c.send_bytes(b'bye')
  c.close()
  `,
      );
      const conn = await l.accept();
      l.close();
      assert.equal(dec(await conn.recvBytes()), 'from python');
      const big = await conn.recvBytes();
      assert.equal(big.length, 100_000);
      assert.ok(big.every((b) => b === 0x7a));
      await conn.sendBytes(enc('from node'));
      await conn.sendBytes(new Uint8Array(3 * 1024 * 1024));
      await assert.rejects(conn.recv(), (e: unknown) => e instanceof mp.SerializationError && /Python pickle \(protocol \d\).*never unpickles/.test((e as Error).message));
      assert.equal(dec(await conn.recvBytes()), 'bye', 'the connection goes on after a refused pickle');
      await assert.rejects(conn.recvBytes(), mp.EOFError);
      conn.close();
      assert.equal((await py.done).trim(), `python got from node ${3 * 1024 * 1024}`);
    });

    it('our Client -> Python Listener on a Unix socket: bytes both ways with an authkey', { skip: skip312 }, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'mpts-py-'));
      const path = join(dir, 'py.sock');
      const py = python(
        PY312!,
        `
  from multiprocessing.connection import Listener
  with Listener(${JSON.stringify(path)}, authkey=b'secret') as l:
      print('listening', flush=True)
      with l.accept() as c:
          msg = c.recv_bytes()
          c.send_bytes(msg.upper())
          c.send_bytes(b'y' * 70000)
          print('python got', msg.decode())
  `,
      );
      await py.line(/^listening$/);
      const conn = await mp.Client(path, { authkey: 'secret' });
      await conn.sendBytes(enc('hello python'));
      assert.equal(dec(await conn.recvBytes()), 'HELLO PYTHON');
      assert.equal((await conn.recvBytes()).length, 70_000);
      await assert.rejects(conn.recvBytes(), mp.EOFError);
      conn.close();
      assert.match(await py.done, /python got hello python/);
      rmSync(dir, { recursive: true, force: true });
    });

    it('a wrong key fails on both sides: our accept() and Python\'s Client; then Python with the right key is served', { skip: skip312 }, async () => {
      const l = await mp.Listener({ address: ['127.0.0.1', 0], authkey: 'right' });
      const port = (l.address as [string, number])[1];
      const py = python(
        PY312!,
        `
  from multiprocessing.connection import Client, AuthenticationError
  try:
      Client(('127.0.0.1', ${port}), authkey=b'wrong')
  except AuthenticationError as e:
      print('python refused:', type(e).__name__)
  c = Client(('127.0.0.1', ${port}), authkey=b'right')
  c.send_bytes(b'in')
  c.close()
  `,
      );
      await assert.rejects(l.accept(), (e: unknown) => e instanceof mp.AuthenticationError && /digest received was wrong/.test((e as Error).message));
      const conn = await l.accept();
      assert.equal(dec(await conn.recvBytes()), 'in');
      assert.match(await py.done, /python refused: AuthenticationError/);
      conn.close();
      l.close();
    });
  });
}

describe(`Python ${PY311 ?? '3.11'}: the legacy MD5 handshake is refused`, () => {
  it('a 3.11 Client gets refused by our Listener, and our Client refuses a 3.11 Listener', { skip: skip311 }, async () => {
    const l = await mp.Listener({ address: ['127.0.0.1', 0], authkey: 'k' });
    const py = python(
      PY311!,
      `
from multiprocessing.connection import Client, Listener, AuthenticationError
try:
    Client(('127.0.0.1', ${(l.address as [string, number])[1]}), authkey=b'k')
except AuthenticationError:
    print('python 3.11 client refused')
with Listener(('127.0.0.1', 0), authkey=b'k') as l:
    print(l.address[1], flush=True)
    try:
        l.accept()
    except (AuthenticationError, EOFError, ConnectionError) as e:
        print('python 3.11 listener saw', type(e).__name__)
`,
    );
    await assert.rejects(l.accept(), (e: unknown) => e instanceof mp.AuthenticationError && /legacy HMAC-MD5.*Python 3\.12/.test((e as Error).message));
    l.close();
    const port = Number(await py.line(/^\d+$/));
    await assert.rejects(
      mp.Client(['127.0.0.1', port], { authkey: 'k' }),
      (e: unknown) => e instanceof mp.AuthenticationError && /challenged with the legacy HMAC-MD5/.test((e as Error).message),
    );
    assert.match(await py.done, /python 3\.11 client refused/);
  });
});
