/**
 * What the legacy ZITADEL's `01_tables` and `05_last_failed` left for its event handlers, as later
 * steps read it: `projections.current_sequences` / `failed_events` / `locks` and the spooler tables
 * `adminapi.*` / `auth.*` with their legacy column names (zitadel-eventstore.md §2.1), plus the global
 * `eventstore.unique_constraints`. The rows belong to handler names zsetup does not prefill (renamed
 * or retired projections, spooler views) and point at seeded events, so step 15's copy finds them.
 */
import { STAGE } from './stage-sql.js';

/** The tables, in their legacy shape (01_tables, then 05's `last_failed` and instance indexes). */
export const HANDLER_TABLES_SQL = `
CREATE SCHEMA IF NOT EXISTS projections;
CREATE SCHEMA adminapi;
CREATE SCHEMA auth;
CREATE TABLE eventstore.unique_constraints (
  instance_id TEXT, unique_type TEXT, unique_field TEXT,
  PRIMARY KEY (instance_id, unique_type, unique_field));
CREATE TABLE projections.locks (
  locker_id TEXT, locked_until TIMESTAMPTZ(3), projection_name TEXT, instance_id TEXT NOT NULL,
  PRIMARY KEY (projection_name, instance_id));
CREATE TABLE projections.current_sequences (
  projection_name TEXT, aggregate_type TEXT, current_sequence BIGINT, instance_id TEXT NOT NULL, "timestamp" TIMESTAMPTZ,
  PRIMARY KEY (projection_name, aggregate_type, instance_id));
CREATE TABLE projections.failed_events (
  projection_name TEXT, failed_sequence BIGINT, failure_count SMALLINT, error TEXT, instance_id TEXT NOT NULL,
  PRIMARY KEY (projection_name, failed_sequence, instance_id));
${['adminapi', 'auth'].map((s) => `
CREATE TABLE ${s}.locks (
  locker_id TEXT, locked_until TIMESTAMPTZ(3), view_name TEXT, instance_id TEXT NOT NULL,
  PRIMARY KEY (view_name, instance_id));
CREATE TABLE ${s}.current_sequences (
  view_name TEXT, current_sequence BIGINT, ${s === 'adminapi' ? 'event_timestamp' : 'event_date'} TIMESTAMPTZ,
  last_successful_spooler_run TIMESTAMPTZ, instance_id TEXT NOT NULL,
  PRIMARY KEY (view_name, instance_id));
CREATE TABLE ${s}.failed_events (
  view_name TEXT, failed_sequence BIGINT, failure_count SMALLINT, err_msg TEXT, instance_id TEXT NOT NULL,
  PRIMARY KEY (view_name, failed_sequence, instance_id));`).join('\n')}
${['adminapi', 'auth', 'projections'].map((s) => `
ALTER TABLE ${s}.failed_events ADD COLUMN last_failed TIMESTAMPTZ;
CREATE INDEX current_sequences_instance_id_idx ON ${s}.current_sequences (instance_id);
CREATE INDEX failed_events_instance_id_idx ON ${s}.failed_events (instance_id);`).join('\n')}`;

/** Old query projections and the aggregate types each one tracked a sequence for. */
const PROJECTIONS: readonly (readonly [name: string, aggregateTypes: readonly string[]])[] = [
  ['projections.orgs', ['org']],
  ['projections.users8', ['user', 'org', 'instance']],
  ['projections.login_names2', ['user', 'org', 'instance']],
  ['projections.projects3', ['project', 'org', 'instance']],
  ['projections.apps5', ['project', 'org', 'instance']],
];

/** Spooler views of the admin and auth API and the aggregate types they read. */
const VIEWS: readonly (readonly [schema: 'adminapi' | 'auth', view: string, aggregateTypes: readonly string[]])[] = [
  ['adminapi', 'adminapi.styling2', ['org', 'instance']],
  ['auth', 'auth.users2', ['user', 'org', 'instance']],
  ['auth', 'auth.user_sessions', ['user', 'session']],
  ['auth', 'auth.tokens', ['user', 'oidc_session']],
];

const handlerRows = (rows: readonly (readonly [string, readonly string[]])[]) =>
  rows.flatMap(([name, types]) => types.map((t) => `('${name}', '${t}')`)).join(', ');

/** A lock row's holder: an id like the old handlers' xid-style worker ids, fixed per seed and handler. */
const lockerId = (name: string) => `substr(md5(${STAGE}.h(i.inst * 97 + length(${name}), 95)::text || ${name}), 1, 20)`;

/** The instances that still exist: a removed instance keeps no handler state here. */
const ACTIVE = `e.instance_id IN (SELECT instance_id FROM ${STAGE}.inst WHERE NOT removed)`;

