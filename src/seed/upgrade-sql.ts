/**
 * The effects of ZITADEL's v2 and newer setup steps on `eventstore` and `projections`, written from
 * ../shared/spec/zitadel-eventstore.md §1.3, §2, §2.1, §6.5 and zitadel-handoff.md §1.2–§1.3, §2, §4.1:
 * step 14's move done ZITADEL's way (rename, one CREATE TABLE … AS, PK, NOT NULLs, indexes), step 15's
 * tables and legacy copy, 17, the events2 indexes of 19/22/35/44, 36's milestone events, the state rows
 * of 38 and 55, and 82's `current_states.in_tx_order`.
 */
import { MILESTONE_TYPES } from '../schema.js';

/** Step 14 (01): cut off the legacy writers by renaming their table. */
export const RENAME_LEGACY_SQL = `ALTER TABLE eventstore.events RENAME TO events_old`;

/**
 * Step 14 (02): the whole copy as one CREATE TABLE … AS with the §1.3 mapping. `in_tx_order` is the
 * old `event_sequence` as it is, so the column comes out BIGINT: the released step-14 SQL had no cast
 * (the `::INTEGER` cast, and step 48's type fix, only appear in later, unreleased iterations), which is
 * why ZITADEL's push function setup (step 40) reads the column's type instead of assuming INTEGER.
 */
export const CREATE_EVENTS2_AS_SQL = `
CREATE TABLE eventstore.events2 (
  instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at, payload, creator, "owner",
  "position", in_tx_order
) AS SELECT
  instance_id, aggregate_type, aggregate_id, event_type, event_sequence, substr(aggregate_version, 2)::SMALLINT,
  creation_date, event_data, editor_user, resource_owner, EXTRACT(EPOCH FROM creation_date), event_sequence
FROM eventstore.events_old`;

/** Step 14 (03, 04): the primary key, then NOT NULL on the other columns. */
export const EVENTS2_CONSTRAINTS_SQL = `
ALTER TABLE eventstore.events2 ADD PRIMARY KEY (instance_id, aggregate_type, aggregate_id, "sequence");
ALTER TABLE eventstore.events2 ALTER COLUMN event_type SET NOT NULL, ALTER COLUMN revision SET NOT NULL,
  ALTER COLUMN created_at SET NOT NULL, ALTER COLUMN creator SET NOT NULL, ALTER COLUMN "owner" SET NOT NULL,
  ALTER COLUMN "position" SET NOT NULL, ALTER COLUMN in_tx_order SET NOT NULL`;

/**
 * The events2 indexes a REF setup leaves: step 14's `es_active_instances` and `es_projection`, `es_wm`
 * in the form step 35 rebuilt it to (with `position`), 22's partial `active_instances_events` and 44's
 * `events2_current_sequence2` (44 dropped 19's `events2_current_sequence`). Each is built once in its
 * final form: building 14's `es_wm` and 19's index only to replace them would double the seed's time.
 */
export const EVENTS2_INDEXES_SQL: readonly string[] = [
  `CREATE INDEX es_active_instances ON eventstore.events2 (created_at DESC, instance_id)`,
  `CREATE INDEX es_wm ON eventstore.events2 (instance_id, aggregate_id, aggregate_type, event_type, "position")`,
  `CREATE INDEX es_projection ON eventstore.events2 (instance_id, aggregate_type, event_type, "position")`,
  `CREATE INDEX active_instances_events ON eventstore.events2 (aggregate_type, event_type)
     WHERE aggregate_type = 'instance' AND event_type IN ('instance.added', 'instance.removed')`,
  `CREATE INDEX events2_current_sequence2 ON eventstore.events2 (aggregate_id, aggregate_type, instance_id, "sequence" DESC)`,
];

/**
 * The `system.migration.*` events of setup runs ($1 types, $2 names, $3 push times, $4 paths,
 * $5 lastRun JSON or NULL), appended to the ('', system, SYSTEM) aggregate as ZITADEL's push writes
 * them (handoff §2.1): sequence latest + 1…, revision 1, creator `system`, the aggregate's existing
 * owner. The push function stamps position = epoch of the transaction time and in_tx_order 1 (one
 * command per push); the Go-side fallback, used while the function does not exist yet, numbers from 0
 * and takes the position from the clock a few microseconds into the insert.
 */
