import { EVENTS2_COLUMNS, EVENTS2_INDEXES, EVENTS2_PK_COLUMNS } from '../schema.js';

/**
 * SQL text of the events → events2 move (../shared/spec/zitadel-eventstore.md §1.3). The mapping is the
 * one place that says how an old row becomes a new one; copy, verify and the dry-run all use it.
 */

/** The renamed legacy table: the copy's source and the rollback path. */
export const OLD_TABLE = 'eventstore.events_old';
export const LEGACY_TABLE = 'eventstore.events';
export const EVENTS2_TABLE = 'eventstore.events2';
/** zsetup's chunk list of the copy; its rows are the copy's checkpoint. */
export const CHUNKS_TABLE = 'zsetup.events2_chunks';
/**
 * Per chunk and instance: the count and hash sum of the mapped source rows, written with the chunk's
 * copy in one transaction. The final verification compares events2 with these instead of re-reading
 * events_old; the table lives from the cut-off until the step's verification has passed.
 */
export const DIGESTS_TABLE = 'zsetup.events2_digests';

/** Columns of events2 in order, as `name type`. */
export const EVENTS2_COLUMN_LIST: readonly { readonly name: string; readonly type: string }[] = EVENTS2_COLUMNS
  .split(',')
  .map((line) => line.trim().split(/\s+/))
  .map(([name, type]) => ({ name: name.replaceAll('"', ''), type }));

/** Every column except the payload is NOT NULL in the final table. */
export const NULLABLE_COLUMNS: readonly string[] = ['payload'];

/** The primary key columns of events2 (one definition, in schema.ts). */
export const PK_COLUMNS = EVENTS2_PK_COLUMNS;

/** One events2 row computed from a legacy row, in events2 column order. */
/** The old → new mapping, once: each events2 column (in table order) with its expression over a legacy row. */
const MAPPING: readonly (readonly [column: string, expression: string])[] = [
  ['instance_id', 'instance_id'],
  ['aggregate_type', 'aggregate_type'],
  ['aggregate_id', 'aggregate_id'],
  ['event_type', 'event_type'],
  ['"sequence"', 'event_sequence'],
  ['revision', 'substr(aggregate_version, 2)::smallint'],
  ['created_at', 'creation_date'],
  ['payload', 'event_data'],
  ['creator', 'editor_user'],
  ['owner', 'resource_owner'],
  ['"position"', 'EXTRACT(EPOCH FROM creation_date)'],
  ['in_tx_order', 'event_sequence::integer'],
];

/** The mapping as a select list that yields events2's columns. */
export const MAPPED_COLUMNS = MAPPING.map(([column, expression]) => (column === expression ? column : `${expression} AS ${column}`)).join(',\n  ');

/** The same mapping as a row value, for hashing: its text equals the text of the stored events2 row. */
export const MAPPED_ROW = `ROW(${MAPPING.map(([, expression]) => expression).join(', ')})`;

/**
 * True for a legacy row the mapping cannot take (revision not `v<smallint>`, sequence beyond INTEGER).
 * The common revisions are tested by plain equality first: the regular expression alone made the
 * cut-off's validating scan about twice as slow.
 */
export const UNMAPPABLE_ROW = `(
  CASE WHEN aggregate_version IN ('v1', 'v2', 'v3', 'v4', 'v5') THEN false
       WHEN aggregate_version ~ '^v[0-9]{1,5}$' THEN substr(aggregate_version, 2)::integer > 32767
       ELSE true END
  OR event_sequence NOT BETWEEN -2147483648 AND 2147483647)`;

/**
 * A 64-bit hash of one row whose columns are the events2 columns; `alias` names that row (a table or
 * CTE alias). Every column is cast to its events2 type, so a mapped source row and the stored row hash
 * alike. PostgreSQL 14+ hashes the values with their types' own hash functions (fast: no text output
 * of jsonb, timestamps, numerics); older servers hash the row's text.
 */
export function rowHash(alias: string, serverVersionNum: number): string {
  const row = `ROW(${EVENTS2_COLUMN_LIST.map(({ name, type }) => `${alias}.${quoteIdent(name)}::${type}`).join(', ')})`;
  return serverVersionNum >= 140000 ? `hash_record_extended(${row}, 0)` : `hashtextextended(${row}::text, 0)`;
}

/** `CREATE TABLE eventstore.events2` in its final column shape: NOT NULL from the start. */
export function createEvents2Table(): string {
  const cols = EVENTS2_COLUMN_LIST.map(({ name, type }) =>
    `  ${quoteIdent(name)} ${type}${NULLABLE_COLUMNS.includes(name) ? '' : ' NOT NULL'}`);
  return `CREATE TABLE ${EVENTS2_TABLE} (\n${cols.join(',\n')}\n)`;
}

/** One index to build: the primary key's unique index or one of the three secondary indexes. */
export interface IndexSpec {
  readonly name: string;
  readonly columns: string;
  readonly unique: boolean;
}

/** The primary key index first (the largest build), then the three indexes of the reference schema. */
export const EVENTS2_INDEX_SPECS: readonly IndexSpec[] = [
  { name: 'events2_pkey', columns: PK_COLUMNS, unique: true },
  ...Object.entries(EVENTS2_INDEXES).map(([name, columns]) => ({ name, columns, unique: false })),
];

/** `CREATE [UNIQUE] INDEX` of one spec (not CONCURRENTLY: events2 has no writers yet). */
export function createIndex(spec: IndexSpec): string {
  return `CREATE ${spec.unique ? 'UNIQUE ' : ''}INDEX ${spec.name} ON ${EVENTS2_TABLE} USING btree ${spec.columns}`;
}

/** Double-quotes an identifier when PostgreSQL would need it (`sequence`, `position` are keywords). */
export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) && !['sequence', 'position'].includes(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

/** `ctid` range of legacy blocks [from, to); `to` null means to the end of the table. */
export function blockRange(from: number, to: number | null): string {
  const lower = `ctid >= '(${from},0)'::tid`;
  return to === null ? lower : `${lower} AND ctid < '(${to},0)'::tid`;
}

/**
 * The online move's capture (see capture.ts): the queue of keys the old version inserted while the
 * move runs, and the record of writes the move cannot follow (UPDATE, DELETE, TRUNCATE).
 */
export const LOG_TABLE = 'zsetup.events2_log';
export const UNSUPPORTED_TABLE = 'zsetup.events2_unsupported_writes';
/** Digest rows of the catch-up (all batches summed into one row per instance). */
export const CATCH_UP_CHUNK = -1;
