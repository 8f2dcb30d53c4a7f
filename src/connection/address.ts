/**
 * Addresses of listeners and clients, as Python writes them: `[host, port]`
 * for TCP, a filesystem path for a Unix socket.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from '../describe.js';
import { AddressInUseError, FileNotFoundError, ProcessError, ValueError } from '../errors.js';
import { ExitStage, atExit } from '../finalize.js';

/** `[host, port]` (TCP) or a Unix socket's path. */
export type Address = string | readonly [host: string, port: number];

/** Linux's limit on a Unix socket path (sun_path holds 108 bytes with the NUL). */
const UNIX_PATH_MAX = 107;

/** Checks an address and returns it as Node's `listen`/`connect` options take it. */
export function socketOptions(address: unknown, where: string): { path: string } | { host: string; port: number } {
  if (typeof address === 'string') {
    if (address.length === 0) throw new ValueError(`${where} address is an empty path; give a socket path or [host, port]`);
    if (Buffer.byteLength(address) > UNIX_PATH_MAX) {
      throw new ValueError(
        `${where} address ${describe(address)} is ${Buffer.byteLength(address)} bytes, longer than a Unix socket path ` +
          `may be (${UNIX_PATH_MAX}); use a shorter path (e.g. under /tmp)`,
      );
    }
    return { path: address };
  }
  if (Array.isArray(address) && address.length === 2) {
    const [host, port] = address as unknown[];
    if (typeof host !== 'string' || host.length === 0) {
      throw new ValueError(`${where} address [host, port] needs a host name or IP as a string, not ${describe(host)}`);
    }
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
      throw new ValueError(`${where} address port must be an integer from 0 to 65535, not ${describe(port)}`);
    }
    return { host, port };
  }
  throw new ValueError(
    `${where} address must be [host, port] for TCP or a Unix socket path, not ${describe(address)}` +
      (typeof address === 'object' && address !== null && 'port' in address ? ' (write [host, port], an array)' : ''),
  );
}

/** How an address reads in messages: `"/tmp/s"` or `127.0.0.1:5000`. */
export function showAddress(address: Address): string {
  return typeof address === 'string' ? JSON.stringify(address) : `${address[0]}:${address[1]}`;
}

/**
 * A fresh Unix socket path in a private directory (mode 0700) of its own,
 * removed with the listener, or at exit if the listener is never closed.
 * Returns the path and the function that removes the directory.
 */
export function privateSocketPath(): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'mpts-'));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  const cancel = atExit(ExitStage.Tree, remove);
  return {
    path: join(dir, 'listener.sock'),
    remove: () => {
      cancel();
      remove();
    },
  };
}

/** A socket error at bind or connect as one of our errors, naming the address and the fix. */
export function addressError(err: NodeJS.ErrnoException, address: Address, doing: 'listen' | 'connect'): Error {
  const shown = showAddress(address);
  switch (err.code) {
    case 'EADDRINUSE':
      return new AddressInUseError(
        typeof address === 'string'
          ? `cannot listen on ${shown}: the path exists (a file, or another listener's socket) and multiprocessing-ts ` +
              `never replaces it; choose another path, or remove it yourself if it is a stale socket`
          : `cannot listen on ${shown}: the address is in use; choose another port, or port 0 for a free one`,
        { cause: err },
      );
    case 'ENOENT':
      return new FileNotFoundError(
        doing === 'connect'
          ? `cannot connect to ${shown}: no such socket (is the listener running, and is the path right?)`
          : `cannot listen on ${shown}: its directory does not exist; create it first`,
        { cause: err },
      );
    case 'ECONNREFUSED':
      return withCode(new ProcessError(`cannot connect to ${shown}: connection refused (nothing listens there)`, { cause: err }), err);
    case 'EACCES':
      return withCode(new ProcessError(`cannot ${doing} on ${shown}: permission denied`, { cause: err }), err);
    default:
      return withCode(new ProcessError(`cannot ${doing} ${doing === 'listen' ? 'on' : 'to'} ${shown}: ${err.message}`, { cause: err }), err);
  }
}

function withCode(error: ProcessError, err: NodeJS.ErrnoException): ProcessError {
  return Object.assign(error, { code: err.code });
}
