/**
 * Queue, JoinableQueue and SimpleQueue: Python's process queues on the
 * shared-memory channel (channel/channel.ts).
 *
 * There is no feeder thread and no buffer in the producer: `put()` returns
 * once the item is in shared memory, readable by any consumer (so later
 * mutation does not leak, an item that cannot travel is refused right
 * there with its path, and a producer killed after `put()` returned has
 * lost nothing). The item goes into the ring, or, when large, into a spill
 * file that the ring names, so a large item never waits for a reader and a
 * parent may join its producer before reading (Python's famous deadlock).
 * The price: when the ring itself is full of unread frames (512 KiB:
 * ~64k small numbers), `put()` waits for a consumer, where Python's would
 * return and leave the item in its feeder thread's buffer (lost if the
 * producer is killed, and keeping the producer from exiting). So
 * `joinThread()` has nothing to wait for and `cancelJoinThread()` nothing
 * to cancel. `close()` is this object's: it refuses later calls and ends
 * its pending async waits, as Python's closes this process's ends of the
 * pipe.
 */
import { Empty, Full, StateError, ValueError } from '../errors.js';
import { SHARED, registerShared, type SharedHandle } from '../serialize/shared.js';
import { deadlineOf } from '../sync/futex.js';
import { Channel, NOTHING, type ChannelHandle } from '../channel/channel.js';

/** Options of `put` and `get`, as Python's `put(obj, block=True, timeout=None)`. */
export interface QueueWaitOptions {
  /** `false` (or any falsy value but `undefined`, as in Python): do not wait (the timeout is then ignored). Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most; negative means 0. Default: forever. */
  timeout?: number;
}

interface QueueHandle extends SharedHandle {
  readonly channel: ChannelHandle;
}

/** Passed by revivers to build a queue around an existing channel. */
const FROM_CHANNEL = Symbol('from channel');

/** A deadline from the options; `block: false` ignores the timeout. */
function deadline(options: QueueWaitOptions | undefined): { block: boolean; deadline: number } {
  if (options === undefined) return { block: true, deadline: Infinity };
  if (typeof options !== 'object' || options === null) {
    throw new ValueError(`options must be an object like { block, timeout }, got ${String(options)}`);
  }
  // Python's test is truthiness: block=0 or None does not block.
  const block = options.block === undefined || Boolean(options.block);
  if (!block) return { block, deadline: 0 };
  const t = options.timeout;
  if (t !== undefined && t !== null && (typeof t !== 'number' || Number.isNaN(t))) {
    throw new ValueError(`timeout must be a number of milliseconds (or undefined for no limit), got ${typeof t === 'string' ? `'${t}'` : String(t)}`);
  }
  return { block, deadline: deadlineOf(t ?? undefined) };
}

function checkMaxsize(maxsize: unknown): number {
  if (typeof maxsize !== 'number' || !Number.isInteger(maxsize) || maxsize < 0 || maxsize > 0x7fffffff) {
    throw new ValueError(`maxsize must be an integer from 0 (unbounded) to 2147483647, got ${String(maxsize)}`);
  }
  return maxsize;
}

/** Python's `multiprocessing.Queue`: a FIFO shared by threads and processes. */
export class Queue<T = unknown> implements AsyncIterable<T> {
  /** @internal */ readonly channel: Channel;
  private closed = false;
  /** @internal Whether puts count unfinished tasks (JoinableQueue). */
  protected readonly joinable: boolean = false;

  /**
   * @param maxsize the most items it holds (`put` then waits); 0 (the default) for no limit.
   * @example
   * ```ts
   * const q = new mp.Queue<number>();
   * await q.put(42);
   * console.log(await q.get()); // 42
   * ```
   */
  constructor(maxsize?: number);
  /** @internal */
  constructor(maxsize: typeof FROM_CHANNEL, channel: Channel);
  constructor(maxsize: number | typeof FROM_CHANNEL = 0, channel?: Channel) {
    this.channel = maxsize === FROM_CHANNEL ? channel! : Channel.create(checkMaxsize(maxsize));
  }

  /** The most items it holds, 0 for no limit. */
  get maxsize(): number {
    return this.channel.maxsize;
  }

