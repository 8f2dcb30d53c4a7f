/**
 * What every cluster object (Lock, RLock, Semaphore, Event, the queues,
 * Value, manager proxies) shares: a kind and a name that find its keys in
 * Redis, the connections of its context, and the two ways it travels.
 *
 * - Through Redis (task arguments and results of a cluster pool, queue
 *   items, values in a cluster list or dict): as a descriptor, `{ kind,
 *   name, settings }`, with no code and no URL (codec.ts). The side that
 *   unpacks it binds it to its own context, so the password never enters
 *   Redis and a worker reaches the object through the URL it was started with.
 * - Inside this process tree (a local `mp.Process`'s args, a local Queue or
 *   Pipe): as a shared-object handle that also carries the URL and the
 *   context's options, so the child connects to the same Redis. That
 *   handle travels only through the tree's own channels, never a socket.
 *
 * Nothing over a network can block the calling thread, so every method
 * here is async; the synchronous members of the local objects
 * (`acquireSync`, `getSync`, `.value`…) throw a `ClusterError` that names
 * the async form (`notOverNetwork`).
 */
import { serialize } from 'node:v8';
import { ClusterError, SerializationError, ValueError } from '../../errors.js';
import { describe } from '../../describe.js';
import { SHARED, registerShared, type SharedHandle } from '../../serialize/shared.js';
import { checkName, objectKey, randomName } from '../keys.js';
import type { ClusterClientOptions, ClusterClients } from '../redis.js';
import { ObjectClients, SLOT_MOVING_PAUSE_MS, slotMoving, type Late, type Script } from './connection.js';
import { AnsweredCalls, newCallKey, type ChangeScript } from './call-records.js';

/** Tries of a change that ioredis aborted (see `change`). */
const ABORT_TRIES = 3;
/** How long a change refused by a slot in migration is tried again (a slot's keys move in seconds). */
const SLOT_MOVING_MAX_MS = 30_000;

/** Whether ioredis aborted the command (ours wrap its error as the cause of a `ClusterError`). */
function abortedByClient(err: unknown): boolean {
  const e = err as { name?: unknown; cause?: { name?: unknown } } | null;
  return e?.name === 'AbortError' || e?.cause?.name === 'AbortError';
}

/** The answered calls of each context's objects in this process (call-records.ts). */
const answeredBy = new WeakMap<ObjectClients, AnsweredCalls>();

/** The kinds of cluster objects, as descriptors name them. */
export type ClusterKind =
  | 'Lock'
  | 'RLock'
  | 'Semaphore'
  | 'BoundedSemaphore'
  | 'Event'
  | 'Queue'
  | 'JoinableQueue'
  | 'SimpleQueue'
  | 'Value'
  | 'list'
  | 'dict'
  | 'Namespace';

/** The few settings a kind needs on the other side (a lock's ttl, a queue's maxsize…): plain data only. */
export type Settings = Readonly<Record<string, string | number | boolean>>;

/** How a cluster object is stored in Redis: what it is and where its keys are. */
export interface Descriptor {
  readonly kind: ClusterKind;
  readonly name: string;
  readonly settings?: Settings;
}

/** The handle of a cluster object travelling inside the process tree. */
interface TreeHandle extends SharedHandle {
  readonly url: string;
  readonly client: ClusterClientOptions;
  readonly object: Descriptor;
}

/** The options every cluster object takes. */
export interface ClusterObjectOptions {
  /**
   * The name that finds the object in Redis: objects of one kind and name
   * made anywhere, from contexts of one URL, are one object. Default: a
   * random name (read it from `.name` to attach elsewhere).
   */
  readonly name?: string;
}

type Reviver = (conn: ObjectClients, name: string, settings: Settings) => ClusterObject;
const revivers = new Map<ClusterKind, Reviver>();

/** Registers how descriptors of `kind` become objects. */
export function registerClusterKind(kind: ClusterKind, revive: Reviver): void {
  revivers.set(kind, revive);
}

