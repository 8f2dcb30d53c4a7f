/**
 * The wire format: what travels live to a child, what is copied, what is
 * refused (and how it is named), and that every segment reference a
 * transfer takes is accounted for, under both start methods.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { MessageChannel } from 'node:worker_threads';
import { deserialize, serialize } from 'node:v8';
import * as mp from '../src/index.js';
import { abandon, encode } from '../src/serialize/encode.js';
import { decode, hasShared } from '../src/serialize/decode.js';
import { EVERY_KIND, NO_KIND } from '../src/serialize/shared.js';
import * as fx from './fixtures/wire-targets.js';
import { METHODS, eventually, regionOf } from './helpers.js';

const module = fx.WIRE_TARGETS;

/** The reference count in the header of the segment under a shared array. */
const refsOf = (raw: ArrayBufferView): Int32Array => new Int32Array(raw.buffer as SharedArrayBuffer, 0, 1);

class Job {
  constructor(
    readonly name: string,
    readonly counter: unknown,
  ) {}
}

class Holder {
  constructor(readonly items: Map<string, unknown[]>) {}
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
    readonly when: Date,
    readonly tags: Map<string, number>,
  ) {}
  get norm(): number {
    return Math.hypot(this.x, this.y);
  }
  shifted(): Point {
    return new Point(this.x + 1, this.y, this.when, this.tags);
  }
}

describe('encode and decode', () => {
  it('paths name Set items, Map keys and odd property names as code would reach them', () => {
    const fn = () => 1;
    const cases: Array<[unknown[], RegExp]> = [
      [[new Set([1, fn])], /^\[\.\.\.args\[0\]\]\[1\] is a function/],
      [[new Map([[fn, 1]])], /^\[\.\.\.args\[0\]\.keys\(\)\]\[0\] is a function/],
      [[{ 'odd-key': [fn] }], /^args\[0\]\["odd-key"\]\[0\] is a function/],
      [[new Map([[{}, Symbol('s')]])], /^\[\.\.\.args\[0\]\.values\(\)\]\[0\] is a symbol/],
    ];
    for (const [args, message] of cases) {
      assert.throws(() => encode(args, 'args'), (err: Error) => err instanceof mp.SerializationError && message.test(err.message));
    }
  });

  it("refuses a plain object that uses the wire format's reserved key", () => {
    assert.throws(
      () => encode([{ __multiprocessing_ts_shared__: { kind: 'RawArray' } }], 'args'),
      (err: Error) => err instanceof mp.SerializationError && /args\[0\] has the key '__multiprocessing_ts_shared__'/.test(err.message),
    );
  });

  it('an allowlist of kinds (a later layer over sockets): decode refuses any other kind before reviving anything; encode refuses it too and gives back what it took', () => {
    const raw = mp.RawArray('i', 2);
    const value = mp.RawValue('i', 1);
    const refs = refsOf(raw);
    const before = Atomics.load(refs, 0);
    const encoded = encode({ value, nested: [raw] }, 'obj');
    assert.equal(Atomics.load(refs, 0), before + 1, 'the array handle is in flight');
    const cloned = deserialize(serialize(encoded.value));
    assert.throws(
      () => decode(cloned, new Set(['RawValue']), { root: 'obj', why: 'only values here' }),
      (err: Error) => err instanceof mp.SerializationError && /^obj\.nested\[0\] is a shared-object handle \('RawArray'\), refused \(nothing in the value was revived\): only values here$/.test(err.message),
    );
    assert.ok(Object.hasOwn((cloned as { value: object }).value, '__multiprocessing_ts_shared__'), 'the allowed kind was not revived either');
    assert.equal(Atomics.load(refs, 0), before + 1, 'no reference was taken over');
    abandon(encoded);
    assert.equal(Atomics.load(refs, 0), before);
    assert.throws(
      () => decode(deserialize(serialize(encode([raw], 'a').value)), NO_KIND),
      (err: Error) => /^value\[0\] is a shared-object handle \('RawArray'\), refused/.test(err.message),
    );
    assert.equal(Atomics.load(refs, 0), before + 1, 'that refused one is still in flight');
    const only = { kinds: new Set(['RawValue']), why: 'only values here' };
    assert.throws(
      () => encode({ value, nested: [raw] }, 'obj', { only }),
      (err: Error) => err instanceof mp.SerializationError && /^obj\.nested\[0\] is a SharedInt32Array \(a shared object\), which cannot be sent here: only values here$/.test(err.message),
    );
    assert.equal(Atomics.load(refs, 0), before + 1, 'the refused encode took nothing');
    const allowed = encode({ value }, 'obj', { only });
    const back = decode(deserialize(serialize(allowed.value)), only.kinds) as { value: mp.RawValue };
    assert.equal(back.value.value, 1, 'an allowed kind travels');
  });

  it('a sparse array (length 2**30, two items) is walked by its items: encode and decode keep holes and length at once', () => {
    const raw = mp.RawArray('i', 1);
    const sparse: unknown[] = new Array(2 ** 30);
    sparse[3] = raw;
    sparse[2 ** 29] = 'x';
    const dense = [1, undefined, raw];
    const started = performance.now();
    const encoded = encode([sparse, dense], 'args');
    const [s, d] = decode(deserialize(serialize(encoded.value)), EVERY_KIND) as [unknown[], unknown[]];
    assert.ok(performance.now() - started < 1000, 'no loop over the holes');
    assert.equal(s.length, 2 ** 30);
    assert.equal((s[3] as Int32Array).buffer, raw.buffer);
    assert.equal(s[2 ** 29], 'x');
    assert.equal(0 in s, false, 'a hole stays a hole');
    assert.equal(d.length, 3);
    assert.equal(1 in d, true, 'an undefined item of a dense array stays an item');
    assert.equal((d[2] as Int32Array).buffer, raw.buffer);
  });

  it('a round trip keeps cycles and shared references, and revives a shared object used as a Map key', () => {
    const raw = mp.RawArray('i', 2);
    const node: Record<string, unknown> = { name: 'n' };
    node['self'] = node;
    const args = [node, new Map([[raw, node]]), new Set([node])];
    const encoded = encode(args, 'args');
    assert.equal(encoded.segments.length, 1);
    const cloned = deserialize(serialize(encoded.value));
    assert.equal(hasShared(cloned), true);
    assert.equal(hasShared(deserialize(serialize(encode([node, new Map([[1, [2]]])], 'args').value))), false);
    const [n, map, set] = decode(cloned, EVERY_KIND) as [Record<string, unknown>, Map<Int32Array, unknown>, Set<unknown>];
    assert.equal(n['self'], n);
    const [key] = map.keys();
    assert.equal(key!.buffer, raw.buffer, 'the revived key maps the same memory');
    assert.equal(map.get(key!), n);
    assert.deepEqual([...set], [n]);
  });
});

