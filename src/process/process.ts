/**
 * `Process`: Python's `multiprocessing.Process` for Node.js.
 */
import { StateError, ValueError } from '../errors.js';
import { runtime, type ChildIdentity } from '../runtime.js';
import { workerThreads } from '../builtins.js';
import { treeDir } from '../shm/tree.js';
import { openChildLedger } from '../shm/settle.js';
import type { TakenOver } from '../shm/ledger.js';
import { native } from '../native/addon.js';
import { describe } from '../describe.js';
import { resolveFromCaller } from '../caller-file.js';
import { describeClass, describeTarget, entryPath, type TargetSpec } from './target.js';
import { getStartMethod, validateStartMethod, type StartMethod } from './start-method.js';
import { launchProcess, offerProcessSpare, popenProcess, type ProcessLaunch } from './popen-process.js';
import { launchThread, offerThreadSpare, popenThread, type ThreadLaunch } from './popen-thread.js';
import type { ChildSpec, InstanceSpec, Launch, Popen } from './popen.js';
import { liveChildren } from './registry.js';
import { childChain } from './import-entry.js';
import { tsxApi } from './tsx.js';
import { REVIVE, instancePath, ownFields } from './subclass.js';
import { Payload } from './payload.js';
import { checkedAuthkey, processAuthkey, setProcessAuthkey } from './current.js';

/** Options every `Process` takes; a subclass that overrides `run()` may pass only these to `super()`. */
export interface ProcessBaseOptions {
  /** Default `Process-N`. */
  name?: string;
  /** A daemon child is ended when its parent exits and may not start children. */
  daemon?: boolean;
  /**
   * The module that exports `target` (or the subclass) when it is not the
   * entry script: a URL (e.g. `import.meta.url`, or a `file:` URL string)
   * or a path. A relative path (`'./lib.js'`, `'lib/work.js'`) is read from
   * the directory of the file whose code passes it, as a relative `import`
   * is, not from the working directory: the file that calls
   * `new Process(…)`, or, for a subclass, the file of the constructor that
   * calls `super({ module })` (a subclass without a constructor of its own,
   * or with one that only forwards its arguments, `super(...args)`, as
   * compilers write for field initialisers, passes it over: then it is the
   * file that calls `new`). Under tsx that
   * file is the `.ts` source, so name the module as an import from it
   * would (`'./lib.js'` for `lib.ts`). Where that code has no file (`node -e`,
   * the REPL), a relative path is read from the working directory.
   */
  module?: string | URL;
}

/** Options of `new Process(…)`; `args` is checked against `target`'s parameters. */
export interface ProcessOptions<F extends (...args: any[]) => unknown> extends ProcessBaseOptions {
  /** The function the child runs: an export of the entry script (or of `module`), or a self-contained function. */
  target: F;
  /** Its arguments; shared objects anywhere inside arrive live, the rest is copied. */
  args?: Parameters<F>;
}

/** The shape shared by `Process`, `currentProcess()` and `parentProcess()`. */
export interface ProcessLike {
  readonly name: string;
  readonly pid: number | null;
  readonly threadId: number | null;
  readonly daemon: boolean;
  readonly exitCode: number | null;
  isAlive(): boolean;
  /** The key its managers and their proxies authenticate with by default (Python's `authkey`); a copy. */
  readonly authkey: Uint8Array;
}

const GUARD_MESSAGE =
  'a child process tried to start another child from code that its import of the entry module ran ' +
  '(the entry script\'s top level, or async work it left running, such as an unguarded `main()`): ' +
  'the entry script starts children outside its main-process guard. Guard that code with ' +
  '`if (mp.isMainProcess()) { … }` (Python\'s `if __name__ == "__main__":`), ' +
  'so children importing the script for its exports do not run it';

