import { sql } from 'kysely';
import type { Tx } from './db/connection.js';

/**
 * Privileges this role lacks on a table, as lines like `INSERT on eventstore.events2`. A table that does
 * not exist yet needs CREATE on its schema (or, without the schema, CREATE on the database) instead.
 */
export async function missingTablePrivileges(tx: Tx, table: string, privileges: readonly string[]): Promise<string[]> {
  const schema = table.split('.')[0];
  const r = await sql<{ exists: boolean; schema: boolean; on_schema: boolean; on_db: boolean; have: boolean[] }>`
    SELECT to_regclass(${table}) IS NOT NULL AS exists,
           to_regnamespace(${schema}) IS NOT NULL AS schema,
           to_regnamespace(${schema}) IS NOT NULL AND has_schema_privilege(${schema}, 'CREATE') AS on_schema,
           has_database_privilege(current_database(), 'CREATE') AS on_db,
           CASE WHEN to_regclass(${table}) IS NULL THEN '{}'::boolean[]
                ELSE ARRAY(SELECT has_table_privilege(${table}, p) FROM unnest(${[...privileges]}::text[]) WITH ORDINALITY AS x(p, i) ORDER BY i)
           END AS have`.execute(tx);
  const p = r.rows[0];
  if (!p.exists) {
    if (p.schema) return p.on_schema ? [] : [`CREATE on schema ${schema} (to create ${table})`];
    return p.on_db ? [] : [`CREATE on the database (to create schema ${schema})`];
  }
  return privileges.filter((_, i) => !p.have[i]).map((priv) => `${priv} on ${table}`);
}

/** Several tables at once; duplicates (one missing CREATE for many tables of a schema) are listed once. */
export async function missingPrivileges(tx: Tx, needs: readonly (readonly [table: string, privileges: readonly string[]])[]): Promise<string[]> {
  const all: string[] = [];
  for (const [table, privileges] of needs) all.push(...(await missingTablePrivileges(tx, table, privileges)));
  return [...new Set(all.map((m) => m.replace(/ \(to create [^)]*\)$/, '')))];
}

/** Whether a relation exists. */
export async function relationExists(tx: Tx, name: string): Promise<boolean> {
  return (await sql<{ e: boolean }>`SELECT to_regclass(${name}) IS NOT NULL AS e`.execute(tx)).rows[0].e;
}
