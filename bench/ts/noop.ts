/**
 * The target of the `start-ts` case: a TypeScript module that a child under
 * tsx imports by reference. Like ../targets.ts, no top-level code and only
 * type imports, so the figure is the cost of loading TypeScript, not of
 * this file.
 */
import type { StartMethod } from 'multiprocessing-ts';

/** Does nothing (typed, so the module really is TypeScript). */
export function noop(_method?: StartMethod): void {}
