/**
 * acorn and eslint-scope, loaded on first use.
 *
 * Every child imports this package, but only a process that starts a child
 * by source (or reads a JavaScript entry's exports) needs a parser. Loading
 * both eagerly costs ~40 ms per child start; `require` keeps the first use
 * synchronous, which `start()` needs.
 */
import { createRequire } from 'node:module';
import type * as Acorn from 'acorn';
import type * as EslintScope from 'eslint-scope';

let loaded: { acorn: typeof Acorn; eslintScope: typeof EslintScope } | null = null;

export function parsers(): { acorn: typeof Acorn; eslintScope: typeof EslintScope } {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    loaded = { acorn: require('acorn'), eslintScope: require('eslint-scope') };
  }
  return loaded;
}
