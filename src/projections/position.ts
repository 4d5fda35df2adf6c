/**
 * Exact arithmetic on `position` values (NUMERIC epoch seconds) kept as decimal text, so window
 * bounds computed in JavaScript are exactly the values sent to PostgreSQL.
 */

function parts(s: string): { int: bigint; scale: number } {
  const neg = s.startsWith('-');
  const [i, f = ''] = (neg ? s.slice(1) : s).split('.');
  const v = BigInt(i + f || '0');
  return { int: neg ? -v : v, scale: f.length };
}

function align(a: string, b: string): [bigint, bigint, number] {
  const x = parts(a);
  const y = parts(b);
  const scale = Math.max(x.scale, y.scale);
  return [x.int * 10n ** BigInt(scale - x.scale), y.int * 10n ** BigInt(scale - y.scale), scale];
}

function format(v: bigint, scale: number): string {
  const neg = v < 0n;
  const digits = (neg ? -v : v).toString().padStart(scale + 1, '0');
  const text = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return neg ? `-${text}` : text;
}

/** -1, 0 or 1. */
export function comparePositions(a: string, b: string): number {
  const [x, y] = align(a, b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** `a + delta`, with delta rounded to microseconds. */
export function addToPosition(a: string, delta: number): string {
  const [x, y, scale] = align(a, delta.toFixed(6));
  return format(x + y, scale);
}

/** `b - a` as a float, for sizing windows. */
export function positionSpan(a: string, b: string): number {
  const [x, y, scale] = align(a, b);
  return Number(y - x) / 10 ** scale;
}

/** The smaller of two positions. */
export function minPosition(a: string, b: string): string {
  return comparePositions(a, b) <= 0 ? a : b;
}
