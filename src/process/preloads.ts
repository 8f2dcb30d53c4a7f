/**
 * The options by which Node loads modules before the entry (`--import`,
 * `--require`…), read from an `execArgv` and from `NODE_OPTIONS`: what both
 * the TypeScript children (which preloads need tsx) and the warm spares
 * (whether user code would run in one) look at. Part of every child's
 * bootstrap: builtins only.
 */

/** Options that load a module before the entry (Node runs them before our bootstrap). */
export const PRELOADS: ReadonlySet<string> = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader']);

/** The options of a `NODE_OPTIONS` string (double quotes group, as Node reads them). */
export function nodeOptionTokens(text: string): string[] {
  return [...text.matchAll(/(?:[^\s"]+|"[^"]*")+/g)].map((m) => m[0].replace(/"/g, ''));
}
