/**
 * `multiprocessing-ts worker`: a cluster worker in the foreground. It takes
 * batches of a cluster pool's tasks from Redis and runs them on a local
 * pool, until SIGTERM or Ctrl-C (SIGINT), which drain it: it takes no new
 * work, finishes what it holds, and exits 0. A second signal ends it at once
 * (what it held then runs elsewhere after the visibility timeout).
 */
import { resolve } from 'node:path';
import * as mp from '../index.js';
import { CliError, EXIT_FAILURE, parseOptions, usageError, type OptionSpec } from './options.js';

const COMMAND = 'worker';

export const WORKER_SUMMARY = 'run a cluster pool\'s tasks (from Redis) on this machine, in the foreground';

export const WORKER_USAGE = `Usage: multiprocessing-ts worker --cluster <url> --module <module> [options]

Runs the tasks of a cluster pool (mp.getContext('redis://…').Pool) on this
machine until SIGTERM or Ctrl-C, which drain it: no new tasks are taken, those
taken finish, then it exits. A second signal ends it at once.

Options:
  --cluster <url>               the Redis URL, e.g. redis://10.0.0.5:6379/0 or
                                rediss://user@host:6380/0; a Redis Cluster:
                                redis-cluster://host:7000?seeds=host2:7000
                                (default: the MULTIPROCESSING_TS_CLUSTER
                                environment variable; put a URL with a password
                                there, not on the command line, which every
                                local user can read)
  --module <module>             the JavaScript module whose exports are the task
                                functions (a path, relative to the current directory);
                                its guarded main code does not run here
  --concurrency <n>             tasks at once: the local pool's size (default: the
                                number of CPUs)
  --start-method <method>       process (default) or thread
  --pool <name>                 the pool to serve (default: default)
  --visibility-timeout <ms>     how long a task taken by a worker that stopped
                                answering waits before another worker runs it
                                (default 30000)
  --connect-timeout <ms>        how long one Redis call may wait for Redis
                                (default 5000); a result Redis does not take
                                within six of them is left to other workers
  -h, --help                    this text

Exit codes: 0 drained and stopped; 1 what the command line names failed (Redis
unreachable, the module does not import, results that could not be stored
before it stopped: other workers run those tasks again); 2 the command line
itself is wrong.`;

const OPTIONS: OptionSpec = {
  cluster: { value: true },
  module: { value: true },
  concurrency: { value: true },
  'start-method': { value: true },
  pool: { value: true },
  'visibility-timeout': { value: true },
  'connect-timeout': { value: true },
  help: { value: false },
};

function positiveInteger(text: string | undefined, name: string, min = 1): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw usageError(`--${name} must be an integer of at least ${min}, got ${JSON.stringify(text)}`, COMMAND);
  return n;
}

/** Runs `worker` with its arguments; resolves to the exit code once it has stopped. */
export async function worker(args: readonly string[]): Promise<number> {
  const options = parseOptions(args, OPTIONS, COMMAND);
  if (options.has('help')) {
    console.log(WORKER_USAGE);
    return 0;
  }
  const fromArgs = options.get('cluster') as string | undefined;
  const cluster = fromArgs ?? process.env['MULTIPROCESSING_TS_CLUSTER'];
  if (!cluster) throw usageError('--cluster is missing (or set MULTIPROCESSING_TS_CLUSTER)', COMMAND);
  if (!mp.isClusterUrl(cluster)) throw usageError(`--cluster must be a redis://, rediss://, redis-cluster:// or rediss-cluster:// URL, got ${JSON.stringify(mp.redactClusterUrl(cluster))}`, COMMAND);
  if (fromArgs !== undefined && mp.redactClusterUrl(fromArgs) !== fromArgs) {
    // As redis-cli warns for -a: a process's command line is readable by every local user (ps, /proc) for its whole life.
    process.emitWarning('the --cluster URL holds a password, which every user of this machine can read in its command line; set MULTIPROCESSING_TS_CLUSTER instead');
  }
  const module = options.get('module') as string | undefined;
  if (!module) throw usageError('--module is missing: the module that exports the task functions', COMMAND);
  const method = (options.get('start-method') as string | undefined) ?? 'process';
  if (method !== 'process' && method !== 'thread') throw usageError(`--start-method must be process or thread, got ${JSON.stringify(method)}`, COMMAND);
  const concurrency = positiveInteger(options.get('concurrency') as string | undefined, 'concurrency');
  const visibility = positiveInteger(options.get('visibility-timeout') as string | undefined, 'visibility-timeout', 100);
  const connectTimeoutMs = positiveInteger(options.get('connect-timeout') as string | undefined, 'connect-timeout', 100);
  const pool = (options.get('pool') as string | undefined) ?? 'default';
  if (!/^[A-Za-z0-9_.\-/@]{1,200}$/.test(pool)) throw usageError(`--pool must be 1–200 letters, digits or _ . - / @, got ${JSON.stringify(pool)}`, COMMAND);

  // A closed terminal or pipe must not end a worker that holds tasks.
  process.stdout.on('error', () => {});
  let running: mp.ClusterWorker;
  try {
    running = await mp.ClusterWorker.start({
      cluster,
      module: resolve(module),
      concurrency,
      startMethod: method,
      pool,
      visibilityTimeoutMs: visibility,
      ...(connectTimeoutMs === undefined ? {} : { client: { connectTimeoutMs } }),
    });
  } catch (err) {
    throw new CliError((err as Error)?.message ?? String(err), EXIT_FAILURE);
  }
  console.log(
    `multiprocessing-ts worker ${running.id}: serving pool '${pool}' of ${mp.redactClusterUrl(cluster)} with ${module} (${method}, concurrency ${concurrency ?? mp.cpuCount()}); SIGTERM or Ctrl-C drains`,
  );
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      console.log(`multiprocessing-ts worker ${running.id}: ${signal}: draining (${running.running} batch(es) held)`);
      void running.drain();
    } else {
      void running.kill().finally(() => process.exit(1));
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await running.stopped;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if (running.failure) {
    throw new CliError(`worker ${running.id} stopped: its local pool cannot run tasks: ${running.failure.message}`, EXIT_FAILURE);
  }
  if (running.leftForOthers > 0 || running.leftUnknown) {
    const parts: string[] = [];
    if (running.leftForOthers > 0) parts.push(`${running.leftForOthers} batch(es) it took are unfinished (Redis was unreachable)`);
    if (running.leftUnknown) parts.push(`${parts.length ? 'more ' : ''}batches it took may be unfinished (its last read was cut off with Redis unreachable)`);
    const left = parts.join('; ');
    throw new CliError(`worker ${running.id} stopped after ${running.completed} task(s); ${left}: other workers run them after the visibility timeout`, EXIT_FAILURE);
  }
  console.log(`multiprocessing-ts worker ${running.id}: stopped after ${running.completed} task(s)`);
  return 0;
}
