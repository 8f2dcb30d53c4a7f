/**
 * Listener, Client, Connection and wait over real sockets, with real
 * children of both start methods connecting back. Ported from CPython's
 * _test_multiprocessing.py (_TestConnection, _TestListener,
 * _TestListenerClient, _TestPoll, TestWait) where they apply, plus the
 * authkey guards, addresses, EOF after a peer is killed, and bad input.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as rawConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serialize } from 'node:v8';
import * as mp from '../src/index.js';
import { settleRevived } from '../src/serialize/shared.js';
import * as fx from './fixtures/connection-targets.js';
import { METHODS, checkSendBytesRanges, eventually, fixture, run } from './helpers.js';

const module = fx.CONNECTION_TARGETS;
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Two connected ends over a fresh listener (closed again). */
async function pair(options: mp.ListenerOptions = {}): Promise<[mp.Connection, mp.Connection]> {
  const listener = await mp.Listener(options);
  try {
    const [client, server] = await Promise.all([mp.Client(listener.address, { authkey: options.authkey }), listener.accept()]);
    return [client, server];
  } finally {
    listener.close();
  }
}

/** A raw socket to `address`, connected. */
function rawSocket(address: mp.Address): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = typeof address === 'string' ? rawConnect(address) : rawConnect(address[1], address[0]);
    s.once('connect', () => resolve(s)).once('error', reject);
  });
}

/** A frame as CPython's framing carries it: a 4-byte big-endian length, then the bytes. */
function frame(message: Uint8Array): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(message.byteLength);
  return Buffer.concat([header, message]);
}

/** An object message (objects.ts: NUL 'm' 'p', version 1, V8's serialization) of any value, as a hostile peer forges it. */
function objectMessage(value: unknown): Buffer {
  return Buffer.concat([Buffer.from([0x00, 0x6d, 0x70, 0x01]), serialize(value)]);
}

/** A marker reviving a shared object of `kind` from `handle` (serialize/shared.ts). */
function forgedHandle(handle: { kind: string; [key: string]: unknown }): object {
  return { __multiprocessing_ts_shared__: handle };
}

/**
 * A Barrier handle a peer chose: its segment is `file` (any file it can
 * name: mapping it and exiting would drop the int32 count at its start),
 * its action a source that sets `globalThis[flag]` when compiled.
 */
function forgedBarrier(file: string, flag: string): object {
  return forgedHandle({
    kind: 'Barrier',
    segment: { size: 64, path: file },
    offset: 64,
    timeout: null,
    action: { kind: 'source', source: `(globalThis.${flag} = 'ran', function () {})`, name: 'action' },
  });
}

