/**
 * The command line of a subcommand: `--name value`, `--name=value` and
 * flags, parsed against what the subcommand takes, with messages that name
 * the offending word and the fix (Node's `util.parseArgs` words its own).
 */

/** How the CLI ends: 2 when the command line itself is wrong, 1 when what it names fails at run time. */
export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;

/**
 * A failure the CLI reports as one line (no stack) and ends with
 * `exitCode`. Never leaves the CLI: the package's own errors are what its
 * API throws.
 */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** A usage error (exit 2), pointing at `--help`. */
export function usageError(message: string, command: string): CliError {
  return new CliError(`${message} (see: multiprocessing-ts ${command} --help)`, EXIT_USAGE);
}

/** The options a subcommand takes: each takes a value or is a flag; a repeatable one collects its values. */
export type OptionSpec = Readonly<Record<string, { readonly value: boolean; readonly repeat?: boolean }>>;

/** Parsed options: a flag is `true`, a value option its value(s). */
export type ParsedOptions = Map<string, true | string | string[]>;

/**
 * Parses `args` against `spec`.
 * @throws CliError (exit 2) for an unknown option, a missing value, a repeated option or a positional argument.
 */
export function parseOptions(args: readonly string[], spec: OptionSpec, command: string): ParsedOptions {
  const parsed: ParsedOptions = new Map();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '-h') {
      parsed.set('help', true);
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') {
      throw usageError(`unexpected argument ${JSON.stringify(arg)}: '${command}' takes only options`, command);
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const option = Object.hasOwn(spec, name) ? spec[name]! : undefined;
    if (!option) {
      const known = Object.keys(spec).map((n) => `--${n}`).join(', ');
      throw usageError(`unknown option --${name}; '${command}' takes ${known}`, command);
    }
    let value: string | true = true;
    if (option.value) {
      if (eq !== -1) value = arg.slice(eq + 1);
      else if (i + 1 < args.length && !args[i + 1]!.startsWith('--')) value = args[++i]!;
      else throw usageError(`--${name} needs a value: --${name} <value>`, command);
      if (value === '') throw usageError(`--${name} is empty; give it a value`, command);
    } else if (eq !== -1) {
      throw usageError(`--${name} takes no value (write just --${name})`, command);
    }
    const before = parsed.get(name);
    if (option.repeat) parsed.set(name, [...((before as string[] | undefined) ?? []), value as string]);
    else if (before !== undefined && option.value) throw usageError(`--${name} is given twice; give it once`, command);
    else parsed.set(name, value);
  }
  return parsed;
}
