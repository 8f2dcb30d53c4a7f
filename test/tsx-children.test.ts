/**
 * Children of a TypeScript entry under tsx (`tsx main.ts` and
 * `node --import tsx main.ts`, both start methods) load TypeScript through
 * our small hooks (process/ts-hooks.ts): served from a cache of tsx's output
 * when the source was seen before, compiled by tsx on a miss. Either way the
 * child must see the module as the parent does: its .ts URL, other .ts
 * modules imported as `./x.js` or `./x`, stack traces naming the .ts lines,
 * and a file edited since the last run. The cache is theirs alone (another
 * user's directory or files are not used), its key covers what tsx's output
 * depends on, and it sheds stale files.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { METHODS, run } from './helpers.js';
import { defaultCacheDir, openCacheDir, readEntry, trustedDir } from '../src/process/ts-cache.js';
import { withoutTsx } from '../src/process/ts-children.js';
import { tsconfigChain } from '../src/process/tsconfig-chain.js';

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

/** A project of three TypeScript modules in a directory of its own, with its own cache directory (XDG_CACHE_HOME) and TMPDIR. */
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
    env: { MULTIPROCESSING_TS_START_METHOD: method, TMPDIR: tmp, XDG_CACHE_HOME: tmp },
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

const cacheOf = (tmp: string) => join(tmp, `multiprocessing-ts-${process.getuid!()}`, 'tsx-cache');

/** The cache's entries (paths). */
function cacheEntries(tmp: string): string[] {
  const dir = cacheOf(tmp);
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.mjs'))
    .map((f) => join(dir, f));
}

const cachedModules = (tmp: string) => cacheEntries(tmp).length;

/** The cache entry of helper.ts (its output holds the error message). */
function helperEntry(tmp: string): string {
  const found = cacheEntries(tmp).filter((f) => readFileSync(f, 'utf8').includes('boom in helper'));
  assert.equal(found.length, 1, 'one cache entry of helper.ts');
  return found[0]!;
}

