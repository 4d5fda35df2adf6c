/**
 * Building blocks of the reference handler's statements (bench/reference-statements.ts, reference-users.ts):
 * the event as the reference reads it, plain INSERT / UPDATE / DELETE builders, and payload reading with
 * Go's zero values, as ZITADEL's event structs decode a payload.
 */

/** An event as the reference reads it: text for every value whose exact form matters. */
export interface RefEvent {
  readonly instanceId: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly eventType: string;
  readonly sequence: string;
  readonly createdAt: string;
  readonly position: string;
  readonly owner: string;
  readonly payload: Readonly<Record<string, unknown>> | null;
}

/** One SQL execution, or a part that cannot run (ZITADEL's "no values" update). */
export type Exec = { readonly text: string; readonly values: readonly unknown[] } | { readonly error: string };
/** An event's statement: its executions in order, or null for a no-op. */
export type Reduce = (e: RefEvent) => Exec[] | null;

/** A projection of the reference: its name and reducers per aggregate type and event type. */
export interface RefProjection {
  readonly name: string;
  readonly reducers: Readonly<Record<string, Readonly<Record<string, Reduce>>>>;
}

export type Values = Record<string, unknown>;
/** A column copied from another column of the same row (ZITADEL's copy column). */
export class Copy { constructor(readonly from: string) {} }

export function insert(table: string, cols: Values): Exec {
  const names = Object.keys(cols);
  return { text: `INSERT INTO ${table} (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')})`, values: Object.values(cols) };
}

export function update(table: string, set: Values, where: Values): Exec {
  const names = Object.keys(set);
  if (names.length === 0) return { error: `no values to update in ${table}` };
  const values: unknown[] = [];
  const sets = names.map((n) => {
    const v = set[n];
    if (v instanceof Copy) return `${n} = ${v.from}`;
    values.push(v);
    return `${n} = $${values.length}`;
  });
  const conds = Object.keys(where).map((n) => { values.push(where[n]); return `${n} = $${values.length}`; });
  return { text: `UPDATE ${table} SET ${sets.join(', ')} WHERE ${conds.join(' AND ')}`, values };
}

export function remove(table: string, where: Values): Exec {
  const names = Object.keys(where);
  return { text: `DELETE FROM ${table} WHERE ${names.map((n, i) => `${n} = $${i + 1}`).join(' AND ')}`, values: Object.values(where) };
}

// Payload reading with Go's zero values: a key absent (or null) reads as '', 0 or false.
export const p = (e: RefEvent) => e.payload ?? {};
export const has = (e: RefEvent, k: string) => p(e)[k] !== undefined && p(e)[k] !== null;
export const str = (e: RefEvent, k: string) => (typeof p(e)[k] === 'string' ? (p(e)[k] as string) : '');
export const num = (e: RefEvent, k: string) => (typeof p(e)[k] === 'number' ? (p(e)[k] as number) : 0);
export const bool = (e: RefEvent, k: string) => p(e)[k] === true;
export const nullIfEmpty = (v: string) => (v === '' ? null : v);
/** A text array column: an empty or absent array is stored as NULL. */
export const arr = (e: RefEvent, k: string) => (Array.isArray(p(e)[k]) && (p(e)[k] as unknown[]).length ? p(e)[k] : null);

/** A legacy crypto value's `Crypted` bytes (base64 in JSON) as text, or ''. */
export function crypted(v: unknown): string {
  const c = v && typeof v === 'object' ? (v as Record<string, unknown>).Crypted : undefined;
  return typeof c === 'string' ? Buffer.from(c, 'base64').toString('utf8') : '';
}
/** `hashedSecret`, else the legacy `clientSecret` object's bytes, else ''. */
export const secret = (e: RefEvent) => str(e, 'hashedSecret') || crypted(p(e).clientSecret);

export const bump = (e: RefEvent) => ({ change_date: e.createdAt, sequence: e.sequence });
export const created = (e: RefEvent) => ({ creation_date: e.createdAt, change_date: e.createdAt, sequence: e.sequence });
export const own = (e: RefEvent) => ({ id: e.aggregateId, instance_id: e.instanceId });
export const ofInstance = (table: string): Reduce => (e) => [remove(table, { instance_id: e.instanceId })];
export const ownerRemoved = (table: string): Reduce => (e) => [remove(table, { resource_owner: e.aggregateId, instance_id: e.instanceId })];
