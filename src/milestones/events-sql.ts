import { sql, type RawBuilder } from 'kysely';
import { MILESTONE_TYPES } from '../schema.js';

/** Event types of the v2 milestone aggregate (spec §6.4). */
export const REACHED_EVENT = 'milestone.v2.reached';
export const PUSHED_EVENT = 'milestone.v2.pushed';

/** Envelope of every event this conversion writes (spec §6.4, §6.5). */
export const MILESTONE_AGGREGATE = {
  type: 'milestone',
  revision: 2,
  /**
   * The reference step 36 pushes with setup's bare context: the system user is only put into the
   * context of the `system.migration.*` events, so its milestone events carry an empty creator, like
   * every other event setup writes (instance creation too).
   */
  creator: '',
} as const;

/** Which instances a statement covers: ids in `(after, upTo]`, either bound open when null. */
export interface InstanceRange {
  readonly after: string | null;
  readonly upTo: string | null;
}

/** Every instance. */
export const ALL_INSTANCES: InstanceRange = { after: null, upTo: null };

/**
 * A timestamptz as Go's `time.Time` marshals it in UTC (RFC3339Nano): microseconds with trailing
 * zeros trimmed, no fraction at all when it is zero, `Z` suffix.
 */
export function rfc3339Nano(column: string): RawBuilder<string> {
  const utc = `(${column} AT TIME ZONE 'UTC')`;
  return sql<string>`(to_char(${sql.raw(utc)}, 'YYYY-MM-DD"T"HH24:MI:SS')
    || coalesce('.' || nullif(rtrim(to_char(${sql.raw(utc)}, 'US'), '0'), ''), '') || 'Z')`;
}

function inRange(range: InstanceRange): RawBuilder<boolean> {
  return sql<boolean>`(${range.after}::text IS NULL OR m.instance_id > ${range.after}::text)
    AND (${range.upTo}::text IS NULL OR m.instance_id <= ${range.upTo}::text)`;
}

/**
 * The common head of the plan and the batch statements: CTEs `names`, `batch` (the instances with a
 * reached milestone in the range), `wanted` (every event the old rows call for, payload built),
 * `present` (the milestone events the v2 aggregates already hold) and `todo` (wanted minus present).
 *
 * An event is wanted once per (instance, event type, milestone type): a reached or pushed event that
 * already exists on the aggregate, from an earlier run or from the reference system's own step 36,
 * is never written again. Type names compare case-insensitively, as the reference decodes them.
 * Without events2 (a dry-run before the events2 step) nothing is present.
 */
export function conversionCtes(range: InstanceRange, events2Exists: boolean): RawBuilder<unknown> {
  const types = Object.keys(MILESTONE_TYPES).map(Number);
  const names = types.map((t) => MILESTONE_TYPES[t]);
  const present = events2Exists
    ? sql`SELECT e.instance_id, e.event_type, lower(e.payload->>'type') AS name
          FROM batch b JOIN eventstore.events2 e
            ON e.instance_id = b.instance_id AND e.aggregate_type = ${MILESTONE_AGGREGATE.type} AND e.aggregate_id = b.instance_id
          WHERE e.event_type IN (${REACHED_EVENT}, ${PUSHED_EVENT})`
    : sql`SELECT NULL::text AS instance_id, NULL::text AS event_type, NULL::text AS name WHERE false`;
  return sql`
    names (type, name) AS (SELECT * FROM unnest(${types}::smallint[], ${names}::text[])),
    batch AS (
      SELECT DISTINCT m.instance_id FROM projections.milestones m JOIN names n ON n.type = m.type
      WHERE m.reached_date IS NOT NULL AND ${inRange(range)}
    ),
    wanted AS (
      SELECT m.instance_id, ${REACHED_EVENT}::text AS event_type, n.name, m.type, 0 AS kind, m.reached_date AS sort_date,
             jsonb_build_object('type', n.name, 'reachedDate', ${rfc3339Nano('m.reached_date')}) AS payload
      FROM projections.milestones m JOIN names n ON n.type = m.type
      WHERE m.reached_date IS NOT NULL AND ${inRange(range)}
      UNION ALL
      SELECT m.instance_id, ${PUSHED_EVENT}::text, n.name, m.type, 1, m.reached_date,
             jsonb_build_object('type', n.name, 'externalDomain', '', 'primaryDomain', '', 'endpoints', NULL,
                                'pushedDate', ${rfc3339Nano('m.last_pushed_date')})
      FROM projections.milestones m JOIN names n ON n.type = m.type
      WHERE m.reached_date IS NOT NULL AND m.last_pushed_date IS NOT NULL AND ${inRange(range)}
    ),
    present AS (${present}),
    todo AS (
      SELECT w.* FROM wanted w
      WHERE NOT EXISTS (
        SELECT 1 FROM present p
        WHERE p.instance_id = w.instance_id AND p.event_type = w.event_type AND p.name = lower(w.name)
      )
    )`;
}
