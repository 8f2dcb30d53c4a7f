/**
 * How a child of a tree that runs under tsx loads TypeScript: with our small
 * hooks (ts-hooks.ts), which serve modules compiled before from a cache and
 * load tsx only on a miss, instead of tsx's own, which load tsx and esbuild
 * and start esbuild's service in every child.
 *
 * The parent drops the tsx options it knows from a `'process'` child's
 * `execArgv` (withoutTsx); the child then registers our hooks
 * (registerTsHooks). A `'thread'` child always registers them: Node 20 does
 * not carry a thread's hooks into a Worker. Any tsx option we do not know
 * stays, and such a child runs under tsx as before.
 */
import { createRequire, register } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { TsHooksData } from './ts-hooks.js';
import { defaultCacheDir } from './ts-cache.js';
import { tsconfigChain, tsconfigText } from './tsconfig-chain.js';
import { PRELOADS, nodeOptionTokens } from './preloads.js';

/** Set by the bundler: the hooks are bundled alone as ts-hooks.mjs (see scripts/bundle.mjs). */
declare const __MPTS_TS_HOOKS_FILE__: string | undefined;

const TS_HOOKS_URL = new URL(
  typeof __MPTS_TS_HOOKS_FILE__ === 'string' ? __MPTS_TS_HOOKS_FILE__ : './ts-hooks.js',
  import.meta.url,
);

/** `--import`/`--require` values that are tsx's own entry points as `tsx main.ts` and `--import tsx` pass them. */
function isTsxEntry(value: string): boolean {
  return value === 'tsx' || /[/\\]node_modules[/\\]tsx[/\\]dist[/\\](?:loader\.mjs|preflight\.cjs)$/.test(value);
}

/** A preload that is no file: a builtin or a data: URL (tsx's hooks cannot matter to it). */
function builtinOrData(value: string): boolean {
  return value.startsWith('node:') || value.startsWith('data:');
}

/**
 * True when a preload is plain JavaScript that Node loads without tsx: a
 * builtin, a data: URL, a path or file: URL ending in .js/.mjs/.cjs, a
 * package `require` resolves to such a file (for `--require` only: Node
 * resolves the others with ESM conditions, where `exports` may name a .ts
 * file). Anything else (a .ts file, an extensionless path tsx would
 * complete, a package we cannot resolve as Node would) may need tsx's hooks.
 */
function plainJavaScript(option: string, value: string, cwd: string): boolean {
  if (builtinOrData(value)) return true;
  const jsFile = (path: string) => /\.[cm]?js$/.test(path) && !/[?#]/.test(path);
  if (/^(?:\.{0,2}\/|file:)/.test(value)) return jsFile(value);
  if (option !== '--require' && option !== '-r') return false;
  try {
    return jsFile(createRequire(join(cwd, 'noop.js')).resolve(value));
  } catch {
    return false;
  }
}

/**
 * `execArgv` without tsx's `--import tsx` (or the CLI's `--require
 * …/preflight.cjs --import …/loader.mjs`), or null when the child must keep
 * tsx: it names tsx in a way we do not know (`--loader tsx`, `--import
 * tsx/esm`…), or another preload (here or in `NODE_OPTIONS`) may need
 * tsx: one that may be TypeScript (`--import ./setup.ts`), or any file or
 * package after tsx's (`--import tsx --import ./setup.mjs`, whose imports
 * may be .ts files). Node runs preloads before our bootstrap can register
 * hooks, so only tsx's would be in place for them (`NODE_OPTIONS`' run first).
 */
export function withoutTsx(execArgv: readonly string[], nodeOptions = process.env['NODE_OPTIONS'] ?? '', cwd = process.cwd()): string[] | null {
  const kept: string[] = [];
  let dropped = false;
  for (const [tokens, keep] of [[nodeOptionTokens(nodeOptions), false], [execArgv, true]] as const) {
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      const eq = token.startsWith('--') ? token.indexOf('=') : -1;
      const name = eq > 0 ? token.slice(0, eq) : token;
      const value = eq > 0 ? token.slice(eq + 1) : tokens[i + 1];
      if (PRELOADS.has(name) && value !== undefined) {
        const own = eq > 0 ? [token] : [token, value];
        if (eq < 0) i++;
        if (keep && name !== '--loader' && name !== '--experimental-loader' && isTsxEntry(value)) dropped = true;
        // After tsx's own, a JavaScript file too may rely on it (`import './cfg.ts'`): only its order says so.
        else if (dropped ? !builtinOrData(value) : !plainJavaScript(name, value, cwd)) return null;
        else if (keep) kept.push(...own);
        continue;
      }
      if (/(?:^|[/\\=])tsx(?:$|[/\\])/.test(token)) return null;
      if (keep) kept.push(token);
    }
  }
  return dropped ? kept : null;
}

/** A preload a `'thread'` child runs itself, once its TypeScript hooks are in place. */
export interface DeferredPreload {
  readonly kind: 'import' | 'require';
  /** A file: URL (for `import`) or an absolute path (for `require`). */
  readonly specifier: string;
}

