/**
 * Case `manager`: a SyncManager's list and dict used by 2 children, the
 * anchor suite's `e` group: each child appends n items to one list, then
 * each sets n keys of its own in one dict and gets them back (checked).
 *
 * Ours: 'process' children with the proxies in their args, in two forms:
 * one call at a time (each awaited before the next: Python's form, since
 * its proxies block) and pipelined (`window` calls in flight per child,
 * the form our async proxies allow). Anchor in the same run: CPython's
 * Manager with fork children (its figures swing 34k–75k ops/s between
 * runs here; only a same-run ratio counts). Phases are timed in the parent
 * between barrier waits, as the anchor does; a sample's value is the
 * append rate, the set and get rates are views.
 */
import * as mp from 'multiprocessing-ts';
import { runPythonAnchor } from '../python.js';
import { TARGETS_URL, managerAppends, managerDictSetGet } from '../targets.js';
import type { Case, CaseDefinition, Sample, Variant } from '../types.js';

const CHILDREN = 2;
const nowS = (): number => performance.now() / 1e3;

async function runOurs(n: number, window: number): Promise<Sample> {
  const manager = await mp.Manager();
  const Process = mp.getContext('process').Process;
  try {
    const lst = await manager.list<number>();
    const start = new mp.Barrier(CHILDREN + 1);
    const appenders = Array.from({ length: CHILDREN }, () => new Process({ target: managerAppends, args: [lst, n, window, start], module: TARGETS_URL }));
    appenders.forEach((p) => p.start());
    await start.wait(60_000);
    const t0 = nowS();
    await Promise.all(appenders.map((p) => p.join(120_000)));
    const tAppend = nowS() - t0;
    const length = await lst.len();

    const d = await manager.dict<string, number>();
    const phases = new mp.Barrier(CHILDREN + 1);
    const dicters = Array.from({ length: CHILDREN }, (_, tag) => new Process({ target: managerDictSetGet, args: [d, n, tag, window, phases], module: TARGETS_URL }));
    dicters.forEach((p) => p.start());
    await phases.wait(60_000);
    const t1 = nowS();
    await phases.wait(120_000);
    const t2 = nowS();
    await phases.wait(120_000);
    const t3 = nowS();
    await Promise.all(dicters.map((p) => p.join(60_000)));
    const ops = n * CHILDREN;
    const codes = [...appenders, ...dicters].map((p) => p.exitCode);
    const exact = length === ops && (await d.len()) === ops && codes.every((c) => c === 0);
    return {
      value: ops / tAppend,
      extra: { n, window, set_per_s: ops / (t2 - t1), get_per_s: ops / (t3 - t2) },
      ...(exact ? {} : { error: `wrong totals (list ${length} of ${ops}, exit codes ${codes.join(',')})` }),
    };
  } finally {
    await manager.shutdown();
  }
}

function ours(n: number, window: number): Variant {
  const form = window > 1 ? `pipelined, ${window} in flight per child` : 'one call at a time';
  const id = window > 1 ? 'mpts.pipelined' : 'mpts.one';
  // The target is judged on the pipelined form; one call at a time is reported beside it.
  const target = window > 1 ? { op: '>=' as const, ratio: 3 } : null;
  return {
    id,
    system: 'multiprocessing-ts',
    label: `ours list.append, ${form}`,
    ...(target ? { target: { anchor: 'python.manager', ...target } } : { anchor: 'python.manager' }),
    views: [
      { id: `${id}.set`, label: `ours dict set, ${form}`, metric: 'set_per_s', ...(target ? { target: { anchor: 'python.manager.set', ...target } } : { anchor: 'python.manager.set' }) },
      { id: `${id}.get`, label: `ours dict get, ${form}`, metric: 'get_per_s', ...(target ? { target: { anchor: 'python.manager.get', ...target } } : { anchor: 'python.manager.get' }) },
    ],
    warmup: async () => {
      await runOurs(500, window);
    },
    sample: () => runOurs(n, window),
  };
}

function python(n: number): Variant {
  return {
    id: 'python.manager',
    system: 'python-multiprocessing',
    label: 'python fork Manager, list.append',
    views: [
      { id: 'python.manager.set', label: 'python fork Manager, dict set', metric: 'set_per_s' },
      { id: 'python.manager.get', label: 'python fork Manager, dict get', metric: 'get_per_s' },
    ],
    async sample() {
      const r = await runPythonAnchor(['manager', '--n', String(n), '--procs', String(CHILDREN)]);
      return {
        value: r['append_per_s'] as number,
        untrackedCpuS: r.helper_cpu_s,
        extra: { n, set_per_s: r['set_per_s'], get_per_s: r['get_per_s'], python: r.python },
        ...(r['exact'] ? {} : { error: 'Python reported wrong totals' }),
      };
    },
  };
}

export const managerOps: CaseDefinition = {
  name: 'manager',
  summary: 'a Manager list and dict used by 2 children: append, set, get (ops/s), vs Python',
  make({ quick }): Case {
    const n = quick ? 5_000 : 20_000;
    return {
      name: 'manager',
      title: 'Manager list.append, dict set and get from 2 child processes',
      unit: 'ops/s',
      better: 'higher',
      method: `2 children × ${n.toLocaleString('en-US')} of each operation per sample, phases timed in the parent between barrier waits (the anchor suite's e)`,
      variants: [ours(n, 256), ours(n, 1), python(n)],
    };
  },
};
