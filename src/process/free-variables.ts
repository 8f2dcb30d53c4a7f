/**
 * Free-variable analysis of a function's source text.
 *
 * A target sent "by source" is recompiled in the child, far from the scope it
 * was written in, so every name it uses must be either its own or a global of
 * the child. We parse the source with acorn and let eslint-scope resolve every
 * reference; what stays unresolved at the top and is not a global is a free
 * variable, and the target is refused by name.
 */
import { parsers } from './parsers.js';

/**
 * Helpers that TypeScript compilers inject into function bodies. esbuild
 * (and so tsx) wraps named functions in `__name(fn, "name")` when it keeps
 * names; the child defines a shim for it.
 */
const INJECTED_HELPERS: ReadonlySet<string> = new Set(['__name']);

/** The source turned into an expression we can parse and later evaluate. */
export function functionExpressionSource(fn: Function): string {
  const src = Function.prototype.toString.call(fn);
  if (/\{\s*\[native code\]\s*\}\s*$/.test(src)) {
    throw new TypeError('native or bound function');
  }
  if (/^class\b/.test(src)) throw new TypeError('a class, not a function');
  // `function`, `async function`, arrows and `async` arrows parse as they are.
  if (/^(async\s+)?function\b/.test(src)) return src;
  if (/^(async\s*)?(\(|[\w$]+\s*=>)/.test(src) && isArrow(src)) return src;
  // Method shorthand: `name(a) {…}`, `async name() {…}`, `*gen() {…}`, `get x() {…}`.
  const m = /^(async\s+)?(\*\s*)?/.exec(src)!;
  const rest = src.slice(m[0].length);
  if (/^(get|set)\s/.test(rest)) throw new TypeError('an accessor, not a function');
  if (!/^[A-Za-z_$][\w$]*\s*\(/.test(rest)) throw new TypeError('a method with a computed name');
  return `${m[1] ?? ''}function${m[2] ? '*' : ''} ${rest}`;
}

function isArrow(src: string): boolean {
  try {
    const ast = parsers().acorn.parse(`(${src})`, { ecmaVersion: 'latest' }) as any;
    return ast.body[0]?.expression?.type === 'ArrowFunctionExpression';
  } catch {
    return false;
  }
}

/**
 * Names the function uses but does not declare, minus the globals of a child
 * (anything on `globalThis` here) and injected compiler helpers.
 */
export function freeVariables(expressionSource: string): string[] {
  const { acorn, eslintScope } = parsers();
  const ast = acorn.parse(`(${expressionSource})`, { ecmaVersion: 'latest', sourceType: 'script', ranges: true });
  const manager = eslintScope.analyze(ast as any, { ecmaVersion: 2022, sourceType: 'script' } as any);
  const names = new Set<string>();
  for (const ref of manager.globalScope!.through) {
    const name = ref.identifier.name;
    if (name in globalThis || INJECTED_HELPERS.has(name)) continue;
    names.add(name);
  }
  return [...names];
}
