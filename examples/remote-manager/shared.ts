// What the server and its clients both import: the manager class, and the one board all clients share.
import { readFileSync } from 'node:fs';
import * as mp from 'multiprocessing-ts';

/** Named objects of the server, shared by every client (Python's `register('get_queue', callable=lambda: queue)`). */
export class Board {
  readonly #objects = new Map<string, unknown>();

  /** The object named `name`; the first client to ask gives it (`made`), later ones get that same object. */
  setdefault(name: string, made: unknown): unknown {
    if (!this.#objects.has(name)) this.#objects.set(name, made);
    return this.#objects.get(name);
  }
}

const board = new Board();

/** SyncManager's typeids (list, dict, Queue, Lock…) and `board()`, which gives every client the same board. */
export class BoardManager extends mp.SyncManager {
  declare board: () => Promise<mp.Proxy<Board>>;
}
BoardManager.register('board', () => board);

/** A key file's bytes less one final line break (as `multiprocessing-ts serve --authkey-file` reads it). */
export function readAuthkey(file: string): Buffer {
  const bytes = readFileSync(file);
  const end = bytes.at(-1) === 0x0a ? bytes.length - (bytes.at(-2) === 0x0d ? 2 : 1) : bytes.length;
  return bytes.subarray(0, end);
}

/** `host:port` as an address. */
export function parseAddress(text: string): [string, number] {
  const colon = text.lastIndexOf(':');
  return [text.slice(0, colon), Number(text.slice(colon + 1))];
}
