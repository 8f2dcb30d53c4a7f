/**
 * `Process`: Python's `multiprocessing.Process` for Node.js.
 */
import { workerThreads } from '../builtins.js';
import { StateError, ValueError } from '../errors.js';
import { runtime, type ChildIdentity } from '../runtime.js';
import { abandon, cloneError, encode, toBytes } from '../serialize/encode.js';
import { treeDir } from '../shm/tree.js';
import { openChildLedger } from '../shm/settle.js';
import { native } from '../native/addon.js';
import { describeTarget, entryPath, type TargetSpec } from './target.js';
import { getStartMethod, validateStartMethod, type StartMethod } from './start-method.js';
import { popenProcess } from './popen-process.js';
import { popenThread } from './popen-thread.js';
import type { Popen } from './popen.js';
import { liveChildren } from './registry.js';
import { childChain } from './import-entry.js';
import { tsxApi } from './tsx.js';

/** Options of `new Process(…)`; `args` is checked against `target`'s parameters. */
export interface ProcessOptions<F extends (...args: any[]) => unknown> {
  /** The function the child runs: an export of the entry script (or of `module`), or a self-contained function. */
  target: F;
  /** Its arguments; shared objects anywhere inside arrive live, the rest is copied. */
  args?: Parameters<F>;
  /** Default `Process-N`. */
  name?: string;
  /** A daemon child is ended when its parent exits and may not start children. */
  daemon?: boolean;
  /** The module that exports `target` (URL, e.g. `import.meta.url`, or path), when it is not the entry script. */
  module?: string | URL;
}

/** The shape shared by `Process`, `currentProcess()` and `parentProcess()`. */
export interface ProcessLike {
  readonly name: string;
  readonly pid: number | null;
  readonly threadId: number | null;
  readonly daemon: boolean;
  readonly exitCode: number | null;
  isAlive(): boolean;
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

/**
 * A child running `target(...args)` in its own process (or thread), as
 * Python's `multiprocessing.Process`.
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
 */
export class Process<F extends (...args: any[]) => unknown = (...args: any[]) => unknown> implements ProcessLike {
  private readonly target: F;
  private args: unknown[];
  private readonly module: string | URL | undefined;
  private readonly identity: number[];
  private _name: string;
  private _daemon: boolean;
  private popen: Popen | null = null;
  private code: number | null = null;
  private closed = false;
  /** @internal The start method of the context that made this class. */
  protected startMethod(): StartMethod {
    return getStartMethod();
  }

  constructor(options: ProcessOptions<F>) {
    if (options === null || typeof options !== 'object') {
      throw new ValueError('new Process() takes an options object: { target, args?, name?, daemon?, module? }');
    }
    if (typeof options.target !== 'function') describeTarget(options.target, undefined);
    if (options.args !== undefined && !Array.isArray(options.args)) {
      throw new ValueError(`args must be an array of arguments, not ${typeof options.args}`);
    }
    this.target = options.target;
    this.args = options.args ?? [];
    this.module = options.module;
    const state = runtime();
    const n = ++state.processCounter;
    this.identity = [...(state.child?.identity ?? []), n];
    this._name = options.name ?? `Process-${this.identity.join(':')}`;
    this._daemon = options.daemon ?? state.child?.daemon ?? false;
  }

  private checkOpen(): void {
    if (this.closed) throw new StateError(`process object ${this._name} is closed`);
  }

  get name(): string {
    this.checkOpen();
    return this._name;
  }
  set name(value: string) {
    this.checkOpen();
    this._name = String(value);
  }

  get daemon(): boolean {
    this.checkOpen();
    return this._daemon;
  }
  set daemon(value: boolean) {
    this.checkOpen();
    if (this.popen) throw new StateError('daemon cannot be changed after start()');
    this._daemon = Boolean(value);
  }

  /** The OS process id (a thread child shares its parent's); null before `start()`. */
  get pid(): number | null {
    this.checkOpen();
    return this.popen?.pid ?? null;
  }

  /** The worker thread id of a `'thread'` child (0 for a process child); null before `start()`. */
  get threadId(): number | null {
    this.checkOpen();
    return this.popen?.threadId ?? null;
  }

  /** null while running or not started; 0 ok; 1 the target threw; n from `process.exit(n)`; -N killed by signal N. */
  get exitCode(): number | null {
    this.checkOpen();
    return this.code;
  }

