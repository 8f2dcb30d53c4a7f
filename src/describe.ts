/**
 * How error messages name a value the caller gave: short, and enough to
 * recognise it (`"text"`, `12n`, `a function (work)`, `an Int32Array`).
 * Below every layer (it imports nothing), so any module can use it.
 */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return `a function (${value.name || 'anonymous'})`;
  if (value === null || typeof value !== 'object') return String(value);
  return article(value.constructor?.name || 'object');
}

/** `a Map`, `an Int32Array`: the name with its indefinite article. */
export function article(name: string): string {
  return `${/^[AEIOU]/i.test(name) ? 'an' : 'a'} ${name}`;
}
