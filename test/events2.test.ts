import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { EXIT } from '../src/errors.js';
import { verifyEvents2 } from '../src/events2/verify.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { DIFFERENCE_SQL, MOVED_EVENTS2, run, seedAwkwardLegacy } from './events2-support.js';

let tdb: TestDatabase | undefined;
afterEach(async () => {
  await tdb?.drop();
  tdb = undefined;
});

async function fresh(): Promise<{ tdb: TestDatabase; database: Database }> {
  tdb = await createTestDatabase('ev2');
  return { tdb, database: await tdb.open() };
}

/** The final shape, as the catalog describes it. */
async function shape(t: TestDatabase) {
  const columns = await t.query(`
    SELECT column_name, data_type, is_nullable FROM information_schema.columns
    WHERE table_schema = 'eventstore' AND table_name = 'events2' ORDER BY ordinal_position`);
  const indexes = await t.query(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'eventstore' AND tablename = 'events2' ORDER BY indexname`);
  const constraints = await t.query(`
    SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
    WHERE conrelid = 'eventstore.events2'::regclass AND contype IN ('p', 'u') ORDER BY conname`);
  const invalid = await t.query(`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'eventstore.events2'::regclass AND NOT indisvalid`);
  return { columns: columns.map((c) => `${c.column_name} ${c.data_type}${c.is_nullable === 'NO' ? ' not null' : ''}`), indexes, constraints, invalid: invalid[0].n };
}

const FINAL_COLUMNS = [
  'instance_id text not null', 'aggregate_type text not null', 'aggregate_id text not null', 'event_type text not null',
  'sequence bigint not null', 'revision smallint not null', 'created_at timestamp with time zone not null', 'payload jsonb',
  'creator text not null', 'owner text not null', 'position numeric not null', 'in_tx_order integer not null',
];
const FINAL_INDEXES = [
  { indexname: 'es_active_instances', indexdef: 'CREATE INDEX es_active_instances ON eventstore.events2 USING btree (created_at DESC, instance_id)' },
  { indexname: 'es_projection', indexdef: 'CREATE INDEX es_projection ON eventstore.events2 USING btree (instance_id, aggregate_type, event_type, "position")' },
  { indexname: 'es_wm', indexdef: 'CREATE INDEX es_wm ON eventstore.events2 USING btree (aggregate_id, instance_id, aggregate_type, event_type)' },
  { indexname: 'events2_pkey', indexdef: 'CREATE UNIQUE INDEX events2_pkey ON eventstore.events2 USING btree (instance_id, aggregate_type, aggregate_id, sequence)' },
];
const FINAL_CONSTRAINTS = [{ conname: 'events2_pkey', def: 'PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence)' }];

async function expectFinalShape(t: TestDatabase) {
  expect(await shape(t)).toEqual({ columns: FINAL_COLUMNS, indexes: FINAL_INDEXES, constraints: FINAL_CONSTRAINTS, invalid: 0 });
}

describe('events2 step on a legacy database', () => {
  it('renames the old table, copies every awkward row exactly, builds the final shape and verifies', async () => {
    const { tdb: t, database } = await fresh();
    const total = await seedAwkwardLegacy(t);
    const result = await run(database);
    expect(result.steps[0].error).toBeUndefined();
    expect(result.steps[0].status).toBe('succeeded');
    expect(result.steps[0].summary).toMatchObject({ events: total, instances: 4, verified: true });
    const tables = await t.query(`SELECT to_regclass('eventstore.events')::text AS legacy, to_regclass('eventstore.events_old')::text AS old,
      to_regclass('zsetup.events2_chunks')::text AS chunks, (SELECT count(*)::int FROM (${MOVED_EVENTS2}) m) AS n, (SELECT count(*)::int FROM eventstore.events_old) AS old_n`);
    expect(tables[0]).toEqual({ legacy: null, old: 'eventstore.events_old', chunks: null, n: total, old_n: total });
    expect((await t.query(DIFFERENCE_SQL))[0]).toEqual({ missing: 0, extra: 0 });
    await expectFinalShape(t);
    // Spot checks of the mapping, independent of the mapping SQL.
    const spot = await t.query(`
      SELECT revision, "position"::text AS position, in_tx_order, "sequence", created_at = timestamptz '1999-12-31 23:59:59.999999+00' AS same_date
      FROM eventstore.events2 WHERE event_type = 'instance.added'`);
    expect(spot).toEqual([{ revision: 32767, position: '946684799.999999', in_tx_order: 601, sequence: 601, same_date: true }]);
    const system = await t.query(`SELECT revision, payload FROM (${MOVED_EVENTS2}) m WHERE instance_id = '' ORDER BY "sequence"`);
    expect(system).toEqual([{ revision: 1, payload: { name: '01_tables' } }, { revision: 1, payload: { name: '01_tables' } }, { revision: 10, payload: null }]);
    const analyzed = await t.query(`SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL AS yes FROM pg_stat_user_tables WHERE relid = 'eventstore.events2'::regclass`);
    expect(analyzed[0].yes).toBe(true);
    // Autovacuum was off while the table filled and is back to the server's default.
    expect((await t.query(`SELECT reloptions FROM pg_class WHERE oid = 'eventstore.events2'::regclass`))[0].reloptions).toBeNull();
    // A second run is a no-op.
    expect((await run(database)).steps[0].status).toBe('skipped');
  });

  it('refuses rows the mapping cannot take, naming them, with nothing written', async () => {
    const { tdb: t, database } = await fresh();
    await seedAwkwardLegacy(t, 50);
    await t.query(`
      INSERT INTO eventstore.events (event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence, event_data, editor_user, editor_service, resource_owner, instance_id)
      VALUES ('x.added', 'x', 'x1', 'version1', 900, NULL, 'u', 'zitadel', 'o', 'inst-bad'),
             ('x.added', 'x', 'x1', 'v99999', 901, NULL, 'u', 'zitadel', 'o', 'inst-bad'),
             ('x.added', 'x', 'x1', 'v2', 3000000000, NULL, 'u', 'zitadel', 'o', 'inst-big')`);
    const result = await run(database);
    const step = result.steps[0];
    expect(step.status).toBe('failed');
    expect(step.error?.exitCode).toBe(EXIT.refused);
    expect(step.error?.message).toContain("instance 'inst-bad' sequence 900 aggregate_version 'version1'");
    expect(step.error?.message).toContain("instance 'inst-bad' sequence 901 aggregate_version 'v99999'");
    expect(step.error?.message).toContain("instance 'inst-big' sequence 3000000000");
    const tables = await t.query(`SELECT to_regclass('eventstore.events')::text AS legacy, to_regclass('eventstore.events_old')::text AS old,
      to_regclass('eventstore.events2')::text AS events2, to_regclass('zsetup.events2_chunks')::text AS chunks`);
    expect(tables[0]).toEqual({ legacy: 'eventstore.events', old: null, events2: null, chunks: null });
    expect((await t.query(`SELECT to_regclass('zsetup.events2_digests')::text AS digests`))[0]).toEqual({ digests: null });
  });

  it('refuses before the rename when the role lacks ownership and CREATE, listing both', async () => {
    const { tdb: t } = await fresh();
    await seedAwkwardLegacy(t, 10);
    const role = `${t.name}_low`;
    await t.query(`CREATE ROLE ${role} LOGIN PASSWORD 'low'; GRANT USAGE ON SCHEMA eventstore TO ${role};
      GRANT SELECT ON eventstore.events TO ${role}; GRANT CREATE ON DATABASE ${t.name} TO ${role}`);
    try {
      const url = new URL(t.url);
      url.username = role;
      url.password = 'low';
      const { openDatabase } = await import('../src/db/connection.js');
      const low = await openDatabase({ kind: 'url', url: url.toString() }, { statementTimeoutMs: 0, lockTimeoutMs: 30_000, maxConnections: 4 });
      try {
        // The runner's preflight asks the step before anything runs and refuses listing both.
        const refused = await run(low).then(() => ({}) as { exitCode?: number; message?: string }, (e: unknown) => e as { exitCode?: number; message?: string });
        expect(refused.exitCode).toBe(EXIT.refused);
        expect(refused.message).toMatch(/events2: ownership of eventstore\.events [\s\S]*events2: CREATE on schema eventstore/);
      } finally {
        await low.close();
      }
      expect((await t.query(`SELECT to_regclass('eventstore.events')::text AS t`))[0].t).toBe('eventstore.events');
    } finally {
      await t.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('verify names the instances of a damaged copy', async () => {
    const { tdb: t, database } = await fresh();
    await seedAwkwardLegacy(t, 100);
    expect((await run(database)).steps[0].status).toBe('succeeded');
    // verifyEvents2 compares whole tables: without the bookkeeping events the runner appended.
    await t.query(`DELETE FROM eventstore.events2 e WHERE NOT EXISTS (SELECT 1 FROM (${MOVED_EVENTS2}) m WHERE m.instance_id = e.instance_id
      AND m.aggregate_type = e.aggregate_type AND m.aggregate_id = e.aggregate_id AND m."sequence" = e."sequence")`);
    expect(await verifyEvents2(database)).toMatchObject({ status: 'equal', instances: 4, mismatches: [] });
    await t.query(`DELETE FROM eventstore.events2 WHERE instance_id = 'inst-b' AND "sequence" = 17`);
    await t.query(`UPDATE eventstore.events2 SET payload = '{"tampered": true}' WHERE instance_id = 'ïnst ☃ ü' AND "sequence" = 20`);
    const result = await verifyEvents2(database);
    expect(result.status).toBe('mismatch');
    if (result.status !== 'mismatch') return;
    expect(result.mismatches).toEqual([
      { instanceId: 'inst-b', oldEvents: 100, events2Events: 99, hashesEqual: false },
      { instanceId: 'ïnst ☃ ü', oldEvents: 100, events2Events: 100, hashesEqual: false },
    ]);
  });
});

describe('events2 step on other databases', () => {
  it('creates the complete table on a fresh database', async () => {
    const { tdb: t, database } = await fresh();
    const step = (await run(database)).steps[0];
    expect(step.status).toBe('succeeded');
    expect(step.summary?.message).toMatch(/fresh database/);
    await expectFinalShape(t);
    expect((await t.query(`SELECT count(*)::int AS n FROM (${MOVED_EVENTS2}) m`))[0].n).toBe(0);
  });

  it('touches nothing when events2 is already complete', async () => {
    const { tdb: t, database } = await fresh();
    expect((await run(database)).steps[0].status).toBe('succeeded');
    await t.query(`DELETE FROM zsetup.steps`);
    const before = await t.query(`SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'eventstore'::regnamespace ORDER BY relname`);
    const step = (await run(database)).steps[0];
    expect(step.status).toBe('succeeded');
    expect(step.summary).toMatchObject({ alreadyDone: true });
    // The first run recorded ZITADEL's 14_events_push as done, which is also what makes it done.
    expect(step.summary?.message).toMatch(/already done: (eventstore.events2 is complete|the reference system's setup recorded 14_events_push)/);
    expect(await t.query(`SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'eventstore'::regnamespace ORDER BY relname`)).toEqual(before);
  });

  it('touches nothing when the reference setup recorded 14_events_push as done', async () => {
    const { tdb: t, database } = await fresh();
    await seedAwkwardLegacy(t, 20);
    // The reference's copy, recorded done, but (as its rerun skip allows) without indexes.
    await t.query(`ALTER TABLE eventstore.events RENAME TO events_old;
      CREATE TABLE eventstore.events2 AS SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence AS "sequence",
        substr(aggregate_version, 2)::smallint AS revision, creation_date AS created_at, event_data AS payload, editor_user AS creator,
        resource_owner AS owner, EXTRACT(EPOCH FROM creation_date) AS "position", event_sequence AS in_tx_order FROM eventstore.events_old;
      INSERT INTO eventstore.events2 VALUES ('', 'system', 'SYSTEM', 'system.migration.done', 99, 1, now(), '{"name": "14_events_push"}', 'system', 'SYSTEM', 1, 0)`);
    const step = (await run(database)).steps[0];
    expect(step.status).toBe('succeeded');
    expect(step.summary?.message).toMatch(/14_events_push/);
    expect((await t.query(`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'eventstore.events2'::regclass`))[0].n).toBe(0);
  });
});
