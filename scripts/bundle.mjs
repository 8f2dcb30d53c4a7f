#!/usr/bin/env node
/**
 * Bundles the runtime into dist/bundle/: `index.js` (the package entry),
 * `bootstrap.js` (the first module of every child) and one shared chunk, so
 * both entries share a single copy of the package's state.
 *
 * Why: a child imports the package before it runs its target, and Node 20
 * pays about a millisecond per ES module file; two dozen small modules cost
 * more than the rest of the child's start-up. One chunk keeps start+join
 * close to a bare `fork()` or `new Worker()`. Types still come from tsc
 * (dist/src/*.d.ts); the source stays one small module per concern.
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { rmSync } from 'node:fs';

const root = fileURLToPath(new URL('..', import.meta.url));

// esbuild leaves chunks of earlier builds behind; start clean.
rmSync(`${root}/dist/bundle`, { recursive: true, force: true });

await build({
  absWorkingDir: root,
  entryPoints: { index: 'src/index.ts', bootstrap: 'src/process/bootstrap.ts' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  // Whitespace and syntax only: identifiers stay, so stack traces read
  // as the source does (the source map has the rest). Parsing less text is
  // a measurable part of a child's start.
  minifyWhitespace: true,
  minifySyntax: true,
  // Loaded on first use with require(); they stay ordinary dependencies.
  external: ['acorn', 'eslint-scope'],
  chunkNames: 'shared-[hash]',
  logLevel: 'warning',
});