  /**
   * Starts the child. Synchronous, like Python's: the child is on its way
   * when this returns.
   * @throws StateError when called twice, in a daemon, or during a child's import of an unguarded entry script.
   * @throws ValueError / SerializationError when the target or args cannot travel (nothing is started).
   */
  start(): void {
    this.checkOpen();
    if (this.popen) throw new StateError(`cannot start a process twice (${this._name} was started already)`);
    const state = runtime();
    if (state.importingEntry) throw new StateError(GUARD_MESSAGE);
    if (state.child) {
      const chain = childChain();
      if (chain !== 'target') throw new StateError(chain === 'import' ? GUARD_MESSAGE : OUTSIDE_TARGET_MESSAGE);
    }
    if (state.child?.daemon) throw new StateError('daemonic processes are not allowed to have children');
    const method = validateStartMethod(this.startMethod());
    const target: TargetSpec = describeTarget(this.target, this.module);
    const encoded = encode(this.args, 'args', { crossProcess: method === 'process' });
    const args =
      method === 'thread' ? encoded.value : this.args.length === 0 ? null : Buffer.from(toBytes(encoded, 'args')).toString('base64');
    // What the child is handed (one reference in flight each) opens its ledger.
    const tree = native() ? treeDir() : null;
    const ledger = tree ? openChildLedger(this.identity.at(-1)!, method, encoded.segments) : null;
    const identity: ChildIdentity = {
      name: this._name,
      identity: this.identity,
      daemon: this._daemon,
      parent: { name: currentName(), pid: process.pid, threadId: workerThreads().threadId },
      startMethod: method,
      treeDir: tree,
      ledger: ledger?.id ?? null,
      entryPath: entryPath(),
      tsxApi: tsxApi(),
      argv: process.argv.slice(1),
    };
    const spec = { identity, target, args };
    try {
      if (method === 'process') {
        this.popen = popenProcess(spec, (pid) => ledger?.handed(pid));
      } else {
        ledger?.handed();
        this.popen = popenThread(spec);
      }
    } catch (err) {
      ledger?.discard();
      abandon(encoded);
      // A worker's clone of its data refuses what v8.serialize would have.
      throw (err as Error)?.name === 'DataCloneError' ? cloneError(encoded.value, 'args', err as Error) : err;
    }
    if (this._daemon) this.popen.setRef(false);
    // As Python's start(): the child has its arguments; a Process kept for
    // join() must not keep their shared memory mapped here.
    this.args = [];
    liveChildren.add(this);
    void this.popen.exited.then((code) => {
      // Nothing of the child runs any more: give back what it still held.
      ledger?.settle();
      this.code = code;
      liveChildren.delete(this);
    });
  }

  /**
   * Waits until the child ends, or `timeoutMs` passes (then check `exitCode`).
   * @throws StateError when the process was never started.
   */
  async join(timeoutMs?: number): Promise<void> {
    this.checkOpen();
    if (!this.popen) throw new StateError(`can only join a started process (${this._name} was not started)`);
    if (this.code !== null) return;
    const popen = this.popen;
    // A daemon does not keep us alive, but whoever joins it waits, as in Python.
    if (this._daemon) popen.setRef(true);
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
      if (this._daemon) popen.setRef(false);
    }
    // The exit handler runs on the same promise; let it record the code.
    await Promise.resolve();
  }

  /** True from `start()` until the child has ended. */
  isAlive(): boolean {
    this.checkOpen();
    return this.popen !== null && this.code === null;
  }

  /** Asks the child to end (SIGTERM; a thread child is stopped). Exit code -15. */
  terminate(): void {
    this.checkOpen();
    if (this.popen && this.code === null) this.popen.terminate();
  }

  /** Ends the child at once (SIGKILL). Exit code -9. */
  kill(): void {
    this.checkOpen();
    if (this.popen && this.code === null) this.popen.kill();
  }

  /**
   * Releases the object; afterwards every member but `close()` throws.
   * @throws StateError while the child is still running.
   */
  close(): void {
    if (this.closed) return;
    if (this.popen && this.code === null) {
      throw new StateError(`cannot close ${this._name} while it is still running; join() or terminate() it first`);
    }
    this.closed = true;
    this.popen = null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.popen && this.code === null) await this.join();
    this.close();
  }

  toString(): string {
    const state = this.closed ? 'closed' : !this.popen ? 'initial' : this.code === null ? 'started' : `stopped exitcode=${this.code}`;
    return `<Process name='${this._name}' ${state}${this._daemon ? ' daemon' : ''}>`;
  }
}

function currentName(): string {
  return runtime().child?.name ?? 'MainProcess';
}
