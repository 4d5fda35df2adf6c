import type pg from 'pg';
import { RefusedError } from '../errors.js';
import { inTransaction } from './batch.js';
import { CURRENT_STATES_TABLE, FAILED_EVENTS_TABLE } from '../schema.js';
import type { Queryable } from './events.js';
import type { ProjectionModel, TableModel } from './model.js';
import type { ColumnValue } from './types.js';
import { q, qt } from './write.js';

function literal(v: ColumnValue): string {
  if (v === null) return 'NULL';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const text = Array.isArray(v)
    ? `{${v.map((x) => `"${String(x).replace(/["\\]/g, '\\$&')}"`).join(',')}}`
    : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return `'${text.replace(/'/g, "''")}'`;
}

/** `CREATE TABLE IF NOT EXISTS` text of one projection table, with its key, parent reference and indexes. */
export function tableDdl(t: TableModel): string {
  const cols = [...t.columns.values()].map((c) =>
    `  ${q(c.name)} ${c.type.toUpperCase()}${c.nullable ? '' : ' NOT NULL'}${c.default !== undefined && c.default !== null ? ` DEFAULT ${literal(c.default)}` : ''}`,
  );
  cols.push(`  PRIMARY KEY (${t.primaryKey.map(q).join(', ')})`);
  const parent = t.def.parent;
  if (parent) {
    const [own, theirs] = [Object.keys(parent.columns), Object.values(parent.columns)];
    cols.push(`  CONSTRAINT ${q(parent.constraint)} FOREIGN KEY (${own.map(q).join(', ')}) REFERENCES ${qt(parent.table)} (${theirs.map(q).join(', ')}) ON DELETE CASCADE`);
  }
  const schema = t.name.split('.')[0];
  const indexes = Object.entries(t.def.indexes ?? {}).map(
    ([name, on]) => `CREATE INDEX IF NOT EXISTS ${q(name)} ON ${qt(t.name)} (${on.map(q).join(', ')});`,
  );
  return [`CREATE SCHEMA IF NOT EXISTS ${q(schema)};`, `CREATE TABLE IF NOT EXISTS ${qt(t.name)} (\n${cols.join(',\n')}\n);`, ...indexes].join('\n');
}

/** Which of the projection's tables exist (for the dry-run). */
export async function existingTables(client: Queryable, model: ProjectionModel): Promise<string[]> {
  const r = await client.query<{ t: string }>(`SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL`, [model.tables.map((t) => t.name)]);
  return r.rows.map((x) => x.t);
}

/** The bookkeeping tables with the relations their DDL creates. */
const BOOKKEEPING = [
  { ddl: CURRENT_STATES_TABLE, relations: ['projections.current_states', 'projections.cs_instance_id_idx'] },
  { ddl: FAILED_EVENTS_TABLE, relations: ['projections.failed_events2', 'projections.fe2_instance_id_idx'] },
];

/** The relations `tableDdl(t)` creates: the table and its secondary indexes (in the table's schema). */
function relationsOf(t: TableModel): string[] {
  const schema = t.name.split('.')[0];
  return [t.name, ...Object.keys(t.def.indexes ?? {}).map((i) => `${schema}.${i}`)];
}

/**
 * Creates the bookkeeping tables and the projections' tables if missing. The catalog is read first (one
 * query), so projections whose tables all exist take no DDL lock; all missing tables are created in one
 * transaction. Each table's DDL runs as one statement string, which PostgreSQL applies atomically. A
 * table that exists but lacks a column the definition writes is refused before anything is written: it
 * was made by another version.
 */
export async function ensureTables(client: pg.ClientBase, ...models: ProjectionModel[]): Promise<void> {
  const units: { ddl: string; relations: string[]; table?: TableModel }[] = [
    ...BOOKKEEPING,
    ...models.flatMap((m) => m.tables.map((t) => ({ ddl: tableDdl(t), relations: relationsOf(t), table: t }))),
  ];
  const r = await client.query<{ name: string; present: boolean; columns: string[] }>(
    `SELECT r AS name, to_regclass(r) IS NOT NULL AS present,
            ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass(r) AND attnum > 0 AND NOT attisdropped) AS columns
     FROM unnest($1::text[]) AS r`,
    [units.flatMap((u) => u.relations)],
  );
  const catalog = new Map(r.rows.map((x) => [x.name, x]));
  const missing = units.filter((u) => u.relations.some((n) => !catalog.get(n)?.present));
  if (missing.length) await createSerialized(client, missing.map((u) => u.ddl));
  for (const u of units) {
    const t = u.table;
    const found = t && catalog.get(t.name);
    if (!t || !found?.present) continue;
    const present = new Set(found.columns);
    const lacking = t.columnNames.filter((c) => !present.has(c));
    if (lacking.length) {
      throw new RefusedError(
        `${t.name} exists but lacks column(s) ${lacking.join(', ')}`,
        `it was created by another version of the projection; drop it (the prefill recreates it) or use the matching zsetup version`,
      );
    }
  }
}

/**
 * Runs `CREATE … IF NOT EXISTS` statements in one transaction, taken only once this session holds an
 * advisory lock: projections prefilled side by side share the bookkeeping tables and schema, and two
 * sessions creating the same one at once collide in the catalog instead of one of them skipping it. The
 * lock is taken before the transaction begins so that its statements see what the previous holder
 * committed (a lock taken inside it could leave a stale catalog snapshot).
 */
async function createSerialized(client: pg.ClientBase, statements: readonly string[]): Promise<void> {
  const key = `hashtext('zsetup'), hashtext('projection tables')`;
  await client.query(`SELECT pg_advisory_lock(${key})`);
  try {
    // Every statement in one round trip.
    await inTransaction(client, async () => {
      await client.query(statements.join('\n'));
    });
  } finally {
    await client.query(`SELECT pg_advisory_unlock(${key})`).catch(() => {});
  }
}
