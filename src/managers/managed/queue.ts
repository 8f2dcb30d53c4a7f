/**
 * The server's `Queue` and `JoinableQueue` (Python's `queue.Queue` in the
 * manager): items in the server's memory; a `get` on an empty queue (or a
 * `put` on a full one) waits in the server without holding up anyone else.
 */
import { describe } from '../../describe.js';
import { Empty, Full, ValueError } from '../../errors.js';
import { Managed, WaitList, waitTime, type Caller } from './base.js';

/** A FIFO with O(1) take from the front. */
class Fifo {
  #items: unknown[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: unknown): void {
    this.#items.push(item);
  }

  shift(): unknown {
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

export class ManagedQueue extends Managed {
  static override readonly exposed: readonly string[] = ['put', 'get', 'putNowait', 'getNowait', 'qsize', 'empty', 'full'];

  readonly #maxsize: number;
  readonly #items = new Fifo();
  /** Getters waiting for an item; each is handed one (it never goes through the queue). */
  readonly #getters = new WaitList<unknown>();
  /** Putters waiting for room, with their items; woken once their item is in. */
  readonly #putters = new WaitList<void, unknown>();

  constructor(maxsize: unknown = 0) {
    super();
    if (typeof maxsize !== 'number' || !Number.isSafeInteger(maxsize)) {
      throw new ValueError(`Queue maxsize must be an integer (0 or less: unbounded), not ${describe(maxsize)}`);
    }
    this.#maxsize = maxsize > 0 ? maxsize : 0;
  }

  async put(caller: Caller, item: unknown, options?: unknown): Promise<void> {
    const ms = waitTime(options, 'put()');
    if (this.#getters.wakeFirst(() => item)) {
      this.added();
    } else if (!this.#isFull()) {
      this.#items.push(item);
      this.added();
    } else if (ms === 0) {
      throw new Full('the queue is full');
    } else {
      await this.#putters.wait(
        caller,
        ms,
        () => {
          throw new Full('put() timed out: the queue is full');
        },
        item,
      );
    }
  }

  putNowait(caller: Caller, item: unknown): Promise<void> {
    return this.put(caller, item, { block: false });
  }

  async get(caller: Caller, options?: unknown): Promise<unknown> {
    const ms = waitTime(options, 'get()');
    if (this.#items.length > 0) {
      const item = this.#items.shift();
      this.#refill();
      return item;
    }
    if (ms === 0) throw new Empty('the queue is empty');
    return this.#getters.wait(caller, ms, () => {
      throw new Empty('get() timed out: the queue is empty');
    });
  }

  getNowait(caller: Caller): Promise<unknown> {
    return this.get(caller, { block: false });
  }

  qsize(): number {
    return this.#items.length;
  }

  empty(): boolean {
    return this.#items.length === 0;
  }

  full(): boolean {
    return this.#isFull();
  }

  #isFull(): boolean {
    return this.#maxsize > 0 && this.#items.length >= this.#maxsize;
  }

  /** There is room: items of waiting putters go in, in their order. */
  #refill(): void {
    while (!this.#isFull() && this.#putters.wakeFirst((item) => void this.#items.push(item))) this.added();
  }

  /** For JoinableQueue: an item was put. */
  protected added(): void {}
}

export class ManagedJoinableQueue extends ManagedQueue {
  static override readonly exposed: readonly string[] = [...ManagedQueue.exposed, 'taskDone', 'join'];

  #unfinished = 0;
  readonly #joiners = new WaitList<void>();

  taskDone(): void {
    if (this.#unfinished === 0) throw new ValueError('taskDone() called too many times (more than items were put)');
    if (--this.#unfinished === 0) this.#joiners.wakeAll(() => undefined);
  }

  async join(caller: Caller): Promise<void> {
    if (this.#unfinished === 0) return;
    await this.#joiners.wait(caller, Infinity, () => undefined);
  }

  protected override added(): void {
    this.#unfinished++;
  }
}
