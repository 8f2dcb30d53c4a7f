#!/usr/bin/env node
/**
 * Bundles the runtime into dist/bundle/: `index.js` (the package entry, ES
 * module) with `pool-worker.js` (a pool worker's entry) and the chunk they
 * share, and `bootstrap.cjs` (the first module of every child, CommonJS),
 * self-contained. What both contain (runtime state, the shared-object registry) lives
 * on `globalThis` under registered symbols, so the copies agree; the rest of
 * the bootstrap is stateless. Beside them, `cli.js` (the `multiprocessing-ts`
 * command, package.json `bin`), which imports `index.js`.
 *
 * Why: a child imports the package before it runs its target, and Node 20
 * pays about a millisecond per ES module file; two dozen small modules cost
 * more than the rest of the child's start-up. One file each keeps start+join
 * close to a bare `fork()` or `new Worker()`. Types still come from tsc
 * (dist/src/*.d.ts); the source stays one small module per concern.
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { chmodSync, rmSync } from 'node:fs';

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
  // Node prints the source line of an uncaught error's throw site: keep
  // lines short, or a user's unhandled StateError shows the whole bundle.
  lineLimit: 160,
  // Loaded on first use with require(); they stay ordinary dependencies.
  external: ['acorn', 'eslint-scope', 'ioredis'],
  logLevel: 'warning',
};

// `../index.js` in the source (the package entry) stays a file of its own.
const packageEntryStaysExternal = {
  name: 'package-entry-stays-external',
  setup(b) {
    b.onResolve({ filter: /\.\.\/index\.js$/ }, () => ({ path: './index.js', external: true }));
  },
};

// Node's built-ins reach the ES module bundle through `require`, not
// `import … from 'node:fs'`: in an ES module each built-in imported is a
// module of its own for the loader to resolve, wrap (every export) and link,
// ~0.2 ms apiece in a fresh worker thread, where a pool worker loads the
// chunk below on its way to its first task (measured: a worker's import of
// its entry took ~1 ms less with the chunk's seven built-ins required).
// The source keeps ordinary imports; the bundle reads each from a shim
// that requires it. Only built-ins that every thread has loaded anyway (or
// nearly: os) go this way: a shim the chunk shares with index.js is
// evaluated in a worker whether or not the worker uses it (crypto, say,
// which costs 1–3 ms to load), where an unused import was dropped.
const REQUIRED_BUILTINS = new Set(['node:fs', 'node:path', 'node:url', 'node:os', 'node:timers', 'node:async_hooks', 'node:util']);
const builtinsThroughRequire = {
  name: 'builtins-through-require',
  setup(b) {
    // Anything else (the shim's own node:module too) is left to esbuild, which
    // drops an import of a built-in whose bindings go unused.
    b.onResolve({ filter: /^node:/ }, (args) =>
      args.namespace !== 'builtin' && REQUIRED_BUILTINS.has(args.path) ? { path: args.path, namespace: 'builtin' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, async (args) => {
      const names = Object.keys(await import(args.path)).filter((n) => n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n));
      const lines = names.map((n) => `export const ${n} = /* @__PURE__ */ pick(${JSON.stringify(n)});`);
      // Pure: a built-in none of whose exports is used is not loaded at all, as an unused import was dropped.
      return {
        contents: [
          `import { createRequire } from 'node:module';`,
          `function load() { return createRequire(import.meta.url)(${JSON.stringify(args.path)}); }`,
          `const m = /* @__PURE__ */ load();`,
          `function pick(name) { return m[name]; }`,
          `export default m;`,
          ...lines,
        ].join('\n'),
        loader: 'js',
      };
    });
  },
};

// The package entry and a pool worker's entry (pool/worker-entry.ts), split:
// what both use goes to a chunk both import, so a worker loads about a
// quarter of the package instead of all of it, and a module that imports
// the package in that worker later shares the chunk's module instances
// (one copy of each class and registry) rather than loading copies. The
// chunks sit beside index.js: `import.meta.url`-relative files
// (bootstrap.cjs, ts-hooks.mjs, pool-worker.js) resolve the same from either.
await build({
  ...common,
  entryPoints: { index: 'src/index.ts', 'pool-worker': 'src/pool/worker-entry.ts' },
  splitting: true,
  chunkNames: '[name]-[hash]',
  plugins: [builtinsThroughRequire],
  define: {
    __MPTS_BOOTSTRAP_FILE__: JSON.stringify('./bootstrap.cjs'),
    __MPTS_TS_HOOKS_FILE__: JSON.stringify('./ts-hooks.mjs'),
    __MPTS_POOL_WORKER_FILE__: JSON.stringify('./pool-worker.js'),
  },
});
// The loader hooks of a child under tsx (process/ts-hooks.ts) run in Node's
// loader thread, which loads them by URL: a file of their own, builtins only.
await build({
  ...common,
  entryPoints: { 'ts-hooks': 'src/process/ts-hooks.ts' },
  outExtension: { '.js': '.mjs' },
});
// The bootstrap is CommonJS: a child's first file then skips the ES module
// loader's resolve/load/link round for itself (the target's module still
// goes through it). Measured: a 'thread' child's start+join went from
// 1.10-1.16x to 1.00-1.07x a raw Worker. It imports the package
// (../index.js in the source) only when its args hold shared objects, and
// that must be the package's own file, not a copy.
await build({
  ...common,
  format: 'cjs',
  entryPoints: { bootstrap: 'src/process/bootstrap.ts' },
  outExtension: { '.js': '.cjs' },
  define: { 'import.meta.url': '__mpts_bootstrap_url', __MPTS_TS_HOOKS_FILE__: JSON.stringify('./ts-hooks.mjs') },
  banner: { js: 'const __mpts_bootstrap_url = require("node:url").pathToFileURL(__filename).href;' },
  plugins: [packageEntryStaysExternal],
});
// The command (package.json `bin`). It imports the package entry, not a
// copy: a module it imports for the user (`serve --register`) registers
// typeids on the package's classes, which must be the ones it serves.
// esbuild keeps the entry's `#!/usr/bin/env node`; the mode lets the
// file run as a command in this checkout too (npm sets it when installing).
await build({
  ...common,
  entryPoints: { cli: 'src/cli/main.ts' },
  plugins: [packageEntryStaysExternal],
});
chmodSync(`${root}/dist/bundle/cli.js`, 0o755);