const OUTSIDE_TARGET_MESSAGE =
  'a child process may start children only from its target (the target function, what it awaits, ' +
  'and the timers and ticks it schedules); this start() runs outside that chain. If it comes from the ' +
  'entry script\'s own code, guard that code with `if (mp.isMainProcess()) { … }`; if it comes from an ' +
  'event-emitter or callback-style API inside the target, use its promise form (e.g. `await once(emitter, ' +
  '\'event\')`, `node:fs/promises`), which keeps the target\'s chain';

/** What a `Process` keeps for itself: out of its enumerable fields, so a subclass's fields are only the user's. */
interface ProcessState {
  target: Function | null;
  args: unknown[];
  readonly module: string | URL | undefined;
  readonly identity: number[];
  name: string;
  daemon: boolean;
  popen: Popen | null;
  code: number | null;
  closed: boolean;
  /** This object is the running child itself: a subclass instance rebuilt in it. */
  readonly self: boolean;
  /** The child's authkey when set on this object, and from `start()` on the one it got; null before: the current process's. */
  authkey: Uint8Array | null;
  /** The child's V8 old-generation heap limit in MiB (`limitHeap`); null: V8's default. */
  heapLimitMb?: number | null;
  /** A child launched before this object was made, that `start()` hands the spec to (`adoptLaunch`). */
  launch?: Launch | null;
  /** Once the child has ended: what its ledger said it took over from a pool unit's arguments (`takenOverBy`). */
  takenOver?: TakenOver | null | undefined;
}

const states = new WeakMap<object, ProcessState>();

function stateOf(p: object): ProcessState {
  const state = states.get(p);
  if (!state) throw new StateError('this Process was not constructed (a subclass constructor must call super())');
  return state;
}

/**
 * The state of a process object that is not closed. (Module functions, not
 * methods: a subclass's own methods must not be able to shadow them.)
 */
function openState(p: object): ProcessState {
  const state = stateOf(p);
  if (state.closed) throw new StateError(`process object ${state.name} is closed`);
  return state;
}

/** The running child's own instance cannot end itself through it (Python's cannot either). */
function refuseSelf(state: ProcessState, what: string): void {
  if (state.self) {
    throw new StateError(
      `${state.name} is the running process itself; it cannot ${what} itself through its Process object (use process.exit())`,
    );
  }
}

/**
 * A child running `target(...args)` in its own process (or thread), as
 * Python's `multiprocessing.Process`.
 *
 * Or subclass it and override `run()`, Python's other idiom: the subclass
 * must be exported by the entry script (or by the module passed as
 * `module` to `super()`), because the child imports it. The child rebuilds
 * the instance without running its constructor (which may have side
 * effects, and whose arguments are gone): it creates it from the class's
 * prototype and sets the instance's own enumerable fields, which travel as
 * `args` do (shared objects arrive live; a field that cannot be copied is
 * refused at `start()`, named as in `worker.conn`). Symbol-keyed
 * properties stay behind; a class with private members (`#x`) is refused
 * at `start()`, since only a constructor can make them. `run()` may be async; in the child,
 * `name`, `pid`, `daemon` and `mp.currentProcess()` (the instance itself)
 * are the child's, and `run()` may start children as a target may.
 * @example
 * ```ts
 * export function work(n: number) { console.log(n * n); }
 * if (mp.isMainProcess()) {
 *   const p = new mp.Process({ target: work, args: [7] });
 *   p.start();
 *   await p.join();
 *   console.log(p.exitCode); // 0
 * }
 * ```
 * @example
 * ```ts
 * export class Counter extends mp.Process {
 *   constructor(readonly total: mp.Value, readonly times: number) { super(); }
 *   override async run() { for (let i = 0; i < this.times; i++) await this.total.getLock().withLock(() => void this.total.value++); }
 * }
 * if (mp.isMainProcess()) {
 *   const c = new Counter(mp.Value('i', 0), 5);
 *   c.start();
 *   await c.join();
 *   console.log(c.total.value); // 5
 * }
 * ```
 */
export class Process<F extends (...args: any[]) => unknown = (...args: any[]) => unknown> implements ProcessLike {
  /** @internal The start method of the context that made this class. */
  protected startMethod(): StartMethod {
    return getStartMethod();
  }

