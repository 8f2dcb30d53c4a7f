/**
 * How targets are read: free variables of by-source functions, export names
 * of entry scripts (JavaScript and TypeScript), and what cannot be sent; and
 * that a by-reference target runs in a child as the very function passed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeVariables, functionExpressionSource } from '../src/process/free-variables.js';
import { exportNameOf, exportsFromText, moduleExports } from '../src/process/entry-exports.js';
import { compileTypeScript } from '../src/process/parsers.js';
import * as mp from '../src/index.js';
import { mark } from './fixtures/relative-module/lib.js';
import { METHODS, fixture, run } from './helpers.js';

const exportedNames = (path: string) => moduleExports(path).names;
const byLocal = (path: string) => Object.fromEntries(moduleExports(path).byLocal);
const root = fileURLToPath(new URL('../..', import.meta.url));
const tsxCli = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');

const free = (fn: Function) => freeVariables(functionExpressionSource(fn));

describe('free variables of by-source targets', () => {
  it('finds outer names, and not globals, parameters, locals or arguments', () => {
    const k = 1;
    const o = {
      m(a: number) {
        return a + k;
      },
    };
    assert.deepEqual(free(o.m), ['k']);
    assert.deepEqual(free((a: number) => Math.max(a, k) + (globalThis as any).x), ['k']);
    assert.deepEqual(free(function (this: unknown) {
      const local = arguments.length;
      return [local, process.pid, console, setTimeout, new Map()];
    }), []);
    assert.deepEqual(free(async function* gen() {
      yield await Promise.resolve(k);
    }), ['k']);
  });

  it('allows the __name helper that esbuild/tsx inject', () => {
    assert.deepEqual(freeVariables('function f() { return __name(() => 1, "g"); }'), []);
  });

  it('refuses what has no portable source', () => {
    assert.throws(() => functionExpressionSource(Math.max), /native or bound/);
    assert.throws(() => functionExpressionSource((() => 1).bind(null)), /native or bound/);
    assert.throws(() => functionExpressionSource(class A {}), /class/);
    assert.throws(() => functionExpressionSource({ ['c' + 1]() {} }.c1), /computed/);
  });
});

describe('export names of entry scripts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpts-exports-'));
  it('reads ES module and CommonJS exports from JavaScript', () => {
    const esm = join(dir, 'a.mjs');
    writeFileSync(esm, 'export function f() {}\nexport const g = () => 1, h = 2;\nconst i = 1; export { i as j };\nexport default 3;\n');
    assert.deepEqual([...exportedNames(esm)].sort(), ['default', 'f', 'g', 'h', 'j']);
    const cjs = join(dir, 'b.cjs');
    writeFileSync(cjs, 'exports.f = 1;\nmodule.exports.g = 2;\n');
    assert.deepEqual([...exportedNames(cjs)].sort(), ['f', 'g']);
  });

  it('reads exports from TypeScript, ignoring comments', () => {
    const ts = join(dir, 'c.ts');
    writeFileSync(ts, [
      'export async function work(xs: number[]): Promise<void> {}',
      'export const other = <T,>(x: T): T => x;',
      '// export function commented() {}',
      'function local() {}',
      'export { local as renamed };',
      'export type Shape = { a: number };',
    ].join('\n'));
    assert.deepEqual([...exportedNames(ts)].sort(), ['other', 'renamed', 'work']);
  });
});

describe('which export a by-reference target is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpts-locals-'));
  const js = [
    'export function f() {}',
    'function g() {}',
    'export { g as renamed, g as again };',
    'const h = () => 1;',
    'export default h;',
    "export { x as y } from './other.js';",
  ].join('\n');
  const expected = { f: 'f', g: 'renamed', h: 'default', x: 'y' };

  it('maps local names to export names in JavaScript (renamed, default, re-exported)', () => {
    const path = join(dir, 'a.mjs');
    writeFileSync(path, js);
    assert.deepEqual(byLocal(path), expected);
    const anonymous = join(dir, 'b.mjs');
    writeFileSync(anonymous, 'export default async function () {}\nexport function named() {}\nexport { named as other };\n');
    assert.deepEqual(byLocal(anonymous), { default: 'default', named: 'named' });
  });

  it('maps them in TypeScript, through esbuild (which tells code from text) and by the text scan', () => {
    const ts = [
      'import type { T } from "./types.js";',
      'export default async function work(xs: number[]): Promise<void> {}',
      'function local<U>(x: U): U { return x; }',
      'export { local as renamed };',
      'export type { T };',
      'export const other = <V,>(x: V): V => x;',
      '// export function commented() {}',
    ].join('\n');
    const want = { work: 'default', local: 'renamed', other: 'other' };
    assert.deepEqual(Object.fromEntries(exportsFromText(ts).byLocal), want);
    // Only a parser sees that this export is text in a template literal.
    const withText = ts + '\nconst doc = `\nexport function fake() {}\n`;';
    const path = join(dir, 'c.ts');
    writeFileSync(path, withText);
    assert.notEqual(compileTypeScript(path, withText, 'ts'), null, 'esbuild is at hand');
    assert.deepEqual(byLocal(path), want);
    assert.deepEqual(Object.fromEntries(exportsFromText('function f() {}\nexport default f;\n').byLocal), { f: 'default' });
  });

  it('takes an export declared where it is defined at its word, without loading a parser, and asks the parser for the rest (same answers)', () => {
    const path = join(dir, 'd.mjs');
    const source = [js, 'const doc = `', 'export function fake() {}', '`;', 'export async function* gen() {}', 'export class K {}'].join('\n');
    writeFileSync(path, source);
    const locals = ['f', 'g', 'h', 'x', 'fake', 'gen', 'K', 'nothing'];
    const ts = join(dir, 'e.ts');
    writeFileSync(ts, 'import type { T } from "./types.js";\nexport default async function work(xs: T[]): Promise<void> {}\n');
    // Answers first, in a fresh process: the declared ones must not load acorn (or run esbuild for the .ts).
    const script = [
      `import { exportNameOf } from ${JSON.stringify(new URL('../src/process/entry-exports.js', import.meta.url).href)};`,
      "import { createRequire } from 'node:module';",
      `const declared = [exportNameOf(${JSON.stringify(path)}, 'f'), exportNameOf(${JSON.stringify(path)}, 'gen'), exportNameOf(${JSON.stringify(path)}, 'K'), exportNameOf(${JSON.stringify(ts)}, 'work')];`,
      "const parser = Object.keys(createRequire(process.cwd() + '/').cache).some((key) => /[\\\\/]acorn[\\\\/]/.test(key));",
      'console.log(JSON.stringify({ declared, parser }));',
    ].join('\n');
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
    assert.deepEqual(out, { declared: ['f', 'gen', 'K', 'default'], parser: false });
    const parsed = byLocal(path);
    for (const local of locals) assert.equal(exportNameOf(path, local), parsed[local], local);
    assert.equal(exportNameOf(path, 'fake'), undefined, 'a declaration inside a template literal is text');
  });

  for (const method of METHODS) {
    it(`runs a default export and a renamed export by reference, from a .js entry and a .ts entry under tsx (${method})`, async () => {
      const entries: Array<[string, string[]]> = [
        ['js', [fixture('exports-by-reference.js')]],
        ['ts', [tsxCli, join(root, 'test', 'fixtures', 'exports-by-reference.ts')]],
      ];
      for (const [kind, argv] of entries) {
        const r = await run(process.execPath, argv, { cwd: root, env: { MULTIPROCESSING_TS_START_METHOD: method } });
        assert.equal(r.stderr, '', kind);
        // Each child's module state is its own (one entry); the parent's stayed empty.
        assert.deepEqual(JSON.parse(r.stdout), { exitCodes: [0, 0], out: [11, 21], parentSeen: 0 }, kind);
      }
    });

    it(`refuses another module's function that shares an entry export's name, naming it, the module and the fix, which works (${method})`, async () => {
      const r = await run(process.execPath, [fixture('same-name.js')], { env: { MULTIPROCESSING_TS_START_METHOD: method } });
      const [wrong, withModule, renamedInModule] = JSON.parse(r.stdout);
      assert.deepEqual(wrong, { exitCode: 1, value: 0 }, 'the entry\'s own work() did not run');
      assert.match(r.stderr, /the function 'work' passed as target is not the one file:\S*same-name\.js exports as 'work'.*pass \{ module \}/);
      assert.deepEqual(withModule, { exitCode: 0, value: 2 }, 'with { module } the right function runs');
      assert.deepEqual(renamedInModule, { exitCode: 0, value: 3 }, '{ module } finds a function that module exports renamed');
    });
  }
});

describe('a relative module option', () => {
  const callerJs = fixture('relative-module/caller.js');
  const callerTs = join(root, 'test', 'fixtures', 'relative-module', 'caller.ts');
  const subclassesJs = fixture('relative-module/subclasses.js');
  const subclassesTs = join(root, 'test', 'fixtures', 'relative-module', 'subclasses.ts');
  // Before ES2022, TypeScript's class fields are assignments: tsx compiles a field into a constructor.
  const es2020 = join(root, 'test', 'fixtures', 'relative-module', 'es2020.tsconfig.json');
  const elsewhere = mkdtempSync(join(tmpdir(), 'mpts-cwd-'));

  for (const method of METHODS) {
    it(`is read from the calling file (new Process, a context's, a subclass's super() and one without a constructor), not the working directory, in .js and under tsx (${method})`, async () => {
      for (const argv of [[callerJs], [tsxCli, callerTs]]) {
        const r = await run(process.execPath, argv, { cwd: elsewhere, env: { MULTIPROCESSING_TS_START_METHOD: method } });
        assert.equal(r.stderr, '', argv.at(-1));
        assert.deepEqual(JSON.parse(r.stdout), { exitCodes: [0, 0, 0, 0], out: [1, 1, 1, 1] }, argv.at(-1));
      }
    });

    it(`is read from the file of the subclass constructor that chooses it (one over a constructor-less class, one of a context's Process) and from the calling file past constructors that only forward their arguments (a compiled field, a hand-written one), whether V8 omits default constructors or not, in .js and under tsx with target ES2020 (${method})`, async () => {
      for (const argv of [[subclassesJs], ['--no-omit-default-ctors', subclassesJs], [tsxCli, '--tsconfig', es2020, subclassesTs]]) {
        const r = await run(process.execPath, argv, { cwd: elsewhere, env: { MULTIPROCESSING_TS_START_METHOD: method } });
        assert.equal(r.stderr, '', argv.join(' '));
        assert.deepEqual(JSON.parse(r.stdout), { exitCodes: [0, 0, 0, 0], out: [1, 1, 1, 1] }, argv.join(' '));
      }
    });

    it(`is read from the calling file when the package runs from dist/src (${method})`, async () => {
      const out = mp.Array('i', 1);
      const p = new (mp.getContext(method).Process)({ target: mark, args: [out, 0], module: './fixtures/relative-module/lib.js' });
      p.start();
      await p.join(30_000);
      assert.deepEqual([p.exitCode, out[0]], [0, 1]);
    });
  }

  it('is read from the working directory where the calling code has no file (node -e)', async () => {
    const lib = 'dist/test/fixtures/relative-module/lib.js';
    const code = [
      `import * as mp from 'multiprocessing-ts';`,
      `import { mark } from './${lib}';`,
      `const out = mp.Array('i', 1);`,
      `const p = new mp.Process({ target: mark, args: [out, 0], module: '${lib}' });`,
      `p.start(); await p.join();`,
      `console.log(JSON.stringify([p.exitCode, out[0]]));`,
    ].join('\n');
    const r = await run(process.execPath, ['--input-type=module', '-e', code], { cwd: root });
    assert.equal(r.stderr, '');
    assert.deepEqual(JSON.parse(r.stdout), [0, 1]);
  });

  it('refuses a module that is neither a URL nor a path, naming it', () => {
    assert.throws(() => new mp.Process({ target: () => {}, module: 42 as unknown as string }), /module is .*42.*URL .*or a path/);
    assert.throws(() => new mp.Process({ target: () => {}, module: '' }), /module is/);
  });
});
