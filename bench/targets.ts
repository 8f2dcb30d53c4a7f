/**
 * Child targets of the benchmarks, passed to `Process` by reference
 * (`module: <url of this file>`): the child imports this module and calls
 * the export by name.
 *
 * Only type imports and no top-level code, so importing it in a child costs
 * next to nothing and starts nothing: the start+join case measures the
 * library, not this file.
 */
import type { Barrier, Connection, DictProxy, ListProxy, Lock, Queue, RawSharedArray, SynchronizedValue } from 'multiprocessing-ts';

/** URL children import targets from (the compiled file next to this one). */
export const TARGETS_URL: string = import.meta.url;

/** Does nothing: Python's `Process(target=noop)`. */
export function noop(): void {}

/**
 * Says "ready", then waits at the gate the parent holds: every child has
 * started before the clock starts, and all are released at the same moment.
 * The gate is always passed synchronously; only the increments differ by form.
 */
function passGate(gate: Lock, ready: RawSharedArray<'i'>, slot: number): void {
  Atomics.store(ready, slot, 1);
  gate.acquireSync();
  gate.release();
}

/**
 * What every increment target takes: the shared value, the increments to do,
 * the gate the parent holds, the ready flags, the end stamps, and this
 * child's slot in both.
 */
export type IncrementArgs = [
  v: SynchronizedValue<number>,
  n: number,
  gate: Lock,
  ready: RawSharedArray<'i'>,
  ends: RawSharedArray<'d'>,
  slot: number,
];

/**
 * `n × (lock.acquireSync(); v.value += 1; lock.release())`, then stamps the
 * end (CLOCK_MONOTONIC ns, shared by all processes) into `ends[slot]`.
 * try/finally mirrors Python's `with v.get_lock():`.
 */
export function incrementSync(...[v, n, gate, ready, ends, slot]: IncrementArgs): void {
  passGate(gate, ready, slot);
  const lock = v.getLock();
  for (let i = 0; i < n; i++) {
    lock.acquireSync();
    try {
      v.value += 1;
    } finally {
      lock.release();
    }
  }
  ends[slot] = Number(process.hrtime.bigint());
}

/** The same with `await lock.withLock(() => { v.value += 1; })`, the scoped event-loop form. */
export async function incrementWithLock(...[v, n, gate, ready, ends, slot]: IncrementArgs): Promise<void> {
  passGate(gate, ready, slot);
  const lock = v.getLock();
  const increment = () => {
    v.value += 1;
  };
  for (let i = 0; i < n; i++) await lock.withLock(increment);
  ends[slot] = Number(process.hrtime.bigint());
}

/** The same with `await lock.acquire()`, the form that leaves the event loop free. */
export async function incrementAsync(...[v, n, gate, ready, ends, slot]: IncrementArgs): Promise<void> {
  passGate(gate, ready, slot);
  const lock = v.getLock();
  for (let i = 0; i < n; i++) {
    await lock.acquire();
    try {
      v.value += 1;
    } finally {
      lock.release();
    }
  }
  ends[slot] = Number(process.hrtime.bigint());
}

/** Reads every Value it was handed (each `.value` under its lock, as a user's loop would) and stores the sum in `out[0]`. */
export function sumValues(values: SynchronizedValue<number>[], out: RawSharedArray<'d'>): void {
  let sum = 0;
  for (const v of values) sum += v.value;
  out[0] = sum;
}

/** Reads every element of the array it was handed and stores the sum in `out[0]`. */
export function sumArray(arr: RawSharedArray<'i'>, out: RawSharedArray<'d'>): void {
  let sum = 0;
  for (let i = 0; i < arr.length; i++) sum += arr[i]!;
  out[0] = sum;
}

/** Queue items of the `queue` cases: small ints, one 1 KiB Uint8Array, or one 8 MB Uint8Array (put n times). */
export type QueuePayload = 'int' | 'bytes1k' | '8mb';

/** A queue producer: passes the gate, then puts n items with `putSync` (Python's blocking put). */
export function queueProduce(q: Queue<unknown>, n: number, payload: QueuePayload, gate: Lock, ready: RawSharedArray<'i'>): void {
  passGate(gate, ready, 0);
  if (payload === 'int') {
    for (let i = 0; i < n; i++) q.putSync(i);
    return;
  }
  const item = new Uint8Array(payload === 'bytes1k' ? 1024 : 8 * 1024 * 1024).fill(120);
  for (let i = 0; i < n; i++) q.putSync(item);
}

/** The `pipe` case's sender: passes the gate, then sends 0..n-1 with `sendSync` (Python's blocking send). */
export function pipeSend(conn: Connection, n: number, gate: Lock, ready: RawSharedArray<'i'>): void {
  passGate(gate, ready, 0);
  for (let i = 0; i < n; i++) conn.sendSync(i);
  conn.close();
}

/** The `pipe-rtt` case's echo: sends back each value until EOF, blocking (`recvSync`/`sendSync`) or async. */
export async function pipeEcho(conn: Connection, sync: boolean): Promise<void> {
  for (;;) {
    let v: unknown;
    try {
      v = sync ? conn.recvSync() : await conn.recv();
    } catch {
      return; // EOF: the parent is done
    }
    if (sync) conn.sendSync(v);
    else await conn.send(v);
  }
}

/**
 * Runs `call(i)` for i in 0..n-1 with at most `window` calls in flight
 * (1: one at a time, each awaited before the next).
 */
async function windowed(n: number, window: number, call: (i: number) => Promise<unknown>): Promise<void> {
  if (window <= 1) {
    for (let i = 0; i < n; i++) await call(i);
    return;
  }
  let next = 0;
  const lane = async () => {
    while (next < n) await call(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
}

/** The `manager` case's list child: waits at the barrier, then n appends (`window` in flight). */
export async function managerAppends(lst: ListProxy<number>, n: number, window: number, start: Barrier): Promise<void> {
  await start.wait();
  await windowed(n, window, (i) => lst.append(i));
}

/** The `manager` case's dict child: n sets of its own keys, then n gets checked, each phase between barrier waits. */
export async function managerDictSetGet(d: DictProxy<string, number>, n: number, tag: number, window: number, phases: Barrier): Promise<void> {
  const keys = Array.from({ length: n }, (_, i) => `${tag}:${i}`);
  await phases.wait();
  await windowed(n, window, (i) => d.set(keys[i]!, i));
  await phases.wait();
  let bad = 0;
  await windowed(n, window, async (i) => {
    if ((await d.get(keys[i]!)) !== i) bad++;
  });
  await phases.wait();
  if (bad) throw new Error(`${bad} gets returned a wrong value`);
}

/** A pool task of the `pool` cases: the identity. */
export function noopTask(x: unknown): unknown {
  return x;
}

/** A pool task of the `pool-cpu` case: the anchors' h workload, the sum of i*i for i < n (as CPython's). */
export function cpuTask(n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += i * i;
  return s;
}
