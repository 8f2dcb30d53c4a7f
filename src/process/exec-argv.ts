/**
 * Which of the parent's Node.js options a `'process'` child gets.
 *
 * Children start with the parent's `execArgv` so loaders (`--import tsx`),
 * conditions and V8 flags carry over. Some options, though, say what the
 * process *is* rather than how it runs: `-e`/`-p` would make the child run
 * the eval code instead of the bootstrap (a fork bomb when that code starts
 * children), `--inspect*` would make it fight for the debugger port,
 * `--test*` and `--watch*` would turn it into a test runner or a watcher.
 * Python's spawn likewise gives a child the interpreter's flags but never
 * `-c`, `-m` or `-i`. Node accepts `-pe` as the one combined short form.
 *
 * `execArgv` holds options only (the script and its arguments are in
 * `argv`), so a token that does not start with `-` is the value of the
 * option before it.
 */

/** Options whose value is the next token even when that starts with `-` (the eval code). */
const CODE_OPTIONS: ReadonlySet<string> = new Set(['-e', '--eval', '-pe']);

/** Options that make the process run a string instead of a file (`-p` alone is `--print`). */
const STRING_INPUT: ReadonlySet<string> = new Set(['-e', '--eval', '-p', '--print', '-pe']);

/** Options a child must not get (`=value` forms included). */
function dropped(name: string): boolean {
  return (
    STRING_INPUT.has(name) ||
    name === '--input-type' || // only concerns string input
    name === '-i' ||
    name === '--interactive' ||
    name === '-c' ||
    name === '--check' ||
    name.startsWith('--inspect') ||
    name === '--debug-port' ||
    name === '--test' ||
    name.startsWith('--test-') ||
    name.startsWith('--watch')
  );
}

interface Scan {
  /** The options a child gets, in order. */
  readonly kept: string[];
  /** True when the process runs `-e`/`-p` code. */
  readonly runsString: boolean;
}

/** `execArgv` without the options `drop` names, and their values. */
function scan(execArgv: readonly string[], drop: (name: string) => boolean = dropped): Scan {
  const kept: string[] = [];
  let runsString = false;
  for (let i = 0; i < execArgv.length; i++) {
    const token = execArgv[i]!;
    const eq = token.startsWith('--') ? token.indexOf('=') : -1;
    const name = eq > 0 ? token.slice(0, eq) : token;
    if (STRING_INPUT.has(name)) runsString = true;
    if (!drop(name)) {
      kept.push(token);
      continue;
    }
    if (eq > 0) continue;
    const next = execArgv[i + 1];
    if (next !== undefined && (CODE_OPTIONS.has(name) || !next.startsWith('-'))) i++;
  }
  return { kept, runsString };
}

/** The options a `'process'` child starts with: the parent's, minus those that would change what the child is. */
export function childExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  return scan(execArgv).kept;
}

/** True when this process runs code given by `-e`/`-p` rather than a file: it has no entry module. */
export function runsStringInput(execArgv: readonly string[] = process.execArgv): boolean {
  return scan(execArgv).runsString;
}

/**
 * The `execArgv` a `'thread'` child needs, or undefined to inherit ours.
 * Of our options only `--input-type` reaches a Worker: its ES module loader
 * then refuses to load the Worker's file (ERR_INPUT_TYPE_NOT_ALLOWED). The
 * others leave it alone — it runs its own file, and only the main thread
 * evaluates `-e`, opens an inspector, runs tests or watches.
 */
export function threadExecArgv(execArgv: readonly string[] = process.execArgv): string[] | undefined {
  const kept = scan(execArgv, (name) => name === '--input-type').kept;
  return kept.length === execArgv.length ? undefined : childExecArgv(kept);
}

/** `execArgv` without the options named (and their values). */
export function withoutOptions(execArgv: readonly string[], names: ReadonlySet<string>): string[] {
  return scan(execArgv, (name) => names.has(name)).kept;
}
