import type { ProjectionEvent } from './types.js';

/**
 * Typed readers of event payloads for reducers. Each returns `undefined` when the key is absent (Go's
 * `omitempty` drops empty values) and throws a readable error on a value of the wrong type, which the
 * engine records in `projections.failed_events2`.
 */

/** The payload as an object; a missing payload reads as `{}`. Throws for arrays, strings, numbers. */
export function payloadOf(event: ProjectionEvent): Readonly<Record<string, unknown>> {
  const p = event.payload;
  if (p === null || p === undefined) return {};
  if (typeof p !== 'object' || Array.isArray(p)) {
    throw new TypeError(`payload of ${event.eventType} must be a JSON object, got ${Array.isArray(p) ? 'an array' : typeof p}`);
  }
  return p as Record<string, unknown>;
}

function wrong(key: string, expected: string, value: unknown): TypeError {
  return new TypeError(`payload key "${key}" must be ${expected}, got ${JSON.stringify(value)}`);
}

export function optString(p: Readonly<Record<string, unknown>>, key: string): string | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw wrong(key, 'a string', v);
  return v;
}

export function optInt(p: Readonly<Record<string, unknown>>, key: string): number | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw wrong(key, 'an integer', v);
  return v;
}

export function optBool(p: Readonly<Record<string, unknown>>, key: string): boolean | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw wrong(key, 'a boolean', v);
  return v;
}

/** A timestamp key (RFC 3339), as a string PostgreSQL parses. */
export function optTime(p: Readonly<Record<string, unknown>>, key: string): string | undefined {
  const v = optString(p, key);
  if (v !== undefined && !isTimestamp(v)) throw wrong(key, 'an RFC 3339 timestamp', v);
  return v;
}

const TIMESTAMP = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]\d{2}(:?\d{2})?)$/;

/** True for ISO-8601/RFC 3339 timestamps with a zone, the form the engine writes into timestamptz columns. */
export function isTimestamp(v: string): boolean {
  return TIMESTAMP.test(v);
}
