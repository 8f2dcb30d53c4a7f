/**
 * How a target function reaches a child.
 *
 * By reference (Python's spawn): when the entry script (or the `module`
 * option) exports the function — under its own name, another
 * (`export { f as g }`) or as `default` — the child imports that module and
 * calls the export, so module state is the child's own. The spec carries a
 * fingerprint of the function's source, and the child refuses an export that
 * is another function of the same name. By source: any other function
 * must be self-contained; its source is recompiled in the child, and one that
 * uses outer variables is refused here, by name, before anything starts.
 *
 * A `Process` subclass (subclass.ts) goes by reference only
 * (`describeClass`): a class extends `Process` and its methods see their
 * module, so it has no self-contained source to send.
 */
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ValueError } from '../errors.js';
import { runtime } from '../runtime.js';
import { describe } from '../describe.js';
import { exportNameOf } from './entry-exports.js';
import { runsStringInput } from './exec-argv.js';
import { sourceFingerprint } from './fingerprint.js';
import { freeVariables, functionExpressionSource } from './free-variables.js';
import { parsers } from './parsers.js';

/** A function or class that the child imports from its module. */
export interface ReferenceSpec {
  readonly kind: 'ref';
  readonly moduleUrl: string;
  readonly exportName: string;
  /** The function's (or class's) own name, for messages. */
  readonly name: string;
  /**
   * `sourceFingerprint` of the function passed: the child checks it
   * imported that very function, and finds it by this among the
   * module's exports when `exportName` is not it.
   */
  readonly fingerprint: string;
}

export type TargetSpec = ReferenceSpec | { readonly kind: 'source'; readonly source: string; readonly name: string };

/**
 * The file this tree's main script was run as; null when it runs code given
 * by `-e`/`-p` or stdin (there `process.argv[1]` is an argument, not a script).
 */
export function entryPath(): string | null {
  const child = runtime().child;
  if (child) return child.entryPath;
  const main = process.argv[1];
  if (!main || main === '-' || runsStringInput()) return null;
  return resolve(main);
}

/** The name Node gives code that has no file: `[eval]`, `[eval1]` (ES module), `[stdin]`. */
const NO_FILE = /^\[(eval\d*|stdin)\]$/;

/** What to do instead of exporting from the entry, when there is none. */
function noEntryHint(): string {
  return runsStringInput()
    ? 'this process runs code given to node -e/-p, which a child cannot import'
    : 'this process has no entry module a child can import';
}

/** A `module` option (URL, file URL string or path) as a URL string. */
function moduleUrlOf(module: string | URL, role: string): string {
  const url =
    module instanceof URL ? module.href : /^(file|data|node):/.test(module) ? module : pathToFileURL(resolve(module)).href;
  const path = url.startsWith('file:') ? fileURLToPath(url) : null;
  if (path && NO_FILE.test(basename(path)) && !existsSync(path)) {
    throw new ValueError(
      `module ${path} is the code given to node -e/-p (or stdin), which a child cannot import; ` +
        `export the ${role} from a file and pass that file as module, or pass a self-contained function`,
    );
  }
  return url;
}

/** `fn` by reference, when `module` is given or the entry script exports it; else null. */
function byReference(fn: Function, module: string | URL | undefined, role: string): ReferenceSpec | null {
  const name = fn.name;
  if (module !== undefined) {
    if (!name) throw new ValueError(`${role} has no name; with { module } the ${role} must be a named export of that module`);
    // Not read here: the child finds a renamed or default export by its fingerprint.
    return { kind: 'ref', moduleUrl: moduleUrlOf(module, role), exportName: name, name, fingerprint: sourceFingerprint(fn) };
  }
  const entry = entryPath();
  const exportName = entry && name ? exportNameOf(entry, name) : undefined;
  if (!entry || !exportName) return null;
  return { kind: 'ref', moduleUrl: pathToFileURL(entry).href, exportName, name, fingerprint: sourceFingerprint(fn) };
}