/** The object a descriptor names, bound to `conn`. */
export function reviveDescriptor(descriptor: unknown, conn: ObjectClients, where: string): ClusterObject {
  const d = descriptor as Partial<Descriptor> | null;
  const revive = typeof d?.kind === 'string' ? revivers.get(d.kind as ClusterKind) : undefined;
  if (!revive) throw new SerializationError(`${where} names an unknown kind of cluster object (${describe(d?.kind)})`);
  const name = checkName(d!.name, `${where}: a cluster ${d!.kind}'s`);
  const settings = d!.settings ?? {};
  if (typeof settings !== 'object' || settings === null) throw new SerializationError(`${where}: a cluster ${d!.kind}'s settings are ${describe(settings)}`);
  return revive(conn, name, settings as Settings);
}

/** How a process finds the clients of a URL and options (set by context.ts, which owns contexts). */
let resolveClients: ((href: string, options: ClusterClientOptions) => ClusterClients) | null = null;

/** @internal Installs how handles that travelled in the tree find their context. */
export function setClientsResolver(resolver: (href: string, options: ClusterClientOptions) => ClusterClients): void {
  resolveClients = resolver;
}

export function isClusterObject(value: unknown): value is ClusterObject {
  return value instanceof ClusterObject || (typeof value === 'object' && value !== null && typeof (value as { [DESCRIBE]?: unknown })[DESCRIBE] === 'function');
}

/** Method that gives an object's descriptor (a registered symbol: copies of the package agree). */
export const DESCRIBE: unique symbol = Symbol.for('multiprocessing-ts.cluster-descriptor') as never;

/** The error of a synchronous member a cluster object cannot have. */
export function notOverNetwork(what: string, asyncForm: string): ClusterError {
  return new ClusterError(
    `${what} does not exist on a cluster object: it would block the thread on a network round trip; use ${asyncForm}`,
  );
}

/** Checks a positive whole number of milliseconds option. */
export function checkMs(value: unknown, what: string, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new ValueError(`${what} must be a whole number of milliseconds of at least ${min}, got ${describe(value)}`);
  }
  return value;
}

/** Reads a cluster object's options object. */
export function objectOptions<T extends ClusterObjectOptions>(options: T | undefined, what: string): T {
  if (options === undefined) return {} as T;
  if (typeof options !== 'object' || options === null) throw new ValueError(`${what} options must be an object like { name }, got ${describe(options)}`);
  return options;
}

export abstract class ClusterObject {
  /** The name that finds it in Redis (random unless given). */
  readonly name: string;
  /** @internal */ readonly conn: ObjectClients;
  /** @internal The hash-tagged prefix of its keys. */
  readonly prefix: string;

  /**
   * @param keyKind the kind its keys are filed under (a subclass may share its parent's).
   * @param prefix @internal keys of its own elsewhere (a Value's lock lives under the Value's tag).
   */
  protected constructor(conn: ObjectClients, keyKind: string, name: string | undefined, prefix?: string) {
    this.conn = conn;
    this.name = name === undefined ? randomName() : checkName(name, `a cluster ${keyKind}'s`);
    this.prefix = prefix ?? objectKey(keyKind, this.name);
  }

  /** @internal Its kind, as descriptors name it. */
  abstract get kind(): ClusterKind;

  /** @internal What the other side needs besides kind and name. */
  protected settings(): Settings | undefined {
    return undefined;
  }

  /** @internal The descriptor stored in Redis in its place. */
  [DESCRIBE](): Descriptor {
    const settings = this.settings();
    return settings ? { kind: this.kind, name: this.name, settings } : { kind: this.kind, name: this.name };
  }

  /** @internal The handle that carries it to a child of this process tree. */
  [SHARED](): TreeHandle {
    const { connectTimeoutMs, redis } = this.conn.clients.options;
    const client: ClusterClientOptions = {
      ...(connectTimeoutMs === undefined ? {} : { connectTimeoutMs }),
      ...(redis === undefined ? {} : { redis }),
    };
    try {
      serialize(client);
    } catch (err) {
      throw new SerializationError(
        `a cluster ${this.kind} whose context has options that cannot be copied (${(err as Error).message}); ` +
          `in the child, make it by name instead: getContext(url, options).${this.kind}({ name: ${JSON.stringify(this.name)} })`,
      );
    }
    return { kind: 'cluster-object', url: this.conn.clients.url.href, client, object: this[DESCRIBE]() };
  }

