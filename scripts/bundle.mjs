#!/usr/bin/env node
/**
 * Bundles the runtime into dist/bundle/: `index.js` (the package entry) and
 * `bootstrap.js` (the first module of every child), one self-contained file
 * each. What both contain (runtime state, the shared-object registry) lives
 * on `globalThis` under registered symbols, so the copies agree; the rest of
 * the bootstrap is stateless.
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

const common = {
  absWorkingDir: root,
  outdir: 'dist/bundle',
  bundle: true,
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
  logLevel: 'warning',
};

await build({ ...common, entryPoints: { index: 'src/index.ts' } });
// The child imports the package (../index.js in the source) only when its
// args hold shared objects; it must be the package's own file, not a copy.
await build({
  ...common,
  entryPoints: { bootstrap: 'src/process/bootstrap.ts' },
  plugins: [
    {
      name: 'package-entry-stays-external',
      setup(b) {
        b.onResolve({ filter: /\.\.\/index\.js$/ }, () => ({ path: './index.js', external: true }));
      },
    },
  ],
});
