/**
 * The seed examples, run as a user runs them: TypeScript entry scripts under
 * tsx, both as `tsx main.ts` and `node --import tsx main.ts`, under both
 * start methods. Their children load TypeScript with no option from the user,
 * and the output is what Python prints.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { METHODS, run } from './helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsxCli = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const examples = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.ts'));

const runners: Array<[string, (file: string) => string[]]> = [
  ['tsx main.ts', (file) => [tsxCli, file]],
  ['node --import tsx main.ts', (file) => ['--import', 'tsx', file]],
];

for (const file of examples) {
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
          assert.equal(r.stdout, expected);
          assert.equal(r.code, 0);
        });
      }
    }
  });
}
