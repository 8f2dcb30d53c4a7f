/**
 * Lifetimes of manager objects at the edges of the reference rule
 * (src/managers/object-table.ts): tickets of proxy handles that will never
 * be claimed are given back (a refused start(), a child killed before it
 * revived its args, a Pool's checked initargs), a CLAIM that overtakes its
 * INCREF (driven with raw protocol clients), what waits for a late
 * message is bounded, and a child keeps the authkey it was started with.
 */
import { after, before, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { MAX_PENDING, ObjectTable, PENDING_TTL, WITHDRAWN_GRACE, type Holder } from '../src/managers/object-table.js';
import { Op, Reply, readMessages } from '../src/managers/protocol.js';
import * as fx from './fixtures/manager-targets.js';
import { METHODS } from './helpers.js';
import { frame, rawClient } from './manager-wire.js';

const gc = (globalThis as { gc?: () => void }).gc!;

type Info = Awaited<ReturnType<mp.SyncManager['debugInfo']>>;

/** Polls the server's counts until `check` holds (bounded); the last counts otherwise, in the failure. */
async function untilInfo(manager: mp.SyncManager, check: (info: Info) => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    gc();
    await new Promise((r) => setImmediate(r));
    const info = await manager.debugInfo();
    if (check(info)) return;
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(info)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Collects garbage until `ref`'s object is gone (bounded). */
async function collected(ref: WeakRef<object>): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    // deref() keeps its object until the end of the job: collect in a later one.
    await new Promise((r) => setImmediate(r));
    gc();
    await new Promise((r) => setImmediate(r));
    if (ref.deref() === undefined) return;
    if (Date.now() > deadline) throw new Error('the proxy was not collected within 5 s');
  }
}

for (const method of METHODS) {
  describe(`tickets never claimed are given back (${method})`, () => {
    const ctx = mp.getContext(method);
    let manager: mp.SyncManager;

    before(async () => {
      manager = await ctx.Manager();
    });
    after(async () => {
      await manager.shutdown();
    });

    it('a proxy in the args of a start() refused after it was encoded', async () => {
      const list = await manager.list<string>();
      await untilInfo(manager, (i) => i.tickets === 0, 'no handle in flight before');
      const p = new ctx.Process({ target: fx.appendChild, args: [list, (() => 'not data') as unknown as string], module: fx.MANAGER_TARGETS });
      assert.throws(() => p.start(), (e: Error) => e instanceof mp.SerializationError && /args\[1\] is a function/.test(e.message));
      await untilInfo(manager, (i) => i.tickets === 0, "the refused start's ticket to be given back");
      assert.equal(await list.len(), 0, 'the proxy still works');
    });

    it('a proxy in the args of a child killed before it revived them: its object is freed once the parent drops its own', async () => {
      const sendAndKill = async () => {
        const list = await manager.list<string>(['made']);
        const p = new ctx.Process({ target: fx.appendChild, args: [list, 'child'], module: fx.MANAGER_TARGETS });
        p.start();
        p.kill();
        return { p, keep: new WeakRef(list) };
      };
      await untilInfo(manager, (i) => i.objects === 0 && i.tickets === 0, 'earlier proxies to be gone');
      const { p, keep } = await sendAndKill();
      await p.join(30_000);
      assert.notEqual(p.exitCode, 0, 'killed');
      await collected(keep);
      await untilInfo(manager, (i) => i.objects === 0 && i.tickets === 0, 'the object to be freed (no ticket left pinning it)');
    });

    it("a Pool's initargs: the copy it checks at construction holds no ticket once the pool has ended", async () => {
      const ns = await manager.Namespace({ test: 0 });
      await untilInfo(manager, (i) => i.tickets === 0, 'no handle in flight before');
      const pool = new ctx.Pool(1, { initializer: fx.initializer, initargs: [ns], module: fx.MANAGER_TARGETS });
      pool.close();
      await pool.join();
      assert.equal(await ns.get('test'), 1, 'the worker ran the initializer with the proxy');
      await untilInfo(manager, (i) => i.tickets === 0, "the pool's tickets to be given back");
    });
  });
}

