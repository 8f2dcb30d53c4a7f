/**
 * Which version of a module a task function comes from.
 *
 * A function's own source (protocol.ts `fingerprint`) does not show what
 * it reads around it: a worker whose module holds `const RATE = 0.3`
 * where the caller's holds `0.2` runs an identical `tax()` and returns
 * another number. So both sides also hash the whole source of the script
 * that defines the function, as their process loaded it, and the worker
 * refuses a task whose hashes differ.
 *
 * V8 knows a function's script (its `[[FunctionLocation]]`), and only the
 * inspector protocol can read it: one in-process session, once per script
 * (the debugger is enabled for the lookup and disabled after it). Both
 * sides read the script through the same mechanism, so the same build of
 * a module gives the same hash wherever it runs, and a module re-exported
 * through another is hashed where the function is defined. Where the
 * inspector is missing (a Node built without it) the hash is '' and only
 * the function's own source is compared.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

type Post = (method: string, params?: object) => unknown;

/** Script id → hash of its source: a script's source never changes. */
const byScript = new Map<string, string>();
const byFunction = new WeakMap<Function, string>();

/** A synchronous call on an in-process inspector session (its callbacks run before `post` returns). */
function poster(session: { post(method: string, params: object, callback: (err: Error | null, result: unknown) => void): void }): Post {
  return (method, params = {}) => {
    let failure: Error | null = null;
    let result: unknown;
    session.post(method, params, (err, res) => {
      failure = err;
      result = res;
    });
    if (failure) throw failure;
    return result;
  };
}

/** A hash of the source of the script that defines `fn` ('' when it cannot be read). */
export function moduleFingerprint(fn: Function): string {
  const known = byFunction.get(fn);
  if (known !== undefined) return known;
  let hash = '';
  try {
    hash = readScriptHash(fn);
  } catch {
    // No inspector (or it refused): the function's own fingerprint still applies.
  }
  byFunction.set(fn, hash);
  return hash;
}

const HOLDER = Symbol.for('multiprocessing-ts.moduleFingerprint.fn');

function readScriptHash(fn: Function): string {
  const { Session } = createRequire(import.meta.url)('node:inspector') as typeof import('node:inspector');
  const session = new Session();
  session.connect();
  const post = poster(session as never);
  const global = globalThis as unknown as Record<symbol, unknown>;
  try {
    global[HOLDER] = fn;
    const { result } = post('Runtime.evaluate', { expression: `globalThis[Symbol.for(${JSON.stringify(HOLDER.description)})]` }) as { result: { objectId?: string } };
    if (!result.objectId) return '';
    const { internalProperties } = post('Runtime.getProperties', { objectId: result.objectId, ownProperties: true }) as {
      internalProperties?: { name: string; value?: { value?: { scriptId?: string } } }[];
    };
    const scriptId = internalProperties?.find((p) => p.name === '[[FunctionLocation]]')?.value?.value?.scriptId;
    if (!scriptId) return '';
    const cached = byScript.get(scriptId);
    if (cached !== undefined) return cached;
    post('Debugger.enable');
    try {
      const { scriptSource } = post('Debugger.getScriptSource', { scriptId }) as { scriptSource: string };
      const hash = createHash('sha256').update(scriptSource).digest('hex').slice(0, 16);
      byScript.set(scriptId, hash);
      return hash;
    } finally {
      post('Debugger.disable');
    }
  } finally {
    delete global[HOLDER];
    session.disconnect();
  }
}