export const INSERT_RUN_EVENTS_SQL = `
WITH latest AS (
  SELECT "sequence", "owner" FROM eventstore.events2
  WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM' ORDER BY "sequence" DESC LIMIT 1
)
INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at,
  payload, creator, "owner", "position", in_tx_order)
SELECT '', 'system', 'SYSTEM', p.event_type, coalesce((SELECT "sequence" FROM latest), 0) + p.n, 1, p.at,
  jsonb_build_object('name', p.name) || CASE WHEN p.last_run IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('lastRun', p.last_run::jsonb) END,
  'system', coalesce((SELECT "owner" FROM latest), 'SYSTEM'),
  EXTRACT(EPOCH FROM CASE p.path WHEN 'fallback' THEN p.at + interval '17 microseconds' ELSE p.at END),
  CASE p.path WHEN 'fallback' THEN 0 ELSE 1 END
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[]) WITH ORDINALITY AS p(event_type, name, at, path, last_run, n)`;

/** Step 15 (01, 05): the two tables in their REF shape (handoff §4.1), with their instance indexes. */
export const STEP15_TABLES_SQL = `
CREATE TABLE projections.failed_events2 (
  projection_name TEXT NOT NULL, instance_id TEXT NOT NULL, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
  event_creation_date TIMESTAMPTZ NOT NULL, failed_sequence INT8 NOT NULL, failure_count INT2 DEFAULT 0, error TEXT,
  last_failed TIMESTAMPTZ,
  PRIMARY KEY (projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence));
CREATE INDEX fe2_instance_id_idx ON projections.failed_events2 (instance_id);
CREATE TABLE projections.current_states (
  projection_name TEXT NOT NULL, instance_id TEXT NOT NULL, last_updated TIMESTAMPTZ, aggregate_id TEXT,
  aggregate_type TEXT, "sequence" INT8, event_date TIMESTAMPTZ, "position" DECIMAL,
  PRIMARY KEY (projection_name, instance_id));
CREATE INDEX cs_instance_id_idx ON projections.current_states (instance_id);`;

/**
 * Step 15 (02–04, 06–08): the legacy failures and handler positions, joined to events2 by the old
 * sequence (projections also by aggregate type); a handler's position is its highest sequence. Only
 * name, instance, event date, position and last update are kept. Existing rows win.
 */
export const STEP15_COPY_SQL = `
INSERT INTO projections.failed_events2 (projection_name, instance_id, aggregate_type, aggregate_id, event_creation_date,
  failed_sequence, failure_count, error, last_failed)
SELECT f.projection_name, f.instance_id, e.aggregate_type, e.aggregate_id, e.created_at, e."sequence", f.failure_count, f.error, f.last_failed
FROM projections.failed_events f JOIN eventstore.events2 e ON e.instance_id = f.instance_id AND e."sequence" = f.failed_sequence
ON CONFLICT DO NOTHING;
${['adminapi', 'auth'].map((s) => `
INSERT INTO projections.failed_events2 (projection_name, instance_id, aggregate_type, aggregate_id, event_creation_date,
  failed_sequence, failure_count, error, last_failed)
SELECT f.view_name, f.instance_id, e.aggregate_type, e.aggregate_id, e.created_at, e."sequence", f.failure_count, f.err_msg, f.last_failed
FROM ${s}.failed_events f JOIN eventstore.events2 e ON e.instance_id = f.instance_id AND e."sequence" = f.failed_sequence
ON CONFLICT DO NOTHING;`).join('')}
INSERT INTO projections.current_states (projection_name, instance_id, event_date, "position", last_updated)
SELECT c.projection_name, c.instance_id, e.created_at, e."position", c."timestamp"
FROM projections.current_sequences c
JOIN eventstore.events2 e ON e.instance_id = c.instance_id AND e.aggregate_type = c.aggregate_type AND e."sequence" = c.current_sequence
WHERE c.current_sequence = (SELECT max(c2.current_sequence) FROM projections.current_sequences c2
  WHERE c2.projection_name = c.projection_name AND c2.instance_id = c.instance_id)
ON CONFLICT DO NOTHING;
${['adminapi', 'auth'].map((s) => `
INSERT INTO projections.current_states (projection_name, instance_id, event_date, "position", last_updated)
SELECT c.view_name, c.instance_id, e.created_at, e."position", c.last_successful_spooler_run
FROM ${s}.current_sequences c JOIN eventstore.events2 e ON e.instance_id = c.instance_id AND e."sequence" = c.current_sequence
ON CONFLICT DO NOTHING;`).join('')}`;

/** Step 17: its single, unguarded column add. */
export const STEP17_SQL = `ALTER TABLE projections.current_states ADD COLUMN filter_offset INTEGER`;

