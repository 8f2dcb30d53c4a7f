/**
 * `BaseManager`, `SyncManager` and `mp.Manager()`: Python's managers.
 *
 * A manager either starts a server process (`start()`) or connects to one
 * that runs elsewhere (`connect()`), on this machine or another. Its typeid
 * methods (`manager.list()`, or `manager.Maths()` after `register('Maths',
 * …)`) make an object in the server and resolve to a proxy for it.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { authkeyBytes } from '../connection/auth.js';
import { privateSocketPath, socketOptions, type Address } from '../connection/address.js';
import { describe } from '../describe.js';
import { EOFError, ProcessError, StateError, ValueError } from '../errors.js';
import { ExitStage, atExit } from '../finalize.js';
import { callerFile } from '../caller-file.js';
import { Pipe } from '../connection/pipe-transport.js';
import { processClassFor } from '../process/context.js';
import { processAuthkey } from '../process/current.js';
import type { Process } from '../process/process.js';
import { getStartMethod, validateStartMethod, type StartMethod } from '../process/start-method.js';
import { describeTarget } from '../process/target.js';
import { ManagerClient, remoteError, type ClientSettings } from './client.js';
import { BaseProxy, makeProxy } from './proxy.js';
import { ManagerServer, servedTypes } from './server.js';
import {
  SERVER_MODULE_URL,
  SERVER_TARGET,
  checkMs,
  checkReachable,
  checkSize,
  type ServerProcessConfig,
  type ServerReady,
} from './server-process.js';
import { addRegistration, makeRegistration, registrationsOf, specOf, type RegisterOptions } from './typeids.js';

/** Options of a manager. */
export interface ManagerOptions {
  /**
   * Where the server listens (`start()`) or is (`connect()`): `[host, port]`
   * for TCP (`['0.0.0.0', 50000]` to be reached from other machines; port 0
   * for any free port) or a Unix socket path. Default (for `start()`): a
   * Unix socket in a private directory.
   */
  address?: Address;
  /** The key both sides prove they know (HMAC-SHA256, both ways); default `mp.currentProcess().authkey`. */
  authkey?: string | Uint8Array;
  /** The start method of the server process (default: the current one). */
  startMethod?: StartMethod;
  /** The largest message accepted and sent on its connections (default 64 MiB). */
  maxMessageBytes?: number;
  /** Milliseconds a message begun may go without a byte arriving at the server (default 30,000). */
  readTimeout?: number;
  /** Milliseconds for the authkey handshake, and for the server's greeting after it (default 10,000). */
  handshakeTimeout?: number;
  /** The largest manager `Array` the server makes, in bytes of its elements (default 64 MiB; a server you `start()` or `getServer()`). */
  maxArrayBytes?: number;
  /**
   * Milliseconds after which a TCP peer that stopped answering (a machine
   * powered off or cut from the network, which sends no end) is given up:
   * the client's calls reject with `EOFError`, the server drops the client
   * (its references and locks). TCP keepalive probes; without the native
   * addon only when they start is set, and the system's defaults decide the
   * rest (Linux: some 11 minutes). Default 30,000.
   */
  keepalive?: number;
}

/** Options of `start()`. */
export interface ManagerStartOptions {
  /** Runs in the server process before it serves (Python's `initializer`); follows the rules of a Process target. */
  initializer?: (...args: any[]) => unknown;
  /** The initializer's arguments (proxies and shared objects arrive live). */
  initargs?: unknown[];
  /** The module that exports `initializer`, when it is not the entry script. */
  module?: string | URL;
}

/** Python's `_finalize_manager`: a server that does not end on request is terminated after this long. */
const SHUTDOWN_GRACE = 1000;

type State = 'initial' | 'starting' | 'started' | 'connected' | 'shutdown';

