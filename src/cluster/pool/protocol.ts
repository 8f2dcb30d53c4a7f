/**
 * What a cluster pool's callers and workers write to Redis.
 *
 * Keys, under the pool's hash tag `{mpts:pool:<name>}`:
 * - `…:tasks`: a Stream with the consumer group `workers`. One entry is a
 *   **batch**: a map chunk, or the `applyAsync` calls one caller made in one
 *   tick, all of one function. Entries are deleted once their result is
 *   stored, so the stream holds only work not yet done.
 * - `…:results:<caller>`: a Stream per caller, one entry per finished batch,
 *   read with a blocking `XREAD`. It expires an hour after its last write, so
 *   a caller that vanished leaves nothing for good.
 * - `…:workers`: a sorted set of worker ids by their last heartbeat (ms), and
 *   `…:worker:<id>`: a hash describing that worker, expiring with its heartbeat.
 *
 * Batch entry fields (all strings but `p`):
 * `c` caller id, `b` batch number (unique per caller), `f` the function's
 * export name, `v` its fingerprint, `a` the attempt limit, `t` the per-task
 * timeout in ms ('' for none), `p` the tasks' argument lists (codec.pack).
 *
 * Result entry fields: `b` the batch number, `w` the worker id, `n` the
 * delivery count of the batch (attempts), and either `r` (codec.pack of one
 * outcome per task: `[true, value]` or `[false, error record bytes]`) or `e`
 * (an error record failing the whole batch: no such function, another
 * version of it, too many attempts).
 */
import { createHash } from 'node:crypto';
import { objectKey } from '../keys.js';

export const GROUP = 'workers';

/** The keys of one pool. */
export class PoolKeys {
  readonly prefix: string;
  readonly tasks: string;
  readonly workers: string;

  constructor(readonly name: string) {
    this.prefix = objectKey('pool', name);
    this.tasks = `${this.prefix}:tasks`;
    this.workers = `${this.prefix}:workers`;
  }

  results(caller: string): string {
    return `${this.prefix}:results:${caller}`;
  }

  worker(id: string): string {
    return `${this.prefix}:worker:${id}`;
  }
}

/** How long a results stream outlives its last write. */
export const RESULTS_TTL_MS = 3_600_000;
/** How often a worker says it is alive. */
export const HEARTBEAT_MS = 1000;
/** A worker not heard from for this long is not listed. */
export const WORKER_TTL_MS = 5000;
/** Default attempt limit per batch: the first run and two retries. */
export const DEFAULT_MAX_ATTEMPTS = 3;
/** Default time a taken batch may go without its worker's word before another worker takes it over. */
export const DEFAULT_VISIBILITY_MS = 30_000;
/** Most tasks per batch entry for coalesced `applyAsync` calls. */
export const MAX_COALESCED = 512;

/**
 * A function's fingerprint: a hash of its source text (once per function).
 * The worker compares it with its own export's, so a worker running
 * another version of the function refuses the task instead of running
 * different code (module-fingerprint.ts covers the code around it).
 */
export function fingerprint(fn: Function): string {
  let hash = fingerprints.get(fn);
  if (hash === undefined) fingerprints.set(fn, (hash = createHash('sha256').update(Function.prototype.toString.call(fn)).digest('hex').slice(0, 16)));
  return hash;
}

/** Per function: a caller hashes each function it sends once, a worker each export it runs once. */
const fingerprints = new WeakMap<Function, string>();

/** A stream entry's fields as a record (ioredis gives a flat [k, v, k, v…] list). */
export function fieldsOf(flat: readonly (string | Buffer)[] | null): Map<string, Buffer> {
  const fields = new Map<string, Buffer>();
  if (!flat) return fields;
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const v = flat[i + 1]!;
    fields.set(flat[i]!.toString(), Buffer.isBuffer(v) ? v : Buffer.from(v));
  }
  return fields;
}
