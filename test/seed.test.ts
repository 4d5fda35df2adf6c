import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { ConfigError, RefusedError } from '../src/errors.js';
import { seedLegacy, type SeedOptions, type SeedSummary } from '../src/seed/index.js';
import { LEGACY_SETUP_STEPS } from '../src/seed/scenes.js';
import { NEWEST_RUN, REF_RUN } from '../src/seed/zitadel-steps.js';
import { ensureBuilt, runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

const EVENTS = 5000;
const INSTANCES = 4;

/** md5 over every column of every row, in primary-key order: equal iff the tables are byte-identical. */
const TABLE_HASH = `
SELECT md5(string_agg(concat_ws('|', id, event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence,
  previous_aggregate_sequence, previous_aggregate_type_sequence, extract(epoch FROM creation_date), extract(epoch FROM created_at),
  event_data::text, editor_user, editor_service, resource_owner, instance_id), E'\\n' ORDER BY instance_id, event_sequence)) AS h
FROM eventstore.events`;

const MILESTONES_HASH = `
SELECT md5(string_agg(concat_ws('|', instance_id, type, extract(epoch FROM reached_date), extract(epoch FROM last_pushed_date),
  primary_domain, ignore_client_ids::text), E'\\n' ORDER BY instance_id, type)) AS h
FROM projections.milestones`;

/** The same hash over events2, in primary-key order. */
const EVENTS2_HASH = `
SELECT md5(string_agg(concat_ws('|', instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, extract(epoch FROM created_at),
  payload::text, creator, owner, "position", in_tx_order), E'\\n' ORDER BY instance_id, aggregate_type, aggregate_id, "sequence")) AS h
FROM eventstore.events2`;

/** What these queries returned for seed 7 (5,000 events, 4 instances) before the presets and shape options existed. */
const GOLDEN = { instanceEvents: 'c13efbe375fec7cfadbfc3590afc9b15', milestones: 'b898941c25d78f01b464239f87c79733' };

let a: TestDatabase;
let b: TestDatabase;
const extra: TestDatabase[] = [];
let dbA: Database;
let summary: SeedSummary;
const progress: [number, number][] = [];

beforeAll(async () => {
  a = await createTestDatabase('seed');
  dbA = await a.open();
  summary = await seedLegacy(dbA, { events: EVENTS, instances: INSTANCES, seed: 7, onProgress: (d, t) => progress.push([d, t]) });
});
afterAll(async () => {
  await a?.drop();
  await b?.drop();
  await Promise.all(extra.map((d) => d.drop()));
});

/** Seeds a database of its own. */
async function seeded(options: Partial<SeedOptions>): Promise<{ t: TestDatabase; summary: SeedSummary }> {
  const t = await createTestDatabase('seed');
  extra.push(t);
  const summary = await seedLegacy(await t.open(), { events: EVENTS, instances: INSTANCES, seed: 7, ...options });
  return { t, summary };
}

const columns = async (t: TestDatabase, table: string) =>
  (await t.query(`SELECT column_name AS c, data_type AS type, is_nullable AS n FROM information_schema.columns
    WHERE table_schema || '.' || table_name = $1 ORDER BY ordinal_position`, [table])).map((r) => `${r.c} ${r.type}${r.n === 'NO' ? ' NN' : ''}`);

describe('seedLegacy', () => {
  it('writes exactly the requested number of events in the requested instances, plus system events', async () => {
    expect(summary).toMatchObject({ events: EVENTS, instances: INSTANCES, milestones: INSTANCES * 6 });
    const [r] = await a.query(`SELECT count(*)::int AS n, count(DISTINCT instance_id) FILTER (WHERE instance_id <> '')::int AS instances,
      count(*) FILTER (WHERE instance_id = '')::int AS system FROM eventstore.events`);
    expect(r).toEqual({ n: EVENTS, instances: INSTANCES, system: 22 });
    expect(progress.at(-1)).toEqual([EVENTS, EVENTS]);
    expect(progress.map(([d]) => d)).toEqual([...progress.map(([d]) => d)].sort((x, y) => x - y));
    const [scratch] = await a.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'zsetup_seed'`);
    expect(scratch.n).toBe(0);
  });

  it('builds the legacy table with its primary key, unique constraints and indexes', async () => {
    const constraints = await a.query(`SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
      WHERE conrelid = 'eventstore.events'::regclass AND contype IN ('p', 'u') ORDER BY conname`);
    expect(constraints).toEqual([
      { conname: 'events_pkey', def: 'PRIMARY KEY (event_sequence, instance_id)' },
      { conname: 'prev_agg_type_seq_unique', def: 'UNIQUE (previous_aggregate_type_sequence, instance_id)' },
      { conname: 'previous_sequence_unique', def: 'UNIQUE (previous_aggregate_sequence, instance_id)' },
    ]);
    const indexes = await a.query(`SELECT indexname FROM pg_indexes WHERE schemaname = 'eventstore' AND tablename = 'events' ORDER BY 1`);
    expect(indexes.map((r) => r.indexname)).toEqual([
      'active_instances', 'agg_type', 'agg_type_agg_id', 'events_pkey', 'max_sequence', 'prev_agg_type_seq_unique', 'previous_sequence_unique', 'write_model',
    ]);
  });

  it('numbers events 1…n per instance and chains the previous-sequence columns', async () => {
    const [gaps] = await a.query(`SELECT count(*)::int AS n FROM (SELECT instance_id, max(event_sequence) AS mx, count(*) AS c
      FROM eventstore.events GROUP BY instance_id) x WHERE mx <> c`);
    expect(gaps.n).toBe(0);
    const [wrong] = await a.query(`SELECT count(*)::int AS n FROM (
      SELECT previous_aggregate_sequence AS pa, previous_aggregate_type_sequence AS pt,
        lag(event_sequence) OVER (PARTITION BY instance_id, aggregate_type, aggregate_id ORDER BY event_sequence) AS ea,
        lag(event_sequence) OVER (PARTITION BY instance_id, aggregate_type ORDER BY event_sequence) AS et
      FROM eventstore.events) x WHERE pa IS DISTINCT FROM ea OR pt IS DISTINCT FROM et`);
    expect(wrong.n).toBe(0);
  });

  it('keeps creation_date increasing per instance; a push shares its date, created_at stays within microseconds', async () => {
    const [r] = await a.query(`SELECT count(*) FILTER (WHERE cd < prev)::int AS backwards,
        count(*) FILTER (WHERE cd = prev)::int AS shared, count(*) FILTER (WHERE ca < cd OR ca > cd + interval '1 ms')::int AS far
      FROM (SELECT creation_date AS cd, created_at AS ca,
        lag(creation_date) OVER (PARTITION BY instance_id ORDER BY event_sequence) AS prev FROM eventstore.events) x`);
    expect(r.backwards).toBe(0);
    expect(r.far).toBe(0);
    expect(r.shared).toBeGreaterThan(EVENTS / 3);
    // Each instance's creation is one push: all its 23 events share the instance.added date.
    const setup = await a.query(`SELECT e.instance_id, count(*)::int AS n FROM eventstore.events e
      JOIN eventstore.events ia ON ia.instance_id = e.instance_id AND ia.event_type = 'instance.added' AND ia.creation_date = e.creation_date
      GROUP BY e.instance_id`);
    expect(setup.map((r) => r.n)).toEqual(Array(INSTANCES).fill(23));
    // Every login's code exchange (5 events on two aggregates) is one push.
    const [ex] = await a.query(`SELECT count(*)::int AS n FROM eventstore.events x WHERE x.event_type = 'auth_request.code.exchanged'
      AND NOT EXISTS (SELECT FROM eventstore.events o WHERE o.instance_id = x.instance_id AND o.event_sequence = x.event_sequence + 1
        AND o.event_type = 'oidc_session.added' AND o.creation_date = x.creation_date)`);
    expect(ex.n).toBe(0);
  });

  it('writes envelopes and payload keys as the reference system does', async () => {
    const keys = async (type: string) =>
      (await a.query(`SELECT DISTINCT k FROM eventstore.events, jsonb_object_keys(event_data) k WHERE event_type = $1 ORDER BY k`, [type])).map((r) => r.k);
    expect(await keys('instance.added')).toEqual(['name']);
    expect(await keys('instance.iam.console.set')).toEqual(['appId', 'clientId']);
    expect(await keys('project.application.added')).toEqual(['appId', 'name']);
    expect(await keys('oidc_session.added')).toEqual(expect.arrayContaining(['audience', 'authMethods', 'authTime', 'clientID', 'scope', 'sessionID', 'userID', 'userResourceOwner']));
    expect(await keys('oidc_session.access_token.added')).toEqual(['id', 'lifetime', 'reason', 'scope']);
    expect(await keys('session.added')).toEqual(['user_agent']);
    expect(await keys('user.human.password.changed')).toEqual(expect.arrayContaining(['changeRequired', 'encodedHash']));
    expect(await keys('project.application.config.oidc.added')).toEqual(expect.arrayContaining(['appId', 'clientId', 'grantTypes', 'redirectUris', 'responseTypes']));
    const [nulls] = await a.query(`SELECT count(*) FILTER (WHERE event_data IS NOT NULL)::int AS n, count(*)::int AS total FROM eventstore.events
      WHERE event_type IN ('user.human.email.verified', 'org.removed', 'user.removed', 'auth_request.succeeded', 'instance.removed')`);
    expect(nulls.n).toBe(0);
    expect(nulls.total).toBeGreaterThan(0);
    const envelopes = await a.query(`SELECT aggregate_type, min(aggregate_version) AS v, bool_and(
        CASE aggregate_type WHEN 'org' THEN resource_owner = aggregate_id WHEN 'instance' THEN resource_owner = instance_id
          WHEN 'session' THEN resource_owner = instance_id WHEN 'auth_request' THEN resource_owner = instance_id AND aggregate_id LIKE 'V2\\_%'
          WHEN 'oidc_session' THEN aggregate_id LIKE 'V2\\_%' WHEN 'system' THEN instance_id = '' AND aggregate_id = 'SYSTEM' ELSE true END) AS ok
      FROM eventstore.events GROUP BY 1 ORDER BY 1`);
    expect(envelopes).toEqual([
      { aggregate_type: 'auth_request', v: 'v1', ok: true }, { aggregate_type: 'instance', v: 'v1', ok: true },
      { aggregate_type: 'oidc_session', v: 'v1', ok: true }, { aggregate_type: 'org', v: 'v1', ok: true },
      { aggregate_type: 'project', v: 'v1', ok: true }, { aggregate_type: 'session', v: 'v1', ok: true },
      { aggregate_type: 'system', v: 'v1', ok: true }, { aggregate_type: 'user', v: 'v2', ok: true },
    ]);
    // Users act only in orgs that exist: every user event's owner has an org.added before it.
    const [orphans] = await a.query(`SELECT count(*)::int AS n FROM eventstore.events u WHERE u.aggregate_type = 'user'
      AND NOT EXISTS (SELECT FROM eventstore.events o WHERE o.instance_id = u.instance_id AND o.event_type = 'org.added'
        AND o.aggregate_id = u.resource_owner AND o.event_sequence <= u.event_sequence)`);
    expect(orphans.n).toBe(0);
    // Nothing happens to a removed user or org after its removal (the instance removal is last of its instance).
    const [afterRemoval] = await a.query(`SELECT count(*)::int AS n FROM eventstore.events r JOIN eventstore.events x
      ON x.instance_id = r.instance_id AND x.event_sequence > r.event_sequence
      AND ((r.event_type IN ('user.removed', 'org.removed', 'project.removed') AND x.aggregate_id = r.aggregate_id) OR r.event_type = 'instance.removed')
      WHERE r.event_type IN ('user.removed', 'org.removed', 'project.removed', 'instance.removed')`);
    expect(afterRemoval.n).toBe(0);
  });

  it('fills projections.milestones consistently with the events', async () => {
    const [r] = await a.query(`SELECT
      count(*) FILTER (WHERE m.type = 1 AND m.reached_date IS DISTINCT FROM (SELECT creation_date FROM eventstore.events e
        WHERE e.instance_id = m.instance_id AND e.event_type = 'instance.added'))::int AS wrong_created,
      count(*) FILTER (WHERE m.type = 2 AND m.reached_date IS DISTINCT FROM (SELECT min(creation_date) FROM eventstore.events e
        WHERE e.instance_id = m.instance_id AND e.event_type = 'oidc_session.added'))::int AS wrong_auth,
      count(*) FILTER (WHERE m.type = 6 AND (m.reached_date IS NULL) = EXISTS (SELECT FROM eventstore.events e
        WHERE e.instance_id = m.instance_id AND e.event_type = 'instance.removed'))::int AS wrong_deleted,
      count(*) FILTER (WHERE m.last_pushed_date <= m.reached_date OR (m.reached_date IS NULL AND m.last_pushed_date IS NOT NULL))::int AS wrong_pushed,
      count(*) FILTER (WHERE m.last_pushed_date IS NOT NULL)::int AS pushed,
      count(*) FILTER (WHERE m.reached_date IS NOT NULL AND m.last_pushed_date IS NULL)::int AS unpushed,
      count(*) FILTER (WHERE m.reached_date IS NULL)::int AS unreached,
      count(*) FILTER (WHERE extract(microseconds FROM m.reached_date)::bigint % 1000 <> 0)::int AS micro
      FROM projections.milestones m`);
    expect(r).toMatchObject({ wrong_created: 0, wrong_auth: 0, wrong_deleted: 0, wrong_pushed: 0 });
    expect(r.pushed).toBeGreaterThan(0);
    expect(r.unpushed).toBeGreaterThan(0);
    expect(r.unreached).toBeGreaterThan(0);
    expect(r.micro).toBeGreaterThan(0);
    const [project] = await a.query(`SELECT count(*)::int AS n FROM projections.milestones m WHERE m.type = 3
      AND m.reached_date IS DISTINCT FROM (SELECT min(creation_date) FROM eventstore.events e WHERE e.instance_id = m.instance_id
        AND e.event_type = 'project.added' AND e.editor_user NOT IN ('', 'system', 'OIDC', 'LOGIN', 'SYSTEM'))`);
    expect(project.n).toBe(0);
  });

  it('is deterministic: the same seed in another database gives identical rows, another seed different ones', async () => {
    b = await createTestDatabase('seed');
    const dbB = await b.open();
    await seedLegacy(dbB, { events: EVENTS, instances: INSTANCES, seed: 7 });
    const [ha] = await a.query(TABLE_HASH);
    const [hb] = await b.query(TABLE_HASH);
    expect(hb.h).toBe(ha.h);
    expect((await b.query(MILESTONES_HASH))[0].h).toBe((await a.query(MILESTONES_HASH))[0].h);
    await b.query('DROP SCHEMA eventstore, projections, adminapi, auth CASCADE');
    await seedLegacy(dbB, { events: EVENTS, instances: INSTANCES, seed: 8 });
    expect((await b.query(TABLE_HASH))[0].h).not.toBe(ha.h);
  });

  it('refuses a database that already has an event store, and sizes it cannot fill', async () => {
    await expect(seedLegacy(dbA, { events: EVENTS, instances: INSTANCES })).rejects.toThrow(RefusedError);
    await expect(seedLegacy(dbA, { events: EVENTS, instances: INSTANCES })).rejects.toThrow(/eventstore\.events/);
    await expect(seedLegacy(dbA, { events: 50, instances: 4 })).rejects.toThrow(ConfigError);
    const [r] = await a.query(`SELECT count(*)::int AS n FROM eventstore.events`);
    expect(r.n).toBe(EVENTS);
  });
});

describe('seedLegacy, preset v2.38 (the default)', () => {
  it('keeps the rows of the instances byte-identical to the seed before presets and shape options', async () => {
    const [h] = await a.query(TABLE_HASH.replace('FROM eventstore.events', `FROM eventstore.events WHERE instance_id <> ''`));
    expect(h.h).toBe(GOLDEN.instanceEvents);
    expect((await a.query(MILESTONES_HASH))[0].h).toBe(GOLDEN.milestones);
    expect(summary.zitadelVersion).toBe('v2.38');
  });

  it('writes the old setup runs as the legacy eventstore did: system/SYSTEM v1 in instance \'\', by system, owner SYSTEM', async () => {
    const rows = await a.query(`SELECT event_type, event_data->>'name' AS name, aggregate_type, aggregate_id, aggregate_version,
        editor_user, editor_service, resource_owner, event_sequence::int AS seq, jsonb_object_keys(event_data) AS keys
      FROM eventstore.events WHERE instance_id = '' ORDER BY event_sequence`);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
    for (const r of rows) {
      expect(r).toMatchObject({ aggregate_type: 'system', aggregate_id: 'SYSTEM', aggregate_version: 'v1', editor_user: 'system',
        editor_service: 'system', resource_owner: 'SYSTEM', keys: 'name' });
    }
    expect(rows.filter((r) => r.event_type === 'system.migration.done').map((r) => r.name)).toEqual([
      '01_tables', '02_assets', '03_default_instance', '04_eventstore_indexes', '05_last_failed', '06_resource_owner_columns',
      '07_logstore', '08_auth_token_indexes', '09_optimise_indexes', '10_correct_creation_date', '11_event_created_at',
    ]);
  });

  it('has the migration unique constraints those events left: one started and one done row per step, lower-cased', async () => {
    const rows = await a.query(`SELECT instance_id, unique_type, unique_field FROM eventstore.unique_constraints ORDER BY unique_type, unique_field`);
    expect(rows).toEqual([
      ...[...LEGACY_SETUP_STEPS].sort().map((f) => ({ instance_id: '', unique_type: 'migration_done', unique_field: f })),
      ...[...LEGACY_SETUP_STEPS].sort().map((f) => ({ instance_id: '', unique_type: 'migration_started', unique_field: f })),
    ]);
  });

  it('has the legacy handler tables of 01_tables / 05_last_failed with their legacy column names', async () => {
    expect(await columns(a, 'projections.current_sequences')).toEqual([
      'projection_name text NN', 'aggregate_type text NN', 'current_sequence bigint', 'instance_id text NN', 'timestamp timestamp with time zone']);
    expect(await columns(a, 'projections.failed_events')).toEqual([
      'projection_name text NN', 'failed_sequence bigint NN', 'failure_count smallint', 'error text', 'instance_id text NN', 'last_failed timestamp with time zone']);
    expect(await columns(a, 'projections.locks')).toEqual([
      'locker_id text', 'locked_until timestamp with time zone', 'projection_name text NN', 'instance_id text NN']);
    expect(await columns(a, 'adminapi.current_sequences')).toEqual([
      'view_name text NN', 'current_sequence bigint', 'event_timestamp timestamp with time zone',
      'last_successful_spooler_run timestamp with time zone', 'instance_id text NN']);
    expect((await columns(a, 'auth.current_sequences'))[2]).toBe('event_date timestamp with time zone');
    for (const s of ['adminapi', 'auth']) {
      expect(await columns(a, `${s}.failed_events`)).toEqual([
        'view_name text NN', 'failed_sequence bigint NN', 'failure_count smallint', 'err_msg text', 'instance_id text NN', 'last_failed timestamp with time zone']);
      expect(await columns(a, `${s}.locks`)).toEqual(['locker_id text', 'locked_until timestamp with time zone', 'view_name text NN', 'instance_id text NN']);
    }
    const idx = await a.query(`SELECT schemaname || '.' || indexname AS i FROM pg_indexes WHERE indexname LIKE '%instance_id_idx' ORDER BY 1`);
    expect(idx.map((r) => r.i)).toEqual(['adminapi.current_sequences_instance_id_idx', 'adminapi.failed_events_instance_id_idx',
      'auth.current_sequences_instance_id_idx', 'auth.failed_events_instance_id_idx',
      'projections.current_sequences_instance_id_idx', 'projections.failed_events_instance_id_idx']);
  });

  it('fills them with rows of handlers zsetup does not prefill, each pointing at an existing event', async () => {
    const [p] = await a.query(`SELECT count(*)::int AS n, count(DISTINCT instance_id)::int AS instances,
        count(*) FILTER (WHERE NOT EXISTS (SELECT FROM eventstore.events e WHERE e.instance_id = c.instance_id
          AND e.aggregate_type = c.aggregate_type AND e.event_sequence = c.current_sequence))::int AS dangling,
        array_agg(DISTINCT projection_name ORDER BY projection_name) AS names
      FROM projections.current_sequences c`);
    // Every instance but the removed one (the last of 4).
    expect(p).toMatchObject({ instances: INSTANCES - 1, dangling: 0 });
    expect(p.names).toEqual(['projections.apps5', 'projections.login_names2', 'projections.orgs', 'projections.projects3', 'projections.users8']);
    for (const s of ['adminapi', 'auth']) {
      const [v] = await a.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE NOT EXISTS (SELECT FROM eventstore.events e
          WHERE e.instance_id = c.instance_id AND e.event_sequence = c.current_sequence))::int AS dangling FROM ${s}.current_sequences c`);
      expect(v.n).toBeGreaterThanOrEqual(INSTANCES - 1);
      expect(v.dangling).toBe(0);
    }
    const failed = await a.query(`SELECT 'projections' AS s, projection_name AS name, failed_sequence, instance_id FROM projections.failed_events
      UNION ALL SELECT 'adminapi', view_name, failed_sequence, instance_id FROM adminapi.failed_events
      UNION ALL SELECT 'auth', view_name, failed_sequence, instance_id FROM auth.failed_events`);
    expect(failed.map((r) => r.name).sort()).toEqual(['adminapi.styling2', 'auth.users2', 'projections.users8']);
    for (const f of failed) {
      expect(await a.query(`SELECT 1 FROM eventstore.events WHERE instance_id = $1 AND event_sequence = $2`, [f.instance_id, f.failed_sequence])).toHaveLength(1);
    }
    const [locks] = await a.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE locked_until IS NULL OR locker_id IS NULL)::int AS empty,
      (SELECT count(DISTINCT (projection_name, instance_id))::int FROM projections.current_sequences) AS handlers FROM projections.locks`);
    expect(locks).toMatchObject({ n: locks.handlers, empty: 0 });
    const noZsetupNames = await a.query(`SELECT projection_name FROM projections.current_sequences
      WHERE projection_name IN ('projections.orgs1', 'projections.users14', 'projections.apps7', 'projections.projects4', 'projections.instances', 'projections.milestones3')`);
    expect(noZsetupNames).toEqual([]);
  });
});

/** Names of the system.migration events after the legacy history, in sequence order, as "type name". */
async function runEventNames(t: TestDatabase): Promise<string[]> {
  const rows = await t.query(`SELECT replace(event_type, 'system.migration.', '') || ' ' || (payload->>'name') AS x FROM eventstore.events2
    WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM' AND "sequence" > 22 ORDER BY "sequence"`);
  return rows.map((r) => r.x);
}

/** The run's events as ZITADEL's setup pushes them: started, done (14: done only; repeatables: repeatable.done). */
function expectedRun(steps: typeof REF_RUN): string[] {
  return steps.flatMap((s) => [...(s.doneOnly ? [] : [`started ${s.name}`]), `${s.lastRun ? 'repeatable.done' : 'done'} ${s.name}`]);
}

describe('seedLegacy, preset v2.71 (set up by a v2 ZITADEL)', () => {
  let t: TestDatabase;
  let s: SeedSummary;
  beforeAll(async () => {
    ({ t, summary: s } = await seeded({ zitadelVersion: 'v2.71' }));
  });

  it('moved the events ZITADEL\'s way: events_old kept with its legacy constraints, events2 with the mapped rows, PK, NOT NULLs, indexes', async () => {
    const tables = await t.query(`SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE nspname = 'eventstore' AND relkind = 'r' ORDER BY 1`);
    expect(tables.map((r) => r.relname)).toEqual(['events2', 'events_old', 'fields', 'unique_constraints']);
    expect(await columns(t, 'eventstore.events2')).toEqual([
      'instance_id text NN', 'aggregate_type text NN', 'aggregate_id text NN', 'event_type text NN', 'sequence bigint NN', 'revision smallint NN',
      'created_at timestamp with time zone NN', 'payload jsonb', 'creator text NN', 'owner text NN', 'position numeric NN',
      // The released step-14 CTAS copies event_sequence without a cast: BIGINT, not INTEGER.
      'in_tx_order bigint NN',
    ]);
    const [missing] = await t.query(`SELECT count(*)::int AS n FROM (
      SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence, substr(aggregate_version, 2)::smallint, creation_date,
        event_data, editor_user, resource_owner, EXTRACT(EPOCH FROM creation_date), event_sequence FROM eventstore.events_old
      EXCEPT SELECT instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at, payload, creator, owner, "position", in_tx_order
      FROM eventstore.events2) x`);
    expect(missing.n).toBe(0);
    const [counts] = await t.query(`SELECT (SELECT count(*) FROM eventstore.events_old)::int AS old, (SELECT count(*) FROM eventstore.events2)::int AS new`);
    expect(counts.old).toBe(EVENTS);
    expect(counts.new).toBe(EVENTS + (s.upgrade as { migrationEvents: number }).migrationEvents + (s.upgrade as { milestoneEvents: number }).milestoneEvents);
    const indexes = await t.query(`SELECT indexname, regexp_replace(indexdef, '^.* USING btree ', '') AS def FROM pg_indexes
      WHERE schemaname = 'eventstore' AND tablename = 'events2' ORDER BY 1`);
    expect(indexes).toEqual([
      { indexname: 'active_instances_events', def: `(aggregate_type, event_type) WHERE ((aggregate_type = 'instance'::text) AND (event_type = ANY (ARRAY['instance.added'::text, 'instance.removed'::text])))` },
      { indexname: 'es_active_instances', def: '(created_at DESC, instance_id)' },
      { indexname: 'es_projection', def: '(instance_id, aggregate_type, event_type, "position")' },
      { indexname: 'es_wm', def: '(instance_id, aggregate_id, aggregate_type, event_type, "position")' },
      { indexname: 'events2_current_sequence2', def: '(aggregate_id, aggregate_type, instance_id, sequence DESC)' },
      { indexname: 'events2_pkey', def: '(instance_id, aggregate_type, aggregate_id, sequence)' },
    ]);
    const [legacy] = await t.query(`SELECT count(*)::int AS n FROM pg_constraint WHERE conrelid = 'eventstore.events_old'::regclass AND contype IN ('p', 'u')`);
    expect(legacy.n).toBe(3);
  });

  it('has current_states and failed_events2 in the REF shape (15, then 17\'s filter_offset; no in_tx_order)', async () => {
    expect(await columns(t, 'projections.current_states')).toEqual([
      'projection_name text NN', 'instance_id text NN', 'last_updated timestamp with time zone', 'aggregate_id text', 'aggregate_type text',
      'sequence bigint', 'event_date timestamp with time zone', 'position numeric', 'filter_offset integer']);
    expect(await columns(t, 'projections.failed_events2')).toEqual([
      'projection_name text NN', 'instance_id text NN', 'aggregate_type text NN', 'aggregate_id text NN', 'event_creation_date timestamp with time zone NN',
      'failed_sequence bigint NN', 'failure_count smallint', 'error text', 'last_failed timestamp with time zone']);
  });

  it('records the REF steps after the legacy ones, in REF order, started + done (14: done only)', async () => {
    const names = await runEventNames(t);
    expect(names).toEqual(expectedRun(REF_RUN));
    expect(names[0]).toBe('done 14_events_push');
    expect(names).not.toContain('started 14_events_push');
    expect(names.filter((n) => n.endsWith(' 01_tables'))).toEqual([]);
    expect(names.indexOf('done 15_current_projection_state')).toBeLessThan(names.indexOf('started 17_add_offset_col_to_current_states'));
    expect(names).toContain('repeatable.done projection_tables');
  });

  it('writes those events as ZITADEL\'s push: next sequence, revision 1, creator system, owner kept, position = epoch of the time, in_tx_order 1', async () => {
    const rows = await t.query(`SELECT "sequence"::int AS seq, revision, creator, owner, in_tx_order::int AS ito, payload,
        "position" = round(EXTRACT(EPOCH FROM created_at), 6) AS pos_is_time, "position" > EXTRACT(EPOCH FROM created_at) AS pos_after,
        round("position", 6) = "position" AS six_decimals
      FROM eventstore.events2 WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM' AND "sequence" > 22 ORDER BY "sequence"`);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: rows.length }, (_, i) => 23 + i));
    for (const r of rows) expect(r).toMatchObject({ revision: 1, creator: 'system', owner: 'SYSTEM', six_decimals: true });
    // 14's done and 40's started are pushed before 40 created the push function: Go-side fallback, 0-based in_tx_order, clock position.
    expect(rows.slice(0, 2).map((r) => [r.ito, r.pos_after])).toEqual([[0, true], [0, true]]);
    expect(rows.slice(2).every((r) => r.ito === 1 && r.pos_is_time)).toBe(true);
    const lastRun = rows.find((r) => r.payload.name === 'projection_tables' && r.payload.lastRun)?.payload;
    expect(lastRun).toEqual({ name: 'projection_tables', lastRun: { version: 'v2.71.0' } });
    expect(rows.filter((r) => r.payload.lastRun === undefined).every((r) => Object.keys(r.payload).join() === 'name')).toBe(true);
  });

  it('has the unique constraints of every push: done per step, started except for repeatables (and 14), fields lower-cased', async () => {
    const rows = await t.query(`SELECT unique_type, unique_field FROM eventstore.unique_constraints WHERE instance_id = ''`);
    const has = (type: string, f: string) => rows.some((r) => r.unique_type === type && r.unique_field === f);
    expect(has('migration_done', '14_events_push')).toBe(true);
    expect(has('migration_started', '14_events_push')).toBe(false);
    expect(has('migration_started', '32_add_auth_sessionid') && has('migration_done', '32_add_auth_sessionid')).toBe(true);
    expect(rows.some((r) => r.unique_field === '32_add_auth_sessionID')).toBe(false);
    expect(has('migration_started', 'projection_tables') || has('migration_done', 'projection_tables')).toBe(false);
    const steps = REF_RUN.filter((x) => !x.lastRun).length + LEGACY_SETUP_STEPS.length;
    expect(rows.filter((r) => r.unique_type === 'migration_done')).toHaveLength(steps);
    expect(rows.filter((r) => r.unique_type === 'migration_started')).toHaveLength(steps - 1);
  });

  it('step 15 copied the legacy handler states and failures; 38 set its start marker per instance', async () => {
    const [legacy] = await t.query(`SELECT (SELECT count(DISTINCT (projection_name, instance_id)) FROM projections.current_sequences)
      + (SELECT count(*) FROM adminapi.current_sequences) + (SELECT count(*) FROM auth.current_sequences) AS n`);
    const states = await t.query(`SELECT c.*, EXISTS (SELECT FROM eventstore.events2 e WHERE e.instance_id = c.instance_id
        AND e.created_at = c.event_date AND e."position" = c."position" AND e.aggregate_type <> 'system') AS at_event
      FROM projections.current_states c WHERE projection_name <> 'projections.notifications_back_channel_logout'`);
    expect(states).toHaveLength(Number(legacy.n));
    for (const r of states) expect(r).toMatchObject({ aggregate_id: null, aggregate_type: null, sequence: null, filter_offset: null, at_event: true });
    const [fe] = await t.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE aggregate_id <> '' AND event_creation_date IS NOT NULL)::int AS ok FROM projections.failed_events2`);
    expect(fe).toEqual({ n: 3, ok: 3 });
    const [marker] = await t.query(`SELECT count(*)::int AS n, count(DISTINCT ("sequence", "position"))::int AS points, min(filter_offset) AS fo,
        (SELECT count(DISTINCT instance_id)::int FROM eventstore.events2 WHERE event_type = 'instance.added') AS instances
      FROM projections.current_states WHERE projection_name = 'projections.notifications_back_channel_logout'`);
    expect(marker).toEqual({ n: marker.instances, points: 1, fo: 0, instances: INSTANCES });
  });

  it('has the eventstore objects of the steps it records: fields (28, 31, 43), push functions (40), permission views (46)', async () => {
    const idx = await t.query(`SELECT indexname FROM pg_indexes WHERE schemaname = 'eventstore' AND tablename = 'fields' ORDER BY 1`);
    expect(idx.map((r) => r.indexname)).toEqual(['f_aggregate_object_type_idx', 'f_bool_unique_idx', 'f_bool_value_idx', 'f_number_unique_idx',
      'f_number_value_idx', 'f_object_idx', 'f_text_unique_idx', 'f_text_value_idx', 'fields_instance_domains_idx', 'fields_pkey']);
    const views = await t.query(`SELECT table_name FROM information_schema.views WHERE table_schema = 'eventstore' ORDER BY 1`);
    expect(views.map((r) => r.table_name)).toEqual(['instance_members', 'instance_orgs', 'org_members', 'project_members', 'role_permissions']);
    // The push function appends like ZITADEL's: next sequence, the aggregate's owner, in_tx_order 1…, position from the transaction.
    const c = await t.client();
    await c.query('BEGIN');
    const pushed = (await c.query(`SELECT "sequence"::int AS seq, owner, in_tx_order::int AS ito, "position" = EXTRACT(EPOCH FROM now()) AS tx
      FROM eventstore.push(ARRAY[ROW('', 'system', 'SYSTEM', 'system.migration.started', 1, '{"name": "x"}', 'system', 'other')::eventstore.command,
        ROW('', 'system', 'SYSTEM', 'system.migration.done', 1, '{"name": "x"}', 'system', 'other')::eventstore.command])`)).rows;
    const [last] = (await c.query(`SELECT max("sequence")::int AS m FROM eventstore.events2 WHERE instance_id = '' AND aggregate_type = 'system'`)).rows;
    await c.query('ROLLBACK');
    expect(pushed).toEqual([{ seq: last.m - 1, owner: 'SYSTEM', ito: 1, tx: true }, { seq: last.m, owner: 'SYSTEM', ito: 2, tx: true }]);
  });

  it('step 36 pushed the milestone.v2 events of the old rows, one push per instance', async () => {
    const [old] = await t.query(`SELECT count(*) FILTER (WHERE reached_date IS NOT NULL)::int AS reached,
      count(*) FILTER (WHERE reached_date IS NOT NULL AND last_pushed_date IS NOT NULL)::int AS pushed FROM projections.milestones`);
    const rows = await t.query(`SELECT instance_id, event_type, "sequence"::int AS seq, in_tx_order::int AS ito, revision, creator, owner, aggregate_id,
        payload, created_at FROM eventstore.events2 WHERE aggregate_type = 'milestone' ORDER BY instance_id, "sequence"`);
    expect(rows.filter((r) => r.event_type === 'milestone.v2.reached')).toHaveLength(old.reached);
    expect(rows.filter((r) => r.event_type === 'milestone.v2.pushed')).toHaveLength(old.pushed);
    expect(rows.every((r) => r.seq === r.ito && r.revision === 2 && r.creator === '' && r.owner === r.instance_id && r.aggregate_id === r.instance_id)).toBe(true);
    const [wrong] = await t.query(`SELECT count(*)::int AS n FROM eventstore.events2 e JOIN projections.milestones m ON m.instance_id = e.instance_id
      AND e.payload->>'type' = (ARRAY['InstanceCreated', 'AuthenticationSucceededOnInstance', 'ProjectCreated', 'ApplicationCreated',
        'AuthenticationSucceededOnApplication', 'InstanceDeleted'])[m.type]
      WHERE e.aggregate_type = 'milestone' AND ((e.event_type = 'milestone.v2.reached' AND (e.payload->>'reachedDate')::timestamptz <> m.reached_date)
        OR (e.event_type = 'milestone.v2.pushed' AND (e.payload->>'pushedDate')::timestamptz <> m.last_pushed_date))`);
    expect(wrong.n).toBe(0);
    const pushes = await t.query(`SELECT instance_id, count(DISTINCT created_at)::int AS n FROM eventstore.events2 WHERE aggregate_type = 'milestone' GROUP BY 1`);
    expect(pushes.every((p) => p.n === 1)).toBe(true);
  });

  it('is deterministic: the same seed gives the same events2', async () => {
    const other = await seeded({ zitadelVersion: 'v2.71' });
    expect((await other.t.query(EVENTS2_HASH))[0].h).toBe((await t.query(EVENTS2_HASH))[0].h);
  });
});

describe('seedLegacy, preset v4 (the newest)', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    ({ t } = await seeded({ zitadelVersion: 'v4' }));
  });

  it('has current_states.in_tx_order, nullable, of events2.in_tx_order\'s type, with its two triggers', async () => {
    const cols = await columns(t, 'projections.current_states');
    expect(cols.at(-1)).toBe('in_tx_order bigint');
    expect(cols).toHaveLength(10);
    expect((await columns(t, 'eventstore.events2')).at(-1)).toBe('in_tx_order bigint NN');
    const triggers = await t.query(`SELECT tgname FROM pg_trigger WHERE tgrelid = 'projections.current_states'::regclass AND NOT tgisinternal ORDER BY 1`);
    expect(triggers).toHaveLength(2);
  });

  it('the triggers clear in_tx_order on an update that does not set it, and keep it on one that does', async () => {
    const c = await t.client();
    await c.query(`BEGIN`);
    await c.query(`INSERT INTO projections.current_states (projection_name, instance_id, "position", in_tx_order) VALUES ('t.x', 'i', 1, 3)`);
    await c.query(`UPDATE projections.current_states SET in_tx_order = 4, "position" = 2 WHERE projection_name = 't.x'`);
    expect((await c.query(`SELECT in_tx_order::int AS v FROM projections.current_states WHERE projection_name = 't.x'`)).rows[0].v).toBe(4);
    await c.query(`UPDATE projections.current_states SET "position" = 3 WHERE projection_name = 't.x'`);
    expect((await c.query(`SELECT in_tx_order AS v FROM projections.current_states WHERE projection_name = 't.x'`)).rows[0].v).toBeNull();
    await c.query(`ROLLBACK`);
  });

  it('records the REF steps, then the newest run\'s (MAIN\'s new steps, 81, 82; config_change unchanged, so not rerun)', async () => {
    const names = await runEventNames(t);
    expect(names).toEqual([...expectedRun(REF_RUN), ...expectedRun(NEWEST_RUN)]);
    expect(names.filter((n) => n.endsWith(' config_change'))).toEqual(['started config_change', 'repeatable.done config_change']);
    expect(names.indexOf('done 82_current_states_in_tx_order')).toBeGreaterThan(names.indexOf('done 47_fill_membership_fields'));
    const [marker] = await t.query(`SELECT count(*)::int AS n FROM projections.current_states WHERE projection_name = 'projections.execution_handler'`);
    expect(marker.n).toBe(INSTANCES);
  });
});

describe('seedLegacy, dataset shapes', () => {
  const distinct = `SELECT count(DISTINCT (instance_id, aggregate_type, aggregate_id))::int AS n FROM eventstore.events`;

  it('--aggregates: about that many distinct aggregates, the same events otherwise', async () => {
    const [natural] = await a.query(distinct);
    const { t } = await seeded({ aggregates: 300 });
    const [folded] = await t.query(distinct);
    expect(natural.n).toBeGreaterThan(800);
    expect(folded.n).toBeGreaterThan(250);
    expect(folded.n).toBeLessThanOrEqual(300);
    const [same] = await t.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE instance_id = '')::int AS system FROM eventstore.events`);
    expect(same).toEqual({ n: EVENTS, system: 22 });
    // The old chaining columns follow the folded aggregates.
    const [wrong] = await t.query(`SELECT count(*)::int AS n FROM (SELECT previous_aggregate_sequence AS pa,
      lag(event_sequence) OVER (PARTITION BY instance_id, aggregate_type, aggregate_id ORDER BY event_sequence) AS ea FROM eventstore.events) x
      WHERE pa IS DISTINCT FROM ea`);
    expect(wrong.n).toBe(0);
  });

  it('--payload-bytes: payloads of about that size; NULL payloads stay NULL', async () => {
    const avg = `SELECT avg(octet_length(event_data::text))::int AS avg, min(octet_length(event_data::text)) AS min,
      count(*) FILTER (WHERE event_data IS NULL)::int AS nulls FROM eventstore.events WHERE instance_id <> ''`;
    const [natural] = await a.query(avg);
    const { t } = await seeded({ payloadBytes: 3000 });
    const [padded] = await t.query(avg);
    expect(natural.avg).toBeLessThan(400);
    expect(padded.avg).toBeGreaterThanOrEqual(2990);
    expect(padded.avg).toBeLessThanOrEqual(3010);
    expect(padded.min).toBeGreaterThanOrEqual(2990);
    expect(padded.nulls).toBe(natural.nulls);
  });

  it('--events-per-tx: events share a creation_date in groups of that size, dates still monotonic', async () => {
    const perTx = `SELECT count(*)::int AS n FROM eventstore.events WHERE instance_id <> '' GROUP BY instance_id, creation_date`;
    const sizes = (await a.query(perTx)).map((r) => r.n);
    expect(new Set(sizes).size).toBeGreaterThan(3);
    const { t } = await seeded({ eventsPerTx: 10 });
    const grouped = (await t.query(perTx)).map((r) => r.n);
    expect(grouped.filter((n) => n !== 10).length).toBeLessThanOrEqual(INSTANCES);
    expect(Math.max(...grouped)).toBe(10);
    const [back] = await t.query(`SELECT count(*)::int AS n FROM (SELECT creation_date AS cd,
      lag(creation_date) OVER (PARTITION BY instance_id ORDER BY event_sequence) AS prev FROM eventstore.events) x WHERE cd < prev`);
    expect(back.n).toBe(0);
  });

  it('refuses impossible shape options with a ConfigError naming each', async () => {
    await expect(seedLegacy(dbA, { events: EVENTS, instances: INSTANCES, payloadBytes: 70_000, eventsPerTx: 0 })).rejects.toThrow(
      /--payload-bytes.*--events-per-tx|--events-per-tx.*--payload-bytes/);
    await expect(seedLegacy(dbA, { events: EVENTS, instances: INSTANCES, zitadelVersion: 'v3' as never })).rejects.toThrow(ConfigError);
  });
});

describe('zsetup seed (the CLI)', () => {
  beforeAll(() => ensureBuilt());

  it('takes --zitadel-version and the shape options, documents them in --help, rejects an unknown preset with exit 2', async () => {
    const help = await runCli(['seed', '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--zitadel-version', '--aggregates', '--payload-bytes', '--events-per-tx', 'v2.38', 'v2.71', 'v4']) expect(help.stdout).toContain(flag);
    const bad = await runCli(['seed', '--zitadel-version', 'v3']);
    expect(bad.code).toBe(2);
    const t = await createTestDatabase('seed');
    extra.push(t);
    const run = await runCli(['seed', '--events', '3000', '--instances', '3', '--zitadel-version', 'v4', '--events-per-tx', '4', '--json', '--database', t.url]);
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out).toMatchObject({ zitadelVersion: 'v4', events: 3000, shape: { eventsPerTx: 4 } });
    expect((await t.query(`SELECT to_regclass('eventstore.events2') IS NOT NULL AS e`))[0].e).toBe(true);
  });
});
