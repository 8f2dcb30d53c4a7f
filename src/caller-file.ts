/**
 * The file whose code called into the package: a relative path it passes
 * (a `Process`'s `module`) means a file next to that code, as a relative
 * `import` does, not one in the working directory.
 *
 * Read from a stack captured at the call. This module sits at the top of
 * the package's code, so its directory holds all of that code in both
 * layouts: dist/src/ (one file per module) and dist/bundle/ (one file).
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsers } from './process/parsers.js';

const OWN_CODE = fileURLToPath(new URL('.', import.meta.url));

/** Enough for the package's own frames and a subclass chain above them. */
const FRAMES = 64;

function stackAbove(fn: Function): NodeJS.CallSite[] {
  const saved = { prepare: Error.prepareStackTrace, limit: Error.stackTraceLimit };
  try {
    Error.prepareStackTrace = (_, sites) => sites;
    Error.stackTraceLimit = FRAMES;
    const holder: { stack?: unknown } = {};
    Error.captureStackTrace(holder, fn);
    return Array.isArray(holder.stack) ? (holder.stack as NodeJS.CallSite[]) : [];
  } finally {
    Error.prepareStackTrace = saved.prepare;
    Error.stackTraceLimit = saved.limit;
  }
}

/** A frame's file as a path; null for code that has none (`node -e`, the REPL, builtins). */
function framePath(site: NodeJS.CallSite): string | null {
  const name = site.getFileName();
  if (!name) return null;
  const path = name.startsWith('file:') ? fileURLToPath(name) : name;
  return isAbsolute(path) ? path : null;
}

/** What the stack needs to know of a class between `entry` and `new.target`. */
interface ChainClass {
  /** The names its constructor frame may carry: the class's own and the one its source declares (esbuild renames some). */
  names: Set<string>;
  /** Whether its constructor writes the options itself (see `choosesOptions`). */
  chooses: boolean;
}

const chainClasses = new WeakMap<Function, ChainClass>();

function chainClass(cls: Function): ChainClass {
  let known = chainClasses.get(cls);
  if (!known) {
    const { id, chooses } = readClass(cls);
    known = { names: new Set([cls.name, id ?? cls.name]), chooses };
    chainClasses.set(cls, known);
  }
  return known;
}

/**
 * A class's declared name and whether its constructor chooses the options
 * it passes to `super`. A class without a constructor gets a default one,
 * which only passes its arguments on; so does the one compilers write for
 * field initialisers (`constructor() { super(...arguments); this.x = 0 }`,
 * or `(...args)` and `super(...args)`). For both, the options were written
 * by whoever called `new`. Any other constructor is taken to choose them:
 * its `super(…)` is where a relative path was written.
 */
function readClass(cls: Function): { id: string | null; chooses: boolean } {
  let ast: any;
  try {
    ast = parsers().acorn.parseExpressionAt(Function.prototype.toString.call(cls), 0, { ecmaVersion: 'latest' });
  } catch {
    return { id: null, chooses: true };
  }
  if (ast.type !== 'ClassExpression') return { id: null, chooses: true };
  const ctor = ast.body.body.find((m: any) => m.kind === 'constructor');
  return { id: ast.id?.name ?? null, chooses: ctor !== undefined && !forwardsItsArguments(ctor.value) };
}

/** Whether a constructor's first statement is `super(...arguments)`, or `super(...rest)` of its only parameter `...rest`. */
function forwardsItsArguments(fn: any): boolean {
  const first = fn.body.body[0];
  if (first?.type !== 'ExpressionStatement') return false;
  const call = first.expression;
  if (call.type !== 'CallExpression' || call.callee.type !== 'Super' || call.arguments.length !== 1) return false;
  const spread = call.arguments[0];
  if (spread.type !== 'SpreadElement' || spread.argument.type !== 'Identifier') return false;
  const passed: string = spread.argument.name;
  if (fn.params.length === 0) return passed === 'arguments';
  const [rest] = fn.params;
  return fn.params.length === 1 && rest.type === 'RestElement' && rest.argument.type === 'Identifier' && rest.argument.name === passed;
}

/**
 * The file of the code that called `entry` (a function or class of the
 * package): the first frame outside the package, where the constructor of a
 * subclass counts as the caller when it chooses the options itself and is
 * passed over when it only forwards them.
 *
 * A constructor frame is matched to its class by name, in chain order, not
 * by position: V8 leaves a default constructor's frame out when it is
 * reached through `super()` (its --omit-default-ctors), so the frames are a
 * subsequence of the chain. A constructor frame that matches no class still
 * pending is the caller's own (code that runs `new` in a constructor).
 * null when that code has no file (`node -e`, the REPL) or the stack does
 * not reach it.
 * @param subclasses the classes from `entry`'s direct subclass down to `new.target`, whose constructor frames come first.
 */
export function callerFile(entry: Function, subclasses: readonly Function[] = []): string | null {
  let pending = subclasses.map(chainClass);
  for (const site of stackAbove(entry)) {
    const name = site.getFileName();
    if (!name || name.startsWith('node:')) continue;
    const path = framePath(site);
    if (path !== null && path.startsWith(OWN_CODE)) continue;
    if (site.isConstructor()) {
      const frameName = site.getFunctionName() ?? '';
      const at = pending.findIndex((c) => c.names.has(frameName));
      if (at >= 0) {
        const cls = pending[at]!;
        pending = pending.slice(at + 1);
        if (!cls.chooses) continue;
      }
    }
    return path && existsSync(path) ? path : null;
  }
  return null;
}

/**
 * A path option as the caller means it: a relative path is read from the
 * directory of `callerFile(entry, subclasses)`, or from the working
 * directory when there is no such file. Absolute paths stay as they are.
 */
export function resolveFromCaller(path: string, entry: Function, subclasses: readonly Function[] = []): string {
  if (isAbsolute(path)) return path;
  const file = callerFile(entry, subclasses);
  return resolve(file ? dirname(file) : process.cwd(), path);
}
