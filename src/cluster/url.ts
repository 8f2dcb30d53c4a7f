/**
 * A cluster's address: the Redis URL a cluster context, its workers and its
 * objects connect to.
 *
 * Accepted forms are ioredis' own (`redis://[user:password@]host[:port][/db]`,
 * `rediss://…` for TLS); anything else is refused here with the form to
 * use, so a typo fails at `getContext()` rather than as a connection error
 * later. Error messages name the URL with its password masked: URLs end up
 * in logs, and an error is the likeliest place for one to leak.
 */
import { ValueError } from '../errors.js';

/** Where the cluster URL comes from when code names none: `MULTIPROCESSING_TS_CLUSTER`. */
export const CLUSTER_ENV = 'MULTIPROCESSING_TS_CLUSTER';

const SCHEMES = new Set(['redis:', 'rediss:']);

/** A parsed cluster URL. */
export interface ClusterUrl {
  /** The URL as given (with its password), for the client. */
  readonly href: string;
  /** The URL with its passwords (userinfo, and query options such as `?password=`) replaced by `***`, for messages. */
  readonly redacted: string;
}

/** True for a string that names a cluster (a `redis://` or `rediss://` URL) rather than a start method. */
export function isClusterUrl(value: unknown): value is string {
  return typeof value === 'string' && /^rediss?:\/\//i.test(value);
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
    throw new ValueError(`${redacted} is not a URL; a cluster URL looks like 'redis://host:6379/0' (or 'rediss://' for TLS)`);
  }
  if (!SCHEMES.has(url.protocol)) {
    throw new ValueError(`${redacted}: a cluster URL starts with redis:// or rediss://, not ${url.protocol}//`);
  }
  if (!url.hostname) throw new ValueError(`${redacted} names no host; a cluster URL looks like 'redis://host:6379/0'`);
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new ValueError(`${redacted}: the path must be a database number (e.g. /0), not /${db}`);
  }
  return { href, redacted };
}
