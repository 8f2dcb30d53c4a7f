/**
 * The module loader hooks of a child whose tree runs under tsx: a small
 * stand-in for tsx's own hooks that serves TypeScript modules from a cache
 * of tsx's own output, and loads tsx only when it must.
 *
 * Why: tsx's hooks load tsx and esbuild into the child's loader thread and
 * start esbuild's service process, ~150–200 ms per child, even when every
 * module was compiled before. This module loads nothing but Node's builtins;
 * a TypeScript module whose source has been seen before is served from a
 * file. The cache key holds all tsx's output depends on: tsx's, esbuild's
 * and Node's versions, the tsconfig tsx reads (its `extends` chain too), the
 * `"type"` of the module's package, its URL and its source (an edit is a
 * miss). On a miss, or for anything this module does not handle (tsconfig
 * `paths`, tsx's query URLs, CommonJS output), tsx's hooks are loaded here
 * and do the work, and their ES module output is cached for the next child
 * (ts-cache.ts says where, and why it can be trusted).
 *
 * What the child runs is therefore exactly what tsx made, so the target's
 * source fingerprint, `import.meta.url` (the module keeps its .ts URL) and
 * the inline source map (the child enables source maps: stack traces name
 * the .ts lines) are those the parent has.
 *
 * Runs in Node's loader thread: no imports but builtins (it is bundled
 * alone), and nothing here may throw where tsx would have answered.
 */
import { isBuiltin } from 'node:module';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { entryFile, openCacheDir, readEntry, writeEntry } from './ts-cache.js';
import { tsconfigText } from './tsconfig-chain.js';

/** What the child passes to `module.register` (see ts-children.ts). */
export interface TsHooksData {
  /** tsx's hooks module (`tsx/dist/loader.mjs`), loaded on a miss. */
  readonly tsxLoader: string;
  /**
   * What tsx's output depends on besides the module itself (tsx's, esbuild's
   * and Node's versions, the tsconfig chain): part of every cache key.
   */
  readonly settings: string;
  /** Where compiled modules are kept; null for no cache. */
  readonly cacheDir: string | null;
  /** True when the project's tsconfig may map bare specifiers (`paths`): tsx resolves those. */
  readonly tsxResolvesBare: boolean;
  /** The tsconfig chain in the key (tsconfigText), as read when the hooks were registered. */
  readonly tsconfig: string | null;
}

type Format = 'module' | 'commonjs' | 'json' | 'wasm' | 'builtin' | string;
interface ResolveResult {
  url: string;
  format?: Format | null;
  shortCircuit?: boolean;
}
interface LoadResult {
  format: Format;
  source?: string | ArrayBuffer | Uint8Array | null;
  shortCircuit?: boolean;
}
type Context = Record<string, unknown> & { parentURL?: string };
type NextResolve = (specifier: string, context?: Context) => Promise<ResolveResult>;
type NextLoad = (url: string, context?: Context) => Promise<LoadResult>;
interface Hooks {
  initialize?(data: unknown): unknown;
  resolve(specifier: string, context: Context, next: NextResolve): Promise<ResolveResult>;
  load(url: string, context: Context, next: NextLoad): Promise<LoadResult>;
}

let data: TsHooksData | null = null;
let tsxHooks: Promise<Hooks> | null = null;
/**
 * False when tsx read another tsconfig than the one in the key: the hooks
 * were registered (a warm spare: maybe long) before tsx loaded, and the file
 * was edited between. Its output then follows the new tsconfig and must not
 * be stored under the old one's key, where a later run with the old file
 * would be served it.
 */
let tsxOutputMatchesKey = false;

export function initialize(given: TsHooksData): void {
  data = given;
}

/** tsx's hooks, loaded and initialised on first need. */
function tsx(): Promise<Hooks> {
  tsxHooks ??= (async () => {
    const hooks = (await import(pathToFileURL(data!.tsxLoader).href)) as Hooks;
    // tsx reads the tsconfig in its initialize: the same before and after
    // means it read what the key holds.
    const before = tsconfigText();
    // tsx's initialize wants an object (it refuses the deprecated --loader's undefined).
    await hooks.initialize?.({});
    tsxOutputMatchesKey = before === data!.tsconfig && tsconfigText() === data!.tsconfig;
    return hooks;
  })();
  return tsxHooks;
}

let tsxDir: string | undefined;

/** URL of tsx's dist directory (its hooks and their chunks). */
function tsxDirUrl(): string {
  return (tsxDir ??= pathToFileURL(dirname(data!.tsxLoader) + '/').href);
}

const TS_FILE = /\.(?:[cm]?ts|tsx)$/;
/** JavaScript extensions a TypeScript import may name for its .ts file, as tsc and tsx allow. */
const JS_TO_TS: Readonly<Record<string, readonly string[]>> = {
  '.js': ['.ts', '.tsx'],
  '.jsx': ['.tsx', '.ts'],
  '.mjs': ['.mts'],
  '.cjs': ['.cts'],
};
const EXTENSIONLESS = ['.ts', '.tsx', '/index.ts', '/index.tsx'];

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * The .ts file a relative or file: import stands for, or null: asked first
 * for a `.js`-like import from a TypeScript module (tsx prefers `./x.ts` to a
 * stale `./x.js` beside it), and when Node cannot find the import.
 */
