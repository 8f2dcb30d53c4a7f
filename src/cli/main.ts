#!/usr/bin/env node
/**
 * The `multiprocessing-ts` command (package.json `bin`): dispatches to a
 * subcommand and turns its failures into one line on stderr and an exit
 * code (2: the command line is wrong; 1: what it names failed). Anything
 * else is a bug, and keeps its stack.
 */
import { CliError, EXIT_USAGE } from './options.js';
import { SERVE_SUMMARY, SERVE_USAGE, serve } from './serve.js';
import { WORKER_SUMMARY, WORKER_USAGE, worker } from './worker.js';

interface Command {
  readonly summary: string;
  readonly usage: string;
  run(args: readonly string[]): Promise<number>;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  serve: { summary: SERVE_SUMMARY, usage: SERVE_USAGE, run: serve },
  worker: { summary: WORKER_SUMMARY, usage: WORKER_USAGE, run: worker },
};

const USAGE = `Usage: multiprocessing-ts <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(8)}${c.summary}`)
  .join('\n')}

multiprocessing-ts <command> --help describes a command.`;

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    console.error(USAGE);
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const about = rest[0] !== undefined && Object.hasOwn(COMMANDS, rest[0]) ? COMMANDS[rest[0]]!.usage : USAGE;
    console.log(about);
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    throw new CliError(
      `unknown command ${JSON.stringify(name)}; the commands are: ${Object.keys(COMMANDS).join(', ')} (see: multiprocessing-ts --help)`,
      EXIT_USAGE,
    );
  }
  return command.run(rest);
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof CliError)) throw err;
  console.error(`multiprocessing-ts: ${err.message}`);
  process.exitCode = err.exitCode;
}
