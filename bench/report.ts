/**
 * Output: a fixed-width table per case on stdout, and one JSON line per row
 * (plus one `meta` line per run) for results/latest.jsonl.
 */
import { formatNumber, formatRatio } from './format.js';
import { median, range } from './stats.js';
import type { Case, RowResult } from './types.js';

interface Column {
  readonly head: string;
  readonly right?: boolean;
  readonly cell: (r: RowResult, rows: readonly RowResult[]) => string;
}

function labelOf(id: string | undefined, rows: readonly RowResult[]): string {
  if (id === undefined) return '';
  return rows.find((r) => r.variant.id === id)?.variant.label ?? id;
}

function verdict(r: RowResult): string {
  if (r.error) return 'FAIL';
  if (r.pass === null) return r.variant.target ? 'n/a' : '';
  return r.pass ? 'PASS' : 'MISS';
}

const COLUMNS: readonly Column[] = [
  { head: 'variant', cell: (r) => r.variant.label },
  { head: 'median', right: true, cell: (r) => formatNumber(r.median) },
  {
    head: 'min … max',
    right: true,
    cell: (r) => {
      if (r.values.length === 0) return '-';
      const { min, max } = range(r.values);
      return `${formatNumber(min)} … ${formatNumber(max)}`;
    },
  },
  { head: 'RATIO', right: true, cell: (r) => formatRatio(r.ratio) },
  { head: 'vs', cell: (r, rows) => labelOf(r.variant.target?.anchor ?? r.variant.anchor, rows) },
  {
    head: 'target',
    right: true,
    cell: (r) => (r.variant.target ? `${r.variant.target.op === '<=' ? '≤' : '≥'}${formatRatio(r.variant.target.ratio)}` : ''),
  },
  { head: 'verdict', cell: verdict },
  { head: 'foreign', right: true, cell: (r) => (r.foreign.length ? Math.max(...r.foreign).toFixed(2) : '-') },
];

/** The table of one case, with a header that says how to read it. */
export function renderCase(c: Case, rows: readonly RowResult[], rounds: number): string {
  const cells = rows.map((r) => COLUMNS.map((col) => col.cell(r, rows)));
  const widths = COLUMNS.map((col, i) => Math.max(col.head.length, ...cells.map((row) => row[i]!.length)));
  const line = (parts: readonly string[]) =>
    '  ' + parts.map((p, i) => (COLUMNS[i]!.right ? p.padStart(widths[i]!) : p.padEnd(widths[i]!))).join('  ').trimEnd();

  const out: string[] = [];
  out.push(`${c.name}: ${c.title}  [${c.unit}, ${c.better} is better]`);
  out.push(`  ${c.method}; ${rounds} round(s), variants interleaved; median of rounds`);
  out.push(line(COLUMNS.map((col) => col.head)));
  out.push(line(widths.map((w) => '-'.repeat(w))));
  for (const row of cells) out.push(line(row));

  const foreign = rows.flatMap((r) => r.foreign);
  const retries = rows.reduce((n, r) => n + r.retries, 0);
  if (foreign.length) {
    out.push(
      `  foreign CPU load (other processes): median ${median(foreign).toFixed(2)}, max ${Math.max(...foreign).toFixed(2)} cores ` +
        `over ${foreign.length} samples${retries ? `; ${retries} sample(s) retried for load` : ''}`,
    );
  }
  for (const r of rows) if (r.error) out.push(`  ${r.variant.label}: ${r.error}`);
  return out.join('\n');
}

/** Per-round details folded into one object: numbers by their median, the rest as first seen. */
function foldExtras(extras: readonly Readonly<Record<string, unknown>>[]): Record<string, unknown> {
  const keys = new Set(extras.flatMap((e) => Object.keys(e)));
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const vals = extras.map((e) => e[k]).filter((v) => v !== undefined);
    out[k] = vals.every((v) => typeof v === 'number') ? median(vals as number[]) : vals[0];
  }
  return out;
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

/** One JSON line per row. */
export function rowRecord(r: RowResult, date: string): Record<string, unknown> {
  const t = r.variant.target;
  return {
    type: 'row',
    date,
    case: r.caseName,
    variant: r.variant.id,
    system: r.variant.system,
    label: r.variant.label,
    value: round3(r.median),
    unit: r.unit,
    rounds: r.values.map(round3),
    anchor: t?.anchor ?? r.variant.anchor ?? null,
    ratio: r.ratio === null ? null : round3(r.ratio),
    target: t ? `${t.op}${t.ratio}` : null,
    pass: r.pass,
    error: r.error,
    foreign_cores: {
      median: r.foreign.length ? round3(median(r.foreign)) : null,
      max: r.foreign.length ? round3(Math.max(...r.foreign)) : null,
      rounds: r.foreign.map(round3),
    },
    retries: r.retries,
    details: foldExtras(r.extras),
  };
}
