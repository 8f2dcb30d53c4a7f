/**
 * How targets are read: free variables of by-source functions, export names
 * of entry scripts (JavaScript and TypeScript), and what cannot be sent.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeVariables, functionExpressionSource } from '../src/process/free-variables.js';
import { exportedNames } from '../src/process/entry-exports.js';

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
