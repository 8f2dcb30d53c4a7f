/** Command line of bench/run.ts. */
import { parseArgs } from 'node:util';

export interface CliOptions {
  readonly cases: readonly string[];
  readonly rounds: number;
  readonly quick: boolean;
  readonly foreignMax: number;
  readonly maxRetries: number;
}

export const USAGE = `usage: node dist/bench/run.js [case ...] [--rounds N] [--quick]
                               [--foreign-max CORES] [--retries N]

  case            which cases to run (default: all); see the list below
  --rounds N      samples per variant, interleaved round-robin (default 5, --quick 3)
  --quick         fewer rounds, repetitions and increments: a smoke run under a minute
  --foreign-max   retry a sample when other processes used more CPU than this (default 0.25 cores)
  --retries N     retries per sample at most; the cleanest attempt is kept (default 2, --quick 0)`;

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(text)}`);
  return n;
}

function nonNegative(name: string, text: string, integer = false): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} >= 0, not ${JSON.stringify(text)}`);
  }
  return n;
}

/** Parses argv; `null` when help was asked for. */
export function parseCli(argv: readonly string[]): CliOptions | null {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      rounds: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'foreign-max': { type: 'string' },
      retries: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  const quick = values.quick ?? false;
  return {
    cases: positionals,
    quick,
    rounds: values.rounds === undefined ? (quick ? 3 : 5) : positiveInt('--rounds', values.rounds),
    foreignMax: values['foreign-max'] === undefined ? 0.25 : nonNegative('--foreign-max', values['foreign-max']),
    // A quick run is a smoke test: it shows the load but does not wait it out.
    maxRetries: values.retries === undefined ? (quick ? 0 : 2) : nonNegative('--retries', values.retries, true),
  };
}