/**
 * The rows: every active instance's handlers caught up with the last event of their aggregate types
 * (the spooler views with the last event of theirs, matched by sequence alone), a lock row each that
 * expired after the last run, and in the first instance one failed event per table.
 */
export const HANDLER_ROWS_SQL = `
WITH last_of AS (
  SELECT e.instance_id, e.aggregate_type, max(e.event_sequence) AS seq
  FROM eventstore.events e WHERE ${ACTIVE} GROUP BY 1, 2
)
INSERT INTO projections.current_sequences (projection_name, aggregate_type, current_sequence, instance_id, "timestamp")
SELECT h.name, h.agg, l.seq, l.instance_id, e.creation_date + (1 + ${STAGE}.h(l.seq * 31 + length(h.name), 93) % 900) * interval '1 millisecond'
FROM (VALUES ${handlerRows(PROJECTIONS)}) AS h(name, agg)
JOIN last_of l ON l.aggregate_type = h.agg
JOIN eventstore.events e ON e.instance_id = l.instance_id AND e.event_sequence = l.seq;

INSERT INTO projections.locks (locker_id, locked_until, projection_name, instance_id)
SELECT ${lockerId('s.projection_name')}, max(s."timestamp") + interval '10 seconds', s.projection_name, s.instance_id
FROM projections.current_sequences s JOIN ${STAGE}.inst i ON i.instance_id = s.instance_id
GROUP BY s.projection_name, s.instance_id, i.inst;

${(['adminapi', 'auth'] as const).map((schema) => `
WITH last_of AS (
  SELECT h.view, e.instance_id, max(e.event_sequence) AS seq
  FROM (VALUES ${VIEWS.filter(([s]) => s === schema).flatMap(([, v, types]) => types.map((t) => `('${v}', '${t}')`)).join(', ')}) AS h(view, agg)
  JOIN eventstore.events e ON e.aggregate_type = h.agg AND ${ACTIVE}
  GROUP BY 1, 2
)
INSERT INTO ${schema}.current_sequences (view_name, current_sequence, ${schema === 'adminapi' ? 'event_timestamp' : 'event_date'}, last_successful_spooler_run, instance_id)
SELECT l.view, l.seq, e.creation_date, e.creation_date + (2 + ${STAGE}.h(l.seq * 37 + length(l.view), 94) % 58) * interval '1 second', l.instance_id
FROM last_of l JOIN eventstore.events e ON e.instance_id = l.instance_id AND e.event_sequence = l.seq;

INSERT INTO ${schema}.locks (locker_id, locked_until, view_name, instance_id)
SELECT ${lockerId('s.view_name')}, s.last_successful_spooler_run + interval '30 seconds', s.view_name, s.instance_id
FROM ${schema}.current_sequences s JOIN ${STAGE}.inst i ON i.instance_id = s.instance_id;`).join('\n')}

${failedEventSql('projections.failed_events (projection_name, failed_sequence, failure_count, error, instance_id, last_failed)',
    'projections.users8', 'user.human.profile.changed', 5,
    'ERROR: null value in column "display_name" of relation "users8_humans" violates not-null constraint (SQLSTATE 23502)')}
${failedEventSql('adminapi.failed_events (view_name, failed_sequence, failure_count, err_msg, instance_id, last_failed)',
    'adminapi.styling2', 'org.added', 3, 'ID=VIEW-4Fdsf Message=unable to get label policy')}
${failedEventSql('auth.failed_events (view_name, failed_sequence, failure_count, err_msg, instance_id, last_failed)',
    'auth.users2', 'user.human.password.changed', 2, 'ID=SQL-lso9w Message=Errors.Internal')}`;

/** One failed-event row in the first instance: its first event of `eventType` not written by setup. */
function failedEventSql(target: string, handler: string, eventType: string, count: number, error: string): string {
  return `
INSERT INTO ${target}
SELECT '${handler}', e.event_sequence, ${count}, '${error.replace(/'/g, "''")}', e.instance_id, e.creation_date + interval '4 minutes 12.345678 seconds'
FROM eventstore.events e JOIN ${STAGE}.inst i ON i.instance_id = e.instance_id AND i.inst = 0
WHERE e.event_type = '${eventType}' AND e.editor_user <> ''
ORDER BY e.event_sequence LIMIT 1;`;
}

/** The global unique constraints of the seeded migration events ($1 types, $2 lower-cased fields). */
export const INSERT_UNIQUE_CONSTRAINTS_SQL = `
INSERT INTO eventstore.unique_constraints (instance_id, unique_type, unique_field)
SELECT '', t, f FROM unnest($1::text[], $2::text[]) AS u(t, f)`;

/** Every handler name these rows use, for tests and docs. */
export const LEGACY_HANDLER_NAMES: readonly string[] = [...PROJECTIONS.map(([n]) => n), ...VIEWS.map(([, v]) => v)];
