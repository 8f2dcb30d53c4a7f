/**
 * Which names a module exports, read from its source without running it.
 *
 * `Process.start()` is synchronous (as in Python), but whether a target can
 * go "by reference" depends on the entry module exporting it, and an ES
 * module's namespace cannot be had synchronously while that module is still
 * evaluating (it is the one calling `start()`). So we read the exports off
 * the source: acorn for JavaScript, and for TypeScript (which acorn cannot
 * parse) a scan of `export` declarations, which is all we need from it.
 * The child verifies the export when it imports the module.
 */
import { readFileSync } from 'node:fs';
import { parsers } from './parsers.js';

const cache = new Map<string, ReadonlySet<string>>();

/** Export names of the module at `path` (empty when it cannot be read). */
export function exportedNames(path: string): ReadonlySet<string> {
  let names = cache.get(path);
  if (!names) {
    names = scan(path);
    cache.set(path, names);
  }
  return names;
}

function scan(path: string): ReadonlySet<string> {
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch {
    return new Set();
  }
  if (source.startsWith('#!')) source = '//' + source.slice(2);
  if (/\.[cm]?jsx?$/.test(path)) {
    const fromAst = namesFromAst(source);
    if (fromAst) return fromAst;
  }
  return namesFromText(source);
}

function namesFromAst(source: string): Set<string> | null {
  let ast: any;
  try {
    ast = parsers().acorn.parse(source, { ecmaVersion: 'latest', sourceType: 'module', allowHashBang: true });
  } catch {
    return null;
  }
  const names = new Set<string>();
  for (const node of ast.body) {
    if (node.type === 'ExportNamedDeclaration') {
      const decl = node.declaration;
      if (decl?.id?.name) names.add(decl.id.name);
      for (const d of decl?.declarations ?? []) if (d.id?.name) names.add(d.id.name);
      for (const s of node.specifiers ?? []) names.add(s.exported.name ?? s.exported.value);
    } else if (node.type === 'ExportDefaultDeclaration') {
      names.add('default');
    } else if (node.type === 'ExpressionStatement') {
      // CommonJS: exports.x = …, module.exports.x = …, module.exports = { a, b }
      commonJsNames(node.expression, names);
    }
  }
  return names;
}

function commonJsNames(expr: any, names: Set<string>): void {
  if (expr?.type !== 'AssignmentExpression') return;
  const left = expr.left;
  if (left.type !== 'MemberExpression') return;
  const obj = left.object;
  const isExports = obj.type === 'Identifier' && obj.name === 'exports';
  const isModuleExports =
    obj.type === 'MemberExpression' && obj.object.name === 'module' && obj.property.name === 'exports';
  if ((isExports || isModuleExports) && left.property.type === 'Identifier') {
    names.add(left.property.name);
  } else if (obj.name === 'module' && left.property.name === 'exports' && expr.right.type === 'ObjectExpression') {
    for (const p of expr.right.properties) if (p.key?.name) names.add(p.key.name);
  }
}

/** Export names from TypeScript (or unparsable) source text. */
function namesFromText(source: string): Set<string> {
  const text = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
  const names = new Set<string>();
  const declaration =
    /\bexport\s+(?:declare\s+)?(?:default\s+)?(?:abstract\s+)?(?:async\s+)?(?:function\s*\*?|class|const|let|var|enum)\s+([A-Za-z_$][\w$]*)/g;
  for (const m of text.matchAll(declaration)) names.add(m[1]!);
  for (const m of text.matchAll(/\bexport\s*(?:type\s*)?\{([^}]*)\}/g)) {
    for (const part of m[1]!.split(',')) {
      const alias = part.trim().split(/\s+as\s+/).pop()?.trim();
      if (alias && /^[A-Za-z_$][\w$]*$/.test(alias)) names.add(alias);
    }
  }
  if (/\bexport\s+default\b/.test(text)) names.add('default');
  return names;
}
