/**
 * `multiprocessing-ts serve`: a manager's server in the foreground, until
 * Ctrl-C (SIGINT), SIGTERM or SIGHUP, or a client's shutdown request. It
 * is `mp.serveManager()` with its inputs taken from the command line: an
 * address, a key from a file, and modules that register typeids.
 *
 * It imports the package's entry (`../index.js`, kept a separate file by
 * the bundle), never a copy: a `--register` module that imports
 * 'multiprocessing-ts' must register on the very classes served here.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as mp from '../index.js';
import { CliError, EXIT_FAILURE, parseOptions, usageError, type OptionSpec } from './options.js';

const COMMAND = 'serve';

export const SERVE_SUMMARY = 'serve a manager (shared objects) over TCP or a Unix socket, in the foreground';

export const SERVE_USAGE = `Usage: multiprocessing-ts serve --address <address> --authkey-file <file> [--register <module>]...

Serves a manager until Ctrl-C (SIGINT), SIGTERM or SIGHUP, or until a client
asks it to shut down; then its Unix socket file, if any, is removed.
Clients connect with new mp.SyncManager({ address, authkey }).connect().

Options:
  --address <address>     where to listen:
                            host:port     TCP, e.g. 0.0.0.0:50000 (every interface),
                                          127.0.0.1:50000 (this machine only),
                                          [::1]:50000 (IPv6); port 0 picks a free port
                            unix:<path>   a Unix socket (or any path with a /, e.g. ./mgr.sock)
  --authkey-file <file>   the key clients must prove they know: the file's bytes,
                          less one final line break (echo secret > F gives 'secret');
                          e.g. openssl rand -hex 32 > key.txt
  --register <module>     a JavaScript module to import first (a path, relative to the
                          current directory; may be repeated). It registers typeids at
                          its top level (mp.SyncManager.register('Maths', Maths)) or
                          exports a manager class (served instead of SyncManager; when it
                          exports several, the default export)
  -h, --help              this text

Exit codes: 0 stopped cleanly; 1 what the command line names failed (a key file
missing, unreadable or empty, a module that does not import, the address in use);
2 the command line itself is wrong (an unknown option, a malformed address).`;

const OPTIONS: OptionSpec = {
  address: { value: true },
  'authkey-file': { value: true },
  register: { value: true, repeat: true },
  help: { value: false },
};

/** The signals that stop the server cleanly (SIGHUP: the terminal went away). */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Linux's limit on a Unix socket path (sun_path holds 108 bytes with the NUL). */
const UNIX_PATH_MAX = 107;

/** Runs `serve` with its arguments; resolves to the exit code once the server has stopped. */
export async function serve(args: readonly string[]): Promise<number> {
  const options = parseOptions(args, OPTIONS, COMMAND);
  if (options.has('help')) {
    console.log(SERVE_USAGE);
    return 0;
  }
  const addressText = options.get('address') as string | undefined;
  const keyFile = options.get('authkey-file') as string | undefined;
  if (addressText === undefined) throw usageError('--address is required: e.g. --address 0.0.0.0:50000', COMMAND);
  if (keyFile === undefined) throw usageError('--authkey-file is required: e.g. --authkey-file key.txt', COMMAND);
  const address = parseAddress(addressText);
  const authkey = readAuthkey(keyFile);
  let managerClass: Function = mp.SyncManager;
  const exported: Array<[string, Function]> = [];
  for (const spec of (options.get('register') as string[] | undefined) ?? []) {
    exported.push(...managerClassesOf(await importRegistering(spec), spec));
  }
  if (exported.length > 0) managerClass = chooseManagerClass(exported);

  // From here a signal stops the server cleanly, even one that arrives while it binds.
  let server: mp.ManagerServer | null = null;
  let stoppedBy: string | null = null;
  const stop = (signal: string): void => {
    stoppedBy = signal;
    server?.shutdown();
  };
  for (const signal of STOP_SIGNALS) process.on(signal, stop);
  try {
    server = await mp.serveManager({ address, authkey, managerClass });
  } catch (err) {
    for (const signal of STOP_SIGNALS) process.off(signal, stop);
    // AddressInUseError, FileNotFoundError (no such directory), permission denied: each names the address and the fix.
    if (err instanceof mp.ProcessError) throw new CliError(err.message, EXIT_FAILURE);
    throw err;
  }
  if (stoppedBy) server.shutdown();
  console.log(`multiprocessing-ts: serving ${managerClass.name} at ${showAddress(server.address!)}; Ctrl-C stops it`);
  await server.stopped;
  for (const signal of STOP_SIGNALS) process.off(signal, stop);
  console.log(`multiprocessing-ts: stopped (${stoppedBy ?? 'a client asked it to shut down'})`);
  return 0;
}

