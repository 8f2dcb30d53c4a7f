/**
 * A cluster's address: the Redis URL a cluster context, its workers and its
 * objects connect to.
 *
 * Accepted forms are ioredis' own for one server or a Sentinel set
 * (`redis://[user:password@]host[:port][/db]`, `rediss://…` for TLS), and
 * ours for a Redis Cluster (sharded):
 * `redis-cluster://[user:password@]host[:port][/0][?seeds=host2:port2,host3:port3]`
 * (`rediss-cluster://…` for TLS). A WHATWG URL holds one host, so the other
 * seed nodes go in the `seeds` query option; any one reachable seed is
 * enough, the client learns the rest of the cluster from it. A cluster has
 * only database 0, so another number is refused here.
 *
 * Anything else is refused here with the form to use, so a typo fails at
 * `getContext()` rather than as a connection error later. Error messages
 * name the URL with its password masked: URLs end up in logs, and an error
 * is the likeliest place for one to leak.
 */
import { ValueError } from '../errors.js';

/** Where the cluster URL comes from when code names none: `MULTIPROCESSING_TS_CLUSTER`. */
export const CLUSTER_ENV = 'MULTIPROCESSING_TS_CLUSTER';

const SCHEMES = new Set(['redis:', 'rediss:']);
/** The schemes of a Redis Cluster (sharded) URL, plain and TLS. */
const SHARDED_SCHEMES = new Set(['redis-cluster:', 'rediss-cluster:']);
const FORMS = "'redis://host:6379/0' ('rediss://' for TLS), or for a Redis Cluster 'redis-cluster://host:7000?seeds=host2:7000,host3:7000' ('rediss-cluster://' for TLS)";

/** One node of a Redis Cluster to start from. */
export interface SeedNode {
  readonly host: string;
  readonly port: number;
}

/** What a Redis Cluster (sharded) URL says: where to start, and how to log in. */
export interface ShardedUrl {
  /** The node in the URL's authority first, then those of `?seeds=`. */
  readonly seeds: readonly SeedNode[];
  readonly username?: string;
  readonly password?: string;
  /** `rediss-cluster://`: every node is reached over TLS. */
  readonly tls: boolean;
}

/** A parsed cluster URL. */
export interface ClusterUrl {
  /** The URL as given (with its password), for the client. */
  readonly href: string;
  /** The URL with its passwords (userinfo, and query options such as `?password=`) replaced by `***`, for messages. */
  readonly redacted: string;
  /** For a `redis-cluster://` or `rediss-cluster://` URL, its nodes and credentials; null for one server or a Sentinel set. */
  readonly sharded: ShardedUrl | null;
}

/** True for a string that names a cluster (a `redis://`, `rediss://`, `redis-cluster://` or `rediss-cluster://` URL) rather than a start method. */
export function isClusterUrl(value: unknown): value is string {
  return typeof value === 'string' && /^rediss?(-cluster)?:\/\//i.test(value);
}

/**
 * Query options that hold secrets: ioredis takes every query option of the
 * URL as a connection option (`?password=…`, `?sentinelPassword=…`).
 */
const SECRET_OPTION = /pass|secret|token/i;

/** The URL without its passwords: the userinfo's, and query options that hold one. */
export function redact(href: string): string {
  try {
    const url = new URL(href);
    if (url.password) url.password = '***';
    // Rewritten only when there is one to mask: URLSearchParams re-encodes the rest of the query.
    if ([...url.searchParams.keys()].some((key) => SECRET_OPTION.test(key))) {
      for (const key of new Set(url.searchParams.keys())) if (SECRET_OPTION.test(key)) url.searchParams.set(key, '***');
    }
    return url.toString();
  } catch {
    // Unparseable: mask whatever sits between "//user:" and "@", and secret query options.
    return href.replace(/(\/\/[^/@:]*:)[^/@]*@/, '$1***@').replace(/([?&][^=&#]*(?:pass|secret|token)[^=&#]*=)[^&#]*/gi, '$1***');
  }
}

/**
 * Parses and checks a cluster URL.
 * @throws ValueError naming the (redacted) URL and the expected form.
 */
export function parseClusterUrl(href: unknown): ClusterUrl {
  if (typeof href !== 'string' || href === '') {
    throw new ValueError(`a cluster URL must be a string like 'redis://host:6379/0', got ${typeof href === 'string' ? 'an empty string' : typeof href}`);
  }
  const redacted = redact(href);
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    throw new ValueError(`${redacted} is not a URL; a cluster URL looks like ${FORMS}`);
  }
  const sharded = SHARDED_SCHEMES.has(url.protocol);
  if (!SCHEMES.has(url.protocol) && !sharded) {
    throw new ValueError(`${redacted}: a cluster URL starts with redis://, rediss://, redis-cluster:// or rediss-cluster://, not ${url.protocol}//`);
  }
  if (!url.hostname) throw new ValueError(`${redacted} names no host; a cluster URL looks like ${FORMS}`);
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new ValueError(`${redacted}: the path must be a database number (e.g. /0), not /${db}`);
  }
  return { href, redacted, sharded: sharded ? shardedUrl(url, db, redacted) : null };
}

/** The nodes and credentials of a Redis Cluster URL. */
function shardedUrl(url: URL, db: string, redacted: string): ShardedUrl {
  if (db !== '' && Number(db) !== 0) {
    throw new ValueError(`${redacted}: a Redis Cluster has only database 0, not /${db}; drop the path or write /0`);
  }
  for (const key of new Set(url.searchParams.keys())) {
    if (key !== 'seeds') {
      throw new ValueError(
        `${redacted}: ?${key}= is not an option of a Redis Cluster URL (only ?seeds=host:port,…); pass client options as getContext(url, { redis: { … } })`,
      );
    }
  }
  const seeds = [seedOf(url.host, redacted)];
  for (const list of url.searchParams.getAll('seeds')) {
    for (const item of list.split(',')) if (item.trim() !== '') seeds.push(seedOf(item.trim(), redacted));
  }
  return {
    seeds,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    tls: url.protocol === 'rediss-cluster:',
  };
}

/** `host[:port]` or `[v6]:port` as a seed node (port 6379 when none is given). */
function seedOf(text: string, redacted: string): SeedNode {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]/@]+)(?::(\d{1,5}))?$/.exec(text);
  const port = match?.[2] === undefined ? 6379 : Number(match[2]);
  if (!match || port < 1 || port > 65535) {
    throw new ValueError(`${redacted}: ${JSON.stringify(text)} is not a node address; a seed is host:port (or [IPv6]:port)`);
  }
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}