describe('TypeScript children under tsx', () => {
  for (const method of METHODS) {
    for (const [runner, argv] of runners) {
      it(`see the .ts URL, .ts imports, .ts stack lines, from tsx on a miss, from the cache after, and an edit (${method}, ${runner})`, async () => {
        const { dir, tmp } = project(`${method}-${runner.split(' ')[0]}`);
        assert.equal(await runMain(dir, tmp, method, argv), 'v1', 'first run: compiled by tsx');
        assert.equal(cachedModules(tmp), 3, "tsx's output of the three modules is kept");
        // Marks the cached output: a child that reads 'cached' was served from the cache, not by tsx.
        const entry = helperEntry(tmp);
        writeFileSync(entry, readFileSync(entry, 'utf8').replace('"v1"', '"cached"'));
        assert.equal(await runMain(dir, tmp, method, argv), 'cached', 'second run: from the cache');
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

/**
 * A main.ts that prints what `expression` is in the parent, then in a
 * 'process' and a 'thread' child, and each child's exit code.
 */
const probe = (imports: string, expression: string) =>
  [
    "import * as mp from 'multiprocessing-ts';",
    imports,
    `export function report(): void { console.log(JSON.stringify({ seen: ${expression} })); }`,
    'if (mp.isMainProcess()) {',
    '  report();',
    "  for (const method of ['process', 'thread'] as const) {",
    '    const p = new (mp.getContext(method).Process)({ target: report });',
    '    p.start();',
    '    await p.join();',
    '    console.log(JSON.stringify({ method, exitCode: p.exitCode }));',
    '  }',
    '}',
    '',
  ].join('\n');

function probeProject(name: string, files: Record<string, string>): { dir: string; tmp: string } {
  const dir = join(scratch, name);
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  return { dir, tmp };
}

/** Runs a probe's main.ts: what the parent, the 'process' child and the 'thread' child saw, and the children's exit codes. */
async function runProbe(dir: string, tmp: string, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ seen: unknown[]; exitCodes: unknown[]; stdout: string; stderr: string }> {
  const r = await run(process.execPath, argv, { cwd: dir, env: { TMPDIR: tmp, XDG_CACHE_HOME: tmp, ...env } });
  const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    seen: lines.filter((l) => 'seen' in l).map((l) => l['seen']),
    exitCodes: lines.filter((l) => 'exitCode' in l).map((l) => [l['method'], l['exitCode']]),
    stdout: r.stdout,
    stderr: r.stderr,
  };
}

const BOTH_EXIT_0 = [
  ['process', 0],
  ['thread', 0],
];

describe('the cache of TypeScript children', () => {
  const uid = process.getuid!();
  const asRoot = uid === 0;
  const NOBODY = 65534;

  it('is not trusted when it is a symlink, writable by group or other, or (as root) owned by another user; nor are such files', () => {
    const base = mkdtempSync(join(scratch, 'trust-'));
    const dir = join(base, 'multiprocessing-ts', 'tsx-cache');
    assert.equal(openCacheDir(dir), dir, 'made private, and used');
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    chmodSync(dir, 0o777);
    assert.equal(openCacheDir(dir), null, 'a world-writable directory is not used (mkdir does not fix it)');
    chmodSync(dir, 0o700);
    chmodSync(join(base, 'multiprocessing-ts'), 0o777);
    assert.equal(openCacheDir(dir), null, 'nor one in a world-writable directory');
    chmodSync(join(base, 'multiprocessing-ts'), 0o700);
    const elsewhere = join(base, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o700 });
    const linked = join(base, 'linked');
    symlinkSync(elsewhere, linked);
    assert.equal(trustedDir(linked), false, 'a symlink to a directory is not used');
    mkdirSync(join(dir, 'ab'), { mode: 0o700 });
    const file = join(dir, 'ab', 'cd.mjs');
    writeFileSync(file, 'export {};', { mode: 0o600 });
    assert.equal(readEntry(file), 'export {};');
    chmodSync(file, 0o666);
    assert.equal(readEntry(file), null, 'a world-writable file is not served');
    chmodSync(file, 0o600);
    symlinkSync(file, join(dir, 'ab', 'link.mjs'));
    assert.equal(readEntry(join(dir, 'ab', 'link.mjs')), null, 'a symlink is not served');
    if (asRoot) {
      chownSync(file, NOBODY, NOBODY);
      assert.equal(readEntry(file), null, "another user's file is not served");
      chownSync(dir, NOBODY, NOBODY);
      assert.equal(openCacheDir(dir), null, "another user's directory is not used");
    }
  });

  it("a child never runs what another user planted: not from a world-writable cache directory, nor another user's files in ours (thread, process)", async () => {
    const { dir, tmp } = probeProject('planted', {
      'main.ts': probe("import { tag } from './helper.js';", 'tag'),
      'helper.ts': "export const tag: string = 'v1';\n",
    });
    const argv = ['--import', 'tsx', 'main.ts'];
    assert.deepEqual((await runProbe(dir, tmp, argv)).seen, ['v1', 'v1', 'v1']);
    const entries = cacheEntries(tmp);
    assert.equal(entries.length, 2, 'main.ts and helper.ts are cached');
    const planted = "console.log(JSON.stringify({ seen: 'PWNED' })); export const tag = 'PWNED'; export function report() {}\n";
    const plant = () => entries.forEach((f) => writeFileSync(f, planted, { mode: 0o600 }));
    plant();
    chmodSync(cacheOf(tmp), 0o777);
    const open = await runProbe(dir, tmp, argv);
    assert.deepEqual([open.seen, open.exitCodes], [['v1', 'v1', 'v1'], BOTH_EXIT_0], open.stdout + open.stderr);
    assert.match(open.stderr, /MULTIPROCESSING_TS_CACHE_UNTRUSTED.*tsx-cache/, 'the children say why they compile without a cache');
    chmodSync(cacheOf(tmp), 0o700);
    if (!asRoot) return;
    plant();
    for (const f of entries) chownSync(f, NOBODY, NOBODY);
    const theirs = await runProbe(dir, tmp, argv);
    assert.deepEqual([theirs.seen, theirs.exitCodes], [['v1', 'v1', 'v1'], BOTH_EXIT_0], theirs.stdout + theirs.stderr);
    assert.ok(
      entries.every((f) => statSync(f).uid === uid),
      "the planted files were replaced by tsx's output (our own)",
    );
  });

  it('is keyed by the tsconfig: a child sees a changed useDefineForClassFields as the parent does (thread, process)', async () => {
    const main = probe(
      ['class Base { set x(_v: number) { (globalThis as any).setterRan = true; } }', 'class Derived extends Base { x = 1; }'].join('\n'),
      '(new Derived(), !!(globalThis as any).setterRan)',
    );
    for (const [useDefine, setterRuns] of [
      [true, false],
      [false, true],
    ] as const) {
      const { dir, tmp } = probeProject('tsconfig', {
        'main.ts': main,
        'tsconfig.json': JSON.stringify({ compilerOptions: { useDefineForClassFields: useDefine } }),
      });
      const r = await runProbe(dir, tmp, ['--import', 'tsx', 'main.ts']);
      assert.deepEqual([r.seen, r.exitCodes], [[setterRuns, setterRuns, setterRuns], BOTH_EXIT_0], r.stdout + r.stderr);
    }
  });

  it('does not store what tsx compiled under a tsconfig edited after the hooks registered: the old tsconfig keeps its semantics (process, thread)', async () => {
    const setterRuns = ['class Base { set x(_v: number) { (globalThis as any).setterRan = true; } }', 'class Derived extends Base { x = 1; }'];
    const { dir, tmp } = probeProject('tsconfig-edit', {
      'main.ts': [
        "import * as mp from 'multiprocessing-ts';",
        "import { writeFileSync } from 'node:fs';",
        "const useDefine = (on: boolean) => writeFileSync('tsconfig.json', JSON.stringify({ compilerOptions: { useDefineForClassFields: on } }));",
        'export function warm(): void {}',
        // The hooks registered (and main.ts was served from the cache) before this edit; the miss on mod-*.ts loads tsx, which reads the edited file.
        'export async function report(mod: string, edit: boolean): Promise<void> {',
        '  if (edit) useDefine(false);',
        '  const { setterRan } = await import(mod);',
        '  console.log(JSON.stringify({ seen: setterRan() }));',
        '}',
        'if (mp.isMainProcess()) {',
        "  for (const method of ['process', 'thread'] as const) {",
        '    const mod = `./mod-${method}.js`;',
        '    for (const [target, args] of [[warm, []], [report, [mod, true]], [report, [mod, false]]] as const) {',
        '      const p = new (mp.getContext(method).Process)({ target, args: [...args] });',
        '      p.start();',
        '      await p.join();',
        '      useDefine(true);',
        '      console.log(JSON.stringify({ method, exitCode: p.exitCode }));',
        '    }',
        '  }',
        '}',
        '',
      ].join('\n'),
      'tsconfig.json': JSON.stringify({ compilerOptions: { useDefineForClassFields: true } }),
      ...Object.fromEntries(
        ['process', 'thread'].map((m) => [`mod-${m}.ts`, [...setterRuns, 'export function setterRan(): boolean { (globalThis as any).setterRan = false; new Derived(); return !!(globalThis as any).setterRan; }', ''].join('\n')]),
      ),
    });
    const r = await runProbe(dir, tmp, ['--import', 'tsx', 'main.ts']);
    // Per method: the edited tsconfig (useDefineForClassFields false: the setter runs), then the old one again (it does not).
    assert.deepEqual(r.seen, [true, false, true, false], r.stdout + r.stderr);
    assert.deepEqual(r.exitCodes, [...Array(3).fill(['process', 0]), ...Array(3).fill(['thread', 0])], r.stdout + r.stderr);
  });

  it("follows `extends` of a package without main as TypeScript does ('@tsconfig/node20' is its tsconfig.json), so the key is whole", () => {
    const dir = mkdtempSync(join(scratch, 'extends-'));
    const pkg = join(dir, 'node_modules', '@tsconfig', 'node20');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: '@tsconfig/node20', version: '20.1.0' }));
    writeFileSync(join(pkg, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'es2022' } }));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: '@tsconfig/node20' }));
    const chain = tsconfigChain({}, dir);
    assert.deepEqual(chain.files?.map(([file]) => file), [join(dir, 'tsconfig.json'), join(pkg, 'tsconfig.json')]);
    assert.equal(chain.mayMapPaths, false);
  });

  it("is in a directory of the user's uid, so one another user made with the same HOME (sudo without -H) is not in the way", () => {
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: '/cache' }), `/cache/multiprocessing-ts-${uid}/tsx-cache`);
    assert.equal(defaultCacheDir({}), join(homedir(), '.cache', `multiprocessing-ts-${uid}`, 'tsx-cache'));
  });

  it('counts an entry\'s age from its last use: a hit touches an entry older than a day, and leaves a younger one', () => {
    const dir = openCacheDir(join(mkdtempSync(join(scratch, 'touch-')), 'mp', 'tsx-cache'))!;
    mkdirSync(join(dir, 'ab'), { mode: 0o700 });
    const now = Date.now() / 1000;
    for (const [name, time] of [['old.mjs', now - 20 * 24 * 3600], ['young.mjs', now - 3600]] as const) {
      writeFileSync(join(dir, 'ab', name), 'export {};', { mode: 0o600 });
      utimesSync(join(dir, 'ab', name), time, time);
      assert.equal(readEntry(join(dir, 'ab', name)), 'export {};');
    }
    assert.ok(statSync(join(dir, 'ab', 'old.mjs')).mtimeMs > (now - 60) * 1000, 'the old entry was touched');
    assert.ok(statSync(join(dir, 'ab', 'young.mjs')).mtimeMs < (now - 3000) * 1000, 'the young one was not');
  });

  it('drops entries unused for 30 days and temporary files older than an hour from the buckets it writes to, and keeps the young ones', async () => {
    const { dir, tmp } = probeProject('prune', {
      'main.ts': probe("import { tag } from './helper.js';", 'tag'),
      'helper.ts': "export const tag: string = 'v1';\n",
    });
    const cache = cacheOf(tmp);
    const old = Date.now() / 1000 - 31 * 24 * 3600;
    const hoursAgo = Date.now() / 1000 - 2 * 3600;
    for (let i = 0; i < 256; i++) {
      const bucket = join(cache, i.toString(16).padStart(2, '0'));
      mkdirSync(bucket, { recursive: true, mode: 0o700 });
      for (const [name, time] of [
        ['old.mjs', old],
        ['young.mjs', hoursAgo],
        ['x.mjs.123.abc', hoursAgo],
        ['y.mjs.456.def', Date.now() / 1000],
      ] as const) {
        writeFileSync(join(bucket, name), '', { mode: 0o600 });
        utimesSync(join(bucket, name), time, time);
      }
    }
    chmodSync(join(cacheOf(tmp), '..'), 0o700);
    chmodSync(cache, 0o700);
    const r = await runProbe(dir, tmp, ['--import', 'tsx', 'main.ts']);
    assert.deepEqual(r.seen, ['v1', 'v1', 'v1'], r.stdout + r.stderr);
    const written = new Set(cacheEntries(tmp).filter((f) => !/(?:old|young)\.mjs$/.test(f)).map((f) => join(f, '..')));
    assert.ok(written.size > 0, 'the children wrote entries');
    for (const bucket of written) {
      const names = readdirSync(bucket);
      assert.ok(!names.includes('old.mjs') && !names.includes('x.mjs.123.abc'), `stale files are gone from ${bucket}: ${names}`);
      assert.ok(names.includes('young.mjs') && names.includes('y.mjs.456.def'), `young files stay in ${bucket}: ${names}`);
    }
    const youngLeft = cacheEntries(tmp).filter((f) => f.endsWith('young.mjs')).length;
    assert.equal(youngLeft, 256, 'no young entry was removed anywhere');
  });
});

