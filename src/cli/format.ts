import type { Progress } from '../steps-table.js';

/** 1234567 → `1,234,567`. */
export function formatCount(n: number): string {
  // Not toLocaleString: its first call loads ICU's locale data, ~15-40 ms of a cold process.
  const digits = String(Math.abs(Math.round(n)));
  return `${n <= -0.5 ? '-' : ''}${digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}`;
}

/** Milliseconds → `850ms`, `12.3s`, `4m05s`, `1h02m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** Bytes → `512 bytes`, `1.5 MB`, `3.2 GB`, in PostgreSQL's units (1 MB = 1024 kB, as pg_size_pretty). */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  // Rounded up: these are mostly sizes to provide for.
  return i === 0 ? `${Math.round(v)} bytes` : `${v < 10 ? (Math.ceil(v * 10) / 10).toFixed(1) : formatCount(Math.ceil(v))} ${units[i]}`;
}

/** `copy: 1,200,000 / 2,000,000 events (60%), 85,000 events/s, ETA 9.4s` */
export function formatProgress(p: Progress): string {
  const total = p.total !== null ? ` / ${formatCount(p.total)}` : '';
  const pct = p.total ? ` (${Math.min(100, Math.floor((p.done / p.total) * 100))}%)` : '';
  const rate = p.rate !== null ? `, ${formatCount(p.rate)} ${p.unit}/s` : '';
  const eta = p.etaSeconds !== null && p.done !== p.total ? `, ETA ${formatDuration(p.etaSeconds * 1000)}` : '';
  return `${p.phase}${p.note ? ` (${p.note})` : ''}: ${formatCount(p.done)}${total} ${p.unit}${pct}${rate}${eta}`;
}

/** `event` or `events` for a count: 1 event, 2 events, 0 events. */
export function plural(n: number, word: string, many = `${word}s`): string {
  return n === 1 ? word : many;
}

/**
 * A step's text without the name its id already says: for `projection:projections.orgs1`, a text
 * `projections.orgs1: 12 events` becomes `12 events`.
 */
export function dropName(stepId: string, text: string): string {
  const name = stepId.slice(stepId.indexOf(':') + 1);
  return name !== stepId && text.startsWith(`${name}: `) ? text.slice(name.length + 2) : text;
}

/** `<step id>: <text>`, without saying the name twice (see {@link dropName}). */
export function labelled(stepId: string, text: string): string {
  return `${stepId}: ${dropName(stepId, text)}`;
}

/**
 * Thousands separators in a step's message (`13086 events` → `13,086 events`): every run of five or
 * more digits, or of four followed by a space, that stands alone. Digits next to a letter, colon,
 * slash, hyphen, quote or a decimal point are left alone: ids, positions, times, ports and dates keep
 * their form.
 */
export function groupDigits(text: string): string {
  return text.replace(/(?<![\w:/'"’-]|\d\.)\d{4,}(?![\w:/'"’-]|\.\d)/g, (digits, offset: number, all: string) =>
    digits.length === 4 && all[offset + 4] !== ' ' ? digits : formatCount(Number(digits)));
}