/**
 * `host:port`, `[v6]:port`, `unix:<path>` or a path with a slash, as
 * `mp.serveManager()` takes it.
 * @throws CliError (exit 2) naming the address and the forms it may take.
 */
export function parseAddress(text: string): mp.Address {
  const forms = 'give host:port (e.g. 0.0.0.0:50000; port 0 for any free port) or a Unix socket as unix:<path>';
  const bad = (why: string): CliError => usageError(`--address ${JSON.stringify(text)} ${why}; ${forms}`, COMMAND);
  if (text.startsWith('unix:') || (text.includes('/') && !text.startsWith('['))) {
    const path = text.startsWith('unix:') ? text.slice('unix:'.length) : text;
    if (path === '') throw bad('names no path');
    if (Buffer.byteLength(path) > UNIX_PATH_MAX) {
      throw bad(`is a path of ${Buffer.byteLength(path)} bytes, longer than a Unix socket path may be (${UNIX_PATH_MAX}): use a shorter one (e.g. under /tmp)`);
    }
    return path;
  }
  const colon = text.lastIndexOf(':');
  if (colon === -1 || (text.startsWith('[') && !text.includes(']:'))) throw bad('has no port');
  let host = text.slice(0, colon);
  const port = text.slice(colon + 1);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  else if (host.includes(':')) throw bad('has an IPv6 host without brackets (write [::1]:50000)');
  if (host === '') throw bad('has no host (0.0.0.0 for every interface, 127.0.0.1 for this machine only)');
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) throw bad(`has the port ${JSON.stringify(port)}, not a number from 0 to 65535`);
  return [host, Number(port)];
}

/** How the banner shows an address: in the form `--address` takes. */
export function showAddress(address: mp.Address): string {
  if (typeof address === 'string') return `unix:${address}`;
  const [host, port] = address;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The key in `file`: its bytes, less one final line break, so that a file
 * written by `echo` or an editor holds the key typed.
 * @throws CliError (exit 1) for a file that is missing, unreadable or empty.
 */
export function readAuthkey(file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const shown = JSON.stringify(file);
    const why =
      code === 'ENOENT'
        ? `does not exist (the path is relative to ${process.cwd()}); create it, e.g. openssl rand -hex 32 > ${file}`
        : code === 'EACCES'
          ? 'cannot be read by this user (permission denied); run as its owner, or give this user read access'
          : code === 'EISDIR'
            ? 'is a directory; give the file that holds the key'
            : `cannot be read (${(err as Error).message})`;
    throw new CliError(`--authkey-file ${shown} ${why}`, EXIT_FAILURE);
  }
  const end = bytes.at(-1) === 0x0a ? (bytes.at(-2) === 0x0d ? bytes.length - 2 : bytes.length - 1) : bytes.length;
  if (end === 0) {
    throw new CliError(`--authkey-file ${JSON.stringify(file)} is empty; put a secret in it, e.g. openssl rand -hex 32 > ${file}`, EXIT_FAILURE);
  }
  return bytes.subarray(0, end);
}

/**
 * Imports a `--register` module (a path relative to the current directory).
 * @throws CliError (exit 1) with the module's error in one line.
 */
