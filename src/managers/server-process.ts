/**
 * The manager's server in a process of its own (`manager.start()`), and in
 * this process (`mp.serveManager()`, for a server in the foreground).
 *
 * `start()` runs a child (our `Process`, either start method, a daemon so
 * it never keeps its parent alive and ends with it) whose target travels
 * by source: it imports this very module by URL (dist/bundle/index.js when
 * bundled) and calls the function the module put on `globalThis`. So the
 * package exports nothing internal for it. In the child:
 *   1. import the modules that called `register` for the manager's class
 *      (their top-level registrations run again, giving the factories);
 *   2. run the initializer, if any (it follows the target rules);
 *   3. listen, and say where (or why not) over a one-way Pipe;
 *   4. serve until shut down.
 */
import { pathToFileURL } from 'node:url';
import { describe } from '../describe.js';
import { ValueError } from '../errors.js';
import type { Address } from '../connection/address.js';
import { authkeyBytes } from '../connection/auth.js';
import type { Connection } from '../connection/connection.js';
import { runtime } from '../runtime.js';
import { processAuthkey } from '../process/current.js';
import { importEntry } from '../process/import-entry.js';
import { resolveTarget } from '../process/child.js';
import type { TargetSpec } from '../process/target.js';
import { ManagerServer, type ServedType, servedTypes } from './server.js';
import { toWireError, type WireError } from './protocol.js';
import { findRegistration, registrationsOf, type Registration, type RegistrationSpec } from './typeids.js';

/** What the server process is told (it travels in the child's args). */
export interface ServerProcessConfig {
  readonly address: Address;
  /** base64 */
  readonly authkey: string;
  readonly registrations: readonly RegistrationSpec[];
  readonly initializer: TargetSpec | null;
  readonly maxFrame: number | undefined;
  readonly readTimeout: number | undefined;
  readonly handshakeTimeout: number | undefined;
  readonly maxArrayBytes: number | undefined;
  readonly keepalive: number | undefined;
}

/** What the server process answers once it listens, or could not. */
export type ServerReady = { readonly address: Address; readonly serverId: string } | { readonly error: WireError };

const MAIN = Symbol.for('multiprocessing-ts.manager-server-main');

/** This module's URL: what the server process imports. */
export const SERVER_MODULE_URL: string = import.meta.url;

/**
 * The server process's target, self-contained so that it travels by
 * source (anonymous, so no export of the entry script is taken for it).
 */
export const SERVER_TARGET = [
  (url: string, config: unknown, initargs: unknown, ready: unknown) =>
    import(url).then(() => (globalThis as any)[Symbol.for('multiprocessing-ts.manager-server-main')](config, initargs, ready)),
][0]!;

async function serveInChild(config: ServerProcessConfig, initargs: unknown[], ready: Connection): Promise<void> {
  let server: ManagerServer;
  try {
    // Ctrl-C reaches the whole process group; the parent shuts the server down (as Python's ignores SIGINT).
    if (runtime().child?.startMethod === 'process') process.on('SIGINT', () => {});
    const types = await typesInServer(config.registrations);
    if (config.initializer) {
      const initializer = await resolveTarget(config.initializer);
      await initializer(...initargs);
    }
    server = new ManagerServer({
      address: config.address,
      authkey: new Uint8Array(Buffer.from(config.authkey, 'base64')),
      types,
      maxFrame: config.maxFrame,
      readTimeout: config.readTimeout,
      handshakeTimeout: config.handshakeTimeout,
      maxArrayBytes: config.maxArrayBytes,
      keepalive: config.keepalive,
    });
    await server.listen();
  } catch (err) {
    await ready.send({ error: toWireError(err) } satisfies ServerReady).catch(() => {});
    ready.close();
    return;
  }
  await ready.send({ address: server.address!, serverId: server.id } satisfies ServerReady);
  ready.close();
  await server.serveForever();
}

(globalThis as Record<symbol, unknown>)[MAIN] = serveInChild;

/**
 * The typeids the server process serves: it imports the modules that
 * registered them (with the entry-import guard, as a child importing its
 * target's module), then finds the same registrations made again.
 */
