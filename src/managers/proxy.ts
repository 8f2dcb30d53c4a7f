/**
 * Proxies: objects in this process that stand for objects of a manager's
 * server. Every method is async and runs in the server.
 *
 * A proxy travels (in a child's `args`, through a Queue, a Pipe, a socket
 * Connection) as a handle: the manager's address, the object's id and a
 * ticket (object-table.ts has the reference rule). The receiver connects to
 * the manager (one connection per process and manager, shared by all its
 * proxies) with the key the handle carries when it went to a child being
 * started, else with the key this process already connected with, else
 * with `mp.currentProcess().authkey` — Python's rule, so a manager's key is
 * never written into a Queue or onto a socket.
 */
import { inspect } from 'node:util';
import { randomHex } from '../builtins.js';
import { describe } from '../describe.js';
import { ValueError } from '../errors.js';
import { showAddress, type Address } from '../connection/address.js';
import { processAuthkey } from '../process/current.js';
import { SHARED, registerShared, type ShareContext, type SharedHandle } from '../serialize/shared.js';
import { noteInFlight } from '../shm/segment.js';
import { ManagerClient, setProxyMaker } from './client.js';
import { proxyClasses } from './typeids.js';
import { PROXY_TARGET, type ProxyDescription, type ProxyTarget } from './values.js';

/** A proxy handle in transit. */
interface ProxyHandle extends SharedHandle, ProxyDescription {
  readonly kind: 'manager-proxy';
  readonly address: Address;
  readonly serverId: string;
  readonly ticket: string;
  /** The manager's key, only in a child's start-up arguments (base64). */
  readonly authkey?: string;
}

/** What a proxy knows about its object. */
interface Token extends ProxyDescription {
  readonly serverId: string;
}

const state = new WeakMap<BaseProxy, { client: ManagerClient; token: Token }>();

/** A collected proxy gives its reference back. */
const collected = new FinalizationRegistry<{ client: ManagerClient; id: number; serverId: string }>(({ client, id, serverId }) =>
  client.decref(id, serverId),
);

/** Guards the constructor: proxies are made by managers, from what servers say. */
const MAKING = Symbol('making a proxy');

/**
 * The base of every proxy (Python's `BaseProxy`). Subclass it for a
 * typed proxy of your own registered type (pass it as `proxytype`), calling
 * `this.callMethod(name, args)` in its methods; do not give it a
 * constructor.
 * @example
 * ```ts
 * export class CounterProxy extends mp.BaseProxy {
 *   increment(by: number): Promise<number> { return this.callMethod('increment', [by]) as Promise<number>; }
 * }
 * MyManager.register('Counter', Counter, { proxytype: CounterProxy });
 * ```
 */
export class BaseProxy {
  /** @internal Made by managers (`manager.list()`, a method's result, a revived handle). */
  constructor(making: typeof MAKING, client: ManagerClient, token: Token) {
    if (making !== MAKING) {
      throw new ValueError('a proxy is made by a manager (await manager.list(), manager.create(typeid, ...)), not with new');
    }
    state.set(this, { client, token });
    collected.register(this, { client, id: token.id, serverId: token.serverId });
  }

  /**
   * Calls the exposed method `method` of the object in the server with
   * `args` (Python's `_callmethod`); resolves to its result (a copy, or a
   * proxy for a stored proxy or a `methodToTypeid` method).
   * @throws RemoteError for a method not exposed; the error the method threw (same name and message, `.remoteStack`).
   * @throws EOFError once the server is gone; StateError after `shutdown()`.
   */
  callMethod(method: string, args: unknown[] = []): Promise<unknown> {
    const { client, token } = stateOf(this);
    if (typeof method !== 'string') return Promise.reject(new ValueError(`callMethod() takes a method name, not ${describe(method)}`));
    if (!Array.isArray(args)) return Promise.reject(new ValueError(`callMethod() takes its arguments as an array, not ${describe(args)}`));
    return client.call(token.id, token.serverId, method, args, `${token.typeid}.${method}()`);
  }

  /** @internal For values.ts: which manager, which object. */
  get [PROXY_TARGET](): ProxyTarget {
    const { client, token } = stateOf(this);
    return { client, id: token.id };
  }