async function importRegistering(spec: string): Promise<Record<string, unknown>> {
  const path = resolve(spec);
  try {
    return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const shown = `--register ${JSON.stringify(spec)}`;
    if (e?.code === 'ERR_MODULE_NOT_FOUND' && e.message.includes(`'${path}'`)) {
      throw new CliError(`${shown}: no such module ${path} (the path is relative to the current directory)`, EXIT_FAILURE);
    }
    if (e?.code === 'ERR_UNKNOWN_FILE_EXTENSION') {
      throw new CliError(
        `${shown}: Node cannot import this kind of file by itself; compile TypeScript to JavaScript first, ` +
          `or run the CLI under tsx: NODE_OPTIONS='--import tsx' npx multiprocessing-ts serve …`,
        EXIT_FAILURE,
      );
    }
    const where = thrownAt(err) ?? (err instanceof SyntaxError ? await syntaxErrorAt(path) : null);
    const message = err instanceof Error ? `${err.name}: ${err.message.split('\n')[0]}` : String(err);
    // Node reads a .js file outside a "type": "module" package as CommonJS.
    const hint = /Cannot use import statement outside a module/.test(message)
      ? `; it is an ES module: name it .mjs, or add "type": "module" to its package.json`
      : '';
    throw new CliError(`${shown} failed to import: ${message}${where ? ` (at ${where})` : ''}${hint}`, EXIT_FAILURE);
  }
}

/** This file's directory: the package's own code, whose frames say nothing of where a user's module failed. */
const OWN_DIR = new URL('.', import.meta.url).href;

/** The first frame of `err`'s stack in a file outside the package (the user's module), if any. */
function thrownAt(err: unknown): string | null {
  for (const [, inParens, bare] of String((err as Error | null)?.stack ?? '').matchAll(/\((file:[^)]+)\)|at (file:\S+)/g)) {
    const frame = (inParens ?? bare)!;
    if (!frame.startsWith(OWN_DIR)) return frame;
  }
  return null;
}

/**
 * Where the syntax error of `path` is: V8 keeps a module's compile error
 * location out of the error object (Node prints it only for an uncaught
 * one), so the file is parsed again with acorn (a dependency already).
 * Null when the file itself parses (the error is in a module it imports).
 */
async function syntaxErrorAt(path: string): Promise<string | null> {
  try {
    const { parse } = await import('acorn');
    parse(readFileSync(path, 'utf8'), { ecmaVersion: 'latest', sourceType: 'module', allowHashBang: true });
    return null;
  } catch (err) {
    const loc = (err as { loc?: { line: number; column: number } }).loc;
    return loc ? `${pathToFileURL(path).href}:${loc.line}:${loc.column + 1}` : null;
  }
}

/** The manager classes a module exports, by export name. */
function managerClassesOf(namespace: Record<string, unknown>, spec: string): Array<[string, Function]> {
  const found: Array<[string, Function]> = [];
  for (const [name, value] of Object.entries(namespace)) {
    if (typeof value !== 'function') continue;
    if (value === mp.BaseManager || value.prototype instanceof mp.BaseManager) {
      found.push([name, value]);
    } else if (extendsClassNamed(value, 'BaseManager')) {
      throw new CliError(
        `--register ${JSON.stringify(spec)} exports ${value.name}, a manager class of another copy of multiprocessing-ts ` +
          `than this CLI's; run the CLI of the copy the module imports (npx multiprocessing-ts from that project)`,
        EXIT_FAILURE,
      );
    }
  }
  return found;
}

function extendsClassNamed(cls: Function, name: string): boolean {
  for (let c: unknown = Object.getPrototypeOf(cls); typeof c === 'function' && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
    if (c.name === name) return true;
  }
  return false;
}

/** The class to serve among those exported: the only one, or the default export. */
function chooseManagerClass(exported: Array<[string, Function]>): Function {
  const distinct = [...new Set(exported.map(([, cls]) => cls))];
  if (distinct.length === 1) return distinct[0]!;
  const byDefault = exported.find(([name]) => name === 'default');
  if (byDefault) return byDefault[1];
  throw new CliError(
    `the --register modules export several manager classes (${exported.map(([name]) => name).join(', ')}); ` +
      `export the one to serve as the default export of one module`,
    EXIT_FAILURE,
  );
}