  private checkOpen(): void {
    if (this.closed) throw new ValueError(`${this.kind} is closed`);
  }

  /** @internal The name its handle is revived by. */
  protected get kind(): string {
    return 'Queue';
  }

  /**
   * Puts `item` (a copy of it, made now). On a full queue (bounded, or its
   * ring full of unread items) waits for room, up to `timeout` ms, then
   * rejects with `Full`. The timeout bounds the whole call: a producer
   * stopped (SIGSTOP) in the middle of its own put delays this one only up
   * to it.
   * @throws SerializationError when the item cannot travel (named by its path; nothing is enqueued).
   * @throws ValueError when this object is `close()`d while it waits (as `get`).
   */
  put(item: T, options?: QueueWaitOptions): Promise<void> {
    try {
      this.checkOpen();
      const { block, deadline: d } = deadline(options);
      return this.channel.put(item, block, d, this.joinable).then((ok) => {
        if (ok) return;
        // As get(): an operation on a closed queue is a ValueError (Python's), not a timeout.
        if (this.closed) throw new ValueError(`${this.kind} was closed while put() waited`);
        throw new Full(block ? 'put timed out: the queue is full' : 'the queue is full');
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** `put` blocking the calling thread (for children's hot paths, as Python's `put`). */
  putSync(item: T, options?: QueueWaitOptions): void {
    this.checkOpen();
    const { block, deadline: d } = deadline(options);
    if (!this.channel.putSync(item, block, d, this.joinable)) {
      throw new Full(block ? 'put timed out: the queue is full' : 'the queue is full');
    }
  }

  /**
   * `putSync(item, { block: false })`: `Full` at once when there is no room
   * (or another producer stays inside its put past a few µs: stopped, or
   * descheduled mid-copy; Python's `get_nowait` likewise gives up on a
   * held read lock).
   */
  putNowait(item: T): void {
    this.putSync(item, { block: false });
  }

  /**
   * Takes the next item, waiting up to `timeout` ms for one (a consumer
   * stopped in the middle of its own get included); rejects with `Empty` if
   * none came, `ValueError` when this object is `close()`d while it waits.
   */
  get(options?: QueueWaitOptions): Promise<T> {
    try {
      this.checkOpen();
      const { block, deadline: d } = deadline(options);
      return this.channel.get(block, d).then((item) => {
        if (item !== NOTHING) return item as T;
        if (this.closed) throw new ValueError(`${this.kind} was closed while get() waited`);
        throw new Empty(block ? 'get timed out: the queue is empty' : 'the queue is empty');
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** `get` blocking the calling thread. */
  getSync(options?: QueueWaitOptions): T {
    this.checkOpen();
    const { block, deadline: d } = deadline(options);
    const item = this.channel.getSync(block, d);
    if (item === NOTHING) throw new Empty(block ? 'get timed out: the queue is empty' : 'the queue is empty');
    return item as T;
  }

  /** `getSync({ block: false })`: `Empty` at once when there is nothing (or another consumer stays inside its get past a few µs, as `putNowait`). */
  getNowait(): T {
    return this.getSync({ block: false });
  }

  /** How many items are in it (approximate while others put and get, as in Python). */
  qsize(): number {
    return this.channel.qsize();
  }

  /** Whether it is empty (approximate while others put and get). */
  empty(): boolean {
    return this.channel.empty();
  }

  /** Whether a bounded queue is at its `maxsize` (approximate). */
  full(): boolean {
    return this.maxsize > 0 && this.channel.qsize() >= this.maxsize;
  }

  /**
   * This object will put and get no more: later calls throw, and pending
   * async `get()`s (and `for await` loops) end. Items it put stay in the
   * queue for others; other holders of the queue are not affected.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel.interrupt();
  }

  /**
   * Python's `join_thread` (after `close()`): waits until everything this
   * process put is readable by others. Here `put()` returns only once its
   * item is in shared memory, so it resolves at once.
   */
  async joinThread(): Promise<void> {
    if (!this.closed) throw new StateError(`joinThread() is for a closed ${this.kind}: call close() first (as Python asserts)`);
  }

  /**
   * Python's `cancel_join_thread`: lets the process exit without flushing
   * what it put. Nothing is ever left to flush here, so it does nothing.
   */
  cancelJoinThread(): void {}

  /**
   * Yields items as they come, until this object is `close()`d (then the
   * loop ends; items left stay in the queue). A queue has no end of its own:
   * several processes may put into it, so end the loop with `close()` or a
   * sentinel item of your choosing (Python's idiom, e.g. `null`).
   */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (!this.closed) {
      const item = await this.channel.get(true, Infinity);
      if (item === NOTHING) return;
      yield item as T;
    }
  }

  /** `close()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** How `console.log` shows it. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `<${this.kind}(maxsize=${this.maxsize}, qsize=${this.qsize()}${this.closed ? ', closed' : ''})>`;
  }

  /** @internal */
  [SHARED](): QueueHandle {
    return { kind: this.kind, channel: this.channel.toHandle() };
  }
}

/**
 * Python's `multiprocessing.JoinableQueue`: a Queue whose consumers mark
 * each item done with `taskDone()`, and `join()` waits until all are.
 */
export class JoinableQueue<T = unknown> extends Queue<T> {
  protected override readonly joinable: boolean = true;

  protected override get kind(): string {
    return 'JoinableQueue';
  }

  /**
   * Marks one item taken by `get()` as processed.
   * @throws ValueError when called more times than items were put.
   */
  taskDone(): void {
    if (!this.channel.taskDone()) throw new ValueError('taskDone() called too many times (more than items were put)');
  }

  /** Resolves when every item put so far has been marked done. */
  async join(): Promise<void> {
    await this.channel.join(Infinity);
  }

  /** `join` blocking the calling thread. */
  joinSync(): void {
    this.channel.joinSync(Infinity);
  }
}

/**
 * Python's `multiprocessing.SimpleQueue`: an unbounded queue with only
 * `put`, `get`, `empty` and `close`.
 */
export class SimpleQueue<T = unknown> {
  /** @internal */ readonly channel: Channel;
  private closed = false;

  constructor();
  /** @internal */
  constructor(token: typeof FROM_CHANNEL, channel: Channel);
  constructor(token?: typeof FROM_CHANNEL, channel?: Channel) {
    this.channel = token === FROM_CHANNEL ? channel! : Channel.create(0);
  }

  private checkOpen(): void {
    if (this.closed) throw new ValueError('SimpleQueue is closed');
  }

  /** Puts a copy of `item`; waits only while its ring is full of unread items. */
  async put(item: T): Promise<void> {
    this.checkOpen();
    if (!(await this.channel.put(item, true, Infinity, false))) throw new ValueError('SimpleQueue was closed while put() waited');
  }

  /** `put` blocking the calling thread. */
  putSync(item: T): void {
    this.checkOpen();
    this.channel.putSync(item, true, Infinity, false);
  }

  /** Takes the next item, waiting for one. */
  async get(): Promise<T> {
    this.checkOpen();
    const item = await this.channel.get(true, Infinity);
    if (item === NOTHING) throw new ValueError('SimpleQueue was closed while get() waited');
    return item as T;
  }

  /** `get` blocking the calling thread. */
  getSync(): T {
    this.checkOpen();
    return this.channel.getSync(true, Infinity) as T;
  }

  /** Whether it is empty (approximate while others put and get). */
  empty(): boolean {
    return this.channel.empty();
  }

  /** This object will put and get no more; pending async `get()`s reject. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel.interrupt();
  }

  /** `close()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** @internal */
  [SHARED](): QueueHandle {
    return { kind: 'SimpleQueue', channel: this.channel.toHandle() };
  }
}

registerShared('Queue', (h) => new Queue(FROM_CHANNEL, Channel.attach((h as QueueHandle).channel)));
registerShared('JoinableQueue', (h) => new JoinableQueue(FROM_CHANNEL, Channel.attach((h as QueueHandle).channel)));
registerShared('SimpleQueue', (h) => new SimpleQueue(FROM_CHANNEL, Channel.attach((h as QueueHandle).channel)));
