import { sql } from 'kysely';
import { RefusedError } from '../errors.js';
import type { ReadableDb } from './catalog.js';
import { UNMAPPABLE_ROW } from './sql.js';

/** What this role lacks to move `source`, with the GRANT statements that would fix it. */
export interface MissingPrivileges {
  readonly me: string;
  readonly missing: readonly string[];
  readonly grants: readonly string[];
}

/**
 * What this role lacks for the move: ownership of the source table (a rename needs it), SELECT on it,
 * and CREATE in schema eventstore. Read-only; the runner's preflight and the cut-off both ask it.
 */
export async function missingMovePrivileges(db: ReadableDb, source: string, rename: boolean): Promise<MissingPrivileges> {
  const r = await sql<{ owner: string; owns: boolean; can_read: boolean; can_create: boolean; me: string }>`
    SELECT pg_get_userbyid(c.relowner) AS owner,
           pg_has_role(current_user, c.relowner, 'USAGE') AS owns,
           has_table_privilege(c.oid, 'SELECT') AS can_read,
           has_schema_privilege('eventstore', 'CREATE') AS can_create,
           current_user AS me
    FROM pg_class c WHERE c.oid = ${source}::regclass`.execute(db);
  const p = r.rows[0];
  const missing: string[] = [];
  const grants: string[] = [];
  if (rename && !p.owns) {
    missing.push(`ownership of ${source} (owned by ${p.owner}; renaming it needs the owner's rights)`);
    grants.push(`GRANT ${p.owner} TO ${p.me}`);
  }
  if (!p.can_read) {
    missing.push(`SELECT on ${source}`);
    grants.push(`GRANT SELECT ON ${source} TO ${p.me}`);
  }
  if (!p.can_create) {
    missing.push('CREATE on schema eventstore');
    grants.push(`GRANT CREATE ON SCHEMA eventstore TO ${p.me}`);
  }
  return { me: p.me, missing, grants };
}

/** Refuses, before anything is written, a role that cannot do the move, listing everything missing. */
export async function checkPrivileges(db: ReadableDb, source: string, rename: boolean): Promise<void> {
  const { me, missing, grants } = await missingMovePrivileges(db, source, rename);
  if (missing.length) {
    throw new RefusedError(`role ${me} lacks ${missing.join(', ')}; nothing was changed`, `as a superuser or the owner: ${grants.join('; ')}`);
  }
}

/** Legacy columns the mapping reads (spec §1.3). */
const MAPPED_SOURCE_COLUMNS = [
  'instance_id', 'aggregate_type', 'aggregate_id', 'event_type', 'event_sequence', 'aggregate_version',
  'creation_date', 'event_data', 'editor_user', 'resource_owner',
] as const;

/** Refuses, before anything is written, a source table that lacks a column the mapping reads. */
export async function checkColumns(db: ReadableDb, source: string): Promise<void> {
  const r = await sql<{ attname: string }>`
    SELECT attname FROM pg_attribute WHERE attrelid = ${source}::regclass AND attnum > 0 AND NOT attisdropped`.execute(db);
  const have = new Set(r.rows.map((c) => c.attname));
  const missing = MAPPED_SOURCE_COLUMNS.filter((c) => !have.has(c));
  if (missing.length) {
    throw new RefusedError(
      `${source} lacks column(s) ${missing.join(', ')} that the move to events2 reads; nothing was changed`,
      'it is not the legacy event table shape zsetup moves (spec: pre-v2.39 eventstore.events); restore the column(s) or the table from a backup',
    );
  }
}

/** A legacy row the mapping cannot take. */
export interface UnmappableRow {
  readonly instanceId: string;
  readonly sequence: string;
  readonly aggregateVersion: string;
}

/**
 * Counts the source rows and checks every one fits the mapping, in one scan. Refuses naming the first
 * offending rows (instance, sequence, value) when one does not. Run it inside the cut-off transaction
 * so the refusal rolls the rename back.
 */
export async function countAndValidate(db: ReadableDb, source: string): Promise<number> {
  const r = await sql<{ total: number; bad: number }>`
    SELECT count(*)::bigint AS total, count(*) FILTER (WHERE ${sql.raw(UNMAPPABLE_ROW)})::bigint AS bad
    FROM ${sql.raw(source)}`.execute(db);
  const { total, bad } = r.rows[0];
  if (bad === 0) return total;
  const rows = await sql<UnmappableRow>`
    SELECT instance_id AS "instanceId", event_sequence::text AS sequence, aggregate_version AS "aggregateVersion"
    FROM ${sql.raw(source)} WHERE ${sql.raw(UNMAPPABLE_ROW)}
    ORDER BY instance_id, event_sequence LIMIT 10`.execute(db);
  const listed = rows.rows.map((x) => `instance '${x.instanceId}' sequence ${x.sequence} aggregate_version '${x.aggregateVersion}'`);
  throw new RefusedError(
    `${bad} event(s) in ${source} do not fit events2 (aggregate_version must be 'v' and a number up to 32767, event_sequence must fit an INTEGER for in_tx_order); nothing was written: ${listed.join('; ')}${bad > listed.length ? `; … and ${bad - listed.length} more` : ''}`,
    `inspect them with: SELECT * FROM ${source} WHERE ${UNMAPPABLE_ROW.replace(/\s+/g, ' ')}`,
  );
}
