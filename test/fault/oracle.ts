/**
 * The independent oracle of the fault suite: plain SQL written from the spec
 * (../shared/spec/zitadel-eventstore.md §1.2, §1.3, §6), not the step code, says whether the end state of
 * a run is right. Every check returns data so a failing test shows what differs.
 */
import { expect } from 'vitest';
import { zsetup, type FaultDb } from './harness.js';

/** Legacy row → events2 row, spec §1.3, written out here on purpose (not imported from src/). */
const MAPPED = `instance_id, aggregate_type, aggregate_id, event_type, event_sequence, substr(aggregate_version, 2)::smallint,
  creation_date, event_data, editor_user, resource_owner, EXTRACT(EPOCH FROM creation_date), event_sequence::integer`;
const EVENTS2_COLUMNS = `instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at, payload, creator, owner, "position", in_tx_order`;
/**
 * events2 without what the milestone conversion added, and without the `system.migration.*` events
 * zsetup records for ZITADEL's setup (on the system aggregate, after every legacy event of it).
 */
const COPIED = `SELECT ${EVENTS2_COLUMNS} FROM eventstore.events2 e WHERE NOT (aggregate_type = 'milestone' AND event_type LIKE 'milestone.v2.%')
  AND NOT (instance_id = '' AND aggregate_type = 'system' AND event_type LIKE 'system.migration.%'
           AND NOT EXISTS (SELECT 1 FROM eventstore.events_old o WHERE o.instance_id = '' AND o.event_sequence = e."sequence"))`;

/** events2 (copied part) against the mapping of events_old: rows missing, rows extra, and the counts. */
export async function events2Difference(db: FaultDb): Promise<{ missing: number; extra: number; old: number; copied: number }> {
  const r = await db.query(`
    SELECT (SELECT count(*) FROM (SELECT ${MAPPED} FROM eventstore.events_old EXCEPT ALL ${COPIED}) d)::int AS missing,
           (SELECT count(*) FROM (${COPIED} EXCEPT ALL SELECT ${MAPPED} FROM eventstore.events_old) d)::int AS extra,
           (SELECT count(*) FROM eventstore.events_old)::int AS old,
           (SELECT count(*) FROM (${COPIED}) c)::int AS copied`);
  return r[0];
}

/** The final events2 shape: columns NOT NULL (but payload), primary key and the three indexes, all valid. */
export const EXPECTED_INDEXES = [
  'CREATE INDEX es_active_instances ON eventstore.events2 USING btree (created_at DESC, instance_id)',
  'CREATE INDEX es_projection ON eventstore.events2 USING btree (instance_id, aggregate_type, event_type, "position")',
  'CREATE INDEX es_wm ON eventstore.events2 USING btree (aggregate_id, instance_id, aggregate_type, event_type)',
  'CREATE UNIQUE INDEX events2_pkey ON eventstore.events2 USING btree (instance_id, aggregate_type, aggregate_id, sequence)',
];

export async function events2Shape(db: FaultDb) {
  const indexes = await db.query<{ def: string; valid: boolean; ready: boolean }>(`
    SELECT pg_get_indexdef(indexrelid) AS def, indisvalid AS valid, indisready AS ready
    FROM pg_index WHERE indrelid = 'eventstore.events2'::regclass ORDER BY 1`);
  const pk = await db.query(`SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
    WHERE conrelid = 'eventstore.events2'::regclass AND contype = 'p' AND conname = 'events2_pkey'`);
  const nullable = await db.query(`SELECT attname FROM pg_attribute WHERE attrelid = 'eventstore.events2'::regclass
    AND attnum > 0 AND NOT attisdropped AND NOT attnotnull ORDER BY 1`);
  return {
    indexes: indexes.map((i) => `${i.def}${i.valid && i.ready ? '' : ' (INVALID)'}`),
    primaryKey: pk.map((p) => p.def),
    nullable: nullable.map((n) => n.attname),
  };
}

/**
 * Milestone events wanted by the old rows (spec §6.5: one reached per reached row, one pushed per pushed
 * row, dates in the payload) against those in events2: missing, extra (incl. duplicates), wrong envelope.
 */
