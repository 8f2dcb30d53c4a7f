/**
 * The seed examples, run as a user runs them: TypeScript entry scripts under
 * tsx, both as `tsx main.ts` and `node --import tsx main.ts`, under both
 * start methods. Their children load TypeScript with no option from the user,
 * and the output is what Python prints (where two processes print at once,
 * in any order Python's could have: scripts/example-output.mjs).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { METHODS, run } from './helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsxCli = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const examples = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.ts'));
const { matchesPython } = (await import(pathToFileURL(join(root, 'scripts', 'example-output.mjs')).href)) as {
  matchesPython(file: string, stdout: string, expected: string): boolean;
};

const runners: Array<[string, (file: string) => string[]]> = [
  ['tsx main.ts', (file) => [tsxCli, file]],
  ['node --import tsx main.ts', (file) => ['--import', 'tsx', file]],
];

/** Examples of our own (no seed, so no Python output): what each must print. */
const OWN: Record<string, RegExp> = {
  '06-pool-primes.ts': /^serial loop: 412849 primes below 6000000 in \d+ ms\npool of \d+: 412849 primes below 6000000 in \d+ ms \(pool start included\)\nspeed-up: [\d.]+x on \d+ cores; same count: true\n$/,
};

for (const [file, pattern] of Object.entries(OWN)) {
  describe(`example ${file}`, () => {
    for (const method of METHODS) {
      it(`runs and prints its result (${method}, tsx main.ts)`, async () => {
        const r = await run(process.execPath, [tsxCli, join('examples', file)], { cwd: root, env: { MULTIPROCESSING_TS_START_METHOD: method } });
        assert.match(r.stdout, pattern);
        // Not a terminal: the progress shows as plain lines on stderr, the last at 100%.
        assert.match(r.stderr, /: (\d+)\/\1 \(100%\)\n$/);
        assert.equal(r.code, 0);
      });
    }
  });
}

for (const file of examples.filter((f) => !(f in OWN))) {
  const expected = readFileSync(join(root, 'examples', 'expected', file.replace(/\.ts$/, '.txt')), 'utf8');
  describe(`example ${file}`, () => {
    for (const method of METHODS) {
      for (const [runner, argv] of runners) {
        it(`prints what Python prints (${method}, ${runner})`, async () => {
          const r = await run(process.execPath, argv(join('examples', file)), {
            cwd: root,
            env: { MULTIPROCESSING_TS_START_METHOD: method },
          });
          assert.equal(r.stderr, '');
          if (!matchesPython(file, r.stdout, expected)) assert.equal(r.stdout, expected, 'not what Python prints (in any order it could)');
          assert.equal(r.code, 0);
        });
      }
    }
  });
}
