/**
 * Cases `pipe` (one-way small messages, msg/s) and `pipe-rtt` (ping-pong
 * round trip, median µs), each beside its anchors measured in the same run:
 * Python's `Pipe` (fork child; `Pipe(duplex=False)` one-way), and for the
 * round trip a MessageChannel between two worker threads.
 *
 * Ours: a 'process' child. One-way: the child passes a gate the parent
 * holds, then `sendSync`s n ints; timed from opening the gate to the
 * parent's last `recvSync`. Round trip: the child echoes; the parent times
 * each round trip and reports the median, with blocking calls on both sides
 * (as Python's) and, informational, with the async `send`/`recv`.
 */
import { once } from 'node:events';
import { MessageChannel, Worker } from 'node:worker_threads';
import * as mp from 'multiprocessing-ts';
import { startGated } from '../gated-child.js';
import { runPythonAnchor } from '../python.js';
import { pipeEcho, pipeSend, TARGETS_URL } from '../targets.js';
import type { Case, CaseDefinition, Sample, Variant } from '../types.js';

const nowS = (): number => performance.now() / 1e3;

async function runOneWay(n: number): Promise<Sample> {
  const [reader, writer] = mp.Pipe(false);
  const { child: p, open } = await startGated(pipeSend, [writer, n], 'sender', () => writer.close());
  const t0 = nowS();
  open();
  let bad = 0;
  for (let i = 0; i < n; i++) if (reader.recvSync() !== i) bad++;
  const elapsed = nowS() - t0;
  reader.close();
  await p.join();
  return {
    value: n / elapsed,
    extra: { n, elapsed_s: elapsed },
    ...(bad ? { error: `${bad} messages arrived wrong` } : p.exitCode !== 0 ? { error: `sender exit code ${p.exitCode}` } : {}),
  };
}

async function runRtt(rounds: number, warmup: number, sync: boolean): Promise<Sample> {
  const [mine, theirs] = mp.Pipe();
  const p = new (mp.getContext('process').Process)({ target: pipeEcho, args: [theirs, sync], module: TARGETS_URL });
  p.start();
  theirs.close();
  const times: number[] = [];
  let bad = 0;
  for (let i = 0; i < warmup + rounds; i++) {
    const t0 = performance.now();
    let v: unknown;
    if (sync) {
      mine.sendSync(i);
      v = mine.recvSync();
    } else {
      await mine.send(i);
      v = await mine.recv();
    }
    if (i >= warmup) times.push((performance.now() - t0) * 1e3);
    if (v !== i) bad++;
  }
  mine.close();
  await p.join();
  times.sort((a, b) => a - b);
  const median = times[times.length >> 1]!;
  return { value: median, extra: { rounds, rtt_us: median }, ...(bad ? { error: `${bad} replies wrong` } : {}) };
}

const MC_WORKER = new URL('../fixtures/mc-pingpong-worker.js', import.meta.url);

async function runMessageChannel(rounds: number, warmup: number): Promise<Sample> {
  const { port1, port2 } = new MessageChannel();
  const pong = new Worker(MC_WORKER, { workerData: { role: 'pong', port: port2 }, transferList: [port2] });
  const ping = new Worker(MC_WORKER, { workerData: { role: 'ping', port: port1, rounds, warmup }, transferList: [port1] });
  const [median] = (await once(ping, 'message')) as [number];
  await Promise.all([ping.terminate(), pong.terminate()]);
  return { value: median, extra: { rounds } };
}

export const pipeOneWay: CaseDefinition = {
  name: 'pipe',
  summary: 'Pipe one-way, small ints, child process → parent (msg/s)',
  make({ quick }): Case {
    const n = quick ? 200_000 : 1_000_000;
    const pyN = quick ? 100_000 : 200_000;
    return {
      name: 'pipe',
      title: 'Pipe one-way throughput, small ints, 1 sender process → 1 receiver process',
      unit: 'msg/s',
      better: 'higher',
      method: `a sender child sends n ints (ours ${n.toLocaleString('en-US')} with sendSync/recvSync, python ${pyN.toLocaleString('en-US')} over Pipe(duplex=False)); timed gate → last recv`,
      variants: [
        {
          id: 'mpts.oneway',
          system: 'multiprocessing-ts',
          label: "ours 'process' sendSync → recvSync",
          target: { anchor: 'python.oneway', op: '>=', ratio: 10 },
          warmup: async () => void (await runOneWay(1000)),
          sample: () => runOneWay(n),
        },
        {
          id: 'python.oneway',
          system: 'python-multiprocessing',
          label: 'python fork Pipe(duplex=False)',
          async sample() {
            const r = await runPythonAnchor(['pipe', '--n', String(pyN)]);
            return { value: pyN / (r['elapsed_s'] as number), untrackedCpuS: r.helper_cpu_s, extra: { n: pyN, python: r.python } };
          },
        },
      ],
    };
  },
};

export const pipeRoundTrip: CaseDefinition = {
  name: 'pipe-rtt',
  summary: 'Pipe ping-pong round trip, parent ↔ child process (median µs)',
  make({ quick }): Case {
    const rounds = quick ? 3_000 : 10_000;
    const warmup = 1_000;
    return {
      name: 'pipe-rtt',
      title: 'Pipe ping-pong round trip, parent ↔ child process',
      unit: 'µs',
      better: 'lower',
      method: `${rounds.toLocaleString('en-US')} timed round trips of an int after ${warmup.toLocaleString('en-US')} warm-ups; median`,
      variants: [
        {
          id: 'mpts.rtt.sync',
          system: 'multiprocessing-ts',
          label: "ours 'process' sendSync/recvSync both sides",
          target: { anchor: 'python.rtt', op: '<=', ratio: 0.5 },
          views: [{ id: 'mpts.rtt.sync.vs-mc', label: 'ours sync, vs MessageChannel', metric: 'rtt_us', target: { anchor: 'node.messagechannel', op: '<=' as const, ratio: 1 } }],
          sample: () => runRtt(rounds, warmup, true),
        },
        {
          id: 'mpts.rtt.async',
          system: 'multiprocessing-ts',
          label: "ours 'process' async send/recv both sides",
          sample: () => runRtt(rounds, warmup, false),
        },
        {
          id: 'python.rtt',
          system: 'python-multiprocessing',
          label: 'python fork Pipe() round trip',
          async sample() {
            const r = await runPythonAnchor(['pipe-rtt', '--rounds', String(rounds), '--warmup', String(warmup)]);
            return { value: r['median_us'] as number, untrackedCpuS: r.helper_cpu_s, extra: { rounds, python: r.python } };
          },
        },
        {
          id: 'node.messagechannel',
          system: 'node-worker_threads',
          label: 'MessageChannel round trip between two worker threads',
          sample: () => runMessageChannel(rounds, warmup),
        },
      ],
    };
  },
};