/** A 4 KiB file whose first int32 is 2, standing in for a segment a forged handle names. */
function victimFile(): { file: string; count: () => number; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'mpts-victim-'));
  const file = join(dir, 'victim.bin');
  const bytes = Buffer.alloc(4096, 0x41);
  bytes.writeInt32LE(2, 0);
  writeFileSync(file, bytes);
  return { file, count: () => readFileSync(file).readInt32LE(0), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Resolves when the raw socket is closed by the other side. */
function closedByPeer(s: Socket): Promise<void> {
  s.resume();
  // It may have closed already, while other sockets were being opened.
  return s.closed ? Promise.resolve() : new Promise((resolve) => s.once('close', () => resolve()));
}

for (const method of METHODS) {
  const ctx = mp.getContext(method);
  describe(`Connection with a child connecting back (${method})`, () => {
    it('_TestConnection.test_connection: objects, bytes, recvBytesInto, BufferTooShort, poll, 16 MB, EOF', async () => {
      const listener = await mp.Listener({ authkey: 'key' });
      const SENTINEL = 'sentinel!';
      const p = new ctx.Process({ target: fx.echo, args: [listener.address, 'key', SENTINEL], module, daemon: true });
      p.start();
      const conn = await listener.accept();
      listener.close();

      const seq = [1, 2.25, null];
      await conn.send(seq);
      assert.deepEqual(await conn.recv(), seq);

      const msg = enc('hello world');
      const longmsg = enc('hello world'.repeat(10));
      await conn.sendBytes(msg);
      assert.deepEqual(await conn.recvBytes(), Buffer.from(msg));

      const arr = new Int32Array([0, 1, 2, 3]);
      let buffer = new Int32Array(10);
      await conn.sendBytes(arr);
      assert.equal(await conn.recvBytesInto(buffer), 16);
      assert.deepEqual(Array.from(buffer), [0, 1, 2, 3, 0, 0, 0, 0, 0, 0]);

      buffer = new Int32Array(10);
      await conn.sendBytes(arr);
      assert.equal(await conn.recvBytesInto(buffer, 3 * 4), 16);
      assert.deepEqual(Array.from(buffer), [0, 0, 0, 0, 1, 2, 3, 0, 0, 0]);

      await conn.sendBytes(longmsg);
      await assert.rejects(conn.recvBytesInto(new Uint8Array(40)), (err: unknown) => {
        assert.ok(err instanceof mp.BufferTooShort);
        assert.deepEqual(Buffer.from(err.data), Buffer.from(longmsg));
        return true;
      });

      let t = Date.now();
      assert.equal(await conn.poll(), false);
      assert.equal(await conn.poll(-1), false);
      assert.ok(Date.now() - t < 50, 'poll() and poll(-1) only look');
      t = Date.now();
      assert.equal(await conn.poll(100), false);
      assert.ok(Date.now() - t >= 95, `poll(100) waited ${Date.now() - t} ms`);

      await conn.send(null);
      assert.equal(await conn.poll(10_000), true);
      assert.equal(await conn.recv(), null);

      const big = new Uint8Array(16 * 1024 * 1024).fill(0x58);
      await conn.sendBytes(big);
      const back = await conn.recvBytes();
      assert.equal(back.length, big.length);
      assert.ok(Buffer.from(back).equals(Buffer.from(big)));

      await conn.sendBytes(enc(SENTINEL));
      assert.equal(conn.readable, true);
      assert.equal(conn.writable, true);
      await assert.rejects(conn.recv(), mp.EOFError);
      await assert.rejects(conn.recvBytes(), mp.EOFError);
      await p.join(20_000);
      assert.equal(p.exitCode, 0);
      conn.close();
    });

    it('no shared object crosses a socket: send() refuses one by its path; the child\'s recv() refuses a forged one, compiling and mapping nothing; both go on', async () => {
      const listener = await mp.Listener();
      const p = new ctx.Process({ target: fx.receiveForged, args: [listener.address], module });
      p.start();
      const conn = await listener.accept();
      listener.close();
      const counter = mp.Value('i', 41);
      await assert.rejects(
        conn.send({ counter }),
        (err: unknown) =>
          err instanceof mp.SerializationError &&
          /^obj\.counter is a SynchronizedValue \(a shared object\), which cannot be sent here: .*not over a Listener\/Client socket, whose peer is not trusted to name memory or code/.test(err.message),
      );
      const victim = victimFile();
      try {
        await conn.sendBytes(objectMessage(forgedBarrier(victim.file, 'MPTS_FORGED')));
        await conn.send('still usable');
        const report = (await conn.recv()) as { refused: string; ran: unknown; next: unknown };
        assert.match(report.refused, /^SerializationError: obj is a shared-object handle \('Barrier'\), refused \(nothing in the value was revived\)/);
        assert.equal(report.ran, null, 'the forged action was never compiled');
        assert.equal(report.next, 'still usable');
        await p.join(20_000);
        assert.equal(p.exitCode, 0);
        assert.equal(victim.count(), 2, 'the file named as a segment was never mapped (the child\'s exit would have dropped its count)');
      } finally {
        victim.remove();
        conn.close();
      }
    });
  });
}

describe('Connection (local pair)', () => {
  it('_TestConnection.test_sendbytes: offsets and sizes in bytes, out of range refused', async () => {
    const [a, b] = await pair();
    await checkSendBytesRanges(a, b);
    // A view's offset counts from the view, in bytes.
    await a.sendBytes(new Uint16Array([0x0101, 0x0202, 0x0303]).subarray(1), 2);
    assert.deepEqual(Array.from(await b.recvBytes()), [3, 3]);
    a.close();
    b.close();
  });

  it('_TestPoll.test_empty_string and test_dont_merge: empty messages count, messages keep their bounds', async () => {
    const [a, b] = await pair();
    assert.equal(await a.poll(), false);
    await b.sendBytes(new Uint8Array(0));
    assert.equal(await a.poll(1000), true);
    assert.equal(await a.poll(), true);
    assert.equal((await a.recvBytes()).length, 0);
    assert.equal(await a.poll(0), false);
    assert.equal(await a.poll(50), false);
    await b.sendBytes(enc('a'));
    await b.sendBytes(enc('b'));
    await b.sendBytes(enc('cd'));
    assert.equal(dec(await a.recvBytes()), 'a');
    assert.equal(await a.poll(1000), true);
    assert.equal(await a.poll(1000), true);
    assert.equal(dec(await a.recvBytes()), 'b');
    assert.equal(await a.poll(0), true);
    assert.equal(dec(await a.recvBytes()), 'cd');
    a.close();
    b.close();
  });

  it('async iteration yields each value until the peer closes; a pending recv resolves when data arrives', async () => {
    const [a, b] = await pair();
    const pending = a.recv();
    await b.send('first');
    assert.equal(await pending, 'first');
    for (const v of [1, 'two', { three: 3n }]) await b.send(v);
    b.close();
    const got: unknown[] = [];
    for await (const v of a) got.push(v);
    assert.deepEqual(got, [1, 'two', { three: 3n }]);
    assert.equal(await a.poll(), true, 'at EOF poll() is true (recv would throw EOFError)');
    a.close();
  });

  it('recvBytes(maxLength) refuses a longer message and closes the connection (closed says so), as Python', async () => {
    const [a, b] = await pair();
    await b.sendBytes(new Uint8Array(100));
    await assert.rejects(a.recvBytes(10), (err: unknown) => err instanceof mp.ValueError && /100 bytes.*maxLength 10/.test(err.message));
    assert.equal(a.closed, true, 'the refusal closed it');
    await assert.rejects(a.recvBytes(), mp.StateError);
    b.close();
    a.close();
  });

  it('recv() of raw bytes says to use recvBytes(); a closed connection refuses every call with StateError', async () => {
    const [a, b] = await pair();
    await b.sendBytes(enc('raw'));
    await assert.rejects(a.recv(), (err: unknown) => err instanceof mp.SerializationError && /recvBytes\(\)/.test(err.message));
    a.close();
    a.close(); // harmless
    assert.equal(a.closed, true);
    await assert.rejects(a.recv(), mp.StateError);
    await assert.rejects(a.send(1), mp.StateError);
    await assert.rejects(a.poll(), mp.StateError);
    await assert.rejects(b.recv(), mp.EOFError);
    b.close();
  });

  it('send() refuses what cannot travel with its path, and a socket Connection saying why; the connection stays usable', async () => {
    const [a, b] = await pair();
    await assert.rejects(a.send({ cb: () => 1 }), (err: unknown) => err instanceof mp.SerializationError && /obj\.cb is a function/.test(err.message));
    const [pipeEnd, other] = mp.Pipe();
    await assert.rejects(
      pipeEnd.send({ nested: [b] }),
      (err: unknown) => err instanceof mp.SerializationError && /\.nested\[0\] is a Connection made by Listener\/Client: a socket/.test(err.message),
    );
    pipeEnd.close();
    other.close();
    assert.throws(
      () => new mp.Process({ target: fx.echo, args: [b as never, undefined, ''], module }).start(),
      (err: unknown) => err instanceof mp.SerializationError && /args\[0\] is a Connection made by Listener\/Client/.test(err.message),
    );
    await a.send('still fine');
    assert.equal(await b.recv(), 'still fine');
    a.close();
    b.close();
  });

  it('a peer that hangs up in the middle of a message is an EOFError', async () => {
    const listener = await mp.Listener();
    const [raw, conn] = await Promise.all([rawSocket(listener.address), listener.accept()]);
    listener.close();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1000);
    raw.end(Buffer.concat([header, Buffer.alloc(10)]));
    await assert.rejects(conn.recvBytes(), (err: unknown) => err instanceof mp.EOFError && /middle of a message/.test(err.message));
    conn.close();
    raw.destroy();
  });

  it('bad input: clear errors naming the value', async () => {
    await assert.rejects(mp.Listener({ authkey: 42 as never }), (e: unknown) => e instanceof mp.ValueError && /string or a Uint8Array, not 42/.test((e as Error).message));
    await assert.rejects(mp.Listener({ authkey: '' }), (e: unknown) => e instanceof mp.ValueError && /empty/.test((e as Error).message));
    await assert.rejects(mp.Listener({ address: { host: 'x', port: 1 } as never }), (e: unknown) => e instanceof mp.ValueError && /\[host, port\], an array/.test((e as Error).message));
    await assert.rejects(mp.Listener({ address: ['127.0.0.1', 70000] }), (e: unknown) => e instanceof mp.ValueError && /70000/.test((e as Error).message));
    await assert.rejects(mp.Listener({ address: '/tmp/' + 'x'.repeat(200) }), (e: unknown) => e instanceof mp.ValueError && /longer than a Unix socket path/.test((e as Error).message));
    await assert.rejects(mp.Listener({ backlog: 0 }), mp.ValueError);
    await assert.rejects(mp.Client('/nonexistent-dir-mpts/sock'), (e: unknown) => e instanceof mp.FileNotFoundError && /no such socket/.test((e as Error).message));
    const [a, b] = await pair();
    await assert.rejects(a.sendBytes('text' as never), (e: unknown) => e instanceof mp.ValueError && /not "text"/.test((e as Error).message));
    await assert.rejects(a.recvBytes(-1), mp.ValueError);
    await assert.rejects(a.poll('1' as never), mp.ValueError);
    await assert.rejects(mp.wait([a, 'x' as never]), (e: unknown) => e instanceof mp.ValueError && /objects\[1\] is "x"/.test((e as Error).message));
    a.close();
    b.close();
  });
});

