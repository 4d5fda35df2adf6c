import { sql, type Kysely } from 'kysely';
import { RefusedError } from '../errors.js';
import { MILESTONE_TYPES } from '../schema.js';

/** Names under which the reference system records its own milestone conversion (spec §3.1, §6.5). */
export const REFERENCE_STEP_NAMES = ['36_fill_v3_milestones', '36_fill_v2_milestones'] as const;

const REQUIRED_COLUMNS = ['instance_id', 'type', 'reached_date', 'last_pushed_date'] as const;

/** What the database holds, as far as the conversion cares. */
export interface MilestoneSource {
  /** `projections.milestones` exists. */
  readonly oldTable: boolean;
  /** `eventstore.events2` exists. */
  readonly events2: boolean;
}

/** An old row the conversion cannot map faithfully. */
export interface RejectedRow {
  readonly instanceId: string | null;
  readonly type: number;
  readonly reachedDate: string | null;
  readonly lastPushedDate: string | null;
  readonly reason: string;
}

/** Rejected rows: the first few, and how many there are. */
export interface RejectedRows {
  readonly count: number;
  readonly rows: readonly RejectedRow[];
}

/** How many rejected rows are listed in full. */
const REJECTED_LISTED = 20;

/** Finds the tables; refuses an old table without the columns the conversion reads. */
export async function inspectSource(db: Kysely<any>): Promise<MilestoneSource> {
  const r = await sql<{ old: string | null; events2: string | null }>`
    SELECT to_regclass('projections.milestones')::text AS old, to_regclass('eventstore.events2')::text AS events2`.execute(db);
  const { old, events2 } = r.rows[0];
  if (old) await requireColumns(db);
  return { oldTable: old !== null, events2: events2 !== null };
}

async function requireColumns(db: Kysely<any>): Promise<void> {
  const r = await sql<{ column_name: string }>`
    SELECT column_name FROM information_schema.columns
    WHERE table_schema = 'projections' AND table_name = 'milestones'`.execute(db);
  const have = new Set(r.rows.map((c) => c.column_name));
  const missing = REQUIRED_COLUMNS.filter((c) => !have.has(c));
  if (missing.length > 0) {
    throw new RefusedError(
      `projections.milestones lacks column(s) ${missing.join(', ')} (has: ${[...have].join(', ')}); it is not the released shape this step converts`,
      'an older development iteration of the milestones projection used other column names; convert it by hand or drop it',
    );
  }
}

/**
 * Old rows that cannot be converted: an empty instance id, a type outside the known milestones, a pushed
 * date without a reached date (the pushed event would have nothing to refer to), or a date a Go
 * RFC 3339 timestamp cannot hold. Checked over the whole table before anything is written.
 */
export async function findRejectedRows(db: Kysely<any>): Promise<RejectedRows> {
  const types = Object.keys(MILESTONE_TYPES).map(Number);
  const r = await sql<RejectedRow & { total: number }>`
    WITH checked AS (
      SELECT m.instance_id, m.type, m.reached_date, m.last_pushed_date,
        CASE
          WHEN m.instance_id IS NULL OR m.instance_id = '' THEN 'empty instance id'
          WHEN m.type IS NULL OR NOT (m.type = ANY (${types}::smallint[])) THEN 'unknown milestone type ' || coalesce(m.type::text, 'NULL')
          WHEN m.reached_date IS NULL AND m.last_pushed_date IS NOT NULL THEN 'pushed date without a reached date'
          WHEN NOT (${inGoRange('m.reached_date')}) THEN 'reached date outside years 1-9999'
          WHEN NOT (${inGoRange('m.last_pushed_date')}) THEN 'pushed date outside years 1-9999'
        END AS reason
      FROM projections.milestones m
    )
    SELECT instance_id AS "instanceId", type, reached_date::text AS "reachedDate",
           last_pushed_date::text AS "lastPushedDate", reason, count(*) OVER ()::int AS total
    FROM checked WHERE reason IS NOT NULL
    ORDER BY instance_id, type
    LIMIT ${REJECTED_LISTED}`.execute(db);
  return {
    count: r.rows[0]?.total ?? 0,
    rows: r.rows.map(({ total: _total, ...row }) => row),
  };
}

function inGoRange(column: string) {
  return sql.raw(`${column} IS NULL OR (isfinite(${column})
    AND ${column} >= '0001-01-01 00:00:00+00' AND ${column} < '10000-01-01 00:00:00+00')`);
}

/** The refusal for rejected rows, listing them. */
export function rejectedRowsError(rejected: RejectedRows): RefusedError {
  const lines = rejected.rows.map(
    (r) => `  instance ${JSON.stringify(r.instanceId)} type ${r.type}: ${r.reason}` +
      ` (reached ${r.reachedDate ?? 'NULL'}, pushed ${r.lastPushedDate ?? 'NULL'})`,
  );
  const more = rejected.count > rejected.rows.length ? [`  … and ${rejected.count - rejected.rows.length} more`] : [];
  return new RefusedError(
    [`${rejected.count} row(s) of projections.milestones cannot be converted; nothing was written:`, ...lines, ...more].join('\n'),
    'fix or delete these rows in projections.milestones (milestone types are 1-6), then rerun',
  );
}

/** The names of the reference system's milestone conversions recorded as done in events2. */
export async function referenceStepsDone(db: Kysely<any>): Promise<string[]> {
  const r = await sql<{ name: string }>`
    SELECT DISTINCT payload->>'name' AS name FROM eventstore.events2
    WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM'
      AND event_type = 'system.migration.done' AND payload->>'name' = ANY (${[...REFERENCE_STEP_NAMES]}::text[])
    ORDER BY 1`.execute(db);
  return r.rows.map((row) => row.name);
}
