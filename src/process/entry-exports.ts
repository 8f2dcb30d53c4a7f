/**
 * What a module exports, read from its source without running it.
 *
 * `Process.start()` is synchronous (as in Python), but whether a target can
 * go "by reference" depends on the entry module exporting it, and an ES
 * module's namespace cannot be had synchronously while that module is still
 * evaluating (it is the one calling `start()`). So we read the exports off
 * the source, with acorn. TypeScript (which acorn cannot parse) is first
 * turned into JavaScript by the project's own esbuild — the one its TS
 * loader (tsx) runs on — so the answer comes from the same parser that
 * compiles the module; only when there is no esbuild do we fall back to a
 * scan of `export` declarations in the text.
 *
 * A target is found by its `name`, which is the name of the local binding
 * it was declared as, so we map local names to export names:
 * `export { f as g }` gives f → g, `export default function f` and
 * `export default f` give f → default. The child then checks that the
 * export it imports is the very function the parent passed (fingerprint.ts).
 */
import { readFileSync } from 'node:fs';
import { compileTypeScript, parsers } from './parsers.js';

export interface ModuleExports {
  /** Every name the module exports. */
  readonly names: ReadonlySet<string>;
  /**
   * The export name of each exported local binding, by the binding's name
   * (an anonymous default function or class is named `default`, as its `name` says).
   */
  readonly byLocal: ReadonlyMap<string, string>;
}

const cache = new Map<string, ModuleExports>();

/**
 * The name under which the module at `path` exports its top-level binding
 * `local`, or undefined when it does not.
 *
 * Most exports are declared where they are defined: `export function f`,
 * `export default async function f`, `export const f =`, `export class C`.
 * Such a declaration at the start of a line, outside comments, is taken
 * at its word, without the parser: loading acorn and parsing the module
 * (and, for TypeScript, running esbuild first) cost a program's first
 * pool or child 10–30 ms of CPU while its workers boot. A line inside a
 * template literal (an odd number of backticks before it) goes to the
 * parser; only text built to look otherwise (a string holding a lone
 * backtick before such a template) could mislead this, and then the
 * child, which checks the export's fingerprint, fails the task with a
 * clear error. Anything else (`export { f as g }`, re-exports, CommonJS)
 * is read with the parser, as before.
 */
export function exportNameOf(path: string, local: string): string | undefined {
  return declaredExport(path, local) ?? moduleExports(path).byLocal.get(local);
}

const texts = new Map<string, string | null>();