/** A timestamptz as Go's time.Time marshals it in UTC (RFC3339Nano: trailing zeros of the fraction trimmed). */
function rfc3339Nano(column: string): string {
  const utc = `(${column} AT TIME ZONE 'UTC')`;
  return `(to_char(${utc}, 'YYYY-MM-DD"T"HH24:MI:SS') || coalesce('.' || nullif(rtrim(to_char(${utc}, 'US'), '0'), ''), '') || 'Z')`;
}

const MILESTONE_NAMES = Object.entries(MILESTONE_TYPES).map(([t, n]) => `(${t}, '${n}')`).join(', ');

/**
 * Step 36 ($1: the first push's time, $2: microseconds between pushes): per instance of the old table,
 * in instance-id order, one push onto its new milestone aggregate (id = owner = instance, revision 2,
 * creator '' as setup's bare context has no user) with a `milestone.v2.reached` per reached row (in
 * reached order) and, where it was pushed, a `milestone.v2.pushed` right after it; the old dates in
 * the payload, sequence and in_tx_order 1…n, position the epoch of the push's time.
 */
export const STEP36_SQL = `
WITH src AS (
  SELECT m.instance_id, n.name, m.reached_date, m.last_pushed_date, m.type,
    dense_rank() OVER (ORDER BY m.instance_id) - 1 AS push
  FROM projections.milestones m JOIN (VALUES ${MILESTONE_NAMES}) AS n(type, name) ON n.type = m.type
  WHERE m.reached_date IS NOT NULL
), cmds AS (
  SELECT instance_id, push, reached_date, type, 0 AS kind, 'milestone.v2.reached' AS event_type,
    jsonb_build_object('type', name, 'reachedDate', ${rfc3339Nano('reached_date')}) AS payload
  FROM src
  UNION ALL
  SELECT instance_id, push, reached_date, type, 1, 'milestone.v2.pushed',
    jsonb_build_object('type', name, 'externalDomain', '', 'primaryDomain', '', 'endpoints', NULL, 'pushedDate', ${rfc3339Nano('last_pushed_date')})
  FROM src WHERE last_pushed_date IS NOT NULL
), numbered AS (
  SELECT c.*, row_number() OVER (PARTITION BY c.instance_id ORDER BY c.reached_date, c.type, c.kind) AS n,
    $1::timestamptz + c.push * $2::bigint * interval '1 microsecond' AS at
  FROM cmds c
)
INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at,
  payload, creator, "owner", "position", in_tx_order)
SELECT instance_id, 'milestone', instance_id, event_type, n, 2, at, payload, '', instance_id, EXTRACT(EPOCH FROM at), n
FROM numbered`;

/**
 * Steps 38 and 55: a start-marker state per `instance.added` event (removed instances included) for a
 * handler ($1) at the step's own `started` event ($2: step name): its sequence, time and position,
 * filter_offset 0, no aggregate; last_updated the time of the step's work ($3). 38 keeps an existing
 * row, 55 overwrites it.
 */
export function startMarkerSql(overwrite: boolean): string {
  return `
INSERT INTO projections.current_states (projection_name, instance_id, last_updated, aggregate_id, aggregate_type,
  "sequence", event_date, "position", filter_offset)
SELECT $1, i.instance_id, $3::timestamptz, NULL, NULL, s."sequence", s.created_at, s."position", 0
FROM (SELECT DISTINCT instance_id FROM eventstore.events2 WHERE aggregate_type = 'instance' AND event_type = 'instance.added') i
CROSS JOIN (SELECT "sequence", created_at, "position" FROM eventstore.events2
  WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM'
    AND event_type = 'system.migration.started' AND payload->>'name' = $2) s
ON CONFLICT (projection_name, instance_id) ${overwrite
    ? `DO UPDATE SET last_updated = EXCLUDED.last_updated, aggregate_id = NULL, aggregate_type = NULL,
  "sequence" = EXCLUDED."sequence", event_date = EXCLUDED.event_date, "position" = EXCLUDED."position", filter_offset = 0`
    : 'DO NOTHING'}`;
}

/**
 * Step 82: `current_states.in_tx_order`, nullable, of events2.in_tx_order's own type, back-filled from
 * the event each row names (rows without an aggregate keep NULL), and two triggers that null it on an
 * update that does not set it: older handlers rewrite a row's position without knowing the column.
 * Our construction of the sheet's description: the first trigger (UPDATE OF in_tx_order, so only when
 * the statement sets it) marks the row's update as explicit, the second (every update, fired after by
 * name order) clears the value unless so marked.
 */
