/**
 * Values in calls and results, and the proxies inside them.
 *
 * Everything else in a value travels as V8's serializer copies it. A proxy
 * does not: it stands for an object of the server, so
 *   - in a call's arguments, a proxy of the same manager becomes the marker
 *     `{ [MARKER]: { ref: id } }`, which the server turns into a `Ref` to
 *     that very object (`decodeArgs`): storing it keeps it live;
 *   - in a result, each `Ref` becomes `{ [MARKER]: ProxyDescription }`, with
 *     a new reference counted for the client (`encodeResult`), which the
 *     client turns into a proxy (`decodeResult`).
 * Proxies of another manager and this package's shared-memory objects
 * (Value, Lock, Queue…) are refused with their path: the server is another
 * process, possibly on another machine, and would hold a dead copy.
 *
 * A value is walked only when it can hold a proxy (an object), and the
 * receiving side walks only when the sender flagged markers, so plain data
 * costs nothing here.
 */
import { SerializationError } from '../errors.js';
import { describe } from '../describe.js';
import { MARKER, isShareable } from '../serialize/shared.js';
import { isLeaf } from '../serialize/leaf.js';
import { pathOf } from '../serialize/path.js';
import { DESCEND, Walk } from '../serialize/walk.js';
import { Ref, type Entry } from './object-table.js';

/** What a proxy shows this module: its client (connection) and object id. */
export const PROXY_TARGET: unique symbol = Symbol.for('multiprocessing-ts.manager-proxy-target') as any;

export interface ProxyTarget {
  readonly client: object;
  readonly id: number;
}

/** What the server says about a proxy it hands out. */
export interface ProxyDescription {
  readonly id: number;
  readonly typeid: string;
  readonly exposed: readonly string[];
  readonly proxytype: string;
}

function targetOf(value: object): ProxyTarget | undefined {
  return (value as { [PROXY_TARGET]?: ProxyTarget })[PROXY_TARGET];
}

function markerOf(value: object): unknown {
  return Object.hasOwn(value, MARKER) ? (value as Record<string, unknown>)[MARKER] : undefined;
}

/** `WebAssembly.Module` (this project's TypeScript libs do not declare WebAssembly). */
const WASM_MODULE = (globalThis as { WebAssembly?: { Module: abstract new (...args: never[]) => object } }).WebAssembly?.Module;

/**
 * Whether a long array is mostly holes, which the server refuses
 * (protocol.ts `checkArrayLengths`): caught here, the call fails alone
 * instead of the connection every proxy of the process shares. Sampled, so
 * a dense array costs a few lookups; only a holey one has its keys counted.
 */
function isMostlyHoles(array: unknown[]): boolean {
  const length = array.length;
  if (length <= 4096) return false;
  let holes = false;
  for (let k = 0; k < 16 && !holes; k++) holes = !(Math.floor((k * (length - 1)) / 15) in array);
  return holes && Object.keys(array).length * 2 < length;
}

/**
 * A call's arguments for the wire (client side): proxies of `client`'s
 * manager as ref markers.
 * @param path how the value is named in errors (`list.append() args`).
 * @throws SerializationError naming the path of what a manager cannot hold.
 */
