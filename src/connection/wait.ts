/**
 * `mp.wait`: the first of several connections and processes to be ready
 * (Python's `multiprocessing.connection.wait`).
 */
import { describe } from '../describe.js';
import { StateError, ValueError } from '../errors.js';
import { Process, watchEnd } from '../process/process.js';
import { Connection } from './connection.js';
import { whenReady } from './ready.js';

/** What `mp.wait` watches. */
export type Waitable = Connection | Process;

/**
 * Waits until at least one of `objects` is ready, or `timeoutMs` passes
 * (undefined or Infinity: no limit; 0 or less: just look), and resolves to the ready ones in the
 * order given (empty after a timeout). A Connection is ready when a message
 * is waiting or the peer closed (then `recv` throws `EOFError`); a Process
 * when it has ended.
 * @example
 * ```ts
 * for (const ready of await mp.wait([conn1, conn2, proc], 1000)) {
 *   if (ready instanceof mp.Connection) console.log(await ready.recv());
 * }
 * ```
 * @throws StateError for a closed Connection or a Process never started.
 */
export async function wait<T extends Waitable>(objects: Iterable<T>, timeoutMs?: number): Promise<T[]> {
  const list = checked(objects);
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs))) {
    throw new ValueError(`wait timeout must be a number of milliseconds, Infinity, or undefined (no limit), not ${describe(timeoutMs)}`);
  }
  // A negative timeout just looks, as in Python.
  const limit = Math.max(0, timeoutMs ?? Infinity);
  const now = readyNow(list);
  if (now.length > 0 || limit === 0 || list.length === 0) return now;
  const stop = new AbortController();
  const watches = list.flatMap((o) => (o instanceof Process ? [watchEnd(o)] : []));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      // Bounded by the timeout too: a Pipe then leaves no sleep behind when it passes.
      ...list.flatMap((o) => (o instanceof Connection ? [whenReady(o.transportForWait()!, limit, stop.signal)] : [])),
      ...watches.map((w) => w.ended),
      ...(limit === Infinity ? [] : [new Promise<void>((resolve) => (timer = setTimeout(resolve, limit)))]),
    ]);
  } finally {
    stop.abort();
    clearTimeout(timer);
    for (const w of watches) w.done();
  }
  return readyNow(list);
}

function checked<T extends Waitable>(objects: Iterable<T>): T[] {
  if (objects === null || typeof (objects as Iterable<T>)?.[Symbol.iterator] !== 'function') {
    throw new ValueError(`wait takes an array of Connections and Processes, not ${describe(objects)}`);
  }
  const list = [...objects];
  list.forEach((o, i) => {
    if (o instanceof Connection) {
      if (o.closed) throw new StateError(`wait: objects[${i}] is a closed Connection`);
    } else if (!(o instanceof Process)) {
      throw new ValueError(`wait: objects[${i}] is ${describe(o)}; wait takes Connections and Processes`);
    }
  });
  return list;
}

function readyNow<T extends Waitable>(list: T[]): T[] {
  return list.filter((o) => (o instanceof Connection ? (o.transportForWait()?.ready() ?? true) : o.exitCode !== null));
}
