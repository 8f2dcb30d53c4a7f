/**
 * A real Redis Cluster (sharded) for the tests: three masters from Debian's
 * redis-server, each started by test/redis.ts (a free loopback port, a
 * fresh directory for its nodes.conf, killed with the test process), joined
 * by `redis-cli --cluster create` and ready once every node says
 * `cluster_state:ok`. Stopped as a whole: `await using` ends every node,
 * however the test ended.
 */
import { spawnSync } from 'node:child_process';
import { startRedis, type RedisServer } from './redis.js';

export interface RedisCluster {
  readonly nodes: readonly RedisServer[];
  /** `redis-cluster://[:password@]127.0.0.1:P1/0?seeds=127.0.0.1:P2,127.0.0.1:P3`. */
  readonly url: string;
  /** Runs `redis-cli` against the node on `port` (any node when omitted); its stdout. */
  cli(args: string[], port?: number): string;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts `masters` nodes (3 by default, no replicas) and joins them into one cluster. */
export async function startRedisCluster(options: { password?: string; masters?: number } = {}): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  };
  const password = options.password;
  const cli = (args: string[], port = nodes[0]!.port): string => {
    const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...(password ? ['-a', password, '--no-auth-warning'] : []), ...args], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    if (r.error || r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.error?.message ?? `exit ${r.status}`}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  try {
    nodes.push(...(await Promise.all(Array.from({ length: options.masters ?? 3 }, () => startRedis({ clusterNode: true, ...(password ? { password } : {}) })))));
    cli(['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes']);
    const deadline = Date.now() + 15_000;
    for (const node of nodes) {
      while (!/cluster_state:ok/.test(cli(['cluster', 'info'], node.port))) {
        if (Date.now() > deadline) throw new Error(`the Redis Cluster on ports ${nodes.map((n) => n.port).join(', ')} did not reach cluster_state:ok within 15 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const [first, ...rest] = nodes;
  const auth = password ? `:${encodeURIComponent(password)}@` : '';
  const cluster: RedisCluster = {
    nodes,
    url: `redis-cluster://${auth}127.0.0.1:${first!.port}/0?seeds=${rest.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    cli,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
  return cluster;
}