  constructor(options: ProcessOptions<F>);
  /** For a subclass that overrides `run()`: no target needed. */
  constructor(options?: ProcessBaseOptions);
  constructor(options: ProcessOptions<F> | ProcessBaseOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new ValueError('new Process() takes an options object: { target, args?, name?, daemon?, module? }');
    }
    const { target, args } = options as Partial<ProcessOptions<F>>;
    if (target === undefined && new.target.prototype.run === Process.prototype.run) {
      throw new ValueError(
        'new Process() needs a target: { target: fn } (the function the child runs), unless a subclass overrides run()',
      );
    }
    if (target !== undefined && typeof target !== 'function') describeTarget(target, undefined);
    if (args !== undefined && !Array.isArray(args)) {
      throw new ValueError(`args must be an array of arguments, not ${typeof args}`);
    }
    const state = runtime();
    const n = ++state.processCounter;
    const identity = [...(state.child?.identity ?? []), n];
    states.set(this, {
      target: target ?? null,
      args: args ?? [],
      module: moduleOption(options.module, new.target),
      identity,
      name: options.name ?? `Process-${identity.join(':')}`,
      daemon: options.daemon ?? state.child?.daemon ?? false,
      popen: null,
      code: null,
      closed: false,
      self: false,
      authkey: null,
    });
  }

  /**
   * @internal A child's rebuilt subclass instance becomes the running
   * process (subclass.ts): its name, daemon flag and pid are the child's.
   */
  [REVIVE](target: Function | null, args: unknown[]): void {
    const state = runtime();
    const child = state.child!;
    states.set(this, {
      target,
      args,
      module: undefined,
      identity: [...child.identity],
      name: child.name,
      daemon: child.daemon,
      popen: null,
      code: null,
      closed: false,
      self: true,
      authkey: null,
    });
    state.currentProcess = this;
  }

  get name(): string {
    return openState(this).name;
  }
  set name(value: string) {
    openState(this).name = String(value);
  }

  get daemon(): boolean {
    return openState(this).daemon;
  }
  set daemon(value: boolean) {
    const state = openState(this);
    if (state.popen || state.self) throw new StateError('daemon cannot be changed after start()');
    state.daemon = Boolean(value);
  }

  /**
   * The child's authkey (Python's `Process.authkey`): by default the
   * current process's (`mp.currentProcess().authkey`), inherited at
   * `start()`; set it before `start()` to give the child another. A copy.
   */
  get authkey(): Uint8Array {
    const state = openState(this);
    return state.self ? processAuthkey() : (state.authkey ?? processAuthkey()).slice();
  }
  set authkey(key: Uint8Array) {
    const state = openState(this);
    if (state.self) setProcessAuthkey(key);
    else if (state.popen) throw new StateError('authkey cannot be changed after start()');
    else state.authkey = checkedAuthkey(key);
  }

  /** The OS process id (a thread child shares its parent's); null before `start()`. */
  get pid(): number | null {
    const state = openState(this);
    return state.self ? process.pid : (state.popen?.pid ?? null);
  }

  /** The worker thread id of a `'thread'` child (0 for a process child); null before `start()`. */
  get threadId(): number | null {
    const state = openState(this);
    return state.self ? workerThreads().threadId : (state.popen?.threadId ?? null);
  }

  /** null while running or not started; 0 ok; 1 the target (or `run()`) threw; n from `process.exit(n)`; -N killed by signal N. */
  get exitCode(): number | null {
    return openState(this).code;
  }

  /**
   * What the child runs: by default `target(...args)`, as Python's `run()`.
   * Override it in a subclass (sync or async); an override may call
   * `super.run()` to run the target too. Called here, it runs in this process.
   */
  run(): unknown {
    const state = stateOf(this);
    return state.target?.(...state.args);
  }

  /**
   * Starts the child. Synchronous, like Python's: the child is on its way
   * when this returns.
   * @throws StateError when called twice, in a daemon, or during a child's import of an unguarded entry script.
   * @throws ValueError / SerializationError when the target, the subclass, its fields or args cannot travel (nothing is started).
   */
  start(): void {
    const self = openState(this);
    if (self.self) throw new StateError(`${self.name} is the running process itself; only its parent can start it`);
    if (self.popen) throw new StateError(`cannot start a process twice (${self.name} was started already)`);
    checkMayStart();
    const method = validateStartMethod(this.startMethod());
    // A subclass's run() runs in the child on an instance rebuilt there; one
    // that keeps Process's run() only needs its target.
    const cls = this.run === Process.prototype.run ? null : (this.constructor as Function);
    const classSpec = cls ? describeClass(cls, self.module, Process) : null;
    const target: TargetSpec | null = self.target ? targetOf(self.target, self.module, cls !== null) : null;
    const payload = new Payload(method);
    const authkey = self.authkey ?? processAuthkey();
    let ledger: ReturnType<typeof openChildLedger> | null = null;
    try {
      const args = payload.add(self.args, 'args', self.args.length === 0);
      let instance: InstanceSpec | null = null;
      if (cls && classSpec) {
        const fields = ownFields(this);
        instance = { cls: classSpec, fields: payload.add(fields, instancePath(cls.name), Object.keys(fields).length === 0) };
      }
      // What the child is handed (one reference in flight each) opens its ledger.
      const tree = native() ? treeDir() : null;
      ledger = tree ? openChildLedger(self.identity.at(-1)!, method, payload.segments()) : null;
      const identity: ChildIdentity = {
        name: self.name,
        identity: self.identity,
        daemon: self.daemon,
        parent: { name: currentName(), pid: process.pid, threadId: workerThreads().threadId },
        startMethod: method,
        treeDir: tree,
        ledger: ledger?.id ?? null,
        entryPath: entryPath(),
        tsxApi: tsxApi(),
        argv: process.argv.slice(1),
        authkey: Buffer.from(authkey).toString('base64'),
      };
      const spec: ChildSpec = { identity, target, args, instance };
      const limits = self.heapLimitMb ? { heapLimitMb: self.heapLimitMb } : undefined;
      const launched = self.launch?.method === method && self.launch.limits?.heapLimitMb === limits?.heapLimitMb ? self.launch : null;
      if (method === 'process') {
        self.popen = popenProcess(spec, (pid) => ledger?.handed(pid), limits, (launched as ProcessLaunch | null) ?? undefined);
      } else {
        ledger?.handed();
        self.popen = popenThread(spec, limits, (launched as ThreadLaunch | null) ?? undefined);
      }
      // A launch that did not fit (another method or limit) was not used.
      self.launch?.end();
      self.launch = null;
    } catch (err) {
      self.launch?.end();
      self.launch = null;
      ledger?.discard();
      payload.abandon();
      // A worker's clone of its data refuses what v8.serialize would have.
      throw (err as Error)?.name === 'DataCloneError' ? payload.cloneError(err as Error) : err;
    }
    const popen = self.popen;
    const receiverEnded = payload.whenReceiverEnds();
    // The key the child got: a later change of this process's key is not the child's.
    self.authkey = authkey;
    if (self.daemon) popen.setRef(false);
    // As Python's start(): the child has its arguments; a Process kept for
    // join() must not keep their shared memory mapped here.
    self.args = [];
    liveChildren.add(this);
    void popen.exited.then((code) => {
      // Nothing of the child runs any more: give back what it still held.
      const replayed = ledger ? ledger.settle() : null;
      self.takenOver = replayed ? replayed.takenOver : undefined;
      receiverEnded();
      self.code = code;
      liveChildren.delete(this);
    });
  }

  /**
   * Waits until the child ends, or `timeoutMs` passes (then check `exitCode`).
   * @throws StateError when the process was never started.
   */
  async join(timeoutMs?: number): Promise<void> {
    const self = openState(this);
    if (self.self) throw new StateError(`${self.name} is the running process itself; a process cannot join itself`);
    if (!self.popen) throw new StateError(`can only join a started process (${self.name} was not started)`);
    if (self.code !== null) return;
    const popen = self.popen;
    // A daemon does not keep us alive, but whoever joins it waits, as in Python.
    if (self.daemon) popen.setRef(true);
    let timer: NodeJS.Timeout | undefined;
    try {
      if (timeoutMs === undefined || timeoutMs === Infinity) {
        await popen.exited;
      } else {
        await Promise.race([
          popen.exited,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, Math.max(0, timeoutMs));
          }),
        ]);
      }
    } finally {
      clearTimeout(timer);
      if (self.daemon) popen.setRef(false);
    }
    // The exit handler runs on the same promise; let it record the code.
    await Promise.resolve();
  }

  /** True from `start()` until the child has ended. */
  isAlive(): boolean {
    const self = openState(this);
    return self.self || (self.popen !== null && self.code === null);
  }

  /** Asks the child to end (SIGTERM; a thread child is stopped). Exit code -15. */
  terminate(): void {
    const self = openState(this);
    refuseSelf(self, 'terminate');
    if (self.popen && self.code === null) self.popen.terminate();
  }

  /** Ends the child at once (SIGKILL). Exit code -9. */
  kill(): void {
    const self = openState(this);
    refuseSelf(self, 'kill');
    if (self.popen && self.code === null) self.popen.kill();
  }

  /**
   * Releases the object; afterwards every member but `close()` throws.
   * @throws StateError while the child is still running.
   */
  close(): void {
    const self = stateOf(this);
    if (self.closed) return;
    if (self.popen && self.code === null) {
      throw new StateError(`cannot close ${self.name} while it is still running; join() or terminate() it first`);
    }
    self.closed = true;
    self.popen = null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const self = stateOf(this);
    if (self.popen && self.code === null) await this.join();
    this.close();
  }

  toString(): string {
    const self = stateOf(this);
    const state = self.closed
      ? 'closed'
      : self.self
        ? 'started'
        : !self.popen
          ? 'initial'
          : self.code === null
            ? 'started'
            : `stopped exitcode=${self.code}`;
    return `<Process name='${self.name}' ${state}${self.daemon ? ' daemon' : ''}>`;
  }
}

