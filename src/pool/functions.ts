/**
 * Task functions: how each reaches the workers, decided once per function.
 *
 * A function follows the Process target rules (process/target.ts): by
 * reference when the entry script exports it, by source when it is
 * self-contained; the pool's `module` option names one more module whose
 * exports go by reference (read off its source, as the entry's are). The
 * decision, with its parse, is made the first time a pool sees the
 * function; it then has an id, its description goes to each worker once
 * (before the first task that needs it), and tasks name it by id.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isAbsolute } from 'node:path';
import { describeTarget, type TargetSpec } from '../process/target.js';
import { exportNameOf } from '../process/entry-exports.js';

export interface TaskFunction {
  readonly id: number;
  readonly spec: TargetSpec;
  /** For messages: `square`. */
  readonly name: string;
  /** `pool.apply(square)`, made once. */
  readonly applyLabel: string;
}

/** The pool's `module` as a file path, when it is a file (a `data:` URL has no exports to read). */
function modulePath(module: string | URL): string | null {
  const url = module instanceof URL ? module.href : isAbsolute(module) ? pathToFileURL(module).href : module;
  return url.startsWith('file:') ? fileURLToPath(url) : null;
}

/**
 * How `fn` travels: by reference to `module` when that module exports it,
 * else by the Process rules (the entry's exports, or its source).
 * @throws ValueError naming the function and the fix when it cannot travel.
 */
export function describeFunction(fn: unknown, module: string | URL | undefined, role: string): TargetSpec {
  if (typeof fn === 'function' && fn.name && module !== undefined) {
    const path = modulePath(module);
    if (path === null || exportNameOf(path, fn.name) !== undefined) return describeTarget(fn, module, role);
  }
  return describeTarget(fn, undefined, role);
}

/** A pool's task functions, by identity. */
export class FunctionRegistry {
  private readonly seen = new WeakMap<Function, TaskFunction>();
  private next = 1;

  constructor(private readonly module: string | URL | undefined) {}

  /** The function's entry if it was seen before. */
  known(fn: Function): TaskFunction | undefined {
    return this.seen.get(fn);
  }

  /**
   * The function's id and description, made on first sight.
   * @throws ValueError when it is not a function or cannot travel.
   */
  get(fn: unknown, label: string): TaskFunction {
    let found = typeof fn === 'function' ? this.seen.get(fn) : undefined;
    if (!found) {
      const spec = describeFunction(fn, this.module, `${label}: the task function`);
      const name = (fn as Function).name || '(anonymous)';
      found = { id: this.next++, spec, name, applyLabel: `pool.apply(${name})` };
      this.seen.set(fn as Function, found);
    }
    return found;
  }
}
