/**
 * A real redis-server for the cluster tests: started on a free loopback
 * port (or inside a network namespace, by the caller's `exec`), in a fresh
 * directory, and stopped when the test is done. Debian's `redis-server`
 * package provides it (`.ci/run` installs it); `redisUnavailable()` says why
 * a test must skip when it is missing.
 *
 * A server dies with the test process: it is started with a pipe on stdin
 * that a tiny `sh` watches (as test/netns.ts does), so a SIGKILLed test run
 * leaves no redis-server behind.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_SERVER = process.env['REDIS_SERVER'] ?? 'redis-server';

/** Why redis-server cannot run here, or null when it can. */
export function redisUnavailable(): string | null {
  const probe = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return `${REDIS_SERVER} is not installed (Debian: apt-get install redis-server; .ci/run installs it): the cluster tests need a real Redis`;
  }
  const cli = spawnSync('redis-cli', ['--version'], { encoding: 'utf8' });
  if (cli.error || cli.status !== 0) {
    return 'redis-cli is not installed (Debian: apt-get install redis-tools; .ci/run installs it): the cluster tests start and join their servers with it';
  }
  return null;
}

/** A free TCP port on 127.0.0.1 (free when asked; the server binds it right after). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface RedisOptions {
  /** Address to bind (default 127.0.0.1). */
  readonly bind?: string;
  readonly port?: number;
  /** `requirepass`. */
  readonly password?: string;
  /** Keep data across restarts (an append-only file). Default false: a restart comes back empty. */
  readonly persist?: boolean;
  /** A network namespace (test/netns.ts) to run it in; `bind` should then be that host's IP. */
  readonly netns?: string;
  /** Start it as a Redis Cluster node (`cluster-enabled`, its nodes.conf in its own directory); test/redis-cluster.ts joins such nodes. */
  readonly clusterNode?: boolean;
}

export interface RedisServer {
  readonly port: number;
  readonly host: string;
  /** `redis://[:password@]host:port/0`. */
  readonly url: string;
  /** The redis-server process's pid (for CPU accounting), or null while it is not running. */
  pid(): number | null;
  /** Stops it (SIGKILL: a crash, nothing saved beyond what the AOF holds) and starts it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** `command args`, inside `netns` when given. */
function inNetns(netns: string | undefined, command: string, args: string[]): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, command, ...args]] : [command, args];
}

async function waitReady(host: string, port: number, password: string | undefined, child: ChildProcess, netns?: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode} before it was ready`);
    const args = ['-h', host, '-p', String(port), ...(password ? ['-a', password, '--no-auth-warning'] : []), 'ping'];
    const r = spawnSync(...inNetns(netns, 'redis-cli', args), { encoding: 'utf8' });
    if (r.stdout?.trim() === 'PONG') return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`redis-server on ${host}:${port} did not answer within 10 s`);
}

/** Starts a redis-server. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const host = options.bind ?? '127.0.0.1';
  const port = options.port ?? (options.netns ? 6379 : await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'mpts-redis-'));
  const args = [
    '--bind', host, '--port', String(port), '--dir', dir, '--save', '', '--daemonize', 'no',
    '--appendonly', options.persist ? 'yes' : 'no', '--appendfsync', 'always', '--protected-mode', 'no', '--loglevel', 'warning',
    ...(options.password ? ['--requirepass', options.password] : []),
    ...(options.clusterNode ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'] : []),
  ];
  let child: ChildProcess;
  const launch = async () => {
    // `exec` replaces sh by redis-server once sh has armed the watcher: the
    // watcher (a background subshell) kills it when this test process ends.
    // (A background list reads /dev/null unless told otherwise: fd 3 keeps the pipe.)
    const script = `exec 3<&0; ${REDIS_SERVER} "$@" </dev/null & pid=$!; { cat >/dev/null; kill -9 $pid 2>/dev/null; } <&3 & exec 3<&-; wait $pid`;
    const cmd = 'sh';
    const shArgs = ['-c', script, 'redis-watch', ...args];
    child = spawn(...inNetns(options.netns, cmd, shArgs), { stdio: ['pipe', 'ignore', 'ignore'] });
    child.unref();
    (child.stdin as { unref?: () => void } | null)?.unref?.();
    await waitReady(host, port, options.password, child, options.netns);
  };
  await launch();
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      // Unref'd while it serves; waiting for its end must keep this process up.
      child.ref();
      child.stdin?.end();
      await exited;
    }
  };
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  const server: RedisServer = {
    port,
    host,
    url: `redis://${auth}${host}:${port}/0`,
    pid() {
      try {
        // The watching sh's first child is the server (started before the watcher).
        const first = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0];
        return first ? Number(first) : null;
      } catch {
        return null;
      }
    },
    async restart() {
      await stop();
      await launch();
    },
    async stop() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    async [Symbol.asyncDispose]() {
      await server.stop();
    },
  };
  return server;
}

/**
 * Preloaded (`node --import`) into each worker CLI a test starts: it dies
 * when its stdin (a pipe from the test) closes, which the kernel does when
 * the test process ends, however it ends (a file-level
 * timeout runs no `after` hook). Its local pool's threads and children get
 * the flag too (execArgv), hence the main-thread, this-process guard.
 */
export const DIE_WITH_PARENT =
  'data:text/javascript,import{isMainThread}from"node:worker_threads";' +
  'if(isMainThread&&process.env.MPTS_TEST_WORKER_PID===undefined){process.env.MPTS_TEST_WORKER_PID=String(process.pid);' +
  'process.stdin.on("end",()=>process.kill(process.pid,"SIGKILL"));process.stdin.resume();process.stdin.unref();}';