describe('a socket carries no shared object', () => {
  it('a raw client (no authkey) sending handles: each recv() refuses, nothing compiled, imported or mapped; the next message is read', async () => {
    const listener = await mp.Listener({ address: ['127.0.0.1', 0] });
    const [raw, conn] = await Promise.all([rawSocket(listener.address), listener.accept()]);
    listener.close();
    const victim = victimFile();
    const dir = mkdtempSync(join(tmpdir(), 'mpts-forged-'));
    const module = join(dir, 'imported.mjs');
    writeFileSync(module, "globalThis.MPTS_IMPORTED = 'imported'; export function f() {}\n");
    const flags = globalThis as { MPTS_LOCAL?: unknown; MPTS_IMPORTED?: unknown };
    try {
      const byReference = forgedHandle({
        kind: 'Barrier',
        segment: { size: 64, path: victim.file },
        offset: 64,
        timeout: null,
        action: { kind: 'ref', moduleUrl: pathToFileURL(module).href, exportName: 'f', name: 'f' },
      });
      const view = forgedHandle({ kind: 'SegmentBuffer', segment: { size: 64, path: victim.file } });
      raw.write(frame(objectMessage(forgedBarrier(victim.file, 'MPTS_LOCAL'))));
      raw.write(frame(objectMessage({ a: [1, { b: view }] })));
      raw.write(frame(objectMessage(new Map([['k', byReference]]))));
      raw.write(frame(objectMessage({ after: 'ok' })));
      await assert.rejects(conn.recv(), (e: unknown) => e instanceof mp.SerializationError && /^obj is a shared-object handle \('Barrier'\), refused/.test((e as Error).message));
      await assert.rejects(conn.recv(), (e: unknown) => e instanceof mp.SerializationError && /^obj\.a\[1\]\.b is a shared-object handle \('SegmentBuffer'\)/.test((e as Error).message));
      await assert.rejects(conn.recv(), (e: unknown) => e instanceof mp.SerializationError && /^obj\.get\("k"\) is a shared-object handle \('Barrier'\)/.test((e as Error).message));
      await settleRevived();
      assert.equal(flags.MPTS_LOCAL, undefined, 'no action was compiled');
      assert.equal(flags.MPTS_IMPORTED, undefined, 'no module was imported');
      assert.deepEqual(await conn.recv(), { after: 'ok' }, 'the connection stays usable');
      assert.equal(conn.closed, false);
    } finally {
      raw.destroy();
      conn.close();
      rmSync(dir, { recursive: true, force: true });
    }
    // Had the file been mapped, collecting the mapping would drop its count.
    for (let i = 0; i < 3; i++) {
      globalThis.gc?.();
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(victim.count(), 2, 'the file named as a segment was not mapped');
    victim.remove();
  });

  it('send() over a socket refuses a Pipe end, a Queue and a view of shared memory by their paths; the connection stays usable', async () => {
    const [a, b] = await pair();
    const [end, other] = mp.Pipe();
    const q = new mp.Queue();
    const raw = mp.RawArray('i', 4);
    const why = /which cannot be sent here: shared objects travel through Pipes, Queues and Process args, not over a Listener\/Client socket/;
    for (const [value, path] of [
      [{ end }, /^obj\.end is a Connection \(a shared object\)/],
      [[1, q], /^obj\[1\] is a Queue \(a shared object\)/],
      [{ v: raw.subarray(1) }, /^obj\.v is an Int32Array over shared memory/],
    ] as const) {
      await assert.rejects(a.send(value), (e: unknown) => e instanceof mp.SerializationError && path.test((e as Error).message) && why.test((e as Error).message));
    }
    await a.send([...raw]);
    assert.deepEqual(await b.recv(), [0, 0, 0, 0], 'its data travels');
    end.close();
    other.close();
    q.close();
    a.close();
    b.close();
  });
});

describe('socket reading bounds', () => {
  it('recvBytes(maxLength) refuses a message as soon as its header announces more, without waiting for its bytes', async () => {
    const listener = await mp.Listener({ address: ['127.0.0.1', 0] });
    const [raw, conn] = await Promise.all([rawSocket(listener.address), listener.accept()]);
    listener.close();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(512 * 1024 * 1024);
    raw.write(Buffer.concat([header, Buffer.alloc(1024)]));
    const bound = new Promise((r) => setTimeout(r, 10_000, 'still waiting').unref());
    const outcome = await Promise.race([conn.recvBytes(16).then(() => 'received', (e: Error) => e), bound]);
    assert.ok(outcome instanceof mp.ValueError && /536870912 bytes, more than maxLength 16/.test(outcome.message), String(outcome));
    assert.equal(conn.closed, true);
    raw.destroy();
    conn.close();
  });

  it('a partial message nobody reads is held only up to the high-water mark; a reader then gets it whole', async () => {
    const listener = await mp.Listener({ address: ['127.0.0.1', 0] });
    const [raw, conn] = await Promise.all([rawSocket(listener.address), listener.accept()]);
    listener.close();
    const internals = conn.transportForWait() as unknown as { socket: Socket; reader: { buffered: number } };
    const size = 24 * 1024 * 1024;
    const body = Buffer.alloc(size, 0x5a);
    raw.write(frame(body));
    // Nobody receives: reading stops past 4 MiB, well before the 24 MiB are in.
    await eventually(() => internals.socket.isPaused(), 10_000, 'reading to pause');
    assert.ok(internals.reader.buffered < 5 * 1024 * 1024, `held ${internals.reader.buffered} bytes`);
    const got = await conn.recvBytes();
    assert.equal(got.length, size);
    assert.ok(Buffer.from(got).equals(body));
    raw.destroy();
    conn.close();
  });
});

describe('Listener', () => {
  it('_TestListener.test_multiple_bind: an address in use rejects (Unix socket and TCP)', async () => {
    for (const options of [{}, { address: ['127.0.0.1', 0] as const }]) {
      const l = await mp.Listener(options);
      await assert.rejects(mp.Listener({ address: l.address }), (e: unknown) => e instanceof mp.AddressInUseError && e.code === 'EADDRINUSE');
      // The first listener still works.
      const [c, d] = await Promise.all([mp.Client(l.address), l.accept()]);
      await c.send(1729);
      assert.equal(await d.recv(), 1729);
      c.close();
      d.close();
      l.close();
    }
  });

  it('_TestListener.test_context: after close(), accept() rejects; pending accepts reject; the Unix socket file is gone', async () => {
    const l = await mp.Listener();
    const path = l.address as string;
    const pending = l.accept();
    assert.ok(existsSync(path));
    l.close();
    await assert.rejects(pending, mp.StateError);
    await assert.rejects(l.accept(), mp.StateError);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(existsSync(dirname(path)), false, 'the private directory is removed');
  });

  it('no address: a Unix socket in a private (0700) directory', async () => {
    const l = await mp.Listener();
    assert.equal(typeof l.address, 'string');
    assert.equal(statSync(dirname(l.address as string)).mode & 0o777, 0o700);
    assert.ok(statSync(l.address as string).isSocket());
    l.close();
  });

  it('_TestListener.test_abstract_socket: a Linux abstract address works', async () => {
    const name = `\0mpts-test-${process.pid}`;
    const l = await mp.Listener({ address: name });
    const [c, d] = await Promise.all([mp.Client(l.address), l.accept()]);
    await c.send(1729);
    assert.equal(await d.recv(), 1729);
    c.close();
    d.close();
    l.close();
  });

  it('a Unix path that exists is never taken over: the file stays, the listener rejects', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpts-test-'));
    const file = join(dir, 'precious');
    writeFileSync(file, 'keep me');
    await assert.rejects(mp.Listener({ address: file }), (e: unknown) => e instanceof mp.AddressInUseError && /never replaces it/.test((e as Error).message));
    assert.equal(readFileSync(file, 'utf8'), 'keep me');
    rmSync(dir, { recursive: true });
  });

  it('port 0 binds a free port and .address reports the real one', async () => {
    const l = await mp.Listener({ address: ['127.0.0.1', 0] });
    const [host, port] = l.address as [string, number];
    assert.equal(host, '127.0.0.1');
    assert.ok(port > 0);
    const [c, d] = await Promise.all([mp.Client(['127.0.0.1', port]), l.accept()]);
    assert.deepEqual((l.lastAccepted as [string, number])[0], '127.0.0.1');
    await d.sendBytes(enc('hello'));
    assert.equal(await c.poll(1000), true); // _TestListenerClient.test_issue16955
    c.close();
    d.close();
    l.close();
  });

  it('a wrong authkey is refused with AuthenticationError while other clients are served', async () => {
    const l = await mp.Listener({ address: ['127.0.0.1', 0], authkey: 'right' });
    const bad = mp.Client(l.address, { authkey: 'wrong' });
    await assert.rejects(bad, (e: unknown) => e instanceof mp.AuthenticationError && /rejected/.test((e as Error).message));
    await assert.rejects(l.accept(), (e: unknown) => e instanceof mp.AuthenticationError && /digest received was wrong/.test((e as Error).message));
    const [c, d] = await Promise.all([mp.Client(l.address, { authkey: new TextEncoder().encode('right') }), l.accept()]);
    await c.send('served');
    assert.equal(await d.recv(), 'served');
    // A client with no key is challenged and cannot answer: its first read is the challenge.
    c.close();
    d.close();
    l.close();
  });

  it('a stalled or oversized handshake closes that connection only; others are served meanwhile', async () => {
    const l = await mp.Listener({ authkey: 'k', handshakeTimeout: 1000 });
    const staller = await rawSocket(l.address);
    const stallerClosed = closedByPeer(staller);
    const big = await rawSocket(l.address);
    const bigClosed = closedByPeer(big);
    // Let the listener send its challenge to both, then answer with a 1 MB frame header.
    await new Promise((r) => setTimeout(r, 50));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1 << 20);
    big.write(header);
    const goodClient = mp.Client(l.address, { authkey: 'k' });
    const outcomes: string[] = [];
    let good: mp.Connection | null = null;
    while (!good || outcomes.length < 2) {
      try {
        good = await l.accept();
        assert.ok(!outcomes.some((m) => /did not answer/.test(m)), 'the good client was served before the staller timed out');
      } catch (err) {
        assert.ok(err instanceof mp.AuthenticationError);
        outcomes.push(err.message);
      }
    }
    assert.ok(outcomes.some((m) => /exceeds the limit of 256 bytes/.test(m)), outcomes.join('; '));
    assert.ok(outcomes.some((m) => /did not answer within 1000 ms/.test(m)), outcomes.join('; '));
    await stallerClosed;
    await bigClosed;
    const c = await goodClient;
    await c.send('ok');
    assert.equal(await good.recv(), 'ok');
    c.close();
    good.close();
    l.close();
  });
});

