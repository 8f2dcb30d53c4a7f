/**
 * acorn and eslint-scope, and the project's own esbuild, loaded on first use.
 *
 * Every child imports this package, but only a process that starts a child
 * by source (or reads an entry's exports) needs a parser. Loading them
 * eagerly costs ~40 ms per child start; `require` keeps the first use
 * synchronous, which `start()` needs.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Acorn from 'acorn';
import type * as EslintScope from 'eslint-scope';

let loaded: { acorn: typeof Acorn; eslintScope: typeof EslintScope } | null = null;

export function parsers(): { acorn: typeof Acorn; eslintScope: typeof EslintScope } {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    loaded = { acorn: require('acorn'), eslintScope: require('eslint-scope') };
  }
  return loaded;
}

/** The part of esbuild's API we use. */
interface Esbuild {
  transformSync(input: string, options: Record<string, unknown>): { code: string };
}

const esbuilds = new Map<string, Esbuild | null>();

/**
 * esbuild as the program that runs `nearPath` has it: the copy of the tsx
 * this process runs under, else the one resolvable from `nearPath` or the
 * working directory; null when there is none. We do not ship a TypeScript
 * parser: a TypeScript entry only runs under such a loader, which brings
 * esbuild along.
 */
export function projectEsbuild(nearPath: string): Esbuild | null {
  if (esbuilds.has(nearPath)) return esbuilds.get(nearPath)!;
  let found: Esbuild | null = null;
  for (const base of [...tsxPackageFiles(), nearPath, join(process.cwd(), 'noop.js')]) {
    try {
      const require = createRequire(base);
      found = require(require.resolve('esbuild')) as Esbuild;
      if (typeof found.transformSync === 'function') break;
      found = null;
    } catch {
      // Not resolvable from here; try the next place.
    }
  }
  esbuilds.set(nearPath, found);
  return found;
}

/** package.json of each tsx named in `execArgv` (`--import tsx`, or the paths the tsx CLI passes). */
function tsxPackageFiles(): string[] {
  const files: string[] = [];
  for (const arg of process.execArgv) {
    if (arg === 'tsx' || arg.startsWith('tsx/')) {
      try {
        files.push(createRequire(join(process.cwd(), 'noop.js')).resolve('tsx/package.json'));
      } catch {
        // Not resolvable from the working directory.
      }
      continue;
    }
    const path = arg.startsWith('file:') ? safePath(arg) : arg;
    const inPackage = path && /^(.*[/\\]node_modules[/\\]tsx)[/\\]/.exec(path);
    if (inPackage) files.push(join(inPackage[1]!, 'package.json'));
  }
  return files;
}

function safePath(url: string): string | null {
  try {
    return fileURLToPath(url);
  } catch {
    return null;
  }
}
