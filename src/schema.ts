/**
 * The table shapes zsetup reads and writes, exactly as the reference system has them
 * (../shared/spec/zitadel-eventstore.md §1, §4, §6). Each export is plain SQL text.
 */

/** The legacy event table `eventstore.events` (pre-v2.39 shape after setup steps 04, 09 and 11). */
export const LEGACY_EVENTS_TABLE = `
CREATE SCHEMA IF NOT EXISTS eventstore;
CREATE TABLE eventstore.events (
  id                                UUID DEFAULT gen_random_uuid(),
  event_type                        TEXT NOT NULL,
  aggregate_type                    TEXT NOT NULL,
  aggregate_id                      TEXT NOT NULL,
  aggregate_version                 TEXT NOT NULL,
  event_sequence                    BIGINT NOT NULL,
  previous_aggregate_sequence       BIGINT,
  previous_aggregate_type_sequence  INT8,
  creation_date                     TIMESTAMPTZ NOT NULL DEFAULT now(),
  created_at                        TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  event_data                        JSONB,
  editor_user                       TEXT NOT NULL,
  editor_service                    TEXT NOT NULL,
  resource_owner                    TEXT NOT NULL,
  instance_id                       TEXT NOT NULL,
  PRIMARY KEY (event_sequence, instance_id),
  CONSTRAINT previous_sequence_unique UNIQUE (previous_aggregate_sequence, instance_id),
  CONSTRAINT prev_agg_type_seq_unique UNIQUE (previous_aggregate_type_sequence, instance_id)
);`;

/** Indexes of the legacy table (init, then steps 04 and 09). Build after bulk loading. */
export const LEGACY_EVENTS_INDEXES = `
CREATE INDEX agg_type_agg_id ON eventstore.events (instance_id, aggregate_type, aggregate_id);
CREATE INDEX agg_type ON eventstore.events (instance_id, aggregate_type, event_sequence);
CREATE INDEX max_sequence ON eventstore.events (aggregate_type, aggregate_id, event_sequence DESC, instance_id);
CREATE INDEX write_model ON eventstore.events (instance_id, aggregate_type, aggregate_id, event_type, resource_owner);
CREATE INDEX active_instances ON eventstore.events (creation_date, instance_id);`;

/** Columns of `eventstore.events2`, in the reference order, with their types. */
export const EVENTS2_COLUMNS = `
  instance_id     TEXT,
  aggregate_type  TEXT,
  aggregate_id    TEXT,
  event_type      TEXT,
  "sequence"      BIGINT,
  revision        SMALLINT,
  created_at      TIMESTAMPTZ,
  payload         JSONB,
  creator         TEXT,
  owner           TEXT,
  "position"      DECIMAL,
  in_tx_order     INTEGER`;

/** The primary key columns of `eventstore.events2` (what makes concurrent pushes safe). */
export const EVENTS2_PK_COLUMNS = '(instance_id, aggregate_type, aggregate_id, "sequence")';

/** The primary key of `eventstore.events2`. */
export const EVENTS2_PRIMARY_KEY = `ALTER TABLE eventstore.events2 ADD CONSTRAINT events2_pkey PRIMARY KEY ${EVENTS2_PK_COLUMNS}`;

/** NOT NULL constraints of `eventstore.events2` beyond the primary key columns. */
export const EVENTS2_NOT_NULLS = `ALTER TABLE eventstore.events2
  ALTER COLUMN event_type SET NOT NULL, ALTER COLUMN revision SET NOT NULL, ALTER COLUMN created_at SET NOT NULL,
  ALTER COLUMN creator SET NOT NULL, ALTER COLUMN owner SET NOT NULL, ALTER COLUMN "position" SET NOT NULL,
  ALTER COLUMN in_tx_order SET NOT NULL`;

/** The three indexes of `eventstore.events2`: name → column list. */
export const EVENTS2_INDEXES: Readonly<Record<string, string>> = {
  es_active_instances: '(created_at DESC, instance_id)',
  es_wm: '(aggregate_id, instance_id, aggregate_type, event_type)',
  es_projection: '(instance_id, aggregate_type, event_type, "position")',
};

/** Complete `eventstore.events2` as a fresh install has it (table, primary key, NOT NULLs, indexes). */
export const EVENTS2_TABLE_COMPLETE = `
CREATE SCHEMA IF NOT EXISTS eventstore;
CREATE TABLE eventstore.events2 (${EVENTS2_COLUMNS});
${EVENTS2_PRIMARY_KEY};
${EVENTS2_NOT_NULLS};
${Object.entries(EVENTS2_INDEXES)
  .map(([name, cols]) => `CREATE INDEX ${name} ON eventstore.events2 ${cols};`)
  .join('\n')}`;

/** The old milestones projection `projections.milestones` (pre v2 milestones). */
export const LEGACY_MILESTONES_TABLE = `
CREATE SCHEMA IF NOT EXISTS projections;
CREATE TABLE projections.milestones (
  instance_id        TEXT NOT NULL,
  type               SMALLINT NOT NULL,
  reached_date       TIMESTAMPTZ,
  last_pushed_date   TIMESTAMPTZ,
  primary_domain     TEXT,
  ignore_client_ids  TEXT[],
  PRIMARY KEY (instance_id, type)
);`;

/**
 * `projections.current_states` as ZITADEL's steps 15 and 17 leave it (spec zitadel-handoff.md §4.1).
 * Not `in_tx_order`: that column belongs to step 82, which also adds the triggers that keep it true
 * when older handlers update a row without it; zsetup writes it only where step 82 added it.
 */
export const CURRENT_STATES_TABLE = `
CREATE SCHEMA IF NOT EXISTS projections;
CREATE TABLE IF NOT EXISTS projections.current_states (
  projection_name  TEXT NOT NULL,
  instance_id      TEXT NOT NULL,
  last_updated     TIMESTAMPTZ,
  aggregate_id     TEXT,
  aggregate_type   TEXT,
  "sequence"       INT8,
  event_date       TIMESTAMPTZ,
  "position"       DECIMAL,
  filter_offset    INTEGER,
  PRIMARY KEY (projection_name, instance_id)
);
CREATE INDEX IF NOT EXISTS cs_instance_id_idx ON projections.current_states (instance_id);`;

/** `projections.failed_events2` (step 15 of the reference system). */
export const FAILED_EVENTS_TABLE = `
CREATE SCHEMA IF NOT EXISTS projections;
CREATE TABLE IF NOT EXISTS projections.failed_events2 (
  projection_name      TEXT NOT NULL,
  instance_id          TEXT NOT NULL,
  aggregate_type       TEXT NOT NULL,
  aggregate_id         TEXT NOT NULL,
  event_creation_date  TIMESTAMPTZ NOT NULL,
  failed_sequence      INT8 NOT NULL,
  failure_count        INT2 DEFAULT 0,
  error                TEXT,
  last_failed          TIMESTAMPTZ,
  PRIMARY KEY (projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence)
);
CREATE INDEX IF NOT EXISTS fe2_instance_id_idx ON projections.failed_events2 (instance_id);`;

/** Milestone types of the reference system: number → JSON name (spec §6.2). */
export const MILESTONE_TYPES: Readonly<Record<number, string>> = {
  1: 'InstanceCreated',
  2: 'AuthenticationSucceededOnInstance',
  3: 'ProjectCreated',
  4: 'ApplicationCreated',
  5: 'AuthenticationSucceededOnApplication',
  6: 'InstanceDeleted',
};
