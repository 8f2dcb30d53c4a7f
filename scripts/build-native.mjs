#!/usr/bin/env node
/**
 * `npm install` step: builds the native addon with node-gyp.
 *
 * A failed build must not fail the whole install: without the addon the
 * package still runs `'thread'` children (and says so at run time). So a
 * failure prints what is missing and how to retry, and exits 0 — except
 * where the addon is required (CI, or MULTIPROCESSING_TS_REQUIRE_NATIVE=1),
 * so a broken build cannot hide behind the fallback there.
 */
import { spawnSync } from 'node:child_process';

const required = process.env.CI === 'true' || process.env.MULTIPROCESSING_TS_REQUIRE_NATIVE === '1';
const gyp = process.env.npm_config_node_gyp;
const [command, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const result = spawnSync(command, args, { stdio: 'inherit' });

if (result.status !== 0) {
  const why = result.error ? result.error.message : `node-gyp exited with ${result.status ?? result.signal}`;
  process.stderr.write(
    `\nmultiprocessing-ts: the native addon did not build (${why}).\n` +
      `It needs Linux (kernel >= 5.16), python3, make and g++. Without it only the 'thread' start method works.\n` +
      `Retry with \`npm rebuild multiprocessing-ts\` once the toolchain is there.\n\n`,
  );
  process.exitCode = required ? 1 : 0;
}