/**
 * A manager: a server process for objects, and proxies to them (Python's
 * `multiprocessing.managers.BaseManager`). Subclass it and `register`
 * typeids to serve your own classes.
 * @example
 * ```ts
 * export class Maths { add(a: number, b: number) { return a + b; } }
 * export class MyManager extends mp.BaseManager {
 *   declare Maths: () => Promise<mp.Proxy<Maths>>;
 * }
 * MyManager.register('Maths', Maths);          // at the top level of a module
 *
 * if (mp.isMainProcess()) {
 *   const manager = new MyManager();
 *   await manager.start();
 *   const maths = await manager.Maths();
 *   console.log(await maths.add(1, 2));       // 3, computed in the server
 *   await manager.shutdown();
 * }
 * ```
 */
export class BaseManager {
  #state: State = 'initial';
  #address: Address | null;
  readonly #key: Uint8Array;
  readonly #options: ManagerOptions;
  #process: Process | null = null;
  #client: ManagerClient | null = null;
  /** Removes the server's socket path (and the private directory) if the server did not. */
  #cleanup: (() => void) | null = null;

  constructor(options: ManagerOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new ValueError(`${new.target.name} takes an options object { address?, authkey?, startMethod? }, not ${describe(options)}`);
    }
    if (options.address !== undefined) socketOptions(options.address, new.target.name);
    if (options.startMethod !== undefined) validateStartMethod(options.startMethod);
    checkSize(options.maxMessageBytes, 'maxMessageBytes');
    checkMs(options.readTimeout, 'readTimeout');
    checkMs(options.handshakeTimeout, 'handshakeTimeout');
    checkSize(options.maxArrayBytes, 'maxArrayBytes');
    checkMs(options.keepalive, 'keepalive');
    this.#options = { ...options };
    this.#address = options.address ?? null;
    this.#key = authkeyBytes(options.authkey, new.target.name) ?? processAuthkey();
  }

  /**
   * Registers a typeid (Python's `register`): `factory` makes the object
   * in the server (a class is called with `new`, a function plainly; no
   * factory: a typeid the server you `connect()` to makes), and the manager
   * gets a method of that name resolving to a proxy. Call it at the top
   * level of a module, outside `mp.isMainProcess()`: the server process
   * imports that module to find the factory.
   * @throws ValueError for a bad typeid or options.
   */
  static register(typeid: string, factory?: Function | null, options?: RegisterOptions): void {
    const file = callerFile(BaseManager.register);
    const registration = makeRegistration(this, typeid, factory, options, file, (name) => name in BaseManager.prototype || name in Object.prototype);
    addRegistration(registration);
    if (registration.createMethod) {
      Object.defineProperty(this.prototype, typeid, {
        value(this: BaseManager, ...args: unknown[]) {
          return this.create(typeid, ...args);
        },
        writable: true,
        configurable: true,
      });
    }
  }

  /** Where the server listens (the real port after port 0); null before `start()`/`connect()` without an address. */
  get address(): Address | null {
    return this.#address;
  }

  /** The server process's pid once started (Python's `manager._process.pid`); null for a manager that only connected. */
  get pid(): number | null {
    return this.#process?.pid ?? null;
  }

  /**
   * Starts the server in a process of its own (a daemon child: it never
   * keeps this process alive and ends with it) and resolves once it
   * listens.
   * @throws StateError when already started or connected; AddressInUseError when the address is taken;
   *   ValueError for bad options or typeids the server cannot reach; the initializer's error.
   */
  async start(options: ManagerStartOptions = {}): Promise<void> {
    this.#mustBeInitial('start');
    if (options === null || typeof options !== 'object') {
      throw new ValueError(`start() takes an options object { initializer?, initargs? }, not ${describe(options)}`);
    }
    const { initializer, initargs = [] } = options;
    if (initializer !== undefined && typeof initializer !== 'function') {
      throw new ValueError(`start() initializer must be a function, not ${describe(initializer)}`);
    }
    if (!Array.isArray(initargs)) throw new ValueError(`start() initargs must be an array, not ${describe(initargs)}`);
    const registrations = registrationsOf(this.constructor);
    checkReachable(registrations.values());
    const own = this.#options.address === undefined ? privateSocketPath() : null;
    const address = own?.path ?? this.#options.address!;
    const config: ServerProcessConfig = {
      address,
      authkey: Buffer.from(this.#key).toString('base64'),
      registrations: [...registrations.values()].map(specOf),
      initializer: initializer ? describeTarget(initializer, options.module, 'initializer') : null,
      maxFrame: this.#options.maxMessageBytes,
      readTimeout: this.#options.readTimeout,
      handshakeTimeout: this.#options.handshakeTimeout,
      maxArrayBytes: this.#options.maxArrayBytes,
      keepalive: this.#options.keepalive,
    };
    this.#state = 'starting';
    const [reader, writer] = Pipe(false);
    let ready: ServerReady;
    let child: Process | null = null;
    try {
      const Proc = processClassFor(this.#options.startMethod ?? getStartMethod());
      child = new Proc({ target: SERVER_TARGET, args: [SERVER_MODULE_URL, config, initargs, writer], daemon: true });
      child.name = `${this.constructor.name}-${child.name.replace(/^Process-/, '')}`;
      child.start();
      writer.close();
      try {
        ready = (await reader.recv()) as ServerReady;
      } catch (err) {
        if (!(err instanceof EOFError)) throw err;
        await child.join(SHUTDOWN_GRACE);
        throw new ProcessError(
          `the manager's server process ended before it listened (exit code ${child.exitCode}); its error, if any, is on stderr`,
        );
      }
      if ('error' in ready) throw remoteError(ready.error);
    } catch (err) {
      this.#state = 'initial';
      writer.close();
      if (child?.isAlive()) child.kill();
      own?.remove();
      throw err;
    } finally {
      reader.close();
    }
    this.#process = child;
    this.#address = ready.address;
    this.#cleanup = own ? own.remove : typeof address === 'string' ? removeSocketLater(address) : null;
    this.#client = ManagerClient.for(ready.address, this.#key, this.#settings());
    this.#state = 'started';
  }

  /**
   * Connects to a server that runs elsewhere (started by another manager,
   * `getServer().serveForever()`, `mp.serveManager()` or the CLI), checking
   * the key both ways.
   * @throws AuthenticationError for a wrong key; FileNotFoundError / ProcessError (ECONNREFUSED) when nothing listens there.
   */
  async connect(): Promise<void> {
    this.#mustBeInitial('connect');
    if (this.#address === null) throw new ValueError(`${this.constructor.name}.connect() needs the server's address: new ${this.constructor.name}({ address, authkey })`);
    this.#state = 'starting';
    const client = ManagerClient.for(this.#address, this.#key, this.#settings());
    try {
      await client.open();
    } catch (err) {
      this.#state = 'initial';
      throw err;
    }
    this.#client = client;
    this.#state = 'connected';
  }

  /**
   * Makes an object of `typeid` in the server and resolves to its proxy
   * (Python's `_create` and the proxy around it); the typeid methods call it.
   * @throws ValueError for a typeid the server does not make; the factory's error.
   */
  async create(typeid: string, ...args: unknown[]): Promise<BaseProxy> {
    const client = this.#live('create');
    const preferred = registrationsOf(this.constructor).get(typeid)?.proxytype;
    const description = await client.create(typeid, args);
    return makeProxy(client, description, client.serverId!, preferred === 'AutoProxy' ? undefined : preferred);
  }

  /**
   * Ends the server process (asks it, then terminates it if it has not
   * ended within a second, as Python does) and removes its socket; this
   * manager's proxies then reject at once. Nothing to do before `start()`;
   * idempotent.
   * @throws StateError for a manager that only connected (the server is not its to end).
   */
  async shutdown(): Promise<void> {
    if (this.#state === 'connected') {
      throw new StateError(
        `${this.constructor.name}.shutdown(): this manager connected to a server it did not start; ` +
          `the manager that started it (or the process serving it) shuts it down`,
      );
    }
    if (this.#state !== 'started') return;
    this.#state = 'shutdown';
    const client = this.#client!;
    try {
      await withTimeout(client.shutdownServer(), SHUTDOWN_GRACE);
    } catch {
      // Gone already, or not answering: it is ended below either way.
    }
    client.shutDown(new StateError(`the manager was shut down (its server at ${JSON.stringify(this.#address)} is gone); its proxies no longer work`));
    const child = this.#process!;
    await child.join(SHUTDOWN_GRACE);
    if (child.isAlive()) {
      child.terminate();
      await child.join(SHUTDOWN_GRACE);
    }
    if (child.isAlive()) {
      child.kill();
      await child.join();
    }
    this.#cleanup?.();
    this.#cleanup = null;
  }

  /** Waits for the server process to end (after `shutdown()`, or when it ends otherwise). */
  async join(timeoutMs?: number): Promise<void> {
    if (!this.#process) throw new StateError(`${this.constructor.name}.join(): the manager has no server process (it was not started)`);
    await this.#process.join(timeoutMs);
  }

  /**
   * The server of this manager's typeids, to run in this process: `await
   * server.serveForever()` serves until a client asks it to shut down (or
   * `server.shutdown()`); `await server.listen()` first binds and makes
   * `server.address` the real one (after port 0).
   */
  getServer(): ManagerServer {
    return new ManagerServer({
      address: this.#options.address,
      authkey: this.#key,
      types: servedTypes(registrationsOf(this.constructor).values()),
      maxFrame: this.#options.maxMessageBytes,
      readTimeout: this.#options.readTimeout,
      handshakeTimeout: this.#options.handshakeTimeout,
      maxArrayBytes: this.#options.maxArrayBytes,
      keepalive: this.#options.keepalive,
    });
  }

  /** The server's counts, for tests and debugging: objects with live proxies (or handles in flight), connections… */
  async debugInfo(): Promise<{ objects: number; tickets: number; waiting: number; connections: number; refused: number }> {
    return (await this.#live('debugInfo').info()) as { objects: number; tickets: number; waiting: number; connections: number; refused: number };
  }

  /** `shutdown()` for a manager that started its server; nothing for one that connected. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === 'started') await this.shutdown();
  }

  #mustBeInitial(call: string): void {
    if (this.#state === 'initial') return;
    const what = { starting: 'is starting', started: 'was started', connected: 'is connected', shutdown: 'was shut down' }[this.#state];
    throw new StateError(`${this.constructor.name}.${call}(): the manager ${what} already; use a new manager`);
  }

  #live(call: string): ManagerClient {
    if (this.#state === 'started' || this.#state === 'connected') return this.#client!;
    if (this.#state === 'shutdown') throw new StateError(`${call}(): the manager was shut down`);
    throw new StateError(`${this.constructor.name}.${call}(): start() or connect() the manager first`);
  }

  #settings(): ClientSettings {
    return { maxFrame: this.#options.maxMessageBytes, handshakeTimeout: this.#options.handshakeTimeout, keepalive: this.#options.keepalive };
  }
}

/** A Unix socket path a started server listens on, removed at shutdown or exit if the server left it (it was killed). */
function removeSocketLater(path: string): () => void {
  const remove = (): void => {
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
    } catch {
      // Gone already.
    }
  };
  const cancel = atExit(ExitStage.Tree, remove);
  return () => {
    cancel();
    remove();
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A proxy of a registered class: each of its methods, async (Python's AutoProxy). */
export type Proxy<T> = BaseProxy & {
  [K in keyof T as T[K] extends (...args: any[]) => unknown ? K : never]: T[K] extends (...args: infer A) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never;
};
