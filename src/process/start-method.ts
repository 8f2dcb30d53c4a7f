/**
 * The start method: which strategy starts children. Set once, as Python's
 * `set_start_method`; children inherit their parent's.
 */
import { native, nativeMissingHint } from '../native/addon.js';
import { NativeUnavailableError, StateError, ValueError } from '../errors.js';
import { runtime } from '../runtime.js';

export type StartMethod = 'process' | 'thread';

const METHODS: readonly StartMethod[] = ['process', 'thread'];

let chosen: StartMethod | null = null;
let warnedFallback = false;

/** Start methods this installation supports (`'process'` needs the native addon). */
export function getAllStartMethods(): StartMethod[] {
  return native() ? [...METHODS] : ['thread'];
}

/** Checks a start method name and that it can run here. */
export function validateStartMethod(method: unknown): StartMethod {
  if (!METHODS.includes(method as StartMethod)) {
    throw new ValueError(`unknown start method ${JSON.stringify(method)}; use 'process' or 'thread'`);
  }
  if (method === 'process' && !native()) throw new NativeUnavailableError(nativeMissingHint());
  return method as StartMethod;
}

function defaultMethod(): StartMethod {
  const inherited = runtime().child?.startMethod;
  if (inherited) return inherited;
  const fromEnv = process.env['MULTIPROCESSING_TS_START_METHOD'];
  if (fromEnv) return validateStartMethod(fromEnv);
  if (native()) return 'process';
  if (!warnedFallback) {
    warnedFallback = true;
    process.emitWarning(`${nativeMissingHint()}. Children start as threads.`, 'MultiprocessingWarning');
  }
  return 'thread';
}

/**
 * The start method new children use. The default is `'process'`, or the
 * `MULTIPROCESSING_TS_START_METHOD` environment variable; a child inherits
 * its parent's.
 */
export function getStartMethod(): StartMethod {
  return chosen ?? defaultMethod();
}

/**
 * Sets the start method, once (Python's `set_start_method`).
 * @throws StateError when already set, unless `{ force: true }`.
 * @example `mp.setStartMethod('thread');`
 */
export function setStartMethod(method: StartMethod | null, options: { force?: boolean } = {}): void {
  if (chosen !== null && !options.force) {
    throw new StateError(`the start method is set already (to '${chosen}'); pass { force: true } to change it`);
  }
  chosen = method === null ? null : validateStartMethod(method);
}