async function typesInServer(specs: readonly RegistrationSpec[]): Promise<Map<string, ServedType>> {
  const files = [...new Set(specs.filter((s) => !s.builtin && s.file !== null).map((s) => s.file!))];
  const state = runtime();
  state.importingEntry = true;
  try {
    for (const file of files) await importEntry(pathToFileURL(file).href);
  } finally {
    state.importingEntry = false;
  }
  const found: Registration[] = [];
  for (const spec of specs) {
    const registration = findRegistration(spec);
    if (registration && (registration.factory || !spec.hasFactory)) {
      found.push(registration);
      continue;
    }
    if (spec.hasFactory) {
      throw new ValueError(
        `${spec.owner}.register('${spec.typeid}', …) in ${spec.file} did not run when the manager's server imported ` +
          `that module: call register at the top level of the module (outside the mp.isMainProcess() guard)`,
      );
    }
  }
  return servedTypes(found);
}

/** Checks `start()`'s registrations can reach the server process: a factory must come from a module file. */
export function checkReachable(registrations: Iterable<Registration>): void {
  for (const r of registrations) {
    if (r.factory && !r.builtin && r.file === null) {
      throw new ValueError(
        `${r.cls.name}.register('${r.typeid}', …) was called from code that has no file (node -e, the REPL), so the ` +
          `manager's server process cannot import it to get the factory; register it in a module file`,
      );
    }
  }
}

/** Options of `mp.serveManager()`. */
export interface ServeOptions {
  /** `[host, port]` (port 0: any free port) or a Unix socket path; default a Unix socket in a private directory. */
  address?: Address;
  /** Default `mp.currentProcess().authkey`. */
  authkey?: string | Uint8Array;
  /** The manager class whose typeids to serve (its registrations made in this process); default `SyncManager`. */
  managerClass?: Function;
  /** The largest frame accepted and sent (default 64 MiB). */
  maxMessageBytes?: number;
  /** Milliseconds a frame begun may go without a byte arriving (default 30,000). */
  readTimeout?: number;
  /** Milliseconds a client has for the authkey handshake (default 10,000). */
  handshakeTimeout?: number;
  /** The largest manager `Array` the server makes, in bytes of its elements (default 64 MiB). */
  maxArrayBytes?: number;
  /** Milliseconds after which a TCP client that stopped answering is dropped (default 30,000). */
  keepalive?: number;
}

/** The class `serveManager` uses when none is given (set by manager.ts, which imports this module). */
let defaultManagerClass: Function | null = null;

/** @internal */
export function setDefaultManagerClass(cls: Function): void {
  defaultManagerClass = cls;
}

/**
 * Serves a manager from this process until `server.shutdown()` (or a
 * client's shutdown request): binds the address, starts serving, and
 * resolves to the server once it listens. For a server in the foreground
 * (the CLI's `serve`, a machine that only serves).
 * @example
 * ```ts
 * const server = await mp.serveManager({ address: ['0.0.0.0', 50000], authkey: 'secret' });
 * console.log('serving at', server.address);
 * process.once('SIGINT', () => server.shutdown());
 * await server.stopped;
 * ```
 * @throws AddressInUseError when the address is taken; ValueError for bad options.
 */
export async function serveManager(options: ServeOptions = {}): Promise<ManagerServer> {
  if (options === null || typeof options !== 'object') {
    throw new ValueError(`serveManager() takes an options object { address?, authkey?, managerClass? }, not ${describe(options)}`);
  }
  const cls = options.managerClass ?? defaultManagerClass!;
  if (typeof cls !== 'function') throw new ValueError(`serveManager() managerClass must be a manager class, not ${describe(cls)}`);
  const server = new ManagerServer({
    address: options.address,
    authkey: authkeyBytes(options.authkey, 'serveManager()') ?? processAuthkey(),
    types: servedTypes(registrationsOf(cls).values()),
    maxFrame: checkSize(options.maxMessageBytes, 'maxMessageBytes'),
    readTimeout: checkMs(options.readTimeout, 'readTimeout'),
    handshakeTimeout: checkMs(options.handshakeTimeout, 'handshakeTimeout'),
    maxArrayBytes: checkSize(options.maxArrayBytes, 'maxArrayBytes'),
    keepalive: checkMs(options.keepalive, 'keepalive'),
  });
  await server.listen();
  void server.serveForever().catch(() => {});
  return server;
}

/** A byte size option, checked. */
export function checkSize(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1024) {
    throw new ValueError(`${name} must be a number of bytes >= 1024, not ${describe(value)}`);
  }
  return value;
}

/** A millisecond option, checked. */
export function checkMs(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !(value > 0)) throw new ValueError(`${name} must be a number of milliseconds > 0, not ${describe(value)}`);
  return value;
}