function declaredExport(path: string, local: string): string | undefined {
  if (!/^[A-Za-z_$][\w$]*$/.test(local)) return undefined;
  let text = texts.get(path);
  if (text === undefined) {
    try {
      text = withoutComments(readFileSync(path, 'utf8'));
    } catch {
      text = null;
    }
    texts.set(path, text);
  }
  if (text === null) return undefined;
  const name = local.replace(/\$/g, '\\$');
  const declaration = new RegExp(
    `^export\\s+(default\\s+)?(?:(?:async\\s+)?function\\b\\s*\\*?\\s*${name}\\s*[(<]|(?:abstract\\s+)?class\\s+${name}(?![\\w$]))` +
      `|^export\\s+(?:const|let|var)\\s+${name}\\s*[=:]`,
    'm',
  );
  const m = declaration.exec(text);
  // Inside a template literal (an odd number of backticks before it), it is text: ask the parser.
  if (!m || (text.slice(0, m.index).match(/(?<!\\)`/g)?.length ?? 0) % 2 === 1) return undefined;
  return m[1] ? 'default' : local;
}

/** Source text without its comments (a string that looks like one loses text too, which can only hide a declaration). */
function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
}

/** The exports of the module at `path` (none when it cannot be read). */
export function moduleExports(path: string): ModuleExports {
  let found = cache.get(path);
  if (!found) {
    found = scan(path);
    cache.set(path, found);
  }
  return found;
}

class Collector implements ModuleExports {
  readonly names = new Set<string>();
  readonly byLocal = new Map<string, string>();

  add(local: string | null, exported: string): void {
    this.names.add(exported);
    // `export function f` with `export { f as g }` too: f keeps its own name.
    if (local && (!this.byLocal.has(local) || local === exported)) this.byLocal.set(local, exported);
  }
}

function scan(path: string): ModuleExports {
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch {
    return new Collector();
  }
  if (source.startsWith('#!')) source = '//' + source.slice(2);
  const loader = /\.[cm]?tsx?$/.test(path) ? (path.endsWith('x') ? 'tsx' : 'ts') : path.endsWith('.jsx') ? 'jsx' : null;
  const javascript = loader ? compileTypeScript(path, source, loader) : source;
  return (javascript !== null && fromAst(javascript)) || exportsFromText(source);
}

function fromAst(source: string): ModuleExports | null {
  let ast: any;
  try {
    ast = parsers().acorn.parse(source, { ecmaVersion: 'latest', sourceType: 'module', allowHashBang: true });
  } catch {
    return null;
  }
  const found = new Collector();
  const nameOf = (n: any): string => n.name ?? n.value;
  for (const node of ast.body) {
    if (node.type === 'ExportNamedDeclaration') {
      const decl = node.declaration;
      if (decl?.id?.name) found.add(decl.id.name, decl.id.name);
      for (const d of decl?.declarations ?? []) if (d.id?.name) found.add(d.id.name, d.id.name);
      // With a `from`, the local name is the other module's; a function's name is usually that too.
      for (const s of node.specifiers ?? []) found.add(nameOf(s.local), nameOf(s.exported));
    } else if (node.type === 'ExportDefaultDeclaration') {
      const decl = node.declaration;
      if (decl.type === 'Identifier') found.add(decl.name, 'default');
      // An anonymous default function or class is named `default`.
      else if (/Function|Class/.test(decl.type)) found.add(decl.id?.name ?? 'default', 'default');
      else found.add(decl.id?.name ?? null, 'default');
    } else if (node.type === 'ExportAllDeclaration' && node.exported) {
      found.add(null, nameOf(node.exported));
    } else if (node.type === 'ExpressionStatement') {
      commonJs(node.expression, found);
    }
  }
  return found;
}

/** CommonJS: `exports.x = …`, `module.exports.x = …`, `module.exports = { a, b: c }`. */
function commonJs(expr: any, found: Collector): void {
  if (expr?.type !== 'AssignmentExpression') return;
  const left = expr.left;
  if (left.type !== 'MemberExpression') return;
  const obj = left.object;
  const isExports = obj.type === 'Identifier' && obj.name === 'exports';
  const isModuleExports =
    obj.type === 'MemberExpression' && obj.object.name === 'module' && obj.property.name === 'exports';
  const localOf = (value: any, key: string): string => (value?.type === 'Identifier' ? value.name : value?.id?.name ?? key);
  if ((isExports || isModuleExports) && left.property.type === 'Identifier') {
    found.add(localOf(expr.right, left.property.name), left.property.name);
  } else if (obj.name === 'module' && left.property.name === 'exports' && expr.right.type === 'ObjectExpression') {
    for (const p of expr.right.properties) if (p.key?.name) found.add(localOf(p.value, p.key.name), p.key.name);
  }
}

/** Exports from source text that no parser at hand can read (TypeScript without esbuild). */
export function exportsFromText(source: string): ModuleExports {
  const text = withoutComments(source);
  const found = new Collector();
  const id = '[A-Za-z_$][\\w$]*';
  const declaration = new RegExp(
    `\\bexport\\s+(?:declare\\s+)?(default\\s+)?(?:abstract\\s+)?(?:async\\s+)?(?:function\\b\\s*\\*?\\s*|(?:class|const|let|var|enum)\\s+)(${id})?`,
    'g',
  );
  for (const m of text.matchAll(declaration)) {
    // `export default class extends Base` is anonymous: `extends` is no name.
    const name = m[2] === 'extends' ? undefined : m[2];
    if (m[1]) found.add(name ?? 'default', 'default');
    else if (name) found.add(name, name);
  }
  for (const m of text.matchAll(new RegExp(`\\bexport\\s+default\\s+(${id})\\s*(?:;|\\n|$)`, 'g'))) {
    if (!/^(function|class|async|abstract)$/.test(m[1]!)) found.add(m[1]!, 'default');
  }
  if (/\bexport\s+default\b/.test(text)) found.add(null, 'default');
  for (const m of text.matchAll(/\bexport\s*(type\s*)?\{([^}]*)\}/g)) {
    if (m[1]) continue; // `export type { … }` exports no values
    for (const part of m[2]!.split(',')) {
      const [local, exported = local] = part.trim().replace(/^type\s+/, '').split(/\s+as\s+/).map((s) => s.trim());
      if (local && exported && new RegExp(`^${id}$`).test(exported)) found.add(local, exported);
    }
  }
  return found;
}