export async function milestoneDifference(db: FaultDb): Promise<{ wanted: number; missing: number; extra: number; badEnvelope: number }> {
  const r = await db.query(`
    WITH names(type, name) AS (VALUES (1, 'InstanceCreated'), (2, 'AuthenticationSucceededOnInstance'), (3, 'ProjectCreated'),
                                      (4, 'ApplicationCreated'), (5, 'AuthenticationSucceededOnApplication'), (6, 'InstanceDeleted')),
    wanted AS (
      SELECT m.instance_id, 'milestone.v2.reached' AS event_type, n.name, m.reached_date AS at
      FROM projections.milestones m JOIN names n ON n.type = m.type WHERE m.reached_date IS NOT NULL
      UNION ALL
      SELECT m.instance_id, 'milestone.v2.pushed', n.name, m.last_pushed_date
      FROM projections.milestones m JOIN names n ON n.type = m.type WHERE m.reached_date IS NOT NULL AND m.last_pushed_date IS NOT NULL),
    got AS (
      SELECT instance_id, event_type, payload->>'type' AS name,
             (CASE event_type WHEN 'milestone.v2.reached' THEN payload->>'reachedDate' ELSE payload->>'pushedDate' END)::timestamptz AS at
      FROM eventstore.events2 WHERE aggregate_type = 'milestone' AND event_type LIKE 'milestone.v2.%')
    SELECT (SELECT count(*) FROM wanted)::int AS wanted,
           (SELECT count(*) FROM (SELECT * FROM wanted EXCEPT ALL SELECT * FROM got) d)::int AS missing,
           (SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM wanted) d)::int AS extra,
           (SELECT count(*) FROM eventstore.events2 WHERE aggregate_type = 'milestone' AND event_type LIKE 'milestone.v2.%'
              AND NOT (aggregate_id = instance_id AND owner = instance_id AND revision = 2))::int AS "badEnvelope"`);
  return r[0];
}

/** Every step recorded as succeeded, with how many attempts each took. */
export async function stepRows(db: FaultDb): Promise<{ id: string; status: string; attempts: number }[]> {
  return db.query(`SELECT id, status, attempts FROM zsetup.steps ORDER BY id`);
}

/** Asserts events2 and the milestone events are exactly right (after a completed run). */
export async function expectEventsRight(db: FaultDb): Promise<void> {
  const d = await events2Difference(db);
  expect(d).toMatchObject({ missing: 0, extra: 0 });
  expect(d.copied).toBe(d.old);
  expect(d.old).toBeGreaterThan(0);
  expect(await events2Shape(db)).toEqual({ indexes: EXPECTED_INDEXES, primaryKey: ['PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence)'], nullable: ['payload'] });
  const m = await milestoneDifference(db);
  expect(m).toMatchObject({ missing: 0, extra: 0, badEnvelope: 0 });
  expect(m.wanted).toBeGreaterThan(0);
  expect(await db.query(`SELECT to_regclass('zsetup.events2_chunks')::text AS t`)).toEqual([{ t: null }]);
}

/** Tables of the legacy handlers (01_tables) and the old milestones projection: only read, never prefilled. */
const LEGACY_TABLES = ['milestones', 'current_sequences', 'failed_events', 'locks'];
const BOOKKEEPING = new Set(['current_states', 'failed_events2']);

/** Columns that say when a row was written, not what it holds. */
const WRITE_TIME_COLUMNS = new Set(['last_updated', 'last_failed']);

/**
 * Compares every projection table (and current_states, failed_events2) with a clean from-scratch prefill
 * of the same events2: the run's `projections` schema is set aside, `zsetup init-projections` fills a new
 * one from nothing, and the two are compared with EXCEPT ALL both ways. Returns per table the rows of
 * each side and the differences.
 */