for (const method of METHODS) {
  const ctx = mp.getContext(method);
  describe(`what travels to a child (${method})`, () => {
    it('a plain object shaped like a segment handle arrives as plain data; no reference is given back for it', async () => {
      const v = mp.Value('i', 0);
      const region = regionOf(v);
      const lookalike = { path: region.file, size: 8 };
      const before = region.refs();
      const refused = new ctx.Process({ target: fx.noop, args: [v, lookalike, () => 1] as never, module });
      assert.throws(() => refused.start(), mp.SerializationError);
      assert.equal(region.refs(), before, 'a refused start gives back what it took, and only that');
      assert.ok(existsSync(region.file));

      const out = new mp.ShareableList(['x'.repeat(300)]);
      const p = new ctx.Process({ target: fx.reportArrival, args: [lookalike, out], module });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.deepEqual(JSON.parse(out.get(0) as string), {
        plainObject: true,
        fields: [['path', JSON.stringify(region.file)], ['size', '8']],
      });
      assert.equal(region.refs(), before);
      out.shm.unlink();
    });

    it("a start() that fails after a RawArray was encoded gives back that array's reference", () => {
      const raw = mp.RawArray('i', 4);
      const before = Atomics.load(refsOf(raw), 0);
      const { port1, port2 } = new MessageChannel();
      // Refused while encoding (a function), and by the clone itself (a port not transferred).
      for (const bad of [() => 1, port1]) {
        const p = new ctx.Process({ target: fx.noop, args: [raw, bad] as never, module });
        assert.throws(() => p.start());
        assert.equal(p.pid, null);
        assert.equal(Atomics.load(refsOf(raw), 0), before);
      }
      port1.close();
      port2.close();
    });

    it('a class instance holding a shared object is refused, naming the path and the class', () => {
      const v = mp.Value('i', 0);
      const before = regionOf(v).refs();
      const raw = mp.RawArray('i', 2);
      const cases: Array<[unknown[], RegExp]> = [
        [[v, new Job('a', mp.Value('i', 1))], /^args\[1\]\.counter is a SynchronizedValue inside args\[1\], a Job instance/],
        [
          [{ wrapper: new Holder(new Map([['k', [1, raw]]])) }],
          /^args\[0\]\.wrapper\.items\.get\("k"\)\[1\] is a SharedInt32Array inside args\[0\]\.wrapper, a Holder instance/,
        ],
        [[new Job('b', { view: raw.subarray(1) })], /^args\[0\]\.counter\.view is an Int32Array over shared memory inside args\[0\], a Job instance/],
      ];
      for (const [args, message] of cases) {
        const p = new ctx.Process({ target: fx.noop, args: args as never, module });
        assert.throws(() => p.start(), (err: Error) => {
          assert.ok(err instanceof mp.SerializationError);
          assert.match(err.message, message);
          assert.match(err.message, /Pass a plain object instead .* or pass the shared object itself/);
          return true;
        });
      }
      assert.equal(regionOf(v).refs(), before);
    });

    it('views of shared memory arrive as views of the same memory: subarray(), over .buffer, of getObj(), DataView, bare buffer, SharedMemory bytes', async () => {
      const raw = mp.RawArray('i', 6);
      const sync = mp.Array('d', 3);
      const shorts = mp.RawArray('h', 2);
      const bytes = mp.RawArray('B', 4);
      const block = new mp.SharedMemory({ create: true, size: 16 });
      // The kind a handle names is explicit, so a subclass revives as what it shares.
      class Renamed extends mp.SharedMemory {}
      const renamed = new Renamed({ create: true, size: 8 });
      const p = new ctx.Process({
        target: fx.writeViews,
        args: [
          {
            sub: raw.subarray(1, 3),
            overBuffer: new Int32Array(raw.buffer, raw.byteOffset + 4 * 4, 1),
            ofSynchronized: sync.getObj().subarray(1) as Float64Array,
            dataView: new DataView(shorts.buffer, shorts.byteOffset, 4),
            bare: bytes.buffer as SharedArrayBuffer,
            blockBytes: block.buf.subarray(2),
            renamedBlock: renamed,
          },
        ],
        module,
      });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.deepEqual([...raw], [0, 11, 12, 0, 21, 0]);
      assert.equal(sync[1], 3.5);
      assert.equal(shorts[0], -2);
      assert.equal(bytes[3], 0x7f);
      assert.equal(block.buf[2], 0xee);
      assert.equal(renamed.buf[0], 0x5a);
      // The child took over the references the views put in flight, and gave them back at exit.
      await eventually(() => Atomics.load(refsOf(raw), 0) === 1, 5_000, "the child's references on the array to be given back");
      block.unlink();
      renamed.unlink();
    });

    if (method === 'process') {
      it('a view of a SharedArrayBuffer the package did not allocate is refused, naming it', () => {
        const mine = new Int32Array(new SharedArrayBuffer(8));
        const p = new ctx.Process({ target: fx.writeFirst, args: [mine], module });
        assert.throws(() => p.start(), (err: Error) => {
          assert.ok(err instanceof mp.SerializationError);
          assert.match(err.message, /^args\[0\] is an Int32Array over a SharedArrayBuffer that multiprocessing-ts did not allocate/);
          assert.match(err.message, /mp\.RawArray/);
          return true;
        });
      });
    } else {
      it('a view of a SharedArrayBuffer the package did not allocate is shared with the thread', async () => {
        const mine = new Int32Array(new SharedArrayBuffer(8));
        const p = new ctx.Process({ target: fx.writeFirst, args: [mine], module });
        p.start();
        await p.join();
        assert.equal(p.exitCode, 0);
        assert.equal(mine[0], 42);
      });
    }
  });
}

describe('class instances without shared objects', () => {
  it('arrive as the same plain data of their own fields under both start methods', async () => {
    const point = new Point(1, 2, new Date(Date.UTC(2024, 0, 2)), new Map([['a', 1]]));
    const reports: unknown[] = [];
    for (const method of METHODS) {
      const out = new mp.ShareableList(['x'.repeat(300)]);
      const p = new (mp.getContext(method).Process)({ target: fx.reportArrival, args: [point as never, out], module });
      p.start();
      await p.join();
      assert.equal(p.exitCode, 0, method);
      reports.push(JSON.parse(out.get(0) as string));
      out.shm.unlink();
    }
    const expected = {
      plainObject: true,
      fields: [['x', '1'], ['y', '2'], ['when', 'Date 2024-01-02T00:00:00.000Z'], ['tags', 'Map [["a",1]]']],
    };
    assert.deepEqual(reports, METHODS.map(() => expected));
  });
});
