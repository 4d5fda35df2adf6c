import type pg from 'pg';
import { RefusedError } from '../errors.js';
import { inTransaction } from './batch.js';
import { completeBookkeeping, ensureBookkeeping, type StatesShape } from './bookkeeping.js';
import type { Queryable } from './events.js';
import type { ProjectionModel, TableModel } from './model.js';
import type { ColumnValue } from './types.js';
import { readMigrations, type RecordedMigration } from '../zitadel/migrations.js';
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

/** The relations `tableDdl(t)` creates: the table and its secondary indexes (in the table's schema). */
function relationsOf(t: TableModel): string[] {
  const schema = t.name.split('.')[0];
  return [t.name, ...Object.keys(t.def.indexes ?? {}).map((i) => `${schema}.${i}`)];
}

interface CatalogEntry {
  readonly present: boolean;
  readonly columns: readonly string[];
}

async function readCatalog(client: Queryable, relations: readonly string[]): Promise<Map<string, CatalogEntry>> {
  const r = await client.query<{ name: string; present: boolean; columns: string[] }>(
    `SELECT r AS name, to_regclass(r) IS NOT NULL AS present,
            ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass(r) AND attnum > 0 AND NOT attisdropped) AS columns
     FROM unnest($1::text[]) AS r`,
    [relations],
  );
  return new Map(r.rows.map((x) => [x.name, x]));
}

/** A table that exists but lacks a column the definition writes was made by another version: refused. */
function refuseLackingColumns(models: readonly ProjectionModel[], catalog: ReadonlyMap<string, CatalogEntry>): void {
  for (const t of models.flatMap((m) => m.tables)) {
    const found = catalog.get(t.name);
    if (!found?.present) continue;
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
 * Later ZITADEL steps that change a projection table in place (guarded, and doing nothing where the
 * table does not exist). ZITADEL never runs a step recorded done again, nor alters an existing table,
 * so a table zsetup creates where such a step is already recorded must carry that step's effect.
 */
const RECORDED_ADDITIONS: readonly { readonly step: string; readonly table: string; readonly ddl: string }[] = [
  {
    step: '25_user14_add_lower_fields_to_verified_email',
    table: 'projections.users14_notifications',
    ddl: `ALTER TABLE projections.users14_notifications ADD COLUMN IF NOT EXISTS verified_email_lower TEXT GENERATED ALWAYS AS (lower(verified_email)) STORED;
CREATE INDEX IF NOT EXISTS users14_notifications_email_search ON projections.users14_notifications (instance_id, verified_email_lower);`,
  },
  {
    step: '48_apps7_saml_configs_login_version',
    table: 'projections.apps7_saml_configs',
    ddl: `ALTER TABLE projections.apps7_saml_configs ADD COLUMN IF NOT EXISTS login_version SMALLINT, ADD COLUMN IF NOT EXISTS login_base_uri TEXT;`,
  },
];

/** The DDL of the tables to create, each followed by the additions of the later steps already recorded. */
function creationDdl(tables: readonly TableModel[], recorded: ReadonlyMap<string, RecordedMigration>): string {
  return tables.map((t) => [
    tableDdl(t),
    ...RECORDED_ADDITIONS.filter((a) => a.table === t.name && recorded.get(a.step)?.state === 'done').map((a) => a.ddl),
  ].join('\n')).join('\n');
}

/** What ensureTables found and did. */
export interface EnsuredTables {
  readonly shape: StatesShape;
  /** Projections that lacked a table: their rows and positions were removed, to be prefilled from the start. */
  readonly rebuilt: readonly string[];
}

/**
 * Creates the bookkeeping tables (see ensureBookkeeping) and the projections' tables if missing, and
 * returns the shape of `current_states`. The catalog is read first, so when everything exists and is
 * recorded no DDL lock is taken; otherwise everything missing is created in one transaction. A
 * projection that had only some of its tables (say apps7 without its config tables, as an older
 * zsetup left it, or a legacy handler state whose table is gone) is prefilled again from the start:
 * its rows, positions and failures are removed in that same transaction, since ZITADEL continues from
 * the recorded position and would leave the new tables empty for good. A table that lacks a column the definition writes is refused before anything
 * is written.
 */
export async function ensureTables(client: pg.ClientBase, ...models: ProjectionModel[]): Promise<EnsuredTables> {
  const relations = models.flatMap((m) => m.tables.flatMap(relationsOf));
  const catalog = await readCatalog(client, relations);
  refuseLackingColumns(models, catalog);
  if (relations.every((n) => catalog.get(n)?.present)) {
    const shape = await completeBookkeeping(client);
    if (shape) return { shape, rebuilt: [] };
  }
  return createSerialized(client, async () => {
    const shape = await ensureBookkeeping(client);
    const rebuilt: string[] = [];
    // Read again under the lock: another session may have created some of them meanwhile.
    const now = await readCatalog(client, relations);
    const recorded = await readMigrations(client);
    for (const m of models) {
      const missing = m.tables.filter((t) => relationsOf(t).some((n) => !now.get(n)?.present));
      if (missing.length === 0) continue;
      if (m.tables.some((t) => !now.get(t.name)?.present) && (await resetProjection(client, m, now))) rebuilt.push(m.name);
      await client.query(creationDdl(missing, recorded));
    }
    return { shape, rebuilt };
  });
}

/**
 * Removes a partial projection's rows, positions and failures, so it is prefilled from the start.
 * Returns false when there was nothing to remove (a projection never prefilled).
 */
async function resetProjection(client: Queryable, m: ProjectionModel, catalog: ReadonlyMap<string, CatalogEntry>): Promise<boolean> {
  const present = m.tables.filter((t) => catalog.get(t.name)?.present).map((t) => qt(t.name));
  if (present.length) await client.query(`TRUNCATE ${present.join(', ')}`);
  const states = await client.query(`WITH d AS (DELETE FROM projections.current_states WHERE projection_name = $1 RETURNING 1) SELECT count(*)::int AS n FROM d`, [m.name]);
  await client.query(`DELETE FROM projections.failed_events2 WHERE projection_name = $1`, [m.name]);
  return present.length > 0 || states.rows[0].n > 0;
}

/**
 * Runs `fn` (the DDL) in one transaction, taken only once this session holds an advisory lock:
 * projections prefilled side by side share the bookkeeping tables and schema, and two sessions
 * creating the same one at once collide in the catalog instead of one of them skipping it. The lock is taken before the transaction begins so that its statements see what the previous holder
 * committed (a lock taken inside it could leave a stale catalog snapshot).
 */
async function createSerialized<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  const key = `hashtext('zsetup'), hashtext('projection tables')`;
  await client.query(`SELECT pg_advisory_lock(${key})`);
  try {
    return await inTransaction(client, fn);
  } finally {
    await client.query(`SELECT pg_advisory_unlock(${key})`).catch(() => {});
  }
}
