/**
 * Changes that may reach Redis twice and still happen once.
 *
 * ioredis sends a command again when its connection dropped before the
 * answer came (and a Redis Cluster client also after a failover), so Redis
 * may run a change a second time although it ran the first. For a lock, a
 * unit of a semaphore, a queue item or an addition that would be a second
 * effect. So every change of a cluster object is a script that carries its
 * call's record key, `<object prefix>:call:<id>` (under the object's hash
 * tag, so in its slot on a Redis Cluster), and a run that changed something
 * stores its answer there (empty when "done" says it all), for
 * `REMEMBER_MS`. A repeat finds the key and answers as the first run did,
 * changing nothing.
 *
 * A record goes with the next call of the same object from the same
 * process, which passes the keys of the calls whose answers came (nobody
 * repeats those), or when it expires. So an object keeps about one record
 * per process that uses it, however many handles of it that process makes
 * (a pool may revive one per task); a handle used once and dropped leaves
 * its record until it expires. `unlink()` does not find the records (they
 * are not listed anywhere, which keeps a call to two key lookups): they
 * expire by themselves.
 *
 * A repeat that arrives after `REMEMBER_MS` (an outage that long with the
 * command still queued in ioredis) is taken for a new call.
 *
 * The record keys are declared among the script's keys, after its own:
 * the call's, then those of answered calls (so on a Redis Cluster a slot
 * being migrated answers ASK or TRYAGAIN, which the client follows, rather
 * than failing the script). The last argument says how many answered keys
 * there are; the script's own arguments come before it (`OWN` of them).
 */
import { randomName } from '../keys.js';
import { Script } from './connection.js';

/**
 * How long a change is remembered for a repeat of its call (ms): a repeat
 * comes when the connection is back, so an outage longer than this makes
 * a repeat count again.
 */
export const REMEMBER_MS = 120_000;

/** Answered records one call drops at most (the rest go with the next call). */
const DROP_PER_CALL = 100;

/**
 * The Lua prelude of a change script. It defines:
 * - `OWN`: the number of the script's own arguments (ARGV[1..OWN]);
 * - `REPEATED`: whether this call already ran and changed something;
 * - `ANSWER`: the answer the first run recorded (a string; false when none);
 * - `RECORD(answer)`: records this call, with `answer` (a string or number) when given.
 */
const PRELUDE = `local ANSWERED = tonumber(ARGV[#ARGV])
local OWN = #ARGV - 1
local CALL_KEY = KEYS[#KEYS - ANSWERED]
if ANSWERED > 0 then redis.call('DEL', unpack(KEYS, #KEYS - ANSWERED + 1, #KEYS)) end
local ANSWER = redis.call('GET', CALL_KEY)
local REPEATED = ANSWER ~= false
local function RECORD(answer)
  redis.call('SET', CALL_KEY, answer or '', 'PX', ${REMEMBER_MS})
end
`;

/**
 * A script that changes an object and answers a repeat of its call as the
 * first run did (see the module doc). `body` uses `OWN`, `REPEATED`,
 * `ANSWER` and `RECORD(answer)`; it must `RECORD` exactly when it changed
 * something, and check `REPEATED` before changing anything.
 */
export class ChangeScript extends Script {
  /** The keys of the object's own (the record keys follow them). */
  readonly ownKeys: number;

  constructor(name: string, keys: number, body: string) {
    super(name, -1, PRELUDE + body);
    this.ownKeys = keys;
  }
}

/**
 * The record keys of one context's answered calls in one process, per
 * object, to be dropped by the object's next call (any handle's). An
 * object not called again for REMEMBER_MS is forgotten here (its records
 * have expired in Redis by then), so objects used once (one per task) do
 * not pile up.
 */
export class AnsweredCalls {
  readonly #byPrefix = new Map<string, { keys: string[]; at: number }>();
  /** When objects idle past REMEMBER_MS were last forgotten. */
  #swept = performance.now();

  /** Takes up to a call's share of the answered record keys of the object at `prefix`. */
  take(prefix: string): string[] {
    const entry = this.#byPrefix.get(prefix);
    if (!entry) return [];
    const taken = entry.keys.splice(0, DROP_PER_CALL);
    if (entry.keys.length === 0) this.#byPrefix.delete(prefix);
    return taken;
  }

  /** Adds record keys whose answers came (or that `take` handed to a call that failed). */
  add(prefix: string, keys: readonly string[]): void {
    if (keys.length === 0) return;
    const now = performance.now();
    const entry = this.#byPrefix.get(prefix);
    if (entry) {
      entry.keys.push(...keys);
      entry.at = now;
    } else {
      this.#byPrefix.set(prefix, { keys: [...keys], at: now });
    }
    if (now - this.#swept > REMEMBER_MS) this.#sweep(now);
  }

  #sweep(now: number): void {
    this.#swept = now;
    for (const [prefix, entry] of this.#byPrefix) if (now - entry.at > REMEMBER_MS) this.#byPrefix.delete(prefix);
  }

  /** Takes every answered record key of the object at `prefix` (it is being unlinked). */
  takeAll(prefix: string): string[] {
    const entry = this.#byPrefix.get(prefix);
    this.#byPrefix.delete(prefix);
    return entry?.keys ?? [];
  }
}

/** This process's part of call ids: random, so ids of different processes differ. */
const PROCESS_PART = randomName();
let calls = 0;

/** The record key of a new call of the object at `prefix`. */
export function newCallKey(prefix: string): string {
  return `${prefix}:call:${PROCESS_PART}${(calls++).toString(36)}`;
}
