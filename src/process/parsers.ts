/**
 * acorn and eslint-scope, and the project's own esbuild, used on first need.
 *
 * Every child imports this package, but only a process that starts a child
 * by source (or reads an entry's exports) needs a parser. Loading them
 * eagerly costs ~40 ms per child start; `require` (and `execFileSync` for
 * esbuild) keeps the first use synchronous, which `start()` needs.
 */
import { createRequire } from 'node:module';
import { childProcess } from '../builtins.js';
import { dirname, join } from 'node:path';
import { tsxPackageFiles } from './tsx.js';
import type * as Acorn from 'acorn';
import type * as EslintScope from 'eslint-scope';

type Parsers = { readonly acorn: typeof Acorn; readonly eslintScope: typeof EslintScope };

let acorn: typeof Acorn | undefined;
let eslintScope: typeof EslintScope | undefined;

/** Each parser loads when first read: reading exports needs acorn only (eslint-scope adds ~5 ms). */
const lazy: Parsers = {
  get acorn() {
    return (acorn ??= createRequire(import.meta.url)('acorn') as typeof Acorn);
  },
  get eslintScope() {
    return (eslintScope ??= createRequire(import.meta.url)('eslint-scope') as typeof EslintScope);
  },
};

export function parsers(): Parsers {
  return lazy;
}

const esbuildBinaries = new Map<string, string | null>();

/**
 * The esbuild executable of the program that runs `nearPath`: the one of
 * the tsx this process runs under, else the one resolvable from `nearPath`
 * or the working directory; null when there is none. We do not ship a
 * TypeScript parser: a TypeScript entry only runs under such a loader,
 * which brings esbuild along.
 */
function esbuildBinary(nearPath: string): string | null {
  if (esbuildBinaries.has(nearPath)) return esbuildBinaries.get(nearPath)!;
  let found: string | null = process.env['ESBUILD_BINARY_PATH'] || null;
  for (const base of found ? [] : [...tsxPackageFiles(), nearPath, join(process.cwd(), 'noop.js')]) {
    try {
      found = join(dirname(createRequire(base).resolve('esbuild/package.json')), 'bin', 'esbuild');
      break;
    } catch {
      // Not resolvable from here; try the next place.
    }
  }
  esbuildBinaries.set(nearPath, found);
  return found;
}

/**
 * TypeScript (or JSX) source as JavaScript, compiled by the project's
 * esbuild; null when there is none or the source does not compile.
 *
 * Through esbuild's command line rather than its JavaScript API: the API's
 * synchronous mode starts a service thread and process, ~40 ms on the first
 * call (our one call per entry), the command line ~10 ms, and it leaves
 * nothing running. es2022 lowers what acorn cannot read yet (decorators);
 * exports stay as written.
 */
export function compileTypeScript(path: string, source: string, loader: 'ts' | 'tsx' | 'jsx'): string | null {
  const binary = esbuildBinary(path);
  if (!binary) return null;
  try {
    return childProcess().execFileSync(binary, [`--loader=${loader}`, '--target=es2022', `--sourcefile=${path}`], {
      input: source,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'ignore'],
      timeout: 10_000,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch {
    return null;
  }
}