export function step82Sql(inTxOrderType: string): string {
  return `
ALTER TABLE projections.current_states ADD COLUMN IF NOT EXISTS in_tx_order ${inTxOrderType};
UPDATE projections.current_states c SET in_tx_order = e.in_tx_order
FROM eventstore.events2 e
WHERE e.instance_id = c.instance_id AND e.aggregate_id = c.aggregate_id AND e.aggregate_type = c.aggregate_type
  AND e."sequence" = c."sequence" AND e.in_tx_order <> 0;
CREATE OR REPLACE FUNCTION projections.current_states_in_tx_order_mark() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN PERFORM set_config('projections.in_tx_order_set', 'on', true); RETURN NEW; END $f$;
CREATE OR REPLACE FUNCTION projections.current_states_in_tx_order_clear() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF coalesce(current_setting('projections.in_tx_order_set', true), '') <> 'on' THEN NEW.in_tx_order := NULL; END IF;
  PERFORM set_config('projections.in_tx_order_set', '', true);
  RETURN NEW;
END $f$;
DROP TRIGGER IF EXISTS current_states_in_tx_order_1_mark ON projections.current_states;
CREATE TRIGGER current_states_in_tx_order_1_mark BEFORE UPDATE OF in_tx_order ON projections.current_states
  FOR EACH ROW EXECUTE FUNCTION projections.current_states_in_tx_order_mark();
DROP TRIGGER IF EXISTS current_states_in_tx_order_2_clear ON projections.current_states;
CREATE TRIGGER current_states_in_tx_order_2_clear BEFORE UPDATE ON projections.current_states
  FOR EACH ROW EXECUTE FUNCTION projections.current_states_in_tx_order_clear();`;
}

/** events2.in_tx_order's type as information_schema names it (what step 40 and 82 read). */
export const IN_TX_ORDER_TYPE_SQL = `SELECT data_type FROM information_schema.columns
  WHERE table_schema = 'eventstore' AND table_name = 'events2' AND column_name = 'in_tx_order'`;

/** A CHECK that a flagged field also has exactly one typed copy of its value. */
const oneTypedValue = (flag: string) =>
  `CHECK (CASE WHEN ${flag} THEN num_nonnulls(number_value, text_value, bool_value) = 1 ELSE true END)`;
const typedValue = (type: string, jsonType: string, cast: string) =>
  `${type} GENERATED ALWAYS AS (CASE WHEN should_index AND jsonb_typeof("value") = '${jsonType}' THEN ${cast} END) STORED`;

/**
 * Step 28: `eventstore.fields`, the search table of the field handlers (every value as JSONB, a typed
 * copy of the indexed ones), with its unique and search indexes; 31 and 43 add one index each.
 * Nothing fills it here: its handlers (29, 30, 47, the repeatables) work from events ZITADEL reads.
 */
export const FIELDS_SQL = `
CREATE TABLE eventstore.fields (
  id TEXT NOT NULL DEFAULT gen_random_uuid(), instance_id TEXT NOT NULL, resource_owner TEXT NOT NULL,
  aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, object_type TEXT NOT NULL, object_id TEXT NOT NULL,
  object_revision INT2, field_name TEXT NOT NULL, "value" JSONB NOT NULL,
  number_value ${typedValue('NUMERIC', 'number', '"value"::NUMERIC')},
  text_value ${typedValue('TEXT', 'string', `"value" #>> '{}'`)},
  bool_value ${typedValue('BOOLEAN', 'boolean', '"value"::BOOLEAN')},
  value_must_be_unique BOOLEAN, should_index BOOLEAN,
  PRIMARY KEY (instance_id, id),
  CONSTRAINT primitive_value_for_unique_check ${oneTypedValue('value_must_be_unique')},
  CONSTRAINT primitive_value_for_index ${oneTypedValue('should_index')});
${['number', 'text', 'bool'].map((t) => `
CREATE UNIQUE INDEX f_${t}_unique_idx ON eventstore.fields (instance_id, field_name, ${t}_value) WHERE value_must_be_unique;
CREATE INDEX f_${t}_value_idx ON eventstore.fields (instance_id, object_type, field_name, ${t}_value)
  INCLUDE (resource_owner, object_id, object_revision, "value") WHERE ${t}_value IS NOT NULL;`).join('')}
