/**
 * Several machines on one, for tests that must cross a real network: each
 * host is a Linux network namespace with its own loopback and one address,
 * and a bridge in a namespace of its own joins them (one veth pair per
 * host). Nothing is added to the root namespace: the hosts reach each other
 * and nothing else, and the machine's own 127.0.0.1 is not theirs.
 *
 * Needs root and iproute2's `ip`; `netnsUnavailable()` says why not, for
 * `{ skip }`.
 *
 * Names are `mptsnet-<pid>-<n>` (the bridge's namespace) and
 * `mptsnet-<pid>-<n>-<host>`, so test files running in parallel never
 * collide. Cleanup has one path for every ending: a small `sh` started
 * before the first namespace exists blocks reading a pipe from this
 * process; end-of-file (close(), a normal exit, an exception or SIGKILL
 * alike) makes it stop what still runs in the namespaces and delete them.
 * Should that `sh` be killed too, the next makeNetwork() of any test file
 * deletes the namespaces whose pid is dead.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';

/** One simulated machine. */
export interface NetnsHost {
  /** The name given to makeNetwork. */
  readonly name: string;
  /** Its address on the shared network (IPv4). */
  readonly ip: string;
  /** Its network namespace (for `ip netns exec` by hand). */
  readonly namespace: string;
  /** Starts `command args` on this host (`ip netns exec <namespace> command args`). */
  exec(command: string, args?: readonly string[], options?: SpawnOptions): ChildProcess;
}