/**
 * How the target travels. For a subclass that overrides `run()`, `module`
 * names the class's module; its target may come from elsewhere (the entry,
 * or by source), so that is tried first and `module` only after.
 */
function targetOf(target: Function, module: string | URL | undefined, forSubclass: boolean): TargetSpec {
  if (!forSubclass || module === undefined) return describeTarget(target, module);
  try {
    return describeTarget(target, undefined);
  } catch {
    return describeTarget(target, module);
  }
}

/**
 * The `module` option with a relative path made absolute where the caller
 * means it (see `ProcessBaseOptions.module`). Read at construction: the
 * caller is on the stack only then.
 */
function moduleOption(module: unknown, cls: Function): string | URL | undefined {
  if (module === undefined || module instanceof URL) return module;
  if (typeof module !== 'string' || module === '') {
    throw new ValueError(
      `module is ${describe(module)}; pass the module that exports the target as a URL (e.g. import.meta.url) or a path`,
    );
  }
  if (/^(file|data|node):/.test(module)) return module;
  // The classes between Process and the one constructed: their constructor frames come first.
  const subclasses: Function[] = [];
  for (let c = cls; c !== Process && typeof c === 'function'; c = Object.getPrototypeOf(c)) subclasses.unshift(c);
  return resolveFromCaller(module, Process, subclasses);
}