  /** Runs one of its scripts; `late` gets a result that comes after the call was given up (connection.ts). */
  protected script(what: string, script: Script, keys: readonly string[], args: readonly (string | Buffer | number)[], late?: Late<unknown>): Promise<unknown> {
    return this.conn.script(`${this.kind}('${this.name}').${what}`, script, keys, args, late);
  }

  /**
   * Runs one of its change scripts (call-records.ts) with a call id of its
   * own, or `id` when the same change is tried again: a repeat of the call
   * (ioredis resending it after a dropped connection) answers as its first
   * run did. The id is marked answered once the answer came, also when it
   * comes late (to `late`). A change that ioredis aborted rather than
   * resent (a pipeline cut by a dropped connection: Redis may have run it)
   * is sent again with its id, which makes that safe; so is one a Redis
   * Cluster refused while its slot migrates (it did not run), for up to
   * SLOT_MOVING_MAX_MS.
   */
  /** The answered calls of its context in this process. */
  #answered(): AnsweredCalls {
    let answered = answeredBy.get(this.conn);
    if (!answered) answeredBy.set(this.conn, (answered = new AnsweredCalls()));
    return answered;
  }

  /** The record keys of this process's answered calls of it, forgotten here: `unlink()` deletes them with its keys. */
  protected answeredRecords(): string[] {
    return this.#answered().takeAll(this.prefix);
  }

  protected async change(
    what: string,
    script: ChangeScript,
    keys: readonly string[],
    args: readonly (string | Buffer | number)[],
    late?: Late<unknown>,
    callKey = this.newCallKey(),
  ): Promise<unknown> {
    const answered = this.#answered();
    if (keys.length !== script.ownKeys) throw new Error(`internal: ${script.name} takes ${script.ownKeys} keys, got ${keys.length}`);
    const started = performance.now();
    for (let tries = 1; ; tries++) {
      const forget = answered.take(this.prefix);
      try {
        const result = await this.script(what, script, [...keys, callKey, ...forget], [...args, forget.length], late && ((r) => {
          answered.add(this.prefix, [callKey]);
          return late(r);
        }));
        answered.add(this.prefix, [callKey]);
        return result;
      } catch (err) {
        answered.add(this.prefix, forget);
        if (abortedByClient(err) && tries < ABORT_TRIES) continue;
        // A slot in migration (Redis Cluster) refuses the call until its keys have moved: the same call again.
        if (slotMoving(err) && performance.now() - started < SLOT_MOVING_MAX_MS) {
          await new Promise((resolve) => setTimeout(resolve, SLOT_MOVING_PAUSE_MS));
          continue;
        }
        throw err;
      }
    }
  }

  /** A new call's record key (pass it to `change` to try one change again as the same call). */
  protected newCallKey(): string {
    return newCallKey(this.prefix);
  }

  /** Its keys, for `unlink()`. */
  protected abstract redisKeys(): string[];

  /**
   * Removes its keys from Redis: objects of this kind and name start anew
   * (a held lock is freed, queued items and values are gone). Objects are
   * not removed when their last handle goes: they are found by name, and
   * any process may attach later.
   */
  async unlink(): Promise<void> {
    const keys = [...this.redisKeys(), ...this.answeredRecords()];
    await this.conn.call(`${this.kind}('${this.name}').unlink()`, (redis) => redis.del(...keys));
  }

  toString(): string {
    return `<cluster ${this.kind} '${this.name}'>`;
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

registerShared('cluster-object', (h) => {
  const { url, client, object } = h as TreeHandle;
  if (!resolveClients) throw new ClusterError('a cluster object arrived before the package was loaded');
  return reviveDescriptor(object, ObjectClients.of(resolveClients(url, client)), 'a cluster object');
});