export interface Network {
  readonly hosts: Readonly<Record<string, NetnsHost>>;
  /** Every namespace of the network: the bridge's first, then the hosts' in order. */
  readonly namespaces: readonly string[];
  /** Stops what still runs on the hosts (SIGTERM, then SIGKILL after 2 s) and deletes the namespaces and links. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const PREFIX = 'mptsnet-';
const STALE = /^mptsnet-(\d+)-/;
/** The hosts' subnet; it exists only inside the network's namespaces. */
const SUBNET = '10.47.0';
const MAX_HOSTS = 250;
const HOST_NAME = /^[a-z][a-z0-9]{0,19}$/;
const CLEANUP_TIMEOUT_MS = 15_000;

/**
 * Run by `sh -c` with the `ip` command and the namespaces as arguments:
 * waits for end-of-file on stdin, then ends every process in them (TERM
 * first: the package's own /dev/shm reapers ignore it and finish their
 * cleanup once their node is gone; KILL for what is left after 2 s) and
 * deletes them. Deleting a namespace whose processes are gone frees its
 * veths and bridge with it.
 */
const CLEANUP_SCRIPT = [
  "trap '' INT TERM HUP QUIT",
  'cat >/dev/null',
  'ip=$1; shift',
  'pids() { for ns in "$@"; do "$ip" netns pids "$ns" 2>/dev/null; done; }',
  'p=$(pids "$@"); [ -n "$p" ] && kill -TERM $p 2>/dev/null',
  'i=0; while [ -n "$(pids "$@")" ] && [ $i -lt 40 ]; do sleep 0.05; i=$((i+1)); done',
  'p=$(pids "$@"); [ -n "$p" ] && kill -KILL $p 2>/dev/null',
  'for ns in "$@"; do "$ip" netns del "$ns" 2>/dev/null; done',
  'exit 0',
].join('\n');

/** Where Debian puts `ip`: a non-login root shell may not have sbin on its PATH. */
const SBIN_IP = ['/usr/sbin/ip', '/sbin/ip'];
let ipPath: { path: string | undefined } | null = null;

/**
 * The `ip` command to run: MPTS_NETNS_IP when set (a test names a missing
 * one with it), else `ip` from PATH, else Debian's sbin copy.
 */
export function ipCommand(): string | undefined {
  ipPath ??= {
    path: [process.env['MPTS_NETNS_IP'] ?? 'ip', ...(process.env['MPTS_NETNS_IP'] ? [] : SBIN_IP)].find(
      (candidate) => !spawnSync(candidate, ['-V'], { stdio: 'ignore' }).error,
    ),
  };
  return ipPath.path;
}

let unavailable: { reason: string | undefined } | null = null;

/**
 * Why network namespaces cannot be used here (not Linux, not root, no `ip`,
 * or the kernel or sandbox refuses namespaces, bridges or veths), or
 * undefined when they can. Checked once per process, by making and deleting
 * a probe namespace.
 */
export function netnsUnavailable(): string | undefined {
  unavailable ??= { reason: probe() };
  return unavailable.reason;
}

function probe(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces are Linux-only (this is ${process.platform})`;
  const uid = process.getuid?.();
  if (uid !== 0) return `creating network namespaces needs root (running as uid ${uid})`;
  const ip = ipCommand();
  if (!ip) {
    const named = process.env['MPTS_NETNS_IP'];
    const looked = named ? `MPTS_NETNS_IP=${named} does not run` : `not on PATH nor in ${SBIN_IP.join(', ')}`;
    return `the 'ip' command is missing (${looked}); install iproute2`;
  }
  const ns = `${PREFIX}${process.pid}-probe`;
  const made = spawnSync(ip, ['netns', 'add', ns], { encoding: 'utf8' });
  if (made.status !== 0) return `network namespaces are refused here: ip netns add: ${made.stderr.trim()}`;
  try {
    const links = spawnSync(ip, ['-n', ns, '-batch', '-'], {
      encoding: 'utf8',
      input: 'link add probebr type bridge\nlink add probe0 type veth peer name probe1\nlink set lo up\n',
    });
    if (links.status !== 0) return `a bridge or veth pair is refused in a network namespace: ${links.stderr.trim()}`;
    return undefined;
  } finally {
    spawnSync(ip, ['netns', 'del', ns], { stdio: 'ignore' });
  }
}

let networksMade = 0;

/**
 * Makes one network of `hosts` (names: a lowercase letter, then letters or
 * digits, up to 20), each with loopback up and the address `10.47.0.<i+1>`
 * in the order given.
 * @example
 * ```ts
 * await using net = await makeNetwork({ hosts: ['server', 'a'] });
 * const server = net.hosts.server.exec(process.execPath, ['server.js', net.hosts.server.ip]);
 * ```
 */
export async function makeNetwork(options: { hosts: readonly string[] }): Promise<Network> {
  const reason = netnsUnavailable();
  if (reason) throw new Error(`makeNetwork: ${reason}`);
  const names = options.hosts;
  if (!Array.isArray(names) || names.length === 0 || names.length > MAX_HOSTS) {
    throw new Error(`makeNetwork needs { hosts: [...] } with 1 to ${MAX_HOSTS} names, not ${JSON.stringify(names)}`);
  }
  for (const name of names) {
    if (typeof name !== 'string' || !HOST_NAME.test(name)) {
      throw new Error(`makeNetwork host name ${JSON.stringify(name)} must be a lowercase letter then letters or digits (up to 20)`);
    }
  }
  if (new Set(names).size !== names.length) throw new Error(`makeNetwork host names must differ: ${JSON.stringify(names)}`);

  const existing = await listNamespaces();
  await removeStale(existing);
  let id: string;
  do id = `${PREFIX}${process.pid}-${++networksMade}`;
  while (existing.some((ns) => ns === id || ns.startsWith(`${id}-`)));

  const switchNs = id;
  const hosts = names.map((name, i) => ({ name, ip: `${SUBNET}.${i + 1}`, namespace: `${id}-${name}` }));
  const all = [switchNs, ...hosts.map((h) => h.namespace)];
  const cleaner = startCleaner(all);
  try {
    await ip([], all.map((ns) => `netns add ${ns}`));
    await ip(['-n', switchNs], [
      'link add br0 type bridge',
      'link set br0 up',
      ...hosts.flatMap((h, i) => [`link add h${i} type veth peer name eth0 netns ${h.namespace}`, `link set h${i} master br0 up`]),
    ]);
    await Promise.all(
      hosts.map((h) => ip(['-n', h.namespace], ['link set lo up', `addr add ${h.ip}/24 dev eth0`, 'link set eth0 up'])),
    );
  } catch (err) {
    await cleaner.finish();
    throw err;
  }

  const byName: Record<string, NetnsHost> = {};
  for (const h of hosts) {
    byName[h.name] = {
      ...h,
      exec: (command, args = [], spawnOptions = {}) => spawn(ipCommand()!, ['netns', 'exec', h.namespace, command, ...args], spawnOptions),
    };
  }
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => (closing ??= cleaner.finish());
  return { hosts: byName, namespaces: all, close, [Symbol.asyncDispose]: close };
}

/** Starts the `sh` that deletes `namespaces` once its stdin ends; `finish()` ends it and waits for the cleanup. */
function startCleaner(namespaces: string[]): { finish(): Promise<void> } {
  const sh = spawn('/bin/sh', ['-c', CLEANUP_SCRIPT, 'mptsnet-cleaner', ipCommand()!, ...namespaces], {
    stdio: ['pipe', 'ignore', 'ignore'],
    // Its own session: a signal to the test's process group must not stop it before it has cleaned up.
    detached: true,
    cwd: '/',
  });
  const exited = new Promise<void>((resolve, reject) => {
    sh.once('exit', () => resolve());
    sh.once('error', reject);
  });
  sh.stdin!.on('error', () => {});
  sh.unref();
  // The pipe only has to exist; it must not keep the test process alive.
  (sh.stdin as unknown as { unref(): void }).unref();
  return {
    finish: async () => {
      sh.stdin!.end();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the network's namespaces were not deleted within ${CLEANUP_TIMEOUT_MS} ms: ${namespaces.join(' ')}`)),
          CLEANUP_TIMEOUT_MS,
        );
      });
      try {
        await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Deletes namespaces left by test processes that are gone (their cleaner was killed as well). */
async function removeStale(namespaces: string[]): Promise<void> {
  const stale = namespaces.filter((ns) => {
    const pid = Number(STALE.exec(ns)?.[1]);
    return pid > 0 && pid !== process.pid && !pidAlive(pid);
  });
  if (stale.length === 0) return;
  const cleaner = startCleaner(stale);
  await cleaner.finish();
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function listNamespaces(): Promise<string[]> {
  const out = await ip(['netns', 'list'], null);
  return out
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter((ns) => ns.startsWith(PREFIX));
}

/** Runs `ip <args>` (with `commands` as a batch on stdin, when given); rejects with its stderr. */
function ip(args: string[], commands: string[] | null): Promise<string> {
  const argv = commands ? [...args, '-batch', '-'] : args;
  return new Promise((resolve, reject) => {
    const child = spawn(ipCommand()!, argv, { stdio: [commands ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`ip ${argv.join(' ')} failed (exit ${code}): ${stderr.trim()}${commands ? `\nbatch:\n${commands.join('\n')}` : ''}`));
    });
    if (commands) {
      // A failed ip exits without reading the rest: its 'close' reports that, not the broken pipe.
      child.stdin!.on('error', () => {});
      child.stdin!.end(commands.join('\n') + '\n');
    }
  });
}
