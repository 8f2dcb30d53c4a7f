/**
 * How a target function reaches a child.
 *
 * By reference (Python's spawn): when the entry script (or the `module`
 * option) exports the function, the child imports that module and calls the
 * export, so module state is the child's own. By source: any other function
 * must be self-contained; its source is recompiled in the child, and one that
 * uses outer variables is refused here, by name, before anything starts.
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { ValueError } from '../errors.js';
import { runtime } from '../runtime.js';
import { describe } from '../describe.js';
import { exportedNames } from './entry-exports.js';
import { freeVariables, functionExpressionSource } from './free-variables.js';

export type TargetSpec =
  | { readonly kind: 'ref'; readonly moduleUrl: string; readonly exportName: string }
  | { readonly kind: 'source'; readonly source: string; readonly name: string };

/** The file this tree's main script was run as, if any. */
export function entryPath(): string | null {
  const child = runtime().child;
  if (child) return child.entryPath;
  const main = process.argv[1];
  return main ? resolve(main) : null;
}

/** A `module` option (URL, file URL string or path) as a URL string. */
function moduleUrlOf(module: string | URL): string {
  if (module instanceof URL) return module.href;
  if (/^(file|data|node):/.test(module)) return module;
  return pathToFileURL(resolve(module)).href;
}

/**
 * Decides how `fn` travels.
 * @param role what the function is, for messages ('target', 'initializer'…).
 * @throws ValueError when it is not a function, or cannot travel.
 */
export function describeTarget(fn: unknown, module: string | URL | undefined, role = 'target'): TargetSpec {
  if (typeof fn !== 'function') {
    throw new ValueError(`${role} is ${describe(fn)}, not a function; pass the function the child should run`);
  }
  const name = fn.name;
  if (module !== undefined) {
    if (!name) throw new ValueError(`${role} has no name; with { module } the ${role} must be a named export of that module`);
    return { kind: 'ref', moduleUrl: moduleUrlOf(module), exportName: name };
  }
  const entry = entryPath();
  if (entry && name && exportedNames(entry).has(name)) {
    return { kind: 'ref', moduleUrl: pathToFileURL(entry).href, exportName: name };
  }
  let source: string;
  try {
    source = functionExpressionSource(fn as Function);
  } catch (err) {
    throw new ValueError(
      `${role} ${name || '(anonymous)'} cannot be sent by source (${(err as Error).message}); ` +
        `export it from your entry script, or pass { module: import.meta.url } for a function exported elsewhere`,
    );
  }
  let free: string[];
  try {
    free = freeVariables(source);
  } catch (err) {
    throw new ValueError(`${role} ${name || '(anonymous)'}: its source could not be parsed (${(err as Error).message})`);
  }
  if (free.length > 0) {
    const list = free.map((v) => `'${v}'`).join(', ');
    throw new ValueError(
      `${role} ${name || '(anonymous)'} uses outer variable${free.length > 1 ? 's' : ''} ${list}, which a child cannot see. ` +
        `Export the function from ${entry ?? 'your entry script'} (the child then imports it with its module), ` +
        `pass { module: import.meta.url } for a function exported by another module, ` +
        `or pass ${free.length > 1 ? 'those values' : 'that value'} in args`,
    );
  }
  return { kind: 'source', source, name };
}