/** Where a child may not be started from: a child's import of the entry, outside its target's chain, or a daemon. */
function checkMayStart(): void {
  const state = runtime();
  if (state.importingEntry) throw new StateError(GUARD_MESSAGE);
  if (state.child) {
    const chain = childChain();
    if (chain !== 'target') throw new StateError(chain === 'import' ? GUARD_MESSAGE : OUTSIDE_TARGET_MESSAGE);
  }
  if (state.child?.daemon) throw new StateError('daemonic processes are not allowed to have children');
}

function currentName(): string {
  return runtime().child?.name ?? 'MainProcess';
}

/**
 * @internal For the pool's workers: caps the child's V8 old-generation heap
 * at `mb` MiB (`--max-old-space-size` for a process, `resourceLimits` for a
 * thread), so a runaway allocation ends that child (exit code -6, as V8's
 * abort gives a process) instead of growing without bound. Before `start()`.
 */
export function limitHeap(p: Process, mb: number): void {
  const self = openState(p);
  if (self.popen) throw new StateError('limitHeap() must come before start()');
  self.heapLimitMb = mb;
}

/**
 * @internal For the pool's workers: launches a child of `method` now,
 * before the `Process` that will run in it exists (popen.ts `Launch`), so
 * that it boots while the caller makes its arguments (shared memory, and
 * the tree's directory and reaper on first use). Give it to that Process
 * with `adoptLaunch` before `start()`; `end()` it if it is not used.
 *
 * Under tsx a start makes warm spares for later starts (spares.ts); one of
 * a launched child does not, as spares booting beside the launched
 * children would compete with them for the CPU (measured: a first pool's
 * start under tsx took twice as long). Call `offerSpares` once they are up.
 *
 * `threadEntry`: for a `'thread'` child, a module that starts the thread
 * itself as the bootstrap would (process/thread-child.ts), and that the
 * child's target will be imported from: the thread is launched on it, one
 * module load fewer (see `launchThread`).
 * @throws StateError where `start()` would refuse to start a child (nothing is launched).
 */
