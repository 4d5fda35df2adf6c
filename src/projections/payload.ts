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

export function optStringArray(p: Readonly<Record<string, unknown>>, key: string): string[] | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw wrong(key, 'an array of strings', v);
  return v;
}

export function optIntArray(p: Readonly<Record<string, unknown>>, key: string): number[] | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x))) throw wrong(key, 'an array of integers', v);
  return v;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The base64 text of `v` without line breaks, validated the way Go's encoding/json decodes a `[]byte` field: standard alphabet with padding, line breaks ignored; anything else is an error. */
function base64Text(key: string, v: unknown): string {
  if (typeof v !== 'string') throw wrong(key, 'a base64 string', v);
  // Without line breaks, replace returns the string itself: a large value is not copied.
  const s = v.replace(/[\r\n]/g, '');
  if (!BASE64.test(s)) throw wrong(key, 'standard base64 with padding', v);
  return s;
}

/** The bytes of a base64 string, the way Go's encoding/json decodes a `[]byte` field (see base64Text). */
export function base64Bytes(key: string, v: unknown): Buffer {
  return Buffer.from(base64Text(key, v), 'base64');
}

/**
 * A bytea value held as the payload's base64 text (validated), not as its bytes or their hex form: the
 * text is the payload's own string, so a large value (SAML metadata: megabytes) is not copied while its
 * batch is folded and waits to be written. COPY decodes it straight into the data sent (write.ts); JSON
 * (`toJSON`) and query parameters (`toPostgres`, as pg calls it) carry the hex form `\x…`.
 */
export class Base64Bytes {
  constructor(readonly base64: string) {}

  /** Number of bytes the text decodes to. */
  get length(): number {
    const n = this.base64.length;
    return (n / 4) * 3 - (this.base64.endsWith('==') ? 2 : this.base64.endsWith('=') ? 1 : 0);
  }

  /** PostgreSQL's hex form of the bytes, `\x…`: a bytea value as a reducer may write it. */
  toJSON(): string {
    return `\\x${Buffer.from(this.base64, 'base64').toString('hex')}`;
  }

  toPostgres(): string {
    return this.toJSON();
  }
}

/** A `[]byte` key (base64 in JSON) as a bytea value (see Base64Bytes). */
export function optBytes(p: Readonly<Record<string, unknown>>, key: string): Base64Bytes | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  return new Base64Bytes(base64Text(key, v));
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A secret column's text: the legacy encrypted secret object (key `secretKey`) wins when present, as
 * its `Crypted` bytes read as text, else the string at `hashKey`, else ''. The reference converts the
 * bytes with Go's `string(bytes)` and sends them as text, so bytes that are not UTF-8 are rejected by
 * PostgreSQL; they are rejected here too (the event is recorded as failed).
 */
export function secretOrEncodedHash(p: Readonly<Record<string, unknown>>, secretKey: string, hashKey: string): string {
  const secret = p[secretKey];
  if (secret === undefined || secret === null) return optString(p, hashKey) ?? '';
  if (typeof secret !== 'object' || Array.isArray(secret)) throw wrong(secretKey, 'an object', secret);
  const crypted = cryptedField(secret as Record<string, unknown>);
  if (crypted === undefined || crypted === null) return '';
  try {
    return UTF8.decode(base64Bytes(`${secretKey}.Crypted`, crypted));
  } catch (err) {
    if (err instanceof TypeError && err.message.startsWith('payload key')) throw err;
    throw new TypeError(`payload key "${secretKey}.Crypted" is not UTF-8 text`);
  }
}

/**
 * Whether a password is set: the legacy secret object with non-empty `Crypted` bytes, else a non-empty
 * string at `hashKey` (the reference compares the secret text with '' and never stores it).
 */
export function hasSecretOrEncodedHash(p: Readonly<Record<string, unknown>>, secretKey: string, hashKey: string): boolean {
  const secret = p[secretKey];
  if (secret === undefined || secret === null) return (optString(p, hashKey) ?? '') !== '';
  if (typeof secret !== 'object' || Array.isArray(secret)) throw wrong(secretKey, 'an object', secret);
  const crypted = cryptedField(secret as Record<string, unknown>);
  return crypted !== undefined && crypted !== null && base64Bytes(`${secretKey}.Crypted`, crypted).length > 0;
}

/** Go matches JSON keys to struct fields case-insensitively, preferring the exact name. */
function cryptedField(o: Record<string, unknown>): unknown {
  if ('Crypted' in o) return o.Crypted;
  const k = Object.keys(o).find((x) => x.toLowerCase() === 'crypted');
  return k === undefined ? undefined : o[k];
}
