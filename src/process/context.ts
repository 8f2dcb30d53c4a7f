/**
 * `getContext(method)`: the package's API bound to one start method, so
 * libraries can start children their way without touching the global
 * setting (Python's `multiprocessing.get_context`).
 */
import { Process } from './process.js';
import type { StartMethod } from './start-method.js';

/** `Process` bound to `method`. */
export function processClassFor(method: StartMethod): typeof Process {
  return class ContextProcess<F extends (...args: any[]) => unknown> extends Process<F> {
    protected override startMethod(): StartMethod {
      return method;
    }
  } as typeof Process;
}