/**
 * For a `'thread'` child of a parent under tsx whose preloads need tsx
 * (`withoutTsx` said null): the Worker's `execArgv` without tsx's own
 * preloads and without the `--import`/`--require` of files, which the
 * child runs itself, in order, after it registers its hooks
 * (`runDeferredPreloads`). A Node 20 Worker does not apply the
 * `--import tsx` it inherits, so run by Node those files would fail
 * ("Unknown file extension .ts"). Preloads named by package, and
 * `--loader`s, stay with Node, as do those of `NODE_OPTIONS`. Null when
 * there is nothing to defer.
 */
export function deferFilePreloads(execArgv: readonly string[], cwd = process.cwd()): { execArgv: string[]; preloads: DeferredPreload[] } | null {
  const kept: string[] = [];
  const preloads: DeferredPreload[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const token = execArgv[i]!;
    const eq = token.startsWith('--') ? token.indexOf('=') : -1;
    const name = eq > 0 ? token.slice(0, eq) : token;
    const value = eq > 0 ? token.slice(eq + 1) : execArgv[i + 1];
    if (!PRELOADS.has(name) || value === undefined) {
      kept.push(token);
      continue;
    }
    const own = eq > 0 ? [token] : [token, value];
    if (eq < 0) i++;
    const file = /^(?:\.{0,2}\/|file:)/.test(value);
    if (name !== '--loader' && name !== '--experimental-loader' && isTsxEntry(value)) continue;
    if (file && name === '--import') {
      preloads.push({ kind: 'import', specifier: value.startsWith('file:') ? value : pathToFileURL(resolve(cwd, value)).href });
    } else if (file && (name === '--require' || name === '-r')) {
      preloads.push({ kind: 'require', specifier: value.startsWith('file:') ? fileURLToPath(value) : resolve(cwd, value) });
    } else {
      kept.push(...own);
    }
  }
  return preloads.length > 0 ? { execArgv: kept, preloads } : null;
}

/** Runs a `'thread'` child's deferred preloads, in order (see `deferFilePreloads`). */
export async function runDeferredPreloads(preloads: readonly DeferredPreload[]): Promise<void> {
  for (const { kind, specifier } of preloads) {
    if (kind === 'import') await import(specifier);
    else createRequire(specifier)(specifier);
  }
}

/** tsx's files next to its ESM API (`dist/esm/api/index.mjs`). */
function tsxFile(api: string, relative: string): string {
  return join(dirname(api), '..', '..', relative);
}

/**
 * Registers our hooks in this child (tsx's CommonJS hooks load on the first
 * `require` of a .ts file). Falls back to registering tsx's own when ours
 * cannot be used with this tsx.
 */
export async function registerTsHooks(api: string): Promise<void> {
  const tsxLoader = tsxFile(api, 'loader.mjs');
  const tsxCjsApi = tsxFile(api, join('cjs', 'api', 'index.cjs'));
  let tsxVersion: string | undefined;
  try {
    tsxVersion = (JSON.parse(readFileSync(tsxFile(api, join('..', 'package.json')), 'utf8')) as { version?: string }).version;
  } catch {
    // Not the layout we know.
  }
  if (!tsxVersion || !existsSync(tsxLoader)) {
    const tsx = (await import(pathToFileURL(api).href)) as { register(): void };
    tsx.register();
    return;
  }
  const tsconfig = tsconfigChain();
  const tsconfigKey = tsconfigText(tsconfig);
  const esbuildVersion = packageVersion(createRequire(tsxLoader), 'esbuild');
  const data: TsHooksData = {
    tsxLoader,
    // What tsx's output depends on (it compiles for this Node, with source
    // contents under coverage): a cache entry made under other settings is a miss.
    settings: JSON.stringify([tsxVersion, esbuildVersion, process.versions.node, !!process.env['NODE_V8_COVERAGE'], tsconfigKey]),
    // A tsconfig chain or an esbuild we cannot read: no cache rather than a stale one.
    cacheDir: tsconfigKey !== null && esbuildVersion ? defaultCacheDir() : null,
    tsxResolvesBare: tsconfig.mayMapPaths,
    tsconfig: tsconfigKey,
  };
  register(TS_HOOKS_URL, { data });
  // tsx's output carries inline source maps: stack traces then name the .ts lines.
  process.setSourceMapsEnabled(true);
  if (existsSync(tsxCjsApi)) requireTsOnDemand(tsxCjsApi);
}

/** The version of the package `name` as `require` resolves it, or null. */
function packageVersion(require: NodeJS.Require, name: string): string | null {
  try {
    return (JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

/** CommonJS `require` of a TypeScript file: registers tsx's CommonJS hooks on first use. */
function requireTsOnDemand(tsxCjsApi: string): void {
  const extensions = (createRequire(import.meta.url)('node:module') as { _extensions: Record<string, Function> })._extensions;
  const ours = new Map<string, Function>();
  for (const ext of ['.ts', '.tsx', '.cts', '.mts']) {
    if (extensions[ext]) continue;
    const first = function (this: unknown, module: unknown, filename: string): unknown {
      for (const [e, fn] of ours) if (extensions[e] === fn) delete extensions[e];
      (createRequire(import.meta.url)(tsxCjsApi) as { register(): void }).register();
      return (extensions[ext] ?? extensions['.js'])!.call(this, module, filename);
    };
    ours.set(ext, first);
    extensions[ext] = first;
  }
}