CREATE INDEX f_object_idx ON eventstore.fields (instance_id, object_type, object_id, object_revision) INCLUDE (resource_owner, field_name, "value");
CREATE INDEX f_aggregate_object_type_idx ON eventstore.fields (aggregate_type, aggregate_id, object_type);
CREATE INDEX fields_instance_domains_idx ON eventstore.fields (object_id) INCLUDE (instance_id)
  WHERE object_type = 'instance_domain' AND field_name = 'domain';`;

/** When the push function stamps its events: REF = transaction start; newest (64, 81) = statement time, clock position. */
export type PushStamp = 'transaction' | 'clock';

/**
 * Step 40 (and, for the newest, 64 and 81 replacing `commands_to_events`): the composite type
 * `eventstore.command` and the push functions (zitadel-eventstore.md §5.2), written from the spec:
 * per aggregate the commands are numbered after its latest sequence, take its existing owner (else
 * their own), in_tx_order is the command's place in the array cast to events2's in_tx_order type, and
 * `push` inserts them in that order. Their result row is events2's, so events2's columns must stay.
 */
export function pushFunctionsSql(inTxOrderType: string, stamp: PushStamp): string {
  const createdAt = stamp === 'transaction' ? 'now()' : 'statement_timestamp()';
  const position = stamp === 'transaction' ? 'now()' : 'clock_timestamp()';
  return `
CREATE TYPE eventstore.command AS (instance_id TEXT, aggregate_type TEXT, aggregate_id TEXT, command_type TEXT,
  revision INT2, payload JSONB, creator TEXT, owner TEXT);
CREATE FUNCTION eventstore.latest_aggregate_state(instance_id TEXT, aggregate_type TEXT, aggregate_id TEXT,
  OUT "sequence" BIGINT, OUT owner TEXT) LANGUAGE sql STABLE AS $f$
  SELECT e."sequence", e.owner FROM eventstore.events2 e
  WHERE e.instance_id = $1 AND e.aggregate_type = $2 AND e.aggregate_id = $3 ORDER BY e."sequence" DESC LIMIT 1 $f$;
CREATE FUNCTION eventstore.commands_to_events(commands eventstore.command[]) RETURNS SETOF eventstore.events2
LANGUAGE plpgsql AS $f$ BEGIN RETURN QUERY
  SELECT c.instance_id, c.aggregate_type, c.aggregate_id, c.command_type,
    coalesce(l."sequence", 0) + row_number() OVER (PARTITION BY c.instance_id, c.aggregate_type, c.aggregate_id ORDER BY c.n),
    c.revision, ${createdAt}, c.payload, c.creator, coalesce(l.owner, c.owner), EXTRACT(EPOCH FROM ${position}), c.n::${inTxOrderType}
  FROM unnest(commands) WITH ORDINALITY AS c(instance_id, aggregate_type, aggregate_id, command_type, revision, payload, creator, owner, n)
  LEFT JOIN LATERAL eventstore.latest_aggregate_state(c.instance_id, c.aggregate_type, c.aggregate_id) l ON true
  ORDER BY c.n;
END $f$;
CREATE FUNCTION eventstore.push(commands eventstore.command[]) RETURNS SETOF eventstore.events2 LANGUAGE sql AS $f$
  INSERT INTO eventstore.events2 SELECT * FROM eventstore.commands_to_events(commands) ORDER BY in_tx_order RETURNING * $f$;`;
}

/**
 * Step 46 (and 49, 53 for the newest): the permission views over `eventstore.fields` and the
 * `permitted_orgs` functions, by name and column list. Their bodies here are a plain reading of the
 * fields (roles and permissions by object type), not ZITADEL's: nothing in zsetup reads them, they
 * exist so that a database recording these steps done has the objects those steps made.
 */
export function permissionObjectsSql(functions: readonly string[]): string {
  const members = (name: string, objectType: string) => `
CREATE VIEW eventstore.${name} AS SELECT instance_id, aggregate_id, object_id AS user_id, "value" #>> '{}' AS role
FROM eventstore.fields WHERE object_type = '${objectType}' AND field_name = 'member_role';`;
  return `
CREATE VIEW eventstore.role_permissions AS SELECT instance_id, aggregate_id, object_id AS role, "value" #>> '{}' AS permission
FROM eventstore.fields WHERE aggregate_type = 'permission' AND object_type = 'role_permission' AND field_name = 'permission';
CREATE VIEW eventstore.instance_orgs AS SELECT instance_id, aggregate_id AS org_id
FROM eventstore.fields WHERE aggregate_type = 'org' AND object_type = 'org' AND field_name = 'state';
${members('instance_members', 'instance_member_role')}${members('org_members', 'org_member_role')}${members('project_members', 'project_member_role')}
${functions.map((f) => `
CREATE FUNCTION eventstore.${f}(instance_id TEXT, user_id TEXT, perm TEXT, OUT org_ids TEXT[]) LANGUAGE sql STABLE AS $f$
  SELECT array_agg(DISTINCT o.org_id) FROM eventstore.instance_orgs o WHERE o.instance_id = $1 $f$;`).join('')}`;
}