/**
 * How a `Process` subclass travels: by reference, always.
 * @param module the `module` option its constructor passed to `super()`.
 * @throws ValueError naming the class and the fix when no module a child can import exports it.
 */
export function describeClass(cls: Function, module: string | URL | undefined, base: Function): ReferenceSpec {
  const label = cls.name && cls.name !== 'default' ? `the Process subclass ${cls.name}` : 'an anonymous Process subclass';
  const privateMember = privateMemberOf(cls, base);
  if (privateMember) {
    throw new ValueError(
      `${label} uses the private member ${privateMember}, which cannot exist in a child: the child rebuilds the ` +
        `instance without running its constructor (as Python's pickle does), and only a constructor can give an ` +
        `object a class's private members. Use an ordinary field or method instead (a leading underscore marks it as internal)`,
    );
  }
  const found = byReference(cls, module, 'Process subclass');
  if (found) return found;
  const entry = entryPath();
  throw new ValueError(
    `${label} cannot reach a child: the child rebuilds the instance from its class, which it imports, ` +
      (entry
        ? `and ${entry} does not export it (a class declared inside a function, or not exported, is out of reach). ` +
          `Export the class at the top level of the entry script (outside the isMainProcess() guard), ` +
          `or pass { module: import.meta.url } to super() when another module exports it`
        : `and ${noEntryHint()}. Declare and export the class in a file, and pass { module } naming that file to super()`),
  );
}

const privateMembers = new WeakMap<Function, string | null>();

/**
 * The first private member (`#name`) declared by `cls` or a superclass of it
 * below `base`, or null. Read with acorn from the classes' source, once per class.
 */
function privateMemberOf(cls: Function, base: Function): string | null {
  for (let c = cls; c !== base && typeof c === 'function' && c !== Function.prototype; c = Object.getPrototypeOf(c) as Function) {
    let found = privateMembers.get(c);
    if (found === undefined) {
      found = null;
      try {
        const ast = parsers().acorn.parse(`(${Function.prototype.toString.call(c)})`, { ecmaVersion: 'latest' });
        const stack: unknown[] = [ast];
        while (stack.length > 0 && found === null) {
          const node = stack.pop() as Record<string, unknown> | null;
          if (!node || typeof node !== 'object') continue;
          if (node['type'] === 'PrivateIdentifier') found = `#${String(node['name'])}`;
          for (const value of Object.values(node)) if (value && typeof value === 'object') stack.push(value);
        }
      } catch {
        // Unparsable (a native class): nothing to tell.
      }
      privateMembers.set(c, found);
    }
    if (found) return found;
  }
  return null;
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
  const reference = byReference(fn, module, role);
  if (reference) return reference;
  const entry = entryPath();
  const label = `${role} ${name || '(anonymous)'}`;
  let source: string;
  try {
    source = functionExpressionSource(fn as Function);
  } catch (err) {
    throw new ValueError(
      `${label} cannot be sent by source (${(err as Error).message}); ` +
        (entry
          ? `export it from your entry script, or pass { module: import.meta.url } for a function exported elsewhere`
          : `${noEntryHint()}: export it from a file and pass { module } naming that file`),
    );
  }
  let free: string[];
  try {
    free = freeVariables(source);
  } catch (err) {
    throw new ValueError(`${label}: its source could not be parsed (${(err as Error).message})`);
  }
  if (free.length > 0) {
    const list = free.map((v) => `'${v}'`).join(', ');
    const values = free.length > 1 ? 'those values' : 'that value';
    throw new ValueError(
      `${label} uses outer variable${free.length > 1 ? 's' : ''} ${list}, which a child cannot see. ` +
        (entry
          ? `Export the function from ${entry} (the child then imports it with its module), ` +
            `pass { module: import.meta.url } for a function exported by another module, ` +
            `or pass ${values} in args`
          : `As ${noEntryHint()}, export the function from a file and pass { module } naming that file, ` +
            `or pass ${values} in args`),
    );
  }
  return { kind: 'source', source, name };
}
