/** Number formatting shared by progress lines and the table. */

/** About three significant digits, thousands grouped: 1.650, 42.38, 1,199,168. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(1);
  if (a >= 10) return v.toFixed(2);
  return v.toFixed(3);
}

/** A ratio as `1.03×`. */
export function formatRatio(r: number | null): string {
  if (r === null || !Number.isFinite(r)) return '-';
  return r >= 100 ? `${r.toFixed(0)}×` : `${r.toFixed(2)}×`;
}
