/**
 * Listener and Client between separate machines: a server host and two
 * client hosts, each a network namespace of test/netns.ts, joined by a
 * bridge and reaching each other by IP only. Every peer is a real node
 * process on its host (fixtures/netns-peer). Also checks that the harness
 * cleans up after itself, on close() and after its owner is SIGKILLed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ending as endingOf, follow as followLines, type Event } from './child-lines.js';
import { fixture, eventually, pidAlive } from './helpers.js';
import { ipCommand, makeNetwork, netnsUnavailable, type Network } from './netns.js';

const PEER = fixture('netns-peer.js');
const KEY = 'the-right-key';
const WAIT_MS = 15_000;

const follow = (child: ChildProcess, label: string) => followLines(child, label, WAIT_MS);
const ending = (child: ChildProcess, label: string) => endingOf(child, label, WAIT_MS);

/** Runs `netns-peer connect` on a host to its end and returns what it printed. */
async function connectFrom(net: Network, host: string, address: string, port: number): Promise<Event> {
  const child = net.hosts[host]!.exec(process.execPath, [PEER, 'connect', address, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  return follow(child, `connect from ${host}`).next(() => true, 'its outcome');
}

/** Whether `pid` is gone (or a zombie nobody reaped: an orphan's parent may be an init that never waits). */
function ended(pid: number): boolean {
  if (!pidAlive(pid)) return true;
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return true;
  }
}

const namespacesNow = (): string[] =>
  spawnSync(ipCommand()!, ['netns', 'list'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((line) => line.split(' ')[0]!);

describe('Listener and Client on separate hosts (network namespaces)', { skip: netnsUnavailable() }, () => {
  let net: Network;
  let server: ChildProcess;
  let serverOut: ReturnType<typeof follow>;
  let port: number;
  let loopbackPort: number;

  before(async () => {
    net = await makeNetwork({ hosts: ['server', 'a', 'b'] });
    server = net.hosts.server!.exec(process.execPath, [PEER, 'serve', net.hosts.server!.ip, KEY], { stdio: ['ignore', 'pipe', 'pipe'] });
    serverOut = follow(server, 'server');
    ({ port, loopbackPort } = (await serverOut.next((e) => 'ready' in e, 'the listener to be bound')).ready);
  });

  after(async () => {
    server?.kill('SIGKILL');
    await net?.close();
  });

  it("a Client on another host reaches the Listener by the server's IP: round trips both ways; a wrong authkey is refused with AuthenticationError while a good client is still served", async () => {
    const { a, b, server: serverHost } = net.hosts;
    const good = a!.exec(process.execPath, [PEER, 'client', serverHost!.ip, String(port), KEY], { stdio: ['pipe', 'pipe', 'pipe'] });
    const goodOut = follow(good, 'good client');

    // Server → client: the greeting arrives on host a.
    assert.deepEqual((await goodOut.next((e) => 'greeted' in e, 'the greeting')).greeted, { greeting: 'from the server' });
    // Client → server → client: the server sees the message come from host a's address, and echoes it.
    good.stdin!.write('first\n');
    assert.deepEqual((await goodOut.next((e) => 'reply' in e, 'the first echo')).reply, { echo: { ping: 'first' } });
    const seen = await serverOut.next((e) => 'received' in e, 'the first message at the server');
    assert.deepEqual(seen.received, { ping: 'first' });
    assert.equal(seen.from[0], a!.ip, 'the server saw the connection come from host a, not from a local address');

    // A client with the wrong key, from host b, while a's connection is open.
    const bad = b!.exec(process.execPath, [PEER, 'client', serverHost!.ip, String(port), 'a-wrong-key'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const badOutcome = await follow(bad, 'bad client').next(() => true, 'its outcome');
    assert.equal(badOutcome.authenticationError, true, `the wrong key was refused at the client: ${JSON.stringify(badOutcome)}`);
    const refused = await serverOut.next((e) => 'refused' in e, "the server's refusal");
    assert.equal(refused.refused.authenticationError, true, `the server's accept() rejected: ${JSON.stringify(refused)}`);
    assert.equal(await ending(bad, 'the bad client'), 3);

    // The good client's connection still works after the refusal.
    good.stdin!.write('second\n');
    assert.deepEqual((await goodOut.next((e) => 'reply' in e, 'the second echo')).reply, { echo: { ping: 'second' } });
    good.stdin!.end();
    assert.equal((await serverOut.next((e) => 'closed' in e, 'the server to see the client leave')).by, 'EOFError');
    assert.equal(await ending(good, 'the good client'), 0);
  });

  it("another host cannot reach the server host's 127.0.0.1, which the server host itself can", async () => {
    const [here, there] = await Promise.all([
      connectFrom(net, 'server', '127.0.0.1', loopbackPort),
      connectFrom(net, 'a', '127.0.0.1', loopbackPort),
    ]);
    assert.deepEqual(here, { connected: 'loopback-ok' });
    assert.equal(there.code, 'ECONNREFUSED', `host a's 127.0.0.1 is its own: ${JSON.stringify(there)}`);
  });
});

describe('the test network harness (test/netns.ts)', { skip: netnsUnavailable() }, () => {
  it('close() ends what still runs on the hosts and deletes every namespace', async () => {
    const net = await makeNetwork({ hosts: ['p', 'q'] });
    assert.equal(net.namespaces.length, 3);
    assert.ok(net.namespaces.every((ns) => namespacesNow().includes(ns)));
    const sleeper = net.hosts.q!.exec('sleep', ['300'], { stdio: 'ignore' });
    try {
      await new Promise((resolve, reject) => sleeper.once('spawn', resolve).once('error', reject));
      // 'spawn' comes before `ip netns exec` enters the namespace: until it has, close() cannot see it.
      const inQ = (): boolean =>
        spawnSync(ipCommand()!, ['netns', 'pids', net.hosts.q!.namespace], { encoding: 'utf8' }).stdout.split('\n').includes(String(sleeper.pid));
      await eventually(inQ, WAIT_MS, 'the process to be on host q');
      await net.close();
      assert.equal(await ending(sleeper, 'the process on host q'), 'SIGTERM');
      assert.deepEqual(
        namespacesNow().filter((ns) => net.namespaces.includes(ns)),
        [],
      );
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it("a SIGKILLed owner's namespaces and the processes on its hosts go with it", async () => {
    const owner = spawn(process.execPath, [fixture('netns-owner.js')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const made = await follow(owner, 'network owner').next((e) => 'namespaces' in e, 'the network');
    const namespaces = made.namespaces as string[];
    try {
      assert.ok(namespaces.every((ns) => namespacesNow().includes(ns)));
      assert.ok(pidAlive(made.sleeper));
      owner.kill('SIGKILL');
      await eventually(() => !namespacesNow().some((ns) => namespaces.includes(ns)), WAIT_MS, 'the namespaces to be deleted');
      await eventually(() => ended(made.sleeper), WAIT_MS, 'the process on the host to end');
    } finally {
      owner.kill('SIGKILL');
      if (!ended(made.sleeper)) process.kill(made.sleeper, 'SIGKILL');
    }
  });

  it('makeNetwork() deletes the namespaces of a test process that is gone, even without its cleaner', async () => {
    const gone = spawn('true');
    assert.equal(await ending(gone, 'true'), 0);
    const stale = [`mptsnet-${gone.pid}-1`, `mptsnet-${gone.pid}-1-x`];
    for (const ns of stale) assert.equal(spawnSync(ipCommand()!, ['netns', 'add', ns]).status, 0, `ip netns add ${ns}`);
    const net = await makeNetwork({ hosts: ['z'] });
    await net.close();
    assert.deepEqual(
      namespacesNow().filter((ns) => stale.includes(ns)),
      [],
    );
  });
});

describe('netnsUnavailable()', () => {
  it("names the missing 'ip' command and its package", () => {
    const netns = new URL('./netns.js', import.meta.url).href;
    const child = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `import(${JSON.stringify(netns)}).then((m) => console.log(m.netnsUnavailable()))`],
      { encoding: 'utf8', env: { ...process.env, MPTS_NETNS_IP: '/nonexistent/ip' }, timeout: WAIT_MS },
    );
    assert.equal(child.status, 0, child.stderr);
    // Root and Linux come first: elsewhere the reason is one of those, as clear.
    assert.match(child.stdout, process.getuid?.() === 0 ? /the 'ip' command is missing .*install iproute2/ : /needs root|Linux-only/);
  });
});
