import { sql } from 'kysely';
import type { Database, Db, Tx } from './db/connection.js';
import { INSUFFICIENT_PRIVILEGE, RefusedError } from './errors.js';
import type { Step } from './step.js';

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

/** The schemas zsetup reads or writes: without USAGE, even asking whether a table exists fails (42501). */
const SCHEMAS = ['zsetup', 'eventstore', 'projections'] as const;

/**
 * Refuses (exit 5) a role without USAGE on a schema zsetup works in, before anything else reads there:
 * every later question about those tables would end in a raw "permission denied for schema".
 */
export async function refuseWithoutSchemaUsage(db: Db): Promise<void> {
  const r = await sql<{ me: string; missing: string[] }>`
    SELECT current_user AS me,
           ARRAY(SELECT s FROM unnest(${[...SCHEMAS]}::text[]) WITH ORDINALITY AS x(s, i)
                 WHERE to_regnamespace(s) IS NOT NULL AND NOT has_schema_privilege(s, 'USAGE') ORDER BY i) AS missing`.execute(db);
  const { me, missing } = r.rows[0];
  if (missing.length === 0) return;
  throw new RefusedError(
    `role ${me} lacks USAGE on schema ${missing.join(', ')}; nothing was changed`,
    `as a superuser or the owner: ${missing.map((s) => `GRANT USAGE ON SCHEMA ${s} TO ${me}`).join('; ')}`,
    INSUFFICIENT_PRIVILEGE,
  );
}

/**
 * Asks every step that will run what it lacks, adds what zsetup's own bookkeeping (`zsetup.steps`)
 * needs, and refuses (exit 5) listing all of it before the first write. A step's preflight may also
 * refuse outright (a database zsetup will not touch); that too happens before anything is created.
 */
export async function preflight(database: Database, steps: readonly Step<any>[]): Promise<void> {
  const readOnly = <T>(fn: (tx: Tx) => Promise<T>) => database.db.transaction().setAccessMode('read only').execute(fn);
  // Asked side by side, each in a read-only transaction of its own; reported in step order.
  const [own, ...lacking] = await Promise.all([
    readOnly((tx) => missingTablePrivileges(tx, 'zsetup.steps', ['SELECT', 'INSERT', 'UPDATE'])),
    ...steps.map((step) => (step.preflight ? readOnly((tx) => step.preflight!(tx)) : [])),
  ]);
  const missing = [
    ...own.map((m) => `zsetup: ${m.replace(/ \(to create [^)]*\)$/, ' (to record its progress in schema zsetup)')}`),
    ...steps.flatMap((step, i) => lacking[i].map((m) => `${step.id}: ${m}`)),
  ];
  if (missing.length === 0) return;
  const [me] = (await sql<{ me: string }>`SELECT current_user AS me`.execute(database.db)).rows;
  throw new RefusedError(
    `role ${me.me} lacks privileges the pending steps need; nothing was changed:\n  - ${missing.join('\n  - ')}`,
    'grant them (as a superuser or the owner), or run zsetup as the role that owns the ZITADEL schemas',
    INSUFFICIENT_PRIVILEGE,
  );
}