describe('Listener bounds and lifetime', () => {
  it('backlog: connections past it, un-accepted, are closed as they arrive; the one waiting is not read until accept()', async () => {
    const listener = await mp.Listener({ address: ['127.0.0.1', 0], backlog: 1 });
    const first = await rawSocket(listener.address);
    const message = Buffer.alloc(1024 * 1024, 0x61);
    await new Promise<void>((resolve, reject) => first.write(frame(message), (err) => (err ? reject(err) : resolve())));
    // One at a time: a burst would overflow the kernel's own queue (backlog 1 too), whose retries take seconds.
    const others: Socket[] = [];
    const closeAll = async (): Promise<string> => {
      for (let i = 0; i < 8; i++) {
        others.push(await rawSocket(listener.address));
        await closedByPeer(others[i]!);
      }
      return 'all closed';
    };
    const bound = new Promise((r) => setTimeout(r, 10_000, 'some still open').unref());
    assert.equal(await Promise.race([closeAll(), bound]), 'all closed');
    const conn = await listener.accept();
    const internals = conn.transportForWait() as unknown as { reader: { buffered: number } };
    assert.equal(internals.reader.buffered, 0, 'nothing was read before accept()');
    assert.ok(Buffer.from(await conn.recvBytes()).equals(message), 'then its message is read whole');
    for (const s of [first, ...others]) s.destroy();
    conn.close();
    listener.close();
  });

  it('backlog with an authkey: handshakes in progress count; one past them closes the oldest still in its handshake', async () => {
    const listener = await mp.Listener({ address: ['127.0.0.1', 0], authkey: 'key', backlog: 2, handshakeTimeout: 60_000 });
    const stallers = [await rawSocket(listener.address), await rawSocket(listener.address)];
    const extra = await rawSocket(listener.address);
    const within = (ms: number) => new Promise((r) => setTimeout(r, ms, 'still open').unref());
    assert.equal(await Promise.race([closedByPeer(stallers[0]!).then(() => 'closed'), within(10_000)]), 'closed', 'the oldest made room');
    // A real client arriving now makes room the same way (the next staller goes), proves its key and is served.
    const client = await mp.Client(listener.address, { authkey: 'key' });
    assert.equal(await Promise.race([closedByPeer(stallers[1]!).then(() => 'closed'), within(10_000)]), 'closed');
    assert.equal(extra.closed, false, 'the newer staller still waits');
    const conn = await listener.accept();
    await client.send('served');
    assert.equal(await conn.recv(), 'served');
    for (const s of stallers) s.destroy();
    extra.destroy();
    client.close();
    conn.close();
    listener.close();
  });

  it('accept({ signal }): aborting rejects with the reason and frees the wait; the next client goes to the next accept()', async () => {
    const listener = await mp.Listener();
    const stop = new AbortController();
    const given = listener.accept({ signal: stop.signal });
    stop.abort(new mp.TimeoutError('gave up'));
    await assert.rejects(given, (e: unknown) => e instanceof mp.TimeoutError && (e as Error).message === 'gave up');
    await assert.rejects(listener.accept({ signal: stop.signal }), mp.TimeoutError, 'an aborted signal rejects at once');
    await assert.rejects(listener.accept({ signal: 'soon' as never }), mp.ValueError);
    const [client, conn] = await Promise.all([mp.Client(listener.address), listener.accept()]);
    await client.send(7);
    assert.equal(await conn.recv(), 7);
    client.close();
    conn.close();
    listener.close();
  });

  it('a process whose only accept() was given up by its signal ends on its own', async () => {
    const r = await run(process.execPath, [fixture('accept-abort-main.js')], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'rejected: TimeoutError');
  });

  it('close() leaves alone a socket file that took its path since: the newer listener keeps serving', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpts-test-'));
    const path = join(dir, 'sock');
    const older = await mp.Listener({ address: path });
    rmSync(path);
    const newer = await mp.Listener({ address: path });
    older.close();
    assert.ok(existsSync(path), 'the newer socket file is still there');
    const [client, conn] = await Promise.all([mp.Client(path), newer.accept()]);
    await client.send('reached the newer');
    assert.equal(await conn.recv(), 'reached the newer');
    client.close();
    conn.close();
    newer.close();
    assert.equal(existsSync(path), false, 'its own close() removes it');
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('EOF when the peer dies', () => {
  it('recv() is an EOFError after the peer process is SIGKILLed', async () => {
    const listener = await mp.Listener();
    const p = new mp.Process({ target: fx.connectAndHang, args: [listener.address], module });
    p.start();
    const conn = await listener.accept();
    listener.close();
    assert.equal(await conn.recv(), 'ready');
    p.kill();
    await assert.rejects(conn.recv(), mp.EOFError);
    await p.join(20_000);
    assert.equal(p.exitCode, -9);
    conn.close();
  });
});

describe('wait', () => {
  it('TestWait.test_wait: connections from children of both methods until each hits EOF', async () => {
    const listener = await mp.Listener();
    const procs = METHODS.flatMap((m, i) =>
      [0, 1].map((j) => new (mp.getContext(m).Process)({ target: fx.sendCount, args: [listener.address, 10, i * 2 + j], module })),
    );
    for (const p of procs) p.start();
    const readers: mp.Connection[] = [];
    for (const _ of procs) readers.push(await listener.accept());
    listener.close();
    const messages: Array<[number, number]> = [];
    while (readers.length > 0) {
      for (const r of await mp.wait(readers, 20_000)) {
        try {
          messages.push((await r.recv()) as [number, number]);
        } catch (err) {
          assert.ok(err instanceof mp.EOFError);
          readers.splice(readers.indexOf(r), 1);
          r.close();
        }
      }
    }
    const expected = procs.flatMap((_, tag) => Array.from({ length: 10 }, (_, i) => [i, tag]));
    const key = (m: number[]): number => m[1]! * 100 + m[0]!;
    assert.deepEqual(messages.sort((x, y) => key(x) - key(y)), expected);
    for (const p of procs) await p.join(20_000);
  });

  it('TestWait.test_wait_timeout / test_neg_timeout / test_wait_integer: timeouts, processes, order kept', async () => {
    const [a, b] = await pair();
    let t = Date.now();
    assert.deepEqual(await mp.wait([a, b], 100), []);
    assert.ok(Date.now() - t >= 95);
    t = Date.now();
    assert.deepEqual(await mp.wait([a], -1), []);
    assert.ok(Date.now() - t < 50);

    const listener = await mp.Listener();
    const p = new mp.Process({ target: fx.connectAndHang, args: [listener.address], module });
    p.start();
    const conn = await listener.accept();
    listener.close();
    assert.equal(await conn.recv(), 'ready');
    t = Date.now();
    const pending = mp.wait([a, p, b], 20_000);
    p.terminate();
    assert.deepEqual(await pending, [p]);
    assert.ok(p.exitCode !== null);
    // A sent message is visible to the receiver once its bytes arrived (an
    // event-loop turn later): let them, then every ready object is listed.
    await a.send(null);
    assert.deepEqual(await mp.wait([b], 20_000), [b]);
    assert.deepEqual(await mp.wait([a, p, b], 20_000), [p, b]);
    await b.send(null);
    assert.deepEqual(await mp.wait([a], 20_000), [a]);
    assert.deepEqual(await mp.wait([a, p, b], 20_000), [a, p, b]);
    await assert.rejects(mp.wait([new mp.Process({ target: fx.echo, module })]), mp.StateError);
    a.close();
    b.close();
    conn.close();
  });
});
