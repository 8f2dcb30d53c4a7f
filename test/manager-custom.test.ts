/**
 * BaseManager subclasses with registered types: ported from CPython's
 * _TestMyManager, _TestRemoteManager, _TestManagerRestart and
 * TestInitializers, plus methodToTypeid, getServer(), exposure rules and
 * registration errors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as mp from '../src/index.js';
import * as fx from './fixtures/manager-targets.js';
import { METHODS } from './helpers.js';

for (const method of METHODS) {
  describe(`BaseManager subclasses (${method})`, () => {
    it('serve registered classes and generators (CPython test_mymanager)', async () => {
      const manager = new fx.MyManager({ startMethod: method });
      await manager.start();
      assert.match(mp.activeChildren().find((p) => p.pid === manager.pid && p.name.startsWith('MyManager-'))?.name ?? '', /^MyManager-\d+$/);
      const foo = await manager.Foo();
      const bar = await manager.Bar();
      const baz = await manager.baz();
      const has = (p: object, names: string[]) => names.filter((n) => typeof (p as Record<string, unknown>)[n] === 'function');
      assert.deepEqual(has(foo, ['f', 'g', '_h']), ['f', 'g']);
      assert.deepEqual(has(bar, ['f', 'g', '_h']), ['f', '_h']);
      assert.equal(await foo.f(), 'f()');
      await assert.rejects(foo.g(), (e: Error) => e instanceof mp.ValueError && e.message === 'g() always fails' && /FooBar\.g|g \(/.test((e as { remoteStack?: string }).remoteStack ?? ''));
      assert.equal(await foo.callMethod('f'), 'f()');
      await assert.rejects(foo.callMethod('_h'), mp.RemoteError);
      assert.equal(await bar.f(), 'f()');
      assert.equal(await bar._h(), '_h()');
      assert.equal(await bar.callMethod('_h'), '_h()');
      const squares: number[] = [];
      for await (const x of baz) squares.push(x);
      assert.deepEqual(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
      const server = mp.activeChildren().find((p) => p.pid === manager.pid && p.name.startsWith('MyManager-'))!;
      await manager.shutdown();
      assert.ok(server.exitCode === 0 || server.exitCode === -15, `exit code ${server.exitCode}`);
    });

    it('methodToTypeid returns proxies; async methods are awaited; errors keep their class or name; only exposed methods are called', async () => {
      await using manager = new fx.MyManager({ startMethod: method });
      await manager.start();
      const factory = await manager.CounterFactory();
      const counter = await factory.makeCounter();
      assert.ok(counter instanceof mp.BaseProxy);
      assert.equal(await counter.increment(2), 2);
      const slow = counter.slowAdd(10, 100);
      assert.equal(await counter.increment(), 3, 'answered while the slow call waits');
      assert.equal(await slow, 13);
      await assert.rejects(counter.fail(), (e: Error) => e instanceof TypeError && e.message === 'a TypeError from the server');
      await assert.rejects(counter.failCustom(), (e: Error) => e instanceof mp.RemoteError && e.name === 'ParseFailure');
      await assert.rejects(counter.returnsFunction(), (e: Error) => e instanceof mp.SerializationError && /result/.test(e.message));
      // No getter, no prototype tricks:
      const guarded = await manager.Guarded();
      await assert.rejects(guarded.callMethod('danger'), (e: Error) => e instanceof mp.RemoteError && /no such method/.test(e.message));
      assert.equal(await guarded.wasTouched(), false, 'the getter never ran');
      for (const name of ['__proto__', 'constructor', 'constructor2', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__']) {
        await assert.rejects(guarded.callMethod(name), mp.RemoteError, name);
      }
      const foo = await manager.Foo();
      await assert.rejects(foo.callMethod('constructor'), mp.RemoteError);
      await assert.rejects(foo.callMethod('__proto__'), mp.RemoteError);
    });

    it('one object served under two typeids: each proxy may call only its own typeid\'s exposed methods', async () => {
      await using manager = new fx.MyManager({ startMethod: method });
      await manager.start();
      const admin = await manager.VaultAdmin();
      const guest = await manager.VaultGuest();
      assert.equal(await admin.wipe(), 'wiped');
      assert.equal(await guest.read(), 'public');
      await assert.rejects(guest.callMethod('wipe'), (e: Error) => e instanceof mp.RemoteError && /not an exposed method/.test(e.message));
    });

    it('connect from a child and from another manager over TCP with an authkey (CPython test_remote)', async () => {
      const authkey = randomBytes(32);
      const manager = new fx.QueueManager({ address: ['127.0.0.1', 0], authkey, startMethod: method });
      await manager.start();
      try {
        const [host, port] = manager.address as [string, number];
        assert.equal(host, '127.0.0.1');
        assert.ok(port > 0);
        const values = ['hello world', null, true, 2.25, 'hallå världen', 'привіт світ', new TextEncoder().encode('hallå')];
        const p = new (mp.getContext(method).Process)({ target: fx.putter, args: [manager.address!, authkey, values], module: fx.MANAGER_TARGETS, daemon: true });
        p.start();
        const manager2 = new fx.QueueManager2({ address: manager.address!, authkey });
        await manager2.connect();
        const queue = await manager2.getQueue();
        assert.deepEqual(await queue.get(), values);
        await assert.rejects(queue.put(() => 0), mp.SerializationError);
        await p.join(30_000);
        assert.equal(p.exitCode, 0);
        await assert.rejects(manager2.shutdown(), mp.StateError, 'a manager that connected does not shut the server down');
      } finally {
        await manager.shutdown();
      }
    });

    it('restart at the same address; proxies of the old server reject (CPython test_rapid_restart)', async () => {
      const authkey = randomBytes(32);
      const first = new fx.QueueManager({ address: ['127.0.0.1', 0], authkey, startMethod: method });
      await first.start();
      const address = first.address!;
      const p = new (mp.getContext(method).Process)({ target: fx.putter, args: [address, authkey, ['hello world']], module: fx.MANAGER_TARGETS });
      p.start();
      await p.join(30_000);
      const queue = await first.getQueue();
      assert.deepEqual(await queue.get(), ['hello world']);
      await first.shutdown();
      await assert.rejects(queue.get(), mp.StateError, 'after shutdown(), at once');
      const second = new fx.QueueManager({ address, authkey, startMethod: method });
      await second.start();
      try {
        assert.deepEqual(second.address, address);
        const again = await second.getQueue();
        await again.put('after restart');
        assert.equal(await again.get(), 'after restart');
      } finally {
        await second.shutdown();
      }
    });

    it('children inherit the authkey (or the one set on their Process); a proxy of a manager with another key works in a child it was given to', async () => {
      const ctx = mp.getContext(method);
      const out = new mp.Queue<string>();
      const inherit = new ctx.Process({ target: fx.reportAuthkey, args: [out], module: fx.MANAGER_TARGETS });
      inherit.start();
      assert.equal(await out.get({ timeout: 20_000 }), Buffer.from(mp.currentProcess().authkey).toString('hex'));
      const chosen = new ctx.Process({ target: fx.reportAuthkey, args: [out], module: fx.MANAGER_TARGETS });
      chosen.authkey = new Uint8Array([1, 2, 3]);
      chosen.start();
      assert.equal(await out.get({ timeout: 20_000 }), '010203');
      await Promise.all([inherit.join(), chosen.join()]);
      assert.throws(() => (chosen.authkey = new Uint8Array([4])), mp.StateError);
      await using manager = new mp.SyncManager({ authkey: 'not the default', startMethod: method });
      await manager.start();
      const list = await manager.list<string>();
      const p = new ctx.Process({ target: fx.appendChild, args: [list, 'with the key of its args'], module: fx.MANAGER_TARGETS });
      p.start();
      await p.join(30_000);
      assert.equal(p.exitCode, 0);
      assert.deepEqual(await list.toArray(), ['with the key of its args']);
    });

    it('start({ initializer, initargs }) runs in the server before it serves (CPython test_manager_initializer)', async () => {
      await using outer = await mp.getContext(method).Manager();
      const ns = await outer.Namespace({ test: 0 });
      const m = new mp.SyncManager({ startMethod: method });
      await assert.rejects(m.start({ initializer: 1 as never }), mp.ValueError);
      await m.start({ initializer: fx.initializer, initargs: [ns], module: fx.MANAGER_TARGETS });
      assert.equal(await ns.get('test'), 1);
      await m.shutdown();
      await m.join(5000);
    });
  });
}

describe('BaseManager in this process and registration', () => {
  it('getServer().serveForever() serves in this process until shutdown', async () => {
    const server = new fx.MyManager({ address: ['127.0.0.1', 0], authkey: 'k' }).getServer();
    await server.listen();
    const serving = server.serveForever();
    const client = new fx.MyManager({ address: server.address!, authkey: 'k' });
    await client.connect();
    const counter = await client.Counter();
    assert.equal(await counter.increment(5), 5);
    assert.equal(client.pid, null);
    assert.equal((await client.debugInfo()).objects, 1);
    server.shutdown();
    await serving;
    await assert.rejects(counter.increment(), mp.EOFError);
  });

  it('mp.serveManager() serves SyncManager by default, and a class given', async () => {
    const server = await mp.serveManager({ authkey: 'k2' });
    const client = new mp.SyncManager({ address: server.address!, authkey: 'k2' });
    await client.connect();
    const l = await client.list([1]);
    assert.deepEqual(await l.toArray(), [1]);
    server.shutdown();
    await server.stopped;
    await assert.rejects(mp.serveManager({ managerClass: 'x' as never }), mp.ValueError);
  });

  it('register refuses bad typeids, factories and options, naming them', () => {
    class M extends mp.BaseManager {}
    assert.throws(() => M.register('not a name', fx.Counter), mp.ValueError);
    assert.throws(() => M.register('start', fx.Counter), /member of the manager itself/);
    assert.throws(() => M.register('__proto__', fx.Counter), mp.ValueError);
    assert.throws(() => M.register('X', 42 as never), /must be a class or a function/);
    assert.throws(() => M.register('X', fx.Counter, { exposed: 'f' as never }), /exposed must be an array/);
    assert.throws(() => M.register('X', fx.Counter, { exposed: ['constructor'] }), /cannot be an exposed method/);
    assert.throws(() => M.register('X', fx.Counter, { methodToTypeid: { f: 'not a name' } }), /must be a typeid/);
  });

  it('a typeid registered only in the main process cannot reach the server: start() says why', async () => {
    fx.registerLate();
    const manager = new fx.LateManager();
    await assert.rejects(manager.start(), (e: Error) => e instanceof mp.ValueError && /LateManager\.register\('Late'.*did not run.*top level/.test(e.message));
  });

  it('bad input: state, options, addresses, keys', async () => {
    assert.throws(() => new mp.SyncManager({ address: { port: 1 } as never }), mp.ValueError);
    assert.throws(() => new mp.SyncManager({ authkey: 5 as never }), mp.ValueError);
    assert.throws(() => new mp.SyncManager({ startMethod: 'fork' as never }), mp.ValueError);
    assert.throws(() => new mp.SyncManager({ maxMessageBytes: 10 }), mp.ValueError);
    await assert.rejects(new mp.SyncManager().connect(), /needs the server's address/);
    await assert.rejects(new mp.SyncManager().list(), /start\(\) or connect\(\) the manager first/);
    await assert.rejects(new mp.SyncManager({ address: ['127.0.0.1', 1] }).connect(), (e: Error & { code?: string }) => e.code === 'ECONNREFUSED');
    const first = await mp.Manager({ address: ['127.0.0.1', 0] });
    try {
      await assert.rejects(mp.Manager({ address: first.address! }), mp.AddressInUseError);
      await assert.rejects(first.start(), /was started already/);
    } finally {
      await first.shutdown();
    }
    assert.equal(mp.currentProcess().authkey.length, 32);
    assert.deepEqual(mp.currentProcess().authkey, mp.currentProcess().authkey);
  });
});