describe('CLAIM before INCREF (raw protocol clients)', () => {
  let server: mp.ManagerServer;
  let owner: mp.Connection;
  let sender: mp.Connection;
  let receiver: mp.Connection;
  let req = 1;

  before(async () => {
    server = await mp.serveManager({ address: ['127.0.0.1', 0], authkey: 'k' });
    [owner, sender, receiver] = await Promise.all([0, 1, 2].map(() => rawClient(server.address!, 'k')));
  });
  after(async () => {
    for (const c of [owner, sender, receiver]) c.close();
    server.shutdown();
  });

  /** Sends `messages` then an INFO on `conn`, and waits for its answer: everything before it was handled. */
  async function handled(conn: mp.Connection, ...messages: unknown[][]): Promise<void> {
    const mine = req++;
    await conn.sendBytes(frame(...messages, [Op.INFO, mine]));
    for (;;) {
      const answers = readMessages(await conn.recvBytes());
      if (answers.some((m) => m[0] === Reply.OK && m[1] === mine)) return;
    }
  }

  /** A new list, one reference counted for `owner`; its id. */
  async function created(): Promise<number> {
    const mine = req++;
    await owner.sendBytes(frame([Op.CREATE, mine, 'list', [], false]));
    const [answer] = readMessages(await owner.recvBytes());
    assert.equal(answer![0], Reply.OK);
    return (answer![2] as { id: number }).id;
  }

  it('a CLAIM that comes first waits for its INCREF, then the reference is the receiver\'s', async () => {
    const id = await created();
    await handled(receiver, [Op.CLAIM, id, 'ticket-a']);
    assert.deepEqual([server.info().tickets, server.info().waiting], [0, 1], 'the claim waits');
    await handled(sender, [Op.INCREF, id, 'ticket-a']);
    assert.deepEqual([server.info().tickets, server.info().waiting], [0, 0], 'the INCREF met its claim');
    await handled(owner, [Op.DECREF, id, 1]);
    assert.equal(server.info().objects, 1, "the receiver's reference keeps the object");
    await handled(receiver, [Op.DECREF, id, 1]);
    assert.equal(server.info().objects, 0, 'and was the only one left');
  });

  it("a proxy dropped before its handle's INCREF came: that DECREF cancels the claim, and the INCREF counts nothing", async () => {
    const id = await created();
    await handled(receiver, [Op.CLAIM, id, 'ticket-b'], [Op.DECREF, id, 1]);
    await handled(sender, [Op.INCREF, id, 'ticket-b']);
    assert.deepEqual([server.info().tickets, server.info().waiting], [0, 0]);
    await handled(owner, [Op.DECREF, id, 1]);
    assert.equal(server.info().objects, 0, 'no reference leaked to the receiver');
  });
});

describe('what waits for a late message is bounded (ObjectTable; for expiry, its clock mocked)', () => {
  it('CLAIMs of tickets no INCREF ever names: at most MAX_PENDING wait, the oldest going first', () => {
    const table = new ObjectTable();
    const receiver: Holder = { closed: false, owned: new Map() };
    for (let i = 0; i < MAX_PENDING + 100; i++) table.claim(receiver, 1, `made-up-${i}`);
    assert.equal(table.info().waiting, MAX_PENDING);
    const entry = table.entryFor({}, { typeid: 't', exposed: [], methodToTypeid: {}, proxytype: 'AutoProxy' }, []);
    table.own({ closed: false, owned: new Map() }, entry);
    table.incref(entry.id, 'made-up-0');
    assert.equal(table.info().tickets, 1, 'the oldest claim was dropped: its INCREF is a ticket of its own');
    table.incref(entry.id, `made-up-${MAX_PENDING + 99}`);
    assert.equal(receiver.owned.get(entry), 1, 'the newest still waited');
    table.clear();
  });

  it('early claims, orphaned tickets and withdrawn tickets go after their time; a late CLAIM within the grace takes a withdrawn ticket up', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const table = new ObjectTable();
      const holder = (): Holder => ({ closed: false, owned: new Map() });
      const [sender, receiver, gone] = [holder(), holder(), holder()];
      const entry = table.entryFor({}, { typeid: 't', exposed: [], methodToTypeid: {}, proxytype: 'AutoProxy' }, []);
      table.own(sender, entry);
      table.claim(receiver, entry.id, 'early');
      assert.equal(receiver.owned.get(entry), 1, 'a CLAIM before its INCREF, of an object still held, counts at once');
      table.claim(gone, entry.id, 'orphan');
      table.release(gone);
      table.incref(entry.id, 'late');
      table.incref(entry.id, 'lost');
      table.withdraw('late');
      table.withdraw('lost');
      assert.deepEqual(table.info(), { objects: 1, tickets: 0, waiting: 4 });
      mock.timers.tick(WITHDRAWN_GRACE / 2);
      table.claim(receiver, entry.id, 'late');
      assert.equal(receiver.owned.get(entry), 2, 'a CLAIM read late, within the grace, counts');
      mock.timers.tick(PENDING_TTL);
      assert.deepEqual(table.info(), { objects: 1, tickets: 0, waiting: 0 }, 'all expired');
      table.incref(entry.id, 'early');
      assert.equal(table.info().tickets, 1, 'an INCREF after its claim expired is a ticket of its own');
      assert.equal(receiver.owned.get(entry), 2, 'and counts nothing for the receiver');
    } finally {
      mock.timers.reset();
    }
  });
});

describe('Process.authkey after start()', () => {
  it('is the key the child got, not the parent key set since', async () => {
    // ProcessLike types it read-only; the object has Python's setter.
    const me = mp.currentProcess() as { authkey: Uint8Array };
    const original = me.authkey;
    const out = new mp.Queue<string>();
    const p = new mp.Process({ target: fx.reportAuthkey, args: [out], module: fx.MANAGER_TARGETS });
    try {
      p.start();
      me.authkey = new Uint8Array([1, 2, 3]);
      assert.deepEqual(p.authkey, original);
      assert.equal(await out.get({ timeout: 20_000 }), Buffer.from(original).toString('hex'), "the child's own key");
      await p.join(20_000);
    } finally {
      me.authkey = original;
    }
  });
});