  /** @internal How a proxy travels: a handle holding a reference of its own (a ticket). */
  [SHARED](context?: ShareContext): ProxyHandle {
    const { client, token } = stateOf(this);
    const ticket = randomHex(12);
    client.incref(token.id, ticket, token.serverId);
    // The ticket is this process's until claimed: given back if the transfer
    // fails, or if the child whose args held it ends (claimed or not: the
    // server ignores a ticket claimed already).
    let given = false;
    const giveBack = (): void => {
      if (given) return;
      given = true;
      client.unticket(token.id, ticket, token.serverId);
    };
    noteInFlight({ ledgerName: null, abandon: giveBack, receiverEnded: giveBack });
    return {
      kind: 'manager-proxy',
      address: client.address,
      serverId: token.serverId,
      id: token.id,
      typeid: token.typeid,
      exposed: token.exposed,
      proxytype: token.proxytype,
      ticket,
      ...(context?.spawning ? { authkey: Buffer.from(client.key).toString('base64') } : {}),
    };
  }

  toString(): string {
    const { client, token } = stateOf(this);
    return `<${this.constructor.name} of '${token.typeid}' #${token.id} at ${showAddress(client.address)}>`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

function stateOf(proxy: BaseProxy): { client: ManagerClient; token: Token } {
  const s = state.get(proxy);
  if (!s) throw new ValueError('not a proxy made by a manager');
  return s;
}

/** Names an AutoProxy never defines as methods (reachable with `callMethod`): `then` would make every proxy a thenable. */
const NOT_METHODS = new Set(['then', 'constructor', '__proto__', 'callMethod', 'toString']);

const autoClasses = new Map<string, typeof BaseProxy>();

/** The proxy class for an object exposing `exposed`: one async method per name. */
export function autoProxyClass(exposed: readonly string[]): typeof BaseProxy {
  const key = exposed.join('\0');
  let cls = autoClasses.get(key);
  if (cls) return cls;
  cls = class AutoProxy extends BaseProxy {};
  for (const name of exposed) {
    if (NOT_METHODS.has(name) || name in BaseProxy.prototype) continue;
    Object.defineProperty(cls.prototype, name, {
      value(this: BaseProxy, ...args: unknown[]) {
        return this.callMethod(name, args);
      },
      writable: true,
      configurable: true,
    });
  }
  // An iterator in the server (a generator) is iterable here: `for await (const x of proxy)`.
  if (exposed.includes('next')) {
    Object.defineProperty(cls.prototype, Symbol.asyncIterator, {
      async *value(this: BaseProxy) {
        for (;;) {
          const step = (await this.callMethod('next')) as { value: unknown; done?: boolean };
          if (step?.done) return;
          yield step?.value;
        }
      },
      writable: true,
      configurable: true,
    });
  }
  autoClasses.set(key, cls);
  return cls;
}

/** A proxy for what a server described, counted as one reference of `client`. */
export function makeProxy(client: ManagerClient, description: ProxyDescription, serverId: string, preferred?: string): BaseProxy {
  const named = proxyClasses.get(preferred ?? description.proxytype) as (typeof BaseProxy) | undefined;
  const cls = named && (named === BaseProxy || named.prototype instanceof BaseProxy) ? named : autoProxyClass(description.exposed);
  const token: Token = {
    id: description.id,
    typeid: description.typeid,
    exposed: [...description.exposed],
    proxytype: description.proxytype,
    serverId,
  };
  return new (cls as unknown as new (m: typeof MAKING, c: ManagerClient, t: Token) => BaseProxy)(MAKING, client, token);
}

setProxyMaker(makeProxy);
proxyClasses.set('BaseProxy', BaseProxy);

registerShared('manager-proxy', (h) => {
  const handle = h as ProxyHandle;
  const key = handle.authkey ? new Uint8Array(Buffer.from(handle.authkey, 'base64')) : null;
  const client = (key ? null : ManagerClient.existing(handle.address)) ?? ManagerClient.for(handle.address, key ?? processAuthkey());
  // The handle's reference becomes this process's (its ticket was counted by the sender).
  client.claim(handle.id, handle.ticket, handle.serverId);
  return makeProxy(client, handle, handle.serverId);
});
