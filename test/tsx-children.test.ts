/**
 * Children of a TypeScript entry under tsx (`tsx main.ts` and
 * `node --import tsx main.ts`, both start methods) load TypeScript through
 * our small hooks (process/ts-hooks.ts): served from a cache of tsx's output
 * when the source was seen before, compiled by tsx on a miss. Either way the
 * child must see the module as the parent does: its .ts URL, other .ts
 * modules imported as `./x.js` or `./x`, stack traces naming the .ts lines,
 * and a file edited since the last run.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { METHODS, run } from './helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsxCli = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
// Inside the package, so that 'multiprocessing-ts' resolves (its self-reference) and the scope is ESM.
const scratch = mkdtempSync(join(root, 'dist', 'test', 'tsx-children-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const helper = (tag: string) =>
  [`export const tag: string = '${tag}';`, 'export function boom(): never {', "  throw new Error('boom in helper');", '}', ''].join('\n');

const main = (otherSpecifier: string) =>
  [
    "import * as mp from 'multiprocessing-ts';",
    "import { tag, boom } from './helper.js';",
    `import { other } from '${otherSpecifier}';`,
    '',
    'export function report(): void {',
    '  const url: string = import.meta.url;',
    '  console.log(JSON.stringify({ url, tag, other }));',
    '}',
    '',
    'export function fail(): void {',
    '  boom();',
    '}',
    '',
    'if (mp.isMainProcess()) {',
    '  for (const target of [report, fail]) {',
    '    const p = new mp.Process({ target });',
    '    p.start();',
    '    await p.join();',
    '    console.log(JSON.stringify({ exitCode: p.exitCode }));',
    '  }',
    '}',
    '',
  ].join('\n');

/** A project of three TypeScript modules in a directory of its own, with its own temporary directory (the cache's place). */
function project(name: string, otherSpecifier = './other', tsconfig?: object): { dir: string; tmp: string } {
  const dir = join(scratch, name);
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(dir, 'main.ts'), main(otherSpecifier));
  writeFileSync(join(dir, 'helper.ts'), helper('v1'));
  writeFileSync(join(dir, 'other.ts'), 'export const other: number = 42;\n');
  if (tsconfig) writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  return { dir, tmp };
}

const runners: Array<[string, (file: string) => string[]]> = [
  ['tsx main.ts', (file) => [tsxCli, file]],
  ['node --import tsx main.ts', (file) => ['--import', 'tsx', file]],
];

/** Runs main.ts; checks what both children saw and returns the tag the first one read. */
async function runMain(dir: string, tmp: string, method: string, argv: (file: string) => string[]): Promise<string> {
  const r = await run(process.execPath, argv(join(dir, 'main.ts')), {
    cwd: dir,
    env: { MULTIPROCESSING_TS_START_METHOD: method, TMPDIR: tmp },
  });
  const lines = r.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(lines.length, 3, r.stdout + r.stderr);
  const [seen, reported, failed] = lines;
  assert.equal(seen!['url'], pathToFileURL(join(dir, 'main.ts')).href, 'import.meta.url is the .ts file URL');
  assert.equal(seen!['other'], 42, 'an extensionless import of another .ts module');
  assert.deepEqual([reported, failed], [{ exitCode: 0 }, { exitCode: 1 }]);
  // The throw is on line 3 of helper.ts, called from line 11 of main.ts.
  assert.match(r.stderr, /Error: boom in helper\n\s+at boom \(\S*helper\.ts:3:\d+\)\n\s+at fail \(\S*main\.ts:11:\d+\)/);
  return seen!['tag'] as string;
}

function cachedModules(tmp: string): number {
  const dir = readdirSync(tmp).find((name) => name.startsWith('multiprocessing-ts-'));
  return dir ? readdirSync(join(tmp, dir), { recursive: true }).filter((f) => String(f).endsWith('.mjs')).length : 0;
}

describe('TypeScript children under tsx', () => {
  for (const method of METHODS) {
    for (const [runner, argv] of runners) {
      it(`see the .ts URL, .ts imports, .ts stack lines, from tsx on a miss, from the cache after, and an edit (${method}, ${runner})`, async () => {
        const { dir, tmp } = project(`${method}-${runner.split(' ')[0]}`);
        assert.equal(await runMain(dir, tmp, method, argv), 'v1', 'first run: compiled by tsx');
        assert.equal(cachedModules(tmp), 3, "tsx's output of the three modules is kept");
        assert.equal(await runMain(dir, tmp, method, argv), 'v1', 'second run: from the cache');
        assert.equal(cachedModules(tmp), 3, 'nothing compiled again');
        writeFileSync(join(dir, 'helper.ts'), helper('v2'));
        assert.equal(await runMain(dir, tmp, method, argv), 'v2', 'the edit is seen');
        assert.equal(cachedModules(tmp), 4, 'the edited module is kept beside the old one');
      });
    }
  }

  it("leaves bare imports to tsx when the project's tsconfig has paths (thread, node --import tsx)", async () => {
    const { dir, tmp } = project('paths', '~/other', { compilerOptions: { paths: { '~/*': ['./*'] } } });
    assert.equal(await runMain(dir, tmp, 'thread', runners[1]![1]), 'v1');
    assert.equal(await runMain(dir, tmp, 'process', runners[0]![1]), 'v1');
  });
});