export async function projectionDifference(db: FaultDb): Promise<Record<string, { rows: number; reference: number; missing: number; extra: number }>> {
  await db.query(`ALTER SCHEMA projections RENAME TO run_projections; CREATE SCHEMA projections;
    DELETE FROM zsetup.steps WHERE id LIKE 'projection:%'`);
  const clean = await zsetup(['init-projections', '--concurrency', '2', '-d', db.url]);
  if (clean.code !== 0) throw new Error(`reference prefill failed (${clean.code}): ${clean.stderr}`);
  const tables = await db.query<{ name: string }>(`SELECT relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'projections' AND c.relkind IN ('r', 'p') ORDER BY 1`);
  const runTables = await db.query<{ name: string }>(`SELECT relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'run_projections' AND c.relkind IN ('r', 'p') AND relname <> ALL($1) ORDER BY 1`, [LEGACY_TABLES]);
  expect(runTables.map((t) => t.name)).toEqual(tables.map((t) => t.name));
  const out: Record<string, { rows: number; reference: number; missing: number; extra: number }> = {};
  for (const { name } of tables) {
    const cols = (await db.query<{ attname: string }>(`SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [`projections.${name}`]))
      .map((c) => c.attname).filter((c) => !WRITE_TIME_COLUMNS.has(c)).map((c) => `"${c}"`).join(', ');
    // Bookkeeping rows of handlers zsetup does not prefill (copied from the legacy tables by step 15)
    // have no counterpart in a clean prefill; the prefilled projections' rows must be equal.
    const only = BOOKKEEPING.has(name) ? ` WHERE projection_name IN (SELECT projection_name FROM projections.current_states)` : '';
    const run = `SELECT ${cols} FROM run_projections.${name}${only}`;
    const ref = `SELECT ${cols} FROM projections.${name}${only}`;
    const r = await db.query(`SELECT (SELECT count(*) FROM (${run}) a)::int AS rows, (SELECT count(*) FROM (${ref}) b)::int AS reference,
      (SELECT count(*) FROM (${ref} EXCEPT ALL ${run}) d)::int AS missing, (SELECT count(*) FROM (${run} EXCEPT ALL ${ref}) d)::int AS extra`);
    out[name] = r[0];
  }
  return out;
}

/** Asserts the projections equal a clean prefill, and that the interesting ones are not empty. */
export async function expectProjectionsRight(db: FaultDb): Promise<void> {
  const diff = await projectionDifference(db);
  for (const [name, d] of Object.entries(diff)) {
    expect({ name, missing: d.missing, extra: d.extra, rows: d.rows }).toEqual({ name, missing: 0, extra: 0, rows: d.reference });
  }
  for (const name of ['current_states', 'instances', 'orgs1', 'users14', 'milestones3']) expect(diff[name]?.rows, name).toBeGreaterThan(0);
}

/** The whole oracle: every step succeeded, events2, milestones and projections right. */
export async function expectEndStateRight(db: FaultDb): Promise<void> {
  const steps = await stepRows(db);
  expect(steps.filter((s) => s.status !== 'succeeded')).toEqual([]);
  expect(steps.map((s) => s.id)).toEqual(expect.arrayContaining(['events2', 'milestones-v2', 'projection:projections.users14']));
  await expectEventsRight(db);
  await expectProjectionsRight(db);
}

/**
 * A picture of the database that any write would change: every relation of the user schemas with its
 * kind, every index's definition and validity, and per table its row count and a hash of its rows.
 */
export async function snapshot(db: FaultDb): Promise<Record<string, string>> {
  const rels = await db.query<{ name: string; kind: string; extra: string | null }>(`
    SELECT n.nspname || '.' || c.relname AS name, c.relkind::text AS kind,
           CASE WHEN c.relkind = 'i' THEN (SELECT pg_get_indexdef(c.oid) || ' valid=' || indisvalid FROM pg_index WHERE indexrelid = c.oid) END AS extra
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
    ORDER BY 1`);
  const out: Record<string, string> = {};
  const schemas = await db.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname <> 'information_schema' ORDER BY 1`);
  out['schemas'] = schemas.map((s) => s.nspname).join(',');
  for (const r of rels) {
    out[r.name] = `${r.kind}${r.extra ? ` ${r.extra}` : ''}`;
    if (r.kind === 'r' || r.kind === 'p') {
      const [ns, rel] = r.name.split('.');
      const h = await db.query(`SELECT count(*)::text AS n, coalesce(sum(hashtextextended(t::text, 0)), 0)::text AS h FROM "${ns}"."${rel}" t`);
      out[r.name] += ` rows=${h[0].n} hash=${h[0].h}`;
    }
  }
  return out;
}

/**
 * The database's own write counters, summed over the user tables (PostgreSQL ≥ 15 flushes a backend's
 * counters on demand and at its exit). Unchanged inserted/updated/deleted tuples mean nothing was written.
 */
export async function writeCounters(db: FaultDb): Promise<{ ins: string; upd: string; del: string } | null> {
  const c = await db.client();
  try {
    const v = (await c.query(`SELECT current_setting('server_version_num')::int AS v`)).rows[0].v;
    if (v < 150000) return null;
    await c.query(`SELECT pg_stat_force_next_flush()`);
    await c.query(`SELECT pg_stat_clear_snapshot()`);
    // Per user table, not pg_stat_database: autovacuum's ANALYZE after a run writes pg_statistic rows,
    // which pg_stat_database counts as this database's inserts and updates.
    const r = await c.query(`SELECT coalesce(sum(n_tup_ins), 0)::text AS ins, coalesce(sum(n_tup_upd), 0)::text AS upd,
      coalesce(sum(n_tup_del), 0)::text AS del FROM pg_stat_user_tables`);
    return r.rows[0];
  } finally {
    await c.end();
  }
}