export function encodeArgs(args: unknown[], client: object, path: string): { value: unknown[]; refs: boolean } {
  let refs = false;
  const check = (value: unknown, walk: Walk): unknown => {
    if (typeof value === 'function') {
      throw new SerializationError(`${pathOf(walk)} is a function, which cannot be sent to a manager's server; send data`);
    }
    if (typeof value === 'symbol') throw new SerializationError(`${pathOf(walk)} is a symbol, which cannot be sent to a manager's server`);
    if (typeof value !== 'object' || value === null || isLeaf(value)) return value;
    // V8 writes one for this isolate, and the server's deserializer cannot read it: that closes the shared connection.
    if (WASM_MODULE !== undefined && value instanceof WASM_MODULE) {
      throw new SerializationError(`${pathOf(walk)} is a WebAssembly.Module, which cannot be sent to a manager's server; send its bytes (a Uint8Array) instead`);
    }
    const target = targetOf(value);
    if (target) {
      if (target.client !== client) {
        throw new SerializationError(
          `${pathOf(walk)} is a proxy of another manager (or of this one reached with another address or key), ` +
            `which this manager cannot hold; store its data instead (e.g. await proxy.toArray())`,
        );
      }
      refs = true;
      return value;
    }
    if (isShareable(value)) {
      throw new SerializationError(
        `${pathOf(walk)} is ${describe(value)}, a shared object of this machine's memory, which a manager's server ` +
          `cannot hold; make it with the manager instead (e.g. await manager.Lock(), manager.Value('i', 0)), ` +
          `or pass it to children directly`,
      );
    }
    if (markerOf(value) !== undefined) {
      throw new SerializationError(`${pathOf(walk)} has the key '${MARKER}', which multiprocessing-ts reserves; rename that key`);
    }
    if (Array.isArray(value) && isMostlyHoles(value)) {
      throw new SerializationError(
        `${pathOf(walk)} is a sparse array (length ${value.length}, mostly holes), which a manager's server refuses ` +
          `(its arrays may not claim more items than their bytes carry); send a dense array, or a Map of index to item`,
      );
    }
    return DESCEND;
  };
  if (!args.some((a) => typeof a === 'object' || typeof a === 'function' || typeof a === 'symbol')) return { value: args, refs };
  Walk.run(args, path, { enter: check }, false);
  if (!refs) return { value: args, refs };
  const value = Walk.run(
    args,
    path,
    {
      enter(v) {
        if (typeof v !== 'object' || v === null || isLeaf(v)) return v;
        const target = targetOf(v);
        return target ? { [MARKER]: { ref: target.id } } : DESCEND;
      },
    },
    true,
  ) as unknown[];
  return { value, refs };
}

/**
 * A call's arguments as received (server side, in place): ref markers
 * become `Ref`s to the objects they name.
 * @throws Error naming the path of a marker that names no live object.
 */
export function decodeArgs(args: unknown, lookup: (id: number) => Entry | undefined, path: string): unknown {
  return Walk.run(
    args,
    path,
    {
      enter(value, walk) {
        if (typeof value !== 'object' || value === null || isLeaf(value)) return value;
        const marker = markerOf(value);
        if (marker === undefined) return DESCEND;
        const id = (marker as { ref?: unknown } | null)?.ref;
        const entry = typeof id === 'number' ? lookup(id) : undefined;
        if (!entry) throw new ReferenceError(`${pathOf(walk)} is a proxy of an object this manager no longer holds`);
        return new Ref(entry);
      },
    },
    false,
  );
}

/**
 * A result for the wire (server side): each `Ref` as a proxy description,
 * for which `hand` counts a reference for the receiving client. The stored
 * value itself is never changed (a walk that finds a Ref copies).
 * @returns the value, whether it holds proxies, and the entries handed (to take back if the send fails).
 */
export function encodeResult(
  result: unknown,
  hand: (entry: Entry) => ProxyDescription,
): { value: unknown; proxies: boolean; handed: Entry[] } {
  const handed: Entry[] = [];
  if (typeof result !== 'object' || result === null || isLeaf(result)) return { value: result, proxies: false, handed };
  const describeRef = (ref: Ref): object => {
    handed.push(ref.entry);
    return { [MARKER]: hand(ref.entry) };
  };
  if (result instanceof Ref) return { value: describeRef(result), proxies: true, handed };
  let found = false;
  Walk.run(
    result,
    'result',
    {
      enter(value, walk) {
        if (typeof value !== 'object' || value === null || isLeaf(value)) return value;
        if (value instanceof Ref) {
          found = true;
          return value;
        }
        if (markerOf(value) !== undefined) {
          throw new SerializationError(`${pathOf(walk)} has the key '${MARKER}', which multiprocessing-ts reserves`);
        }
        return DESCEND;
      },
    },
    false,
  );
  if (!found) return { value: result, proxies: false, handed };
  const value = Walk.run(
    result,
    'result',
    {
      enter(v) {
        if (typeof v !== 'object' || v === null || isLeaf(v)) return v;
        return v instanceof Ref ? describeRef(v) : DESCEND;
      },
    },
    true,
  );
  return { value, proxies: true, handed };
}

/** A result as received (client side, in place): proxy descriptions become proxies. */
export function decodeResult(value: unknown, revive: (description: ProxyDescription) => unknown): unknown {
  return Walk.run(
    value,
    'result',
    {
      enter(v) {
        if (typeof v !== 'object' || v === null || isLeaf(v)) return v;
        const marker = markerOf(v);
        return marker === undefined ? DESCEND : revive(marker as ProxyDescription);
      },
    },
    false,
  );
}
