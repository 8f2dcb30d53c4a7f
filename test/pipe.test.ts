/**
 * mp.Pipe across real children of both start methods. Ported from CPython's
 * _test_multiprocessing.py: _TestConnection (test_connection,
 * test_duplex_false, test_spawn_close, test_sendbytes), _TestPoll and
 * TestWait on pipes; plus ours: EOF after the peer is SIGKILLed, a sender
 * killed mid-send leaves no half message, ends inside Queue items, a copy
 * closed after start(), the sync twins.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as fx from './fixtures/pipe-targets.js';
import { METHODS, checkSendBytesRanges, fixture, run, waitForValue } from './helpers.js';

const module = fx.PIPE_TARGETS;
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

async function joined(p: mp.Process, ms = 20_000): Promise<void> {
  await p.join(ms);
  assert.notEqual(p.exitCode, null, `${p.name} did not end within ${ms} ms`);
}

for (const method of METHODS) {
  const ctx = mp.getContext(method);
  describe(`Pipe with children (${method})`, () => {
    it('_TestConnection.test_connection: values, bytes, recvBytesInto, BufferTooShort, poll, EOF', async () => {
      const [conn, child] = mp.Pipe();
      const p = new ctx.Process({ target: fx.echoBytes, args: [child], module });
      p.start();
      child.close();
      const seq = [1, 2.25, null, 'str', { a: [1n] }];
      await conn.send(seq);
      assert.deepEqual(await conn.recv(), seq);
      await conn.send(new Uint8Array([1, 2, 3]));
      assert.deepEqual(await conn.recv(), new Uint8Array([1, 2, 3]), 'a sent Uint8Array is a value, not a bytes message');
      const shared = mp.Value('i', 5);
      await conn.send({ shared });
      const { shared: back1 } = (await conn.recv()) as { shared: mp.Value };
      back1.value = 6;
      assert.equal(shared.value, 6, 'a shared object sent there and back is live');
      await conn.sendBytes(enc('hello'));
      const back = await conn.recvBytes();
      assert.equal(dec(back), 'hello', 'recvBytes of an echoed bytes message');

      const arr = new Float64Array(10);
      await conn.sendBytes(new Float64Array([1, 2, 3]));
      assert.equal(await conn.recvBytesInto(arr, 8), 24);
      assert.deepEqual(Array.from(arr.subarray(0, 4)), [0, 1, 2, 3]);

      await conn.sendBytes(new Uint8Array(40).fill(7));
      await assert.rejects(conn.recvBytesInto(new Uint8Array(39)), (err: unknown) => {
        assert.ok(err instanceof mp.BufferTooShort);
        assert.equal(err.data.length, 40);
        return true;
      });

      assert.equal(await conn.poll(), false);
      let t = performance.now();
      assert.equal(await conn.poll(100), false);
      assert.ok(performance.now() - t >= 95, `poll(100) waited ${performance.now() - t} ms`);
      t = performance.now();
      assert.equal(conn.pollSync(50), false);
      assert.ok(performance.now() - t >= 45, `pollSync(50) waited ${performance.now() - t} ms`);
      await conn.send(null);
      assert.equal(await conn.poll(10_000), true);
      assert.equal(await conn.recv(), null);

      const big = new Uint8Array(4 * 1024 * 1024).fill(0x58);
      await conn.sendBytes(big);
      assert.ok(Buffer.from(await conn.recvBytes()).equals(Buffer.from(big)));

      assert.equal(conn.readable, true);
      assert.equal(conn.writable, true);
      conn.close();
      await joined(p);
      assert.equal(p.exitCode, 0);
    });

    it('_TestConnection.test_spawn_close: the parent closes its copy right after start(); the child\'s copy works, then EOF', async () => {
      const [conn, child] = mp.Pipe();
      const p = new ctx.Process({ target: fx.echoBytes, args: [child], module });
      p.start();
      child.close();
      conn.sendBytesSync(enc('abc'));
      assert.equal(dec(conn.recvBytesSync()), 'abc');
      conn.close();
      await joined(p);
      assert.equal(p.exitCode, 0, 'the child read EOF once the parent closed and ended');
    });

    it('recv() is an EOFError after the peer process is SIGKILLed without closing', async () => {
      const [conn, child] = mp.Pipe();
      const ready = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.holdUntilKilled, args: [child, ready], module });
      p.start();
      child.close();
      await waitForValue(ready, 1);
      const pending = conn.recv();
      p.kill();
      await joined(p);
      await assert.rejects(pending, mp.EOFError);
      assert.equal(await conn.poll(), true);
      await assert.rejects(conn.send(1), mp.EOFError, 'sending to a dead peer is refused too');
      conn.close();
    });

    it('a send to a peer end whose only holder was killed without closing is an EOFError at once, as Python\'s BrokenPipeError', async () => {
      const [r, w] = mp.Pipe(false);
      const ready = mp.Value('i', 0);
      const p = new ctx.Process({ target: fx.holdUntilKilled, args: [r, ready], module });
      p.start();
      r.close();
      await waitForValue(ready, 1);
      p.kill();
      await joined(p);
      assert.throws(() => w.sendSync(1), mp.EOFError, 'the first send after the kill');
      await assert.rejects(w.send(2), mp.EOFError);
      await assert.rejects(w.sendBytes(new Uint8Array(3)), mp.EOFError);
      w.close();
    });

    it('recvBytes of a value holding a Pipe end takes no copy: relayed back and received, closing that copy is EOF for its peer while the relay lives', async () => {
      const [conn, child] = mp.Pipe();
      const p = new ctx.Process({ target: fx.echoBytes, args: [child], module });
      p.start();
      child.close();
      const [c, d] = mp.Pipe();
      await conn.send({ end: c });
      c.close();
      const { end } = (await conn.recv()) as { end: mp.Connection };
      await end.send('through the relayed copy');
      assert.equal(await d.recv(), 'through the relayed copy');
      end.close();
      assert.equal(await d.poll(5000), true, 'every copy of c is closed: the child took none');
      await assert.rejects(d.recv(), mp.EOFError);
      d.close();
      conn.close();
      await joined(p);
      assert.equal(p.exitCode, 0);
    });

    it('a sender killed mid-send: every message received is whole, then EOF', async () => {
      // 40 KiB messages spill to files (over the ring's threshold), 3 KiB ones go through the ring.
      for (const size of [3 * 1024, 40 * 1024]) {
        const [conn, child] = mp.Pipe(false);
        const p = new ctx.Process({ target: fx.sendForever, args: [child, size], module });
        p.start();
        child.close();
        let next = 0;
        const check = (msg: Uint8Array): void => {
          assert.equal(msg.length, size);
          const n = new DataView(msg.buffer, msg.byteOffset).getUint32(0, true);
          assert.equal(n, next++, 'messages in order, none missing before the kill');
          for (let i = 4; i < msg.length; i += 997) assert.equal(msg[i], n & 0xff, `message ${n} is whole`);
        };
        for (let i = 0; i < 200; i++) check(await conn.recvBytes());
        p.kill();
        for (;;) {
          try {
            check(await conn.recvBytes());
          } catch (err) {
            if (err instanceof mp.EOFError) break;
            throw err;
          }
        }
        await joined(p);
        conn.close();
      }
    });

    it('an end sent to a child inside a Queue item works there', async () => {
      const [mine, theirs] = mp.Pipe();
      const q = new mp.Queue<{ conn: mp.Connection; word: string }>();
      const p = new ctx.Process({ target: fx.answerFromQueue, args: [q], module });
      p.start();
      await q.put({ conn: theirs, word: 'hi' });
      theirs.close();
      assert.equal(await mine.recv(), 'hi via queue');
      await assert.rejects(mine.recv(), mp.EOFError, 'EOF once the child closed its copy (ours was closed after put)');
      await joined(p);
      mine.close();
    });

    it('2,000 async round trips with a child echoing asynchronously, each reply in order', async () => {
      const [conn, child] = mp.Pipe();
      const p = new ctx.Process({ target: fx.echoAsync, args: [child], module });
      p.start();
      child.close();
      for (let i = 0; i < 2000; i++) {
        await conn.send(i);
        assert.equal(await conn.recv(), i);
      }
      conn.close();
      await joined(p);
      assert.equal(p.exitCode, 0);
    });

    it('async iteration until EOF over a one-way pipe from a child', async () => {
      const [reader, writer] = mp.Pipe(false);
      const p = new ctx.Process({ target: fx.sendN, args: [writer, 50], module });
      p.start();
      writer.close();
      const got: unknown[] = [];
      for await (const v of reader) got.push(v);
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i));
      await joined(p);
      reader.close();
    });
  });
}

describe('Pipe in one process', () => {
  it('_TestConnection.test_duplex_false: the first end only receives, the second only sends', async () => {
    const [reader, writer] = mp.Pipe(false);
    assert.equal(reader.readable, true);
    assert.equal(reader.writable, false);
    assert.equal(writer.readable, false);
    assert.equal(writer.writable, true);
    await writer.send(1);
    assert.equal(await reader.recv(), 1);
    const wrong = (call: string) => (e: unknown) => e instanceof mp.StateError && e.message.includes(call) && /Pipe\(false\)/.test(e.message);
    await assert.rejects(reader.send(2), wrong('send'));
    await assert.rejects(reader.sendBytes(enc('x')), wrong('sendBytes'));
    assert.throws(() => reader.sendSync(2), wrong('sendSync'));
    await assert.rejects(writer.recv(), wrong('recv'));
    await assert.rejects(writer.poll(), wrong('poll'));
    assert.throws(() => writer.recvSync(), wrong('recvSync'));
    reader.close();
    writer.close();
  });

  it('_TestConnection.test_sendbytes: offsets and sizes in bytes, out of range refused', async () => {
    const [a, b] = mp.Pipe();
    await checkSendBytesRanges(a, b);
    a.sendBytesSync(new Uint16Array([0x0101, 0x0202, 0x0303]).subarray(1), 2);
    assert.deepEqual(Array.from(b.recvBytesSync()), [3, 3]);
    a.close();
    b.close();
  });

  it('_TestPoll: empty messages count, messages keep their bounds, poll sees the end', async () => {
    const [a, b] = mp.Pipe();
    assert.equal(await a.poll(), false);
    await b.sendBytes(new Uint8Array(0));
    assert.equal(await a.poll(1000), true);
    assert.equal((await a.recvBytes()).length, 0);
    assert.equal(await a.poll(0), false);
    for (const s of ['a', 'b', 'cd']) await b.sendBytes(enc(s));
    assert.equal(dec(await a.recvBytes()), 'a');
    assert.equal(a.pollSync(), true);
    assert.equal(dec(a.recvBytesSync()), 'b');
    assert.equal(dec(await a.recvBytes()), 'cd');
    b.close();
    assert.equal(await a.poll(), true, 'at EOF poll() is true');
    assert.throws(() => a.recvSync(), mp.EOFError);
    a.close();
  });

  it('one stream for both kinds: recvBytes of a value gives its object bytes, recv of those bytes the value; recv of raw bytes refused', async () => {
    const [a, b] = mp.Pipe();
    await a.send({ k: 'v' });
    const bytes = await b.recvBytes();
    await b.sendBytes(bytes);
    assert.deepEqual(await a.recv(), { k: 'v' });
    await a.sendBytes(enc('raw'));
    await assert.rejects(b.recv(), (e: unknown) => e instanceof mp.SerializationError && /recvBytes/.test((e as Error).message));
    await a.sendBytes(new Uint8Array(100));
    assert.throws(() => b.recvBytesSync(10), (e: unknown) => e instanceof mp.ValueError && /100 bytes.*maxLength 10/.test((e as Error).message));
    assert.equal(b.closed, true, 'the refusal closed it');
    assert.throws(() => b.recvBytesSync(), mp.StateError, 'closed after a refused message, as Python');
    a.close();
  });

  it('BufferTooShort carries the whole message; sync twins work; closed ends refuse every call', async () => {
    const [a, b] = mp.Pipe();
    a.sendBytesSync(enc('0123456789'));
    assert.throws(() => b.recvBytesIntoSync(new Uint8Array(12), 3), (e: unknown) => e instanceof mp.BufferTooShort && dec(e.data) === '0123456789');
    a.sendSync([1, 'two']);
    assert.deepEqual(b.recvSync(), [1, 'two']);
    await assert.rejects(a.send(() => 1), (e: unknown) => e instanceof mp.SerializationError);
    a.sendSync('still usable');
    assert.equal(await b.recv(), 'still usable');
    a.close();
    assert.equal(a.closed, true);
    await assert.rejects(a.send(1), mp.StateError);
    assert.throws(() => a.recvSync(), mp.StateError);
    await assert.rejects(b.recv(), mp.EOFError);
    await assert.rejects(b.send(1), mp.EOFError, 'the peer is closed');
    b.close();
    assert.throws(() => mp.Pipe('yes' as never), mp.ValueError);
  });

  it('a recv pending when the peer closes ends with EOFError at once', async () => {
    const [a, b] = mp.Pipe();
    const pending = a.recv();
    setTimeout(() => b.close(), 20);
    const t = performance.now();
    await assert.rejects(pending, mp.EOFError);
    assert.ok(performance.now() - t < 150, `EOF took ${performance.now() - t} ms`);
    a.close();
  });
});

describe('wait with pipes', () => {
  it('TestWait.test_wait: pipes from children of both methods until each hits EOF', async () => {
    const readers: mp.Connection[] = [];
    const procs: mp.Process[] = [];
    METHODS.forEach((method, k) => {
      for (let i = 0; i < 2; i++) {
        const [r, w] = mp.Pipe(false);
        const p = new (mp.getContext(method).Process)({ target: fx.sendAfter, args: [w, k * 10 + i, 30 * i], module });
        p.start();
        w.close();
        readers.push(r);
        procs.push(p);
      }
    });
    const got: unknown[] = [];
    while (readers.length > 0) {
      for (const r of await mp.wait(readers, 20_000)) {
        try {
          got.push(await r.recv());
        } catch (err) {
          if (!(err instanceof mp.EOFError)) throw err;
          r.close();
          readers.splice(readers.indexOf(r), 1);
        }
      }
    }
    assert.deepEqual(got.sort(), METHODS.flatMap((_, k) => [k * 10, k * 10 + 1]).sort());
    for (const p of procs) await joined(p);
  });

  it('recv of bytes never revives a shared object in them unless they are a value this Pipe relayed; send() refuses a relay\'s reserved key', async () => {
    const [a, b] = mp.Pipe();
    const v = mp.Value('i', 7);
    await a.send({ v });
    const bytes = await b.recvBytes();
    // A copy of those bytes is data: they may come from anywhere (a socket peer).
    await b.sendBytes(new Uint8Array(bytes));
    await assert.rejects(a.recv(), (e: unknown) => e instanceof mp.SerializationError && /^obj\.v is a shared-object handle \('Value'\), refused/.test((e as Error).message));
    await b.sendBytes(bytes);
    const { v: back } = (await a.recv()) as { v: mp.SynchronizedValue };
    back.value = 8;
    assert.equal(v.value, 8, 'the relayed value arrives live');
    await assert.rejects(a.send({ __multiprocessing_ts_pipe_relay__: new Uint8Array(4) }), (e: unknown) => e instanceof mp.SerializationError && /reserves/.test((e as Error).message));
    a.close();
    b.close();
  });

  it('a poll or wait that times out leaves no sleep behind: a script ending with one exits at once', async () => {
    for (const how of ['poll', 'wait']) {
      const r = await run(process.execPath, [fixture('timed-out-poll-main.js'), how], { timeoutMs: 20_000 });
      assert.equal(r.code, 0, r.stderr);
      const { waited, lingered } = JSON.parse(r.stdout) as { waited: number; lingered: number };
      assert.ok(waited >= 9, `the ${how} waited its 10 ms (${waited})`);
      // A sleep left behind would hold the process up to a 200 ms slice.
      assert.ok(lingered < 150, `the process ended ${lingered.toFixed(0)} ms after the ${how} returned`);
    }
  });

  it('TestWait.test_wait_timeout: an idle pipe times out, a ready one returns at once', async () => {
    const [a, b] = mp.Pipe();
    let t = performance.now();
    assert.deepEqual(await mp.wait([a, b], 100), []);
    assert.ok(performance.now() - t >= 95);
    await b.send(1);
    t = performance.now();
    assert.deepEqual(await mp.wait([a, b], 5000), [a]);
    assert.ok(performance.now() - t < 50);
    a.close();
    b.close();
  });
});

for (const method of METHODS) {
  describe(`a Pipe end whose every holder ended before it arrived (${method})`, () => {
    it('is refused when taken, with a clear error, once its peer has seen EOF; the queue stays usable', async () => {
      const [reader, writer] = mp.Pipe(false);
      const q = new mp.Queue<mp.Connection>();
      const p = new (mp.getContext(method).Process)({ target: fx.forwardEndAndQuit, args: [writer, q], module });
      p.start();
      writer.close(); // the child's copy, then the one it put in flight, are the only ones left
      await p.join(20_000);
      assert.equal(p.exitCode, 0);
      // The reader finds every holder of the other end dead: EOF.
      await assert.rejects(reader.recv(), mp.EOFError);
      await assert.rejects(q.get({ timeout: 10_000 }), (err: Error) => err instanceof mp.StateError && /closed for good before it arrived/.test(err.message));
      const [a, b] = mp.Pipe();
      await q.put(a);
      const again = await q.get({ timeout: 10_000 });
      again.sendSync('still works');
      assert.equal(b.recvSync(), 'still works');
    });
  });
}
