import type { ColumnDefinition, ProjectionEvent, ProjectionWriter, Reducer } from '../types.js';

/** Shorthands for column lists. */
export const text = (name: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition => ({ name, type: 'text', ...extra });
export const ts = (name: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition => ({ name, type: 'timestamptz', ...extra });
export const small = (name: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition => ({ name, type: 'smallint', ...extra });
export const big = (name: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition => ({ name, type: 'bigint', ...extra });
export const bool = (name: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition => ({ name, type: 'boolean', ...extra });
export const textArray = (name: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition => ({ name, type: 'text[]', ...extra });
export const smallArray = (name: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition => ({ name, type: 'smallint[]', ...extra });
export const bytes = (name: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition => ({ name, type: 'bytea', ...extra });

/** NULL for an absent or empty string (the reference's `sql.NullString{Valid: s != ""}`). */
export const emptyToNull = (v: string | undefined): string | null => (v ? v : null);

/** NULL for an absent or empty array: the reference's array types send an empty array as NULL. */
export const arrayOrNull = <T>(v: readonly T[] | undefined): readonly T[] | null => (v && v.length ? v : null);

/** The parent's foreign key as the reference names it: `fk_<suffix>_ref_<parent table>`, on the child's key. */
export function childOf(parent: string, suffix: string, idColumn: string) {
  const table = parent.split('.')[1];
  return { table: parent, columns: { instance_id: 'instance_id', [idColumn]: 'id' }, constraint: `fk_${suffix}_ref_${table}` };
}

/** Columns set when a row is created: both dates are the event's time, sequence its aggregate sequence. */
export const created = (e: ProjectionEvent) => ({ creation_date: e.createdAt, change_date: e.createdAt, sequence: e.sequence });

/** Columns bumped by a change. */
export const changed = (e: ProjectionEvent) => ({ change_date: e.createdAt, sequence: e.sequence });

/** Active / inactive, as stored by org_state, state of projects and apps, and users. */
export const ACTIVE = 1;
export const INACTIVE = 2;

/** `instance.removed`: delete every row of the instance from each table that has an `instance_id`. */
export function instanceRemoved(...tables: string[]): Reducer {
  return (e: ProjectionEvent, w: ProjectionWriter) => {
    for (const t of tables) w.deleteWhere(t, { instance_id: e.instanceId });
  };
}

/** Sets the same columns of the aggregate's row for several event types. */
export function setState(table: string, state: number, bump = true): Reducer {
  return (e, w) => w.update(table, { instance_id: e.instanceId, id: e.aggregateId }, { state, ...(bump ? changed(e) : {}) });
}
