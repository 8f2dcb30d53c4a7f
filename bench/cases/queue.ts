/**
 * Cases `queue` and `queue-8mb`: one producer child puts n items into a
 * Queue, the parent gets them (the Python anchor's shape: CPython's
 * `mp.Queue` with a fork child).
 *
 * The producer passes a gate the parent holds once it is ready, so its
 * start-up is outside the clock; the clock runs from opening the gate to
 * the parent's last get. Ours: a 'process' child with `putSync`, the parent
 * with `getSync` (Python's put and get block too). Anchors in the same run:
 * Python's Queue; for small ints also `postMessage` one-way from a worker
 * thread to the main thread (counting 'message' events); for 8 MB items a
 * plain `Buffer.copy` of the same size (the memory's own speed).
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import * as mp from 'multiprocessing-ts';
import { startGated } from '../gated-child.js';
import { runPythonAnchor } from '../python.js';
import { queueProduce, type QueuePayload } from '../targets.js';
import type { Case, CaseDefinition, Sample, Variant } from '../types.js';

const nowS = (): number => performance.now() / 1e3;
const BYTES_8MB = 8 * 1024 * 1024;

/** One run of ours: items per second from gate to last get (MB/s for 8 MB items). */
async function runOurs(payload: QueuePayload, n: number): Promise<Sample> {
  const q = new mp.Queue<unknown>();
  const { child: p, open } = await startGated(queueProduce, [q, n, payload], 'producer');
  const t0 = nowS();
  open();
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const item = q.getSync({ timeout: 30_000 });
    if (payload === 'int' ? item !== i : (item as Uint8Array).length !== (payload === '8mb' ? BYTES_8MB : 1024)) bad++;
  }
  const elapsed = nowS() - t0;
  await p.join();
  const perS = n / elapsed;
  return {
    value: payload === '8mb' ? (perS * BYTES_8MB) / 1e6 : perS,
    extra: { n, elapsed_s: elapsed, per_s: perS },
    ...(bad ? { error: `${bad} items arrived wrong` } : p.exitCode !== 0 ? { error: `producer exit code ${p.exitCode}` } : {}),
  };
}

function ours(payload: QueuePayload, n: number, target: { anchor: string; ratio: number }): Variant {
  return {
    id: `mpts.${payload}`,
    system: 'multiprocessing-ts',
    label: `ours 'process' putSync → getSync, ${payload}`,
    target: { anchor: target.anchor, op: '>=', ratio: target.ratio },
    // Small ints are judged against postMessage one-way too (the same samples).
    ...(payload === 'int'
      ? { views: [{ id: 'mpts.int.vs-postmessage', label: "ours 'process' ints, vs postMessage", metric: 'per_s', target: { anchor: 'node.postmessage', op: '>=' as const, ratio: 2 } }] }
      : {}),
    warmup: async () => {
      await runOurs(payload, payload === '8mb' ? 2 : 1000);
    },
    sample: () => runOurs(payload, n),
  };
}

function python(payload: QueuePayload, n: number): Variant {
  return {
    id: `python.${payload}`,
    system: 'python-multiprocessing',
    label: `python fork Queue, ${payload}`,
    async sample() {
      const r = await runPythonAnchor(['queue', '--payload', payload, '--n', String(n)]);
      const perS = n / (r['elapsed_s'] as number);
      return { value: payload === '8mb' ? (perS * BYTES_8MB) / 1e6 : perS, untrackedCpuS: r.helper_cpu_s, extra: { n, python: r.python } };
    },
  };
}

const POST_WORKER = new URL('../fixtures/post-ints-worker.js', import.meta.url);

/** postMessage one-way: a worker posts n ints, the main thread counts them. */
async function runPostMessage(n: number): Promise<Sample> {
  const w = new Worker(POST_WORKER, { workerData: { n } });
  await once(w, 'message');
  let got = 0;
  const done = new Promise<void>((resolve) =>
    w.on('message', () => {
      if (++got === n) resolve();
    }),
  );
  const t0 = nowS();
  w.postMessage('go');
  await done;
  const elapsed = nowS() - t0;
  await w.terminate();
  return { value: n / elapsed, extra: { n, elapsed_s: elapsed } };
}

/** Buffer.copy of 8 MB, n times (MB/s). */
async function runCopy(n: number): Promise<Sample> {
  const src = Buffer.alloc(BYTES_8MB, 120);
  const dst = Buffer.alloc(BYTES_8MB);
  const t0 = nowS();
  for (let i = 0; i < n; i++) src.copy(dst);
  const elapsed = nowS() - t0;
  return { value: (n * BYTES_8MB) / 1e6 / elapsed, extra: { n, elapsed_s: elapsed } };
}

export const queueSmall: CaseDefinition = {
  name: 'queue',
  summary: 'Queue, one producer process → one consumer process, small ints and 1 KiB Uint8Arrays (msg/s)',
  make({ quick }): Case {
    const n = quick ? 200_000 : 1_000_000;
    const n1k = quick ? 100_000 : 400_000;
    const pyN = quick ? 100_000 : 200_000;
    return {
      name: 'queue',
      title: 'Queue throughput, 1 producer process → 1 consumer process',
      unit: 'msg/s',
      better: 'higher',
      method: `a producer child puts n items (ours ${n.toLocaleString('en-US')} ints / ${n1k.toLocaleString('en-US')} × 1 KiB, python ${pyN.toLocaleString('en-US')}); timed gate → last get in the parent`,
      variants: [
        ours('int', n, { anchor: 'python.int', ratio: 10 }),
        ours('bytes1k', n1k, { anchor: 'python.bytes1k', ratio: 5 }),
        python('int', pyN),
        python('bytes1k', pyN),
        {
          id: 'node.postmessage',
          system: 'node-worker_threads',
          label: 'postMessage one-way, worker → main, ints',
          warmup: async () => void (await runPostMessage(10_000)),
          sample: () => runPostMessage(quick ? 200_000 : 500_000),
        },
      ],
    };
  },
};

export const queueLarge: CaseDefinition = {
  name: 'queue-8mb',
  summary: 'Queue with 8 MB Uint8Array items, process → process, beside Buffer.copy (MB/s)',
  make({ quick }): Case {
    const n = quick ? 10 : 40;
    return {
      name: 'queue-8mb',
      title: 'Queue throughput, 8 MB items, 1 producer process → 1 consumer process',
      unit: 'MB/s',
      better: 'higher',
      method: `a producer child puts n = ${n} items of 8 MB; timed gate → last get; Buffer.copy of 8 MB n times`,
      variants: [
        { ...ours('8mb', n, { anchor: 'node.copy', ratio: 0.25 }) },
        python('8mb', n),
        { id: 'node.copy', system: 'node', label: 'Buffer.copy of 8 MB', sample: () => runCopy(n) },
      ],
    };
  },
};
