/**
 * A Barrier's `action`, which follows the target rules (API.md): where the
 * barrier travels, its action travels by reference (an export of the entry
 * script) or by source (a self-contained function), and the receiving side
 * rebuilds it. It is described when the barrier is first sent, so a barrier
 * used only in its own thread may have any function as its action.
 */
import { StateError } from '../errors.js';
import { describeTarget, type TargetSpec } from '../process/target.js';
import { resolveTarget } from '../process/child.js';
import { reviveLater } from '../serialize/shared.js';

/** esbuild's and tsx's `__name` helper, which by-source functions may call. */
function nameShim<F extends Function>(fn: F, name: string): F {
  try {
    Object.defineProperty(fn, 'name', { value: name, configurable: true });
  } catch {
    // A frozen function keeps its name.
  }
  return fn;
}

export class BarrierAction {
  private spec: TargetSpec | null;
  private resolving: Promise<Function> | null = null;

  private constructor(
    private fn: Function | null,
    spec: TargetSpec | null,
    private readonly module?: string | URL,
  ) {
    this.spec = spec;
  }

  static of(fn: Function, module?: string | URL): BarrierAction {
    return new BarrierAction(fn, null, module);
  }

  /** The action a handle names; one by source is compiled at once, one by reference imported in the background. */
  static fromSpec(spec: TargetSpec): BarrierAction {
    const action = new BarrierAction(null, spec);
    if (spec.kind === 'source') {
      // eslint-disable-next-line no-new-func
      action.fn = new Function('__name', `return (${spec.source});`)(nameShim) as Function;
    } else {
      action.resolving = resolveTarget(spec);
      // A child's target starts once this is done, so waitSync finds the action ready.
      reviveLater(
        action.resolving.then(
          (fn) => (action.fn = fn),
          () => {}, // reported by the wait that needs it
        ),
      );
    }
    return action;
  }

  /** How it travels (throws ValueError naming the fix when it cannot). */
  toSpec(): TargetSpec {
    return (this.spec ??= describeTarget(this.fn, this.module, 'Barrier action'));
  }

  /** The function, once it can be called. */
  async ready(): Promise<Function> {
    return this.fn ?? (await this.resolving!);
  }

  /** The function now, for `waitSync`. @throws StateError while its module is still being imported. */
  now(): Function {
    if (this.fn) return this.fn;
    throw new StateError(
      'Barrier.waitSync(): this barrier\'s action is still being imported in this process; ' +
        'use await barrier.wait(), or call waitSync() a moment later',
    );
  }
}
