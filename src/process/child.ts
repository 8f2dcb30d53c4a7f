/**
 * Running a target inside a child: adopt the identity the parent gave,
 * resolve the target (import its module, or compile its source), revive the
 * arguments, call it (for a `Process` subclass: import the class, rebuild
 * the instance from its fields, call its `run()`), and report a failure as
 * Python does (the name of the process, then the error with its stack, on
 * stderr; exit code 1).
 */
import { inspect } from 'node:util';
import { v8 } from '../builtins.js';
import { ProcessError } from '../errors.js';
import { runtime } from '../runtime.js';
import { decode, hasShared, hasUnknownKind } from '../serialize/decode.js';
import { EVERY_KIND, settleRevived } from '../serialize/shared.js';
import { sourceFingerprint } from './fingerprint.js';
import type { ChildSpec } from './popen.js';
import type { ReferenceSpec, TargetSpec } from './target.js';
import { rebuild } from './subclass.js';
import { importEntry, runTarget } from './import-entry.js';
import { registerTsHooks, runDeferredPreloads } from './ts-children.js';
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

/** What a by-reference export is, for messages. */
interface Wanted {
  readonly noun: 'function' | 'class';
  readonly passed: string;
  readonly fix: string;
}
const TARGET: Wanted = { noun: 'function', passed: 'passed as target', fix: 'pass { module }' };
const SUBCLASS: Wanted = { noun: 'class', passed: 'started as a Process subclass', fix: 'pass { module } to super()' };

export async function resolveTarget(target: TargetSpec): Promise<Function> {
  if (target.kind === 'source') {
    // eslint-disable-next-line no-new-func
    return new Function('__name', `return (${target.source});`)(nameShim) as Function;
  }
  return resolveExport(target, TARGET);
}

/** Imports the module of `ref` and finds in it the very function (or class) the parent passed. */
async function resolveExport(ref: ReferenceSpec, wanted: Wanted): Promise<Function> {
  const state = runtime();
  state.importingEntry = true;
  let ns: Record<string, unknown>;
  try {
    ns = await importEntry(ref.moduleUrl);
  } finally {
    state.importingEntry = false;
  }
  const named = ns[ref.exportName] ?? (ns['default'] as Record<string, unknown> | undefined)?.[ref.exportName];
  const found = [named, ...Object.keys(ns).map((key) => exportOf(ns, key))].find(
    (value) => typeof value === 'function' && sourceFingerprint(value) === ref.fingerprint,
  );
  if (found) return found as Function;
  if (typeof named === 'function') {
    throw new ProcessError(
      `the ${wanted.noun} '${ref.name}' ${wanted.passed} is not the one ${ref.moduleUrl} exports as ` +
        `'${ref.exportName}', only a ${wanted.noun} of the same name (imported from another module?); ` +
        `${wanted.fix} naming the module that really exports it (its import.meta.url), or rename one of them`,
    );
  }
  throw new ProcessError(
    `${ref.moduleUrl} has no exported ${wanted.noun} '${ref.exportName}' in the child; ` +
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

/** Encoded args or fields as the parent sent them, revived (shared objects live: the parent is of this tree). */
async function revive(wire: unknown, fallback: unknown): Promise<unknown> {
  const cloned = wire === null ? fallback : typeof wire === 'string' ? v8().deserialize(Buffer.from(wire, 'base64')) : wire;
  // Shared-object classes register their revivers when their modules load:
  // a child given none of them starts without loading the package, and so
  // does one whose target's module registered the kinds it is given (a pool
  // worker's entry registers those of its config: pool/worker-entry.ts).
  if (!hasShared(cloned)) return decode(cloned, EVERY_KIND);
  if (hasUnknownKind(cloned)) await import('../index.js');
  const revived = decode(cloned, EVERY_KIND);
  await settleRevived();
  return revived;
}

/**
 * What a child does with TypeScript before it knows its target. Under tsx:
 * a thread always needs hooks (a Worker gets none of ours), a process when
 * its parent dropped tsx's options (ts-children.ts). A spare does this
 * before its spec comes (spares.ts).
 */
export async function prepareTs(method: 'process' | 'thread', tsx: string | null): Promise<void> {
  if (tsx && (method === 'thread' || tsxPackageFiles().length === 0)) await registerTsHooks(tsx);
}

/** `prepared`: a spare's `prepareTs`, begun before the spec came; a failure of it is this child's. */
export async function runChild(spec: ChildSpec, prepared?: Promise<void>): Promise<void> {
  const state = runtime();
  state.child = spec.identity;
  state.treeDir = spec.identity.treeDir;
  // The entry module runs again here; code that reads argv at its top level
  // (an option parser) must see what it saw in the parent.
  process.argv.splice(1, process.argv.length - 1, ...spec.identity.argv);
  try {
    await (prepared ?? prepareTs(spec.identity.startMethod, spec.identity.tsxApi));
    if (spec.preloads) await runDeferredPreloads(spec.preloads);
    const cls = spec.instance ? await resolveExport(spec.instance.cls, SUBCLASS) : null;
    const fn = spec.target ? await resolveTarget(spec.target) : null;
    const args = (await revive(spec.args, [])) as unknown[];
    if (cls) {
      const fields = (await revive(spec.instance!.fields, {})) as Record<string, unknown>;
      const instance = rebuild(cls, fields, fn, args);
      await runTarget(() => instance.run(), []);
    } else {
      await runTarget(fn!, args);
    }
  } catch (err) {
    report(spec.identity.name, err);
    process.exitCode = 1;
  }
}
