/**
 * Runs a case: every variant once per round, round-robin (a, b, c, a, b, c…),
 * so a burst of foreign load or a thermal/frequency change hits ours and the
 * anchors alike instead of whichever happened to run during it.
 */
import { startLoadProbe, type Load } from './noise.js';
import { formatNumber } from './format.js';
import { median } from './stats.js';
import type { Case, RowResult, Sample, Variant } from './types.js';

export interface RunOptions {
  readonly rounds: number;
  /** A sample taken while other processes used more than this many cores is retried. */
  readonly foreignMax: number;
  /** Retries per sample at most; the cleanest attempt is kept. */
  readonly maxRetries: number;
  /** Progress output (stderr), so stdout stays the table. */
  readonly log: (line: string) => void;
}

interface RowState {
  readonly variant: Variant;
  readonly values: number[];
  readonly foreign: number[];
  readonly extras: Readonly<Record<string, unknown>>[];
  retries: number;
  error: string | null;
}

/** One sample, retried while foreign load is above the limit; the cleanest attempt wins. */
async function cleanSample(
  variant: Variant,
  options: RunOptions,
): Promise<{ sample: Sample; load: Load; retries: number }> {
  let best: { sample: Sample; load: Load } | null = null;
  let retries = 0;
  for (let attempt = 0; attempt <= options.maxRetries; attempt++) {
    const probe = startLoadProbe();
    const sample = await variant.sample();
    const load = probe.stop(sample.untrackedCpuS ?? 0);
    if (!best || load.foreignCores < best.load.foreignCores) best = { sample, load };
    // A failed check is a result, not noise: do not retry it away.
    if (sample.error || load.foreignCores <= options.foreignMax || attempt === options.maxRetries) break;
    retries++;
    options.log(`    ${variant.id}: foreign load ${load.foreignCores.toFixed(2)} cores, retrying`);
  }
  return { ...best!, retries };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export async function runCase(c: Case, options: RunOptions): Promise<RowResult[]> {
  const rows: RowState[] = c.variants.map((variant) => ({
    variant,
    values: [],
    foreign: [],
    extras: [],
    retries: 0,
    error: null,
  }));

  for (const row of rows) {
    if (!row.variant.warmup) continue;
    try {
      await row.variant.warmup();
    } catch (err) {
      row.error = `warm-up failed: ${errorText(err)}`;
      options.log(`  ${row.variant.id}: ${row.error}`);
    }
  }

  for (let round = 1; round <= options.rounds; round++) {
    options.log(`  round ${round}/${options.rounds}`);
    for (const row of rows) {
      if (row.error) continue; // a broken variant would only fail again
      try {
        const { sample, load, retries } = await cleanSample(row.variant, options);
        row.retries += retries;
        row.values.push(sample.value);
        row.foreign.push(load.foreignCores);
        row.extras.push(sample.extra ?? {});
        if (sample.error) row.error = sample.error;
        options.log(
          `    ${row.variant.id.padEnd(24)} ${formatNumber(sample.value)} ${c.unit}` +
            `  (foreign ${load.foreignCores.toFixed(2)} cores)${sample.error ? `  ERROR: ${sample.error}` : ''}`,
        );
      } catch (err) {
        row.error = errorText(err);
        options.log(`    ${row.variant.id}: ERROR ${row.error}`);
      }
    }
  }

  // Views become rows of their own, fed by their variant's samples.
  for (const row of [...rows]) {
    for (const view of row.variant.views ?? []) {
      rows.push({
        variant: {
          id: view.id,
          system: row.variant.system,
          label: view.label,
          ...(view.anchor ? { anchor: view.anchor } : {}),
          ...(view.target ? { target: view.target } : {}),
          sample: () => Promise.reject(new Error(`${view.id} is a view of ${row.variant.id}`)),
        },
        values: row.extras.map((e) => Number(e[view.metric])),
        foreign: row.foreign,
        extras: row.extras,
        retries: row.retries,
        error: row.error,
      });
    }
  }

  const medians = new Map(rows.map((r) => [r.variant.id, median(r.values)]));
  return rows.map((r): RowResult => {
    const m = medians.get(r.variant.id)!;
    const anchorId = r.variant.target?.anchor ?? r.variant.anchor;
    const anchorMedian = anchorId === undefined ? undefined : medians.get(anchorId);
    const ratio = anchorMedian !== undefined && Number.isFinite(m) && anchorMedian > 0 ? m / anchorMedian : null;
    const t = r.variant.target;
    let pass: boolean | null = null;
    // Without an anchor figure (the anchor failed) there is nothing to judge: pass stays null.
    if (t && ratio !== null) pass = r.error === null && (t.op === '<=' ? ratio <= t.ratio : ratio >= t.ratio);
    return {
      caseName: c.name,
      variant: r.variant,
      unit: c.unit,
      values: r.values,
      foreign: r.foreign,
      retries: r.retries,
      extras: r.extras,
      error: r.error,
      median: m,
      ratio,
      pass,
    };
  });
}
