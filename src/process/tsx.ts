/**
 * Where the tsx this process runs under lives, read off `execArgv`
 * (`--import tsx`, or the paths the tsx CLI passes): thread children must
 * register its ESM hooks themselves (Node 20 does not carry them into
 * workers), and a TypeScript entry's exports are read with its esbuild.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runtime } from '../runtime.js';

/** package.json of each tsx named in `execArgv` (`--import tsx`, or the paths the tsx CLI passes). */
export function tsxPackageFiles(): string[] {
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

let api: string | null | undefined;

/** tsx's ESM API when this tree runs under tsx (a child inherits its parent's); null otherwise. */
export function tsxApi(): string | null {
  if (api !== undefined) return api;
  api = runtime().child?.tsxApi ?? null;
  if (api) return api;
  for (const file of tsxPackageFiles()) {
    try {
      api = createRequire(file).resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs');
      break;
    } catch {
      // Not resolvable from there: try the next.
    }
  }
  return api;
}
