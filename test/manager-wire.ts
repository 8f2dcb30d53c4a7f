/**
 * The manager protocol as the security tests speak it, without a
 * ManagerClient: raw frames on an authenticated connection, and what the
 * server tells about itself (its counts, its process).
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import * as mp from '../src/index.js';
import { FrameWriter, Reply, readMessages, type Message } from '../src/managers/protocol.js';

/** One frame of protocol messages. */
export function frame(...messages: Message[]): Uint8Array {
  const writer = new FrameWriter();
  for (const m of messages) writer.write(m, 1 << 30);
  return Buffer.concat(writer.take(1 << 30));
}

/** A 4-byte big-endian length: a frame's (or a message's) header. */
export function header(n: number): Buffer {
  return Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
}

/** A raw protocol client past the handshake, its greeting read. */
export async function rawClient(address: mp.Address, authkey: string | Uint8Array): Promise<mp.Connection> {
  const conn = await mp.Client(address, { authkey });
  const [hello] = readMessages(await conn.recvBytes());
  assert.equal(hello![0], Reply.HELLO);
  return conn;
}

/** The socket under a connection, to write bytes that are not whole frames. */
export function socketOf(conn: mp.Connection): Socket {
  return (conn.transportForWait() as unknown as { socket: Socket }).socket;
}

/** Resolves once the server closed `conn` (every message before that read and dropped). */
export async function closedByServer(conn: mp.Connection, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (!(await conn.poll(Math.max(0, deadline - Date.now())))) throw new Error(`the server did not close the connection within ${withinMs} ms`);
    try {
      await conn.recvBytes();
    } catch (err) {
      assert.ok(err instanceof mp.EOFError, String(err));
      return;
    }
  }
}

/**
 * Waits (bounded) until the server has `expected.connections` connections
 * and at most `expected.objects` objects (earlier tests' proxies may be
 * collected meanwhile, so the count can only fall below it).
 */
export async function serverSees(manager: mp.BaseManager, expected: { connections: number; objects: number }, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { connections, objects } = await manager.debugInfo();
    if (connections === expected.connections && objects <= expected.objects) return;
    if (Date.now() > deadline) assert.deepEqual({ connections, objects }, expected, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The running server Process of the (only) manager of this class started by this test. */
export function serverOf(manager: mp.BaseManager): mp.Process {
  const found = mp.activeChildren().filter((p) => p.name.startsWith(`${manager.constructor.name}-`) && p.pid === manager.pid);
  assert.equal(found.length, 1);
  return found[0]!;
}

/** A proxy's object id (what a client names in its messages). */
export function idOf(proxy: object): number {
  return (proxy as { [k: symbol]: { id: number } })[Symbol.for('multiprocessing-ts.manager-proxy-target')]!.id;
}
