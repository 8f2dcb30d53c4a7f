/**
 * Running a target inside a child: adopt the identity the parent gave,
 * resolve the target (import its module, or compile its source), revive the
 * arguments, call it, and report a failure as Python does (the name of the
 * process, then the error with its stack, on stderr; exit code 1).
 */
import { inspect } from 'node:util';
import { v8 } from '../builtins.js';
import { ProcessError } from '../errors.js';
import { runtime } from '../runtime.js';
import { decode, hasShared } from '../serialize/decode.js';
import { sourceFingerprint } from './fingerprint.js';
import type { ChildSpec } from './popen.js';
import type { TargetSpec } from './target.js';
import { importEntry, runTarget } from './import-entry.js';
import { registerTsHooks } from './ts-children.js';
import { tsxPackageFiles } from './tsx.js';

/** esbuild's `__name` helper, for sources compiled by tsx or esbuild with keepNames. */
function nameShim<F extends Function>(fn: F, name: string): F {
  try {
    Object.defineProperty(fn, 'name', { value: name, configurable: true });
  } catch {
    // A frozen function keeps its name.
  }
  return fn;
}

async function resolveTarget(target: TargetSpec): Promise<Function> {
  if (target.kind === 'source') {
    // eslint-disable-next-line no-new-func
    return new Function('__name', `return (${target.source});`)(nameShim) as Function;
  }
  const state = runtime();
  state.importingEntry = true;
  let ns: Record<string, unknown>;
  try {
    ns = await importEntry(target.moduleUrl);
  } finally {
    state.importingEntry = false;
  }
  const named = ns[target.exportName] ?? (ns['default'] as Record<string, unknown> | undefined)?.[target.exportName];
  const found = [named, ...Object.keys(ns).map((key) => exportOf(ns, key))].find(
    (value) => typeof value === 'function' && sourceFingerprint(value) === target.fingerprint,
  );
  if (found) return found as Function;
  if (typeof named === 'function') {
    throw new ProcessError(
      `the function '${target.name}' passed as target is not the one ${target.moduleUrl} exports as ` +
        `'${target.exportName}', only a function of the same name (imported from another module?); ` +
        `pass { module } naming the module that really exports it (its import.meta.url), or rename one of them`,
    );
  }
  throw new ProcessError(
    `${target.moduleUrl} has no exported function '${target.exportName}' in the child; ` +
      `export it at the top level of that module (not inside the main-process guard)`,
  );
}

/** An export, or undefined while it is uninitialised (a cycle of imports). */
function exportOf(ns: Record<string, unknown>, key: string): unknown {
  try {
    return ns[key];
  } catch {
    return undefined;
  }
}

function report(name: string, err: unknown): void {
  const text = err instanceof Error ? inspect(err) : `Uncaught ${inspect(err)}`;
  process.stderr.write(`Process ${name}:\n${text}\n`);
}

export async function runChild(spec: ChildSpec): Promise<void> {
  const state = runtime();
  state.child = spec.identity;
  state.treeDir = spec.identity.treeDir;
  // The entry module runs again here; code that reads argv at its top level
  // (an option parser) must see what it saw in the parent.
  process.argv.splice(1, process.argv.length - 1, ...spec.identity.argv);
  try {
    // Under tsx: a thread always needs hooks (a Worker gets none of ours), a
    // process when its parent dropped tsx's options (ts-children.ts).
    const tsx = spec.identity.tsxApi;
    if (tsx && (spec.identity.startMethod === 'thread' || tsxPackageFiles().length === 0)) await registerTsHooks(tsx);
    const fn = await resolveTarget(spec.target);
    const cloned =
      spec.args === null ? [] : typeof spec.args === 'string' ? v8().deserialize(Buffer.from(spec.args, 'base64')) : spec.args;
    // Shared-object classes register their revivers when the package loads;
    // a child given none of them starts without loading it.
    if (hasShared(cloned)) await import('../index.js');
    const args = decode(cloned) as unknown[];
    await runTarget(fn, args);
  } catch (err) {
    report(spec.identity.name, err);
    process.exitCode = 1;
  }
}