describe('TypeScript children resolve and preload as tsx does', () => {
  for (const [runner, argv] of runners) {
    it(`prefer helper.ts to a stale helper.js beside it for './helper.js' (process and thread, ${runner})`, async () => {
      const { dir, tmp } = probeProject(`stale-js-${runner.split(' ')[0]}`, {
        'main.ts': probe("import { which } from './helper.js';", 'which'),
        'helper.ts': "export const which: string = 'helper.ts';\n",
        'helper.js': "export const which = 'helper.js';\n",
      });
      const r = await runProbe(dir, tmp, argv(join(dir, 'main.ts')));
      assert.deepEqual([r.seen, r.exitCodes], [['helper.ts', 'helper.ts', 'helper.ts'], BOTH_EXIT_0], r.stdout + r.stderr);
    });
  }

  it("load a .cts module imported as './helper.cjs' (process and thread)", async () => {
    const { dir, tmp } = probeProject('cts', {
      'main.ts': probe("import helper from './helper.cjs';", 'helper.tag'),
      'helper.cts': "const tag: string = 'helper.cts';\nmodule.exports = { tag };\n",
    });
    const r = await runProbe(dir, tmp, ['--import', 'tsx', 'main.ts']);
    assert.deepEqual([r.seen, r.exitCodes], [['helper.cts', 'helper.cts', 'helper.cts'], BOTH_EXIT_0], r.stdout + r.stderr);
  });

  it('both children run a TypeScript preload: node --import tsx --import ./setup.ts main.ts (a process child keeps tsx; a thread child runs it after its hooks)', async () => {
    const { dir, tmp } = probeProject('preload', {
      'main.ts': probe('', '(globalThis as any).setupTag'),
      'setup.ts': "const tag: string = 'set up';\n(globalThis as any).setupTag = tag;\n",
    });
    const r = await runProbe(dir, tmp, ['--import', 'tsx', '--import', './setup.ts', 'main.ts']);
    assert.deepEqual([r.seen, r.exitCodes], [['set up', 'set up', 'set up'], BOTH_EXIT_0], r.stdout + r.stderr);
  });

  it('both children run a JavaScript preload after tsx that imports TypeScript: node --import tsx --import ./setup.mjs main.ts', async () => {
    const { dir, tmp } = probeProject('preload-js', {
      'main.ts': probe('', '(globalThis as any).setupTag'),
      'setup.mjs': "import { tag } from './cfg.ts';\nglobalThis.setupTag = tag;\n",
      'cfg.ts': "export const tag: string = 'set up';\n",
    });
    const r = await runProbe(dir, tmp, ['--import', 'tsx', '--import', './setup.mjs', 'main.ts']);
    assert.deepEqual([r.seen, r.exitCodes], [['set up', 'set up', 'set up'], BOTH_EXIT_0], r.stdout + r.stderr);
  });

  it('withoutTsx keeps tsx when a preload, in execArgv or NODE_OPTIONS, may be TypeScript or comes after tsx, and drops it when the others are plain JavaScript before it', () => {
    const cwd = root;
    assert.deepEqual(withoutTsx(['--import', 'tsx', '--expose-gc'], '', cwd), ['--expose-gc']);
    assert.deepEqual(withoutTsx(['--import', './setup.mjs', '--import', 'tsx', '-r', 'node:os', '--import=data:text/javascript,0'], '', cwd), [
      '--import',
      './setup.mjs',
      '-r',
      'node:os',
      '--import=data:text/javascript,0',
    ]);
    assert.deepEqual(withoutTsx(['--require', 'acorn', '--import', 'tsx'], '', cwd), ['--require', 'acorn'], 'a package whose file is .js, before tsx');
    assert.equal(withoutTsx(['--import', 'acorn', '--import', 'tsx'], '', cwd), null, 'a package --import resolves with ESM conditions (its exports may name a .ts file)');
    for (const after of [['--import', './setup.mjs'], ['--require=./setup.cjs'], ['-r', 'acorn']]) {
      assert.equal(withoutTsx(['--import', 'tsx', ...after], '', cwd), null, `${after.join(' ')} after tsx may rely on it`);
    }
    for (const preload of [
      ['--import', './setup.ts'],
      ['--import=./setup.ts'],
      ['--require', './setup.cts'],
      ['-r', './setup'],
      ['--loader', './loader.mts'],
      ['--experimental-loader=./loader.ts'],
      ['--import', 'no-such-package'],
    ]) {
      assert.equal(withoutTsx(['--import', 'tsx', ...preload], '', cwd), null, preload.join(' '));
    }
    assert.equal(withoutTsx(['--import', 'tsx'], '--import ./setup.ts', cwd), null, 'NODE_OPTIONS');
    assert.equal(withoutTsx(['--import', 'tsx'], '--require="./my setup.ts"', cwd), null, 'NODE_OPTIONS, quoted');
    assert.deepEqual(withoutTsx(['--import', 'tsx'], '--max-old-space-size=100 --require ./a.cjs', cwd), []);
  });
});
