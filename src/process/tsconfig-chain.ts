/**
 * The tsconfig tsx reads in this process (`TSX_TSCONFIG_PATH`, else the
 * nearest `tsconfig.json` from the working directory) and the files it
 * `extends`, read as text: a child's loader hooks need to know whether it may
 * map bare specifiers (`paths`: tsx resolves those) and what to put in the
 * cache key (tsx compiles with its compiler options).
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';

export interface TsconfigChain {
  /** True when the chain may map bare specifiers (`paths`), or we cannot tell. */
  readonly mayMapPaths: boolean;
  /** Each file of the chain, its path and its text, in the order read; null when part of it could not be read. */
  readonly files: ReadonlyArray<readonly [path: string, text: string]> | null;
}

/** How deep `extends` may go before we stop guessing. */
const MAX_DEPTH = 8;

export function tsconfigChain(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): TsconfigChain {
  const given = env['TSX_TSCONFIG_PATH'];
  let file: string | null = given ? resolvePath(cwd, given) : null;
  for (let dir = cwd; !file; dir = dirname(dir)) {
    if (existsSync(join(dir, 'tsconfig.json'))) file = join(dir, 'tsconfig.json');
    else if (dirname(dir) === dir) return { mayMapPaths: false, files: [] };
  }
  const files: Array<[string, string]> = [];
  const state = { mayMapPaths: false, complete: true };
  read(file, 0, files, state, given !== undefined);
  return { mayMapPaths: state.mayMapPaths, files: state.complete ? files : null };
}

/**
 * The chain's files as one string (the part of a cache key tsx's compiler
 * options come from), or null when it could not be read whole.
 */
export function tsconfigText(chain: TsconfigChain = tsconfigChain()): string | null {
  return chain.files && JSON.stringify(chain.files);
}

function read(file: string, depth: number, files: Array<[string, string]>, state: { mayMapPaths: boolean; complete: boolean }, required: boolean): void {
  if (depth > MAX_DEPTH) {
    state.mayMapPaths = true;
    state.complete = false;
    return;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // A missing base (or given file): tsx complains, we do not guess.
    if (depth > 0) state.mayMapPaths = true;
    if (depth > 0 || required) state.complete = false;
    return;
  }
  files.push([file, text]);
  if (/"paths"\s*:/.test(text)) state.mayMapPaths = true;
  const extended = [...text.matchAll(/"extends"\s*:\s*(\[[^\]]*\]|"[^"]*")/g)].flatMap((m) => [...m[1]!.matchAll(/"([^"]+)"/g)].map((s) => s[1]!));
  for (const base of extended) {
    const path = /^\.{0,2}\//.test(base) ? resolvePath(dirname(file), base) : packageTsconfig(base, file);
    if (path === null) {
      state.mayMapPaths = true;
      state.complete = false;
      continue;
    }
    read(existsSync(path) || path.endsWith('.json') ? path : `${path}.json`, depth + 1, files, state, true);
  }
}

const isFile = (path: string): boolean => {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
};

/**
 * The file a bare `extends` names, looked up as TypeScript does: in each
 * `node_modules` up from the tsconfig, `<name>` itself, `<name>.json`, the
 * file its package.json's `tsconfig` field names, `<name>/tsconfig.json`;
 * then as `require` resolves it. A package such as `@tsconfig/node20` has
 * no main, so `require` alone fails on it. Null when nothing is found.
 */
function packageTsconfig(name: string, from: string): string | null {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const base = join(dir, 'node_modules', name);
    let field: unknown;
    try {
      field = (JSON.parse(readFileSync(join(base, 'package.json'), 'utf8')) as { tsconfig?: unknown }).tsconfig;
    } catch {
      // No package here, or none with a tsconfig field.
    }
    const candidates = [base, `${base}.json`, ...(typeof field === 'string' ? [join(base, field)] : []), join(base, 'tsconfig.json')];
    const found = candidates.find(isFile);
    if (found) return found;
    if (dirname(dir) === dir) break;
  }
  try {
    return createRequire(from).resolve(name);
  } catch {
    return null;
  }
}
