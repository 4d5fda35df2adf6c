import { sql, type Kysely } from 'kysely';
import { EVENTS2_COLUMN_LIST, EVENTS2_INDEX_SPECS, NULLABLE_COLUMNS, type IndexSpec } from './sql.js';

/** Any kysely handle: the pool-backed instance or a transaction (not the projections engine's pg-level `Queryable`). */
export type ReadableDb = Kysely<any>;

/** Which of the event tables exist. */
export interface EventTables {
  readonly legacy: boolean;
  readonly old: boolean;
  readonly events2: boolean;
  readonly chunks: boolean;
}

/** Reads which event tables exist, without failing on absent ones. */
export async function eventTables(db: ReadableDb): Promise<EventTables> {
  const r = await sql<{ legacy: boolean; old: boolean; events2: boolean; chunks: boolean }>`
    SELECT to_regclass('eventstore.events') IS NOT NULL AS legacy,
           to_regclass('eventstore.events_old') IS NOT NULL AS old,
           to_regclass('eventstore.events2') IS NOT NULL AS events2,
           to_regclass('zsetup.events2_chunks') IS NOT NULL AS chunks`.execute(db);
  return r.rows[0];
}

/** An index on events2 as the catalog has it. */
export interface ExistingIndex {
  readonly name: string;
  readonly valid: boolean;
  readonly definition: string;
}

/** What events2 lacks to be the final table; empty lists mean it is complete. */
export interface Events2Shape {
  /** Columns missing or of another type than the final table (`name: found type`). */
  readonly wrongColumns: readonly string[];
  /** Columns the final table has NOT NULL but this one does not. */
  readonly missingNotNulls: readonly string[];
  readonly hasPrimaryKey: boolean;
  /** Index specs not present as a valid index of the expected definition. */
  readonly missingIndexes: readonly IndexSpec[];
  readonly indexes: readonly ExistingIndex[];
}

/** Compares events2 with its final shape (columns, NOT NULLs, primary key, indexes). */
export async function events2Shape(db: ReadableDb): Promise<Events2Shape> {
  const cols = await sql<{ name: string; type: string; notnull: boolean }>`
    SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS notnull
    FROM pg_attribute WHERE attrelid = 'eventstore.events2'::regclass AND attnum > 0 AND NOT attisdropped
    ORDER BY attnum`.execute(db);
  const found = new Map(cols.rows.map((c) => [c.name, c]));
  const wrongColumns: string[] = [];
  const missingNotNulls: string[] = [];
  for (const want of EVENTS2_COLUMN_LIST) {
    const have = found.get(want.name);
    if (!have) wrongColumns.push(`${want.name}: missing`);
    else if (!sameType(have.type, want.type)) wrongColumns.push(`${want.name}: ${have.type}, expected ${want.type.toLowerCase()}`);
    else if (!have.notnull && !NULLABLE_COLUMNS.includes(want.name)) missingNotNulls.push(want.name);
  }
  for (const name of found.keys()) if (!EVENTS2_COLUMN_LIST.some((c) => c.name === name)) wrongColumns.push(`${name}: unexpected column`);
  const pk = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_constraint
    WHERE conrelid = 'eventstore.events2'::regclass AND contype = 'p' AND conname = 'events2_pkey'`.execute(db);
  const indexes = await events2Indexes(db);
  const missingIndexes = EVENTS2_INDEX_SPECS.filter((spec) => !indexes.some((i) => i.valid && matches(i, spec)));
  return { wrongColumns, missingNotNulls, hasPrimaryKey: pk.rows[0].n > 0, missingIndexes, indexes };
}

/** True when nothing is missing. */
export function isComplete(shape: Events2Shape): boolean {
  return shape.wrongColumns.length === 0 && shape.missingNotNulls.length === 0 && shape.hasPrimaryKey && shape.missingIndexes.length === 0;
}

/** The indexes of events2 with their validity (an interrupted CONCURRENTLY build leaves an invalid one). */
export async function events2Indexes(db: ReadableDb): Promise<ExistingIndex[]> {
  const r = await sql<ExistingIndex>`
    SELECT c.relname AS name, i.indisvalid AS valid, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = 'eventstore.events2'::regclass ORDER BY c.relname`.execute(db);
  return r.rows;
}

/** True when an existing index has the spec's name, uniqueness and column list. */
export function matches(index: ExistingIndex, spec: IndexSpec): boolean {
  if (index.name !== spec.name) return false;
  // pg_get_indexdef quotes `position` but not `sequence`: compare without quotes.
  const def = index.definition.replace(/\s+/g, ' ').replaceAll('"', '');
  const unique = def.startsWith('CREATE UNIQUE INDEX');
  return unique === spec.unique && def.endsWith(`USING btree ${spec.columns.replaceAll('"', '')}`) && !/ WHERE /.test(def);
}

function sameType(found: string, wanted: string): boolean {
  const w = wanted.toLowerCase();
  const aliases: Record<string, string> = { decimal: 'numeric', int8: 'bigint', int4: 'integer', int2: 'smallint', timestamptz: 'timestamp with time zone' };
  return found === (aliases[w] ?? w);
}

/**
 * Row count of a table: exact, or PostgreSQL's estimate scaled to the table's current size
 * (reltuples per page × pages). Null when the table was never vacuumed or analysed.
 */
export async function rowCount(db: ReadableDb, table: string, exact: boolean): Promise<number | null> {
  if (exact) {
    const r = await sql<{ n: number }>`SELECT count(*)::bigint AS n FROM ${sql.raw(table)}`.execute(db);
    return r.rows[0].n;
  }
  const r = await sql<{ tuples: number; pages: number; blocks: number }>`
    SELECT reltuples::float8 AS tuples, relpages::int AS pages, ${sql.raw(blocksOf('oid'))} AS blocks
    FROM pg_class WHERE oid = ${table}::regclass`.execute(db);
  const { tuples, pages, blocks } = r.rows[0];
  return tuples >= 0 && pages > 0 ? Math.round((tuples / pages) * blocks) : null;
}

/** SQL: the number of heap blocks of a relation. */
export function blocksOf(regclass: string): string {
  return `(pg_relation_size(${regclass}) / current_setting('block_size')::int)::bigint`;
}

/** Whether the reference system recorded its own events2 step (`14_events_push`) as done. */
export async function referenceStepDone(db: ReadableDb): Promise<boolean> {
  const r = await sql<{ done: boolean }>`
    SELECT EXISTS (
      SELECT 1 FROM eventstore.events2
      WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM'
        AND event_type = 'system.migration.done' AND payload->>'name' = '14_events_push') AS done`.execute(db);
  return r.rows[0].done;
}
