import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { ConfigError, RefusedError } from '../src/errors.js';
import { seedLegacy, type SeedSummary } from '../src/seed/index.js';
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

let a: TestDatabase;
let b: TestDatabase;
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
});

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
    await b.query('DROP SCHEMA eventstore CASCADE; DROP SCHEMA projections CASCADE');
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
