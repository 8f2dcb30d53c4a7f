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
import { tmpdir } from 'node:os';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { TsHooksData } from './ts-hooks.js';

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

/**
 * `execArgv` without tsx's `--import tsx` (or the CLI's `--require
 * …/preflight.cjs --import …/loader.mjs`), or null when it names tsx in a
 * way we do not know (`--loader tsx`, `--import tsx/esm`…): the child then
 * keeps tsx.
 */
export function withoutTsx(execArgv: readonly string[]): string[] | null {
  const kept: string[] = [];
  let dropped = false;
  for (let i = 0; i < execArgv.length; i++) {
    const token = execArgv[i]!;
    const eq = token.indexOf('=');
    const name = token.startsWith('--') && eq > 0 ? token.slice(0, eq) : token;
    const value = eq > 0 && token.startsWith('--') ? token.slice(eq + 1) : execArgv[i + 1];
    if ((name === '--import' || name === '--require' || name === '-r') && value !== undefined && isTsxEntry(value)) {
      dropped = true;
      if (eq < 0 || !token.startsWith('--')) i++;
      continue;
    }
    if (/(?:^|[/\\=])tsx(?:$|[/\\])/.test(token)) return null;
    kept.push(token);
  }
  return dropped ? kept : null;
}

/** True when the tsconfig tsx reads may map bare specifiers (`paths`), or we cannot tell. */
function tsconfigMayMapPaths(): boolean {
  const given = process.env['TSX_TSCONFIG_PATH'];
  let file: string | null = given ? resolvePath(given) : null;
  for (let dir = process.cwd(); !file; dir = dirname(dir)) {
    if (existsSync(join(dir, 'tsconfig.json'))) file = join(dir, 'tsconfig.json');
    else if (dirname(dir) === dir) return false;
  }
  return mapsPaths(file, 0);
}

function mapsPaths(file: string, depth: number): boolean {
  if (depth > 8) return true;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return depth > 0; // a missing base: tsx complains, we do not guess
  }
  if (/"paths"\s*:/.test(text)) return true;
  const extended = [...text.matchAll(/"extends"\s*:\s*(\[[^\]]*\]|"[^"]*")/g)].flatMap((m) => [...m[1]!.matchAll(/"([^"]+)"/g)].map((s) => s[1]!));
  return extended.some((base) => {
    try {
      const path = /^\.{0,2}\//.test(base) ? resolvePath(dirname(file), base) : createRequire(file).resolve(base);
      return mapsPaths(existsSync(path) || path.endsWith('.json') ? path : `${path}.json`, depth + 1);
    } catch {
      return true;
    }
  });
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
  const uid = process.getuid?.() ?? 'user';
  const data: TsHooksData = {
    tsxLoader,
    tsxVersion,
    cacheDir: join(tmpdir(), `multiprocessing-ts-${uid}`, 'tsx-cache'),
    tsxResolvesBare: tsconfigMayMapPaths(),
  };
  register(TS_HOOKS_URL, { data });
  // tsx's output carries inline source maps: stack traces then name the .ts lines.
  process.setSourceMapsEnabled(true);
  if (existsSync(tsxCjsApi)) requireTsOnDemand(tsxCjsApi);
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