function typeScriptTarget(specifier: string, parentURL: string | undefined): string | null {
  if (!parentURL?.startsWith('file:') || !/^(?:\.{1,2}\/|\/|file:)/.test(specifier) || /[?#]/.test(specifier)) return null;
  let path: string;
  try {
    path = fileURLToPath(new URL(specifier, parentURL));
  } catch {
    return null;
  }
  const ext = /\.[cm]?jsx?$/.exec(path)?.[0];
  const candidates = ext
    ? JS_TO_TS[ext]!.map((ts) => path.slice(0, -ext.length) + ts)
    : /\.[^/.]+$/.test(path)
      ? []
      : EXTENSIONLESS.map((suffix) => path + suffix);
  const found = candidates.find(isFile);
  return found ? pathToFileURL(found).href : null;
}

export async function resolve(specifier: string, context: Context, next: NextResolve): Promise<ResolveResult> {
  const bare = !/^(?:\.{0,2}\/|[a-z][a-z0-9+.-]*:|#)/i.test(specifier);
  // tsx's own modules come through here too while it loads: they must not wait for it.
  const fromTsx = context.parentURL?.startsWith(tsxDirUrl()) ?? false;
  if (bare && data!.tsxResolvesBare && !fromTsx && !isBuiltin(specifier)) return (await tsx()).resolve(specifier, context, next);
  let resolved: ResolveResult;
  const preferred = TS_FILE.test(context.parentURL ?? '') && /^\.{1,2}\/.*\.[cm]?jsx?$/.test(specifier) ? typeScriptTarget(specifier, context.parentURL) : null;
  // True when the URL is ours (a .ts file found for the import), not what `next` said.
  let madeHere = preferred !== null;
  try {
    resolved = preferred ? { url: preferred } : await next(specifier, context);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    const ts = code === 'ERR_MODULE_NOT_FOUND' || code === 'ERR_UNSUPPORTED_DIR_IMPORT' ? typeScriptTarget(specifier, context.parentURL) : null;
    // Anything else tsx may know (tsconfig paths, its own URLs): ask it, and let it throw.
    if (!ts && fromTsx) throw err;
    if (!ts) return (await tsx()).resolve(specifier, context, next);
    resolved = { url: ts };
    madeHere = true;
  }
  if (!isTypeScriptModule(resolved.url)) {
    // A URL we made that the cache does not serve (`./x.cjs` for x.cts): tsx
    // resolves it, with the format its load needs. Node refuses a result that
    // neither came from `next` nor says it short-circuits.
    if (!madeHere) return resolved;
    // (tsx's own modules must not wait for tsx; they never import such files.)
    return fromTsx ? { ...resolved, shortCircuit: true } : (await tsx()).resolve(specifier, context, next);
  }
  const text = compiledFile(resolved.url);
  if (text !== null) {
    compiled.set(resolved.url, text);
    return { url: resolved.url, format: 'module', shortCircuit: true };
  }
  // Not compiled yet: tsx resolves it (its load needs the formats its resolve gives).
  return (await tsx()).resolve(specifier, context, next);
}

/** Cached text of the modules resolve found compiled, by URL (read once, after its checks). */
const compiled = new Map<string, string>();

/** A .ts/.mts/.tsx file URL with no query (tsx's own marks): what the cache serves (.cts is CommonJS). */
function isTypeScriptModule(url: string): boolean {
  return url.startsWith('file:') && TS_FILE.test(url) && !url.endsWith('.cts');
}

let cacheDir: string | null | undefined;

/** The cache's directory, or null when there is none we may trust (ts-cache.ts). */
function cache(): string | null {
  if (cacheDir === undefined) cacheDir = data!.cacheDir ? openCacheDir(data!.cacheDir) : null;
  return cacheDir;
}

/** `"type"` of the package.json nearest to each directory asked about: tsx's output format follows it. */
const packageTypes = new Map<string, string>();

function packageType(dir: string): string {
  let type = packageTypes.get(dir);
  if (type !== undefined) return type;
  try {
    const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: unknown };
    type = typeof json.type === 'string' ? json.type : 'none';
  } catch (err) {
    const parent = dirname(dir);
    if ((err as NodeJS.ErrnoException)?.code !== 'ENOENT') type = 'unreadable';
    else type = parent === dir ? 'none' : packageType(parent);
  }
  packageTypes.set(dir, type);
  return type;
}

/** Cache file of the module at `url` with this source, or null for no cache. */
function cacheFile(url: string, source: Buffer): string | null {
  const dir = cache();
  if (!dir) return null;
  const type = packageType(dirname(fileURLToPath(url)));
  return entryFile(dir, [data!.settings, type, url], source);
}

/** The text tsx made of the module at `url` as it is now, if it was stored. */
function compiledFile(url: string): string | null {
  try {
    const file = cacheFile(url, readFileSync(fileURLToPath(url)));
    return file && readEntry(file);
  } catch {
    return null; // unreadable: tsx says what is wrong
  }
}

export async function load(url: string, context: Context, next: NextLoad): Promise<LoadResult> {
  const text = compiled.get(url);
  if (text !== undefined) return { format: 'module', source: text, shortCircuit: true };
  if (!isTypeScriptModule(url)) {
    // JavaScript and the rest: Node's own loader, unless tsx marked the URL (its queries).
    return /[?#]/.test(url) ? (await tsx()).load(url, context, next) : next(url, context);
  }
  let before: Buffer | null = null;
  try {
    before = readFileSync(fileURLToPath(url));
  } catch {
    // tsx says what is wrong.
  }
  const result = await (await tsx()).load(url, context, next);
  if (before && result.format === 'module' && result.source != null) {
    // Stored only when the file did not change while tsx compiled it.
    const file = tsxOutputMatchesKey && unchanged(url, before) ? cacheFile(url, before) : null;
    if (file) writeEntry(cache()!, file, result.source);
  }
  return result;
}

function unchanged(url: string, before: Buffer): boolean {
  try {
    return readFileSync(fileURLToPath(url)).equals(before);
  } catch {
    return false;
  }
}
