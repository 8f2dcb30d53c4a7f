/**
 * `mp.getContext('redis://…')`: the package's API on a Redis cluster.
 *
 * One context per URL (and options) and process holds the connections
 * (redis.ts); every object made from it uses them. Objects are found by
 * name in Redis, so processes on any machine that make an object of the
 * same kind and name from contexts of the same URL share it.
 */
import { ValueError } from '../errors.js';
import { ClusterPool, type ClusterPoolOptions } from './pool/pool.js';
import { ClusterClients, type ClusterClientOptions } from './redis.js';
import { CLUSTER_ENV, parseClusterUrl } from './url.js';

/** The API of a cluster context. */
export interface ClusterContext {
  /** The URL, password masked. */
  readonly url: string;
  /** `new ctx.Pool(processes?, { name?, maxAttempts? })`: a pool whose workers are `npx multiprocessing-ts worker` processes anywhere. */
  readonly Pool: new (processes?: number | null, options?: ClusterPoolOptions) => ClusterPool;
  /** Closes this context's connections; its objects stop working. */
  close(): void;
  /** Always `'cluster'`. */
  getStartMethod(): 'cluster';
}

const contexts = new Map<string, ClusterContext>();

/**
 * The cluster context of `url` (`'cluster'` reads `MULTIPROCESSING_TS_CLUSTER`).
 * No connection is made until an object needs one.
 * @throws ValueError for a URL that is not a redis:// or rediss:// URL.
 */
export function clusterContext(url: string, options: ClusterClientOptions = {}): ClusterContext {
  let href = url;
  if (url === 'cluster') {
    href = process.env[CLUSTER_ENV] ?? '';
    if (!href) throw new ValueError(`getContext('cluster') reads the cluster URL from ${CLUSTER_ENV}, which is not set; set it (e.g. redis://host:6379/0) or pass the URL`);
  }
  const parsed = parseClusterUrl(href);
  const key = options.connectTimeoutMs === undefined && options.redis === undefined ? href : null;
  const known = key === null ? undefined : contexts.get(key);
  if (known) return known;
  const clients = new ClusterClients(parsed, options);
  const ctx: ClusterContext = Object.freeze({
    url: parsed.redacted,
    Pool: class Pool extends ClusterPool {
      constructor(processes?: number | null, poolOptions?: ClusterPoolOptions) {
        super(clients, processes, poolOptions);
      }
    },
    close() {
      clients.close();
      if (key !== null && contexts.get(key) === ctx) contexts.delete(key);
    },
    getStartMethod: () => 'cluster' as const,
  });
  if (key !== null) contexts.set(key, ctx);
  return ctx;
}
