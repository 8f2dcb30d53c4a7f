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

/**
 * Whether `cls` declares its own constructor. A class without one gets a
 * default constructor, which has a frame of its own (at the class) but only
 * passes its arguments on: the options were written by whoever called it.
 */
function declaresConstructor(cls: Function): boolean {
  try {
    const ast = parsers().acorn.parseExpressionAt(Function.prototype.toString.call(cls), 0, { ecmaVersion: 'latest' }) as any;
    return ast.type === 'ClassExpression' && ast.body.body.some((m: any) => m.kind === 'constructor');
  } catch {
    return true;
  }
}

/**
 * The file of the code that called `entry` (a function or class of the
 * package): the first frame outside the package, where a subclass's
 * constructor counts as the caller when it declares one (its `super(…)`
 * passed the options) and is passed over when it does not. null when that
 * code has no file (`node -e`, the REPL) or the stack does not reach it.
 * @param subclasses the classes from `entry`'s direct subclass down to `new.target`, whose constructor frames come first.
 */
export function callerFile(entry: Function, subclasses: readonly Function[] = []): string | null {
  let pending = [...subclasses];
  for (const site of stackAbove(entry)) {
    const name = site.getFileName();
    if (!name || name.startsWith('node:')) continue;
    const path = framePath(site);
    const own = path !== null && path.startsWith(OWN_CODE);
    if (site.isConstructor() && pending.length > 0) {
      const cls = pending.shift()!;
      if (own || !declaresConstructor(cls)) continue;
    } else if (own) {
      continue;
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
