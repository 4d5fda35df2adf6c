import type pg from 'pg';
import { RefusedError } from '../errors.js';
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

/**
 * Creates the bookkeeping tables and the projection's tables if missing. A table that exists but lacks
 * a column the definition writes is refused before anything is written: it was made by another version.
 */
export async function ensureTables(client: pg.ClientBase, model: ProjectionModel): Promise<void> {
  await client.query(CURRENT_STATES_TABLE);
  await client.query(FAILED_EVENTS_TABLE);
  for (const t of model.tables) {
    await client.query(tableDdl(t));
    const r = await client.query<{ column_name: string }>(
      `SELECT attname AS column_name FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
      [t.name],
    );
    const present = new Set(r.rows.map((x) => x.column_name));
    const missing = t.columnNames.filter((c) => !present.has(c));
    if (missing.length) {
      throw new RefusedError(
        `${t.name} exists but lacks column(s) ${missing.join(', ')}`,
        `it was created by another version of the projection; drop it (the prefill recreates it) or use the matching zsetup version`,
      );
    }
  }
}
