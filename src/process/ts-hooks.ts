/**
 * The module loader hooks of a child whose tree runs under tsx: a small
 * stand-in for tsx's own hooks that serves TypeScript modules from a cache
 * of tsx's own output, and loads tsx only when it must.
 *
 * Why: tsx's hooks load tsx and esbuild into the child's loader thread and
 * start esbuild's service process, ~150–200 ms per child, even when every
 * module was compiled before. This module loads nothing but Node's builtins;
 * a TypeScript module whose source has been seen before (the cache is keyed
 * by tsx's version, the module's URL and its source text, so an edit is a
 * miss) is served from a file. On a miss, or for anything this module does
 * not handle (tsconfig `paths`, tsx's query URLs, CommonJS output), tsx's
 * hooks are loaded here and do the work, and their ES module output is
 * cached for the next child.
 *
 * What the child runs is therefore exactly what tsx made, so the target's
 * source fingerprint, `import.meta.url` (the module keeps its .ts URL) and
 * the inline source map (the child enables source maps: stack traces name
 * the .ts lines) are those the parent has.
 *
 * Runs in Node's loader thread: no imports but builtins (it is bundled
 * alone), and nothing here may throw where tsx would have answered.
 */
import { createHash } from 'node:crypto';
import { isBuiltin } from 'node:module';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** What the child passes to `module.register` (see ts-children.ts). */
export interface TsHooksData {
  /** tsx's hooks module (`tsx/dist/loader.mjs`), loaded on a miss. */
  readonly tsxLoader: string;
  /** tsx's version: part of the cache key, as another tsx may compile differently. */
  readonly tsxVersion: string;
  /** Where compiled modules are kept. */
  readonly cacheDir: string;
  /** True when the project's tsconfig may map bare specifiers (`paths`): tsx resolves those. */
  readonly tsxResolvesBare: boolean;
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

export function initialize(given: TsHooksData): void {
  data = given;
}

/** tsx's hooks, loaded and initialised on first need. */
function tsx(): Promise<Hooks> {
  tsxHooks ??= (async () => {
    const hooks = (await import(pathToFileURL(data!.tsxLoader).href)) as Hooks;
    // tsx's initialize wants an object (it refuses the deprecated --loader's undefined).
    await hooks.initialize?.({});
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

/** The .ts file a relative or file: import that Node cannot find stands for, or null. */
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
  try {
    resolved = await next(specifier, context);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    const ts = code === 'ERR_MODULE_NOT_FOUND' || code === 'ERR_UNSUPPORTED_DIR_IMPORT' ? typeScriptTarget(specifier, context.parentURL) : null;
    // Anything else tsx may know (tsconfig paths, its own URLs): ask it, and let it throw.
    if (!ts && fromTsx) throw err;
    if (!ts) return (await tsx()).resolve(specifier, context, next);
    resolved = { url: ts };
  }
  if (!isTypeScriptModule(resolved.url)) return resolved;
  const file = compiledFile(resolved.url);
  if (file) {
    compiled.set(resolved.url, file);
    return { url: resolved.url, format: 'module', shortCircuit: true };
  }
  // Not compiled yet: tsx resolves it (its load needs the formats its resolve gives).
  return (await tsx()).resolve(specifier, context, next);
}

/** Cached files of the modules resolve found compiled, by URL. */
const compiled = new Map<string, string>();

/** A .ts/.mts/.tsx file URL with no query (tsx's own marks): what the cache serves (.cts is CommonJS). */
function isTypeScriptModule(url: string): boolean {
  return url.startsWith('file:') && TS_FILE.test(url) && !url.endsWith('.cts');
}

/** Cache file of the module at `url` with this source. */
function cacheFile(url: string, source: Buffer): string {
  const key = createHash('sha1').update(`${data!.tsxVersion}\0${url}\0`).update(source).digest('hex');
  return join(data!.cacheDir, key.slice(0, 2), `${key.slice(2)}.mjs`);
}

/** The cache file of the module at `url` as it is now, if one was stored. */
function compiledFile(url: string): string | null {
  try {
    const file = cacheFile(url, readFileSync(fileURLToPath(url)));
    return existsSync(file) ? file : null;
  } catch {
    return null; // unreadable: tsx says what is wrong
  }
}

export async function load(url: string, context: Context, next: NextLoad): Promise<LoadResult> {
  const file = compiled.get(url);
  if (file) {
    try {
      return { format: 'module', source: readFileSync(file, 'utf8'), shortCircuit: true };
    } catch {
      // Removed since: compile again.
    }
  }
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
    if (unchanged(url, before)) store(cacheFile(url, before), result.source);
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

/** Writes a compiled module, whole or not at all (children may race on the same one). */
function store(file: string, source: string | ArrayBuffer | Uint8Array): void {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    writeFileSync(temp, typeof source === 'string' ? source : new Uint8Array(source as ArrayBuffer), { mode: 0o600 });
    renameSync(temp, file);
  } catch {
    // No cache: the next child compiles again.
  }
}