export function launchChild(method: StartMethod, heapLimitMb?: number, threadEntry?: URL): Launch {
  checkMayStart();
  const limits = heapLimitMb ? { heapLimitMb } : undefined;
  return method === 'process' ? launchProcess(limits) : launchThread(limits, threadEntry);
}

/**
 * @internal Makes warm spares of `method` for later starts, under tsx, up to
 * the capacity (spares.ts); nothing otherwise. For whoever launched children
 * with `launchChild`, once those are up.
 */
export function offerSpares(method: StartMethod): void {
  if (method === 'process') offerProcessSpare();
  else offerThreadSpare();
}

/**
 * @internal The next `start()` of `p` hands its spec to `launch` instead of
 * starting a child (one of another start method or heap limit is ended and
 * the start goes cold). Before `start()`.
 */
export function adoptLaunch(p: Process, launch: Launch): void {
  const self = openState(p);
  if (self.popen) throw new StateError('adoptLaunch() must come before start()');
  self.launch?.end();
  self.launch = launch;
}

/**
 * @internal For `mp.wait`: settles once the started process `p` has ended
 * (its `exitCode` set). Call `done()` when no longer waiting: a daemon,
 * which does not keep its parent alive, does while it is waited for (as in
 * `join()`).
 * @throws StateError for a process never started, or the running process itself.
 */
export function watchEnd(p: Process): { ended: Promise<void>; done: () => void } {
  const self = openState(p);
  if (self.self) throw new StateError(`${self.name} is the running process itself; it cannot wait for its own end`);
  if (!self.popen) throw new StateError(`can only wait for a started process (${self.name} was not started)`);
  const popen = self.popen;
  if (self.code !== null) return { ended: Promise.resolve(), done: () => {} };
  let held = self.daemon;
  if (held) popen.setRef(true);
  return {
    // After the handler start() put on the same promise, which sets the code.
    ended: popen.exited.then(() => undefined),
    done: () => {
      if (held) popen.setRef(false);
      held = false;
    },
  };
}

/**
 * @internal For the pool: once the started process `p` has ended (after
 * `watchEnd`'s `ended`), what its replayed ledger marked as taken over from
 * the arguments of the last pool unit it decoded (ledger.ts `+name #seq`):
 * null when it marked none, undefined when no ledger was replayed (none was
 * kept, or it has not ended), so nothing is known.
 */
export function takenOverBy(p: Process): TakenOver | null | undefined {
  return openState(p).takenOver;
}
