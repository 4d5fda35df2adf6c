/**
 * ZITADEL's own setup bookkeeping, as zsetup leaves it (spec zitadel-handoff.md §1.4, §2, §4.1). The
 * expected events are written out from the spec, not from zsetup's code.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { migrate } from '../src/migrate.js';
import { seedLegacy } from '../src/seed/index.js';
import { loadSteps } from '../steps/index.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

let tdb: TestDatabase;
let database: Database;

beforeAll(async () => {
  tdb = await createTestDatabase('zbook');
  database = await tdb.open();
});
afterAll(() => tdb?.drop());
beforeEach(async () => {
  await tdb.query('DROP SCHEMA IF EXISTS eventstore, projections, zsetup, adminapi, auth CASCADE');
});

/** Log lines of the last run. */
let logs: string[] = [];
/** Log lines and progress with events written (`<step id> wrote`), in order. */
let timeline: string[] = [];

async function run(initProjections = true) {
  logs = [];
  timeline = [];
  const r = await migrate(database, {
    steps: await loadSteps({ initProjections }),
    lockWaitMs: 10_000,
    stepOptions: { concurrency: 2, exact: false },
    version: 'test',
    onEvent: (e) => {
      if (e.type === 'log') {
        logs.push(e.message);
        timeline.push(e.message);
      } else if (e.type === 'step-progress' && e.progress.done > 0) timeline.push(`${e.stepId} wrote`);
    },
  });
  for (const s of r.steps) expect.soft(s.status, `${s.id}: ${JSON.stringify(s.error)}`).toMatch(/succeeded|skipped/);
  return r;
}

interface SystemEvent {
  event_type: string;
  name: string;
  sequence: number;
  revision: number;
  creator: string;
  owner: string;
  payload: unknown;
  epoch_matches: boolean;
  in_tx_order: number;
}

/** The system.migration events in sequence order, as ZITADEL's setup reads them (§2.3). */
async function systemEvents(): Promise<SystemEvent[]> {
  return tdb.query<SystemEvent>(`
    SELECT event_type, payload->>'name' AS name, "sequence"::int AS sequence, revision, creator, owner, payload,
           "position" = EXTRACT(EPOCH FROM created_at) AS epoch_matches, in_tx_order
    FROM eventstore.events2
    WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM' AND event_type LIKE 'system.migration.%'
    ORDER BY "sequence"`);
}

const PROJECTIONS = ['projections.instances', 'projections.orgs1', 'projections.projects4', 'projections.apps7', 'projections.users14', 'projections.milestones3'];

describe('ZITADEL bookkeeping written by migrate --init-projections on a legacy database', () => {
  it('records exactly the covered steps, as ZITADEL pushes them, once', async () => {
    await seedLegacy(database, { events: 3_000, instances: 3 });
    const legacy = await systemEvents().catch(() => []);
    expect(legacy).toEqual([]); // no events2 yet
    const [{ max }] = await tdb.query(`SELECT max(event_sequence)::int AS max FROM eventstore.events WHERE instance_id = '' AND aggregate_type = 'system'`);
    await run();
    const events = await systemEvents();
    const added = events.filter((e) => e.sequence > max);
    // 14 after a move from the legacy table: only `done` (its started push fails without events2).
    // 36 after milestones; 15 and 17 with the bookkeeping DDL; each projection when prefilled.
    const expected: [string, string][] = [
      ['system.migration.done', '14_events_push'],
      ['system.migration.started', '36_fill_v3_milestones'],
      ['system.migration.done', '36_fill_v3_milestones'],
      ['system.migration.started', '15_current_projection_state'],
      ['system.migration.done', '15_current_projection_state'],
      ['system.migration.started', '17_add_offset_col_to_current_states'],
      ['system.migration.done', '17_add_offset_col_to_current_states'],
    ];
    expect(added.slice(0, expected.length).map((e) => [e.event_type, e.name])).toEqual(expected);
    const projectionEvents = added.slice(expected.length);
    // Projections finish side by side: per name a started then a done, in any order between names.
    expect(projectionEvents.map((e) => e.name).sort()).toEqual([...PROJECTIONS, ...PROJECTIONS].sort());
    for (const name of PROJECTIONS) {
      expect(projectionEvents.filter((e) => e.name === name).map((e) => e.event_type)).toEqual(['system.migration.started', 'system.migration.done']);
    }
    // Envelope (§2.1) and payload (§2.2): sequences continue the aggregate without gaps.
    expect(added.map((e) => e.sequence)).toEqual(added.map((_, i) => max + 1 + i));
    for (const e of added) {
      expect(e).toMatchObject({ revision: 1, creator: 'system', owner: 'SYSTEM', epoch_matches: true, payload: { name: e.name } });
      expect(Object.keys(e.payload as object)).toEqual(['name']);
    }
    // A second run records nothing more.
    await run();
    expect((await systemEvents()).length).toBe(events.length);
  });

  it('leaves current_states in the v2 shape (filter_offset, no in_tx_order) and records 17 so ZITADEL never adds it again', async () => {
    await seedLegacy(database, { events: 2_000, instances: 2 });
    await run();
    const cols = await tdb.query(`SELECT column_name, data_type, is_nullable FROM information_schema.columns
                                  WHERE table_schema = 'projections' AND table_name = 'current_states' ORDER BY ordinal_position`);
    expect(cols.map((c) => c.column_name)).toEqual([
      'projection_name', 'instance_id', 'last_updated', 'aggregate_id', 'aggregate_type', 'sequence', 'event_date', 'position', 'filter_offset',
    ]);
    expect(cols.find((c) => c.column_name === 'filter_offset')).toMatchObject({ data_type: 'integer', is_nullable: 'YES' });
  });

  it('records missing bookkeeping on a rerun (a crash between a step and its record, or an older zsetup)', async () => {
    await seedLegacy(database, { events: 2_000, instances: 2 });
    await run();
    const before = await systemEvents();
    await tdb.query(`DELETE FROM eventstore.events2 WHERE instance_id = '' AND aggregate_type = 'system'
                     AND payload->>'name' IN ('14_events_push', 'projections.orgs1', '17_add_offset_col_to_current_states')
                     AND "sequence" > (SELECT max("sequence") - 30 FROM eventstore.events2 WHERE instance_id = '' AND aggregate_type = 'system')`);
    await run();
    const after = await systemEvents();
    const names = (list: SystemEvent[]) => list.filter((e) => e.event_type === 'system.migration.done').map((e) => e.name).sort();
    expect(names(after)).toEqual(names(before));
  });

  it('adds filter_offset where only step 15 ran, and writes in_tx_order where step 82 added it', async () => {
    await seedLegacy(database, { events: 2_000, instances: 2 });
    await run(false);
    // ZITADEL's step 15 shape: no filter_offset.
    await tdb.query(`CREATE TABLE projections.current_states (projection_name TEXT NOT NULL, instance_id TEXT NOT NULL,
      last_updated TIMESTAMPTZ, aggregate_id TEXT, aggregate_type TEXT, "sequence" INT8, event_date TIMESTAMPTZ, "position" DECIMAL,
      PRIMARY KEY (projection_name, instance_id))`);
    await run();
    const [{ n }] = await tdb.query(`SELECT count(*)::int AS n FROM projections.current_states WHERE filter_offset IS NOT NULL`);
    expect(n).toBeGreaterThan(0);
    expect((await systemEvents()).some((e) => e.name === '17_add_offset_col_to_current_states' && e.event_type === 'system.migration.done')).toBe(true);

    // Step 82 (newest ZITADEL): the column exists; zsetup fills it for the states it writes.
    await tdb.query(`DROP SCHEMA projections CASCADE; DELETE FROM zsetup.steps WHERE id LIKE 'projection:%'`);
    await tdb.query(`CREATE SCHEMA projections; CREATE TABLE projections.current_states (projection_name TEXT NOT NULL, instance_id TEXT NOT NULL,
      last_updated TIMESTAMPTZ, aggregate_id TEXT, aggregate_type TEXT, "sequence" INT8, event_date TIMESTAMPTZ, "position" DECIMAL,
      filter_offset INTEGER, in_tx_order INTEGER, PRIMARY KEY (projection_name, instance_id))`);
    await run();
    const states = await tdb.query(`SELECT s.in_tx_order, e.in_tx_order AS expected FROM projections.current_states s
      JOIN eventstore.events2 e ON e.instance_id = s.instance_id AND e.aggregate_type = s.aggregate_type AND e.aggregate_id = s.aggregate_id AND e."sequence" = s."sequence"`);
    expect(states.length).toBeGreaterThan(0);
    for (const s of states) expect(s.in_tx_order).toBe(s.expected);
  });

  it('copies the legacy handler states and failures like step 15, and never continues a projection whose tables were missing', async () => {
    await seedLegacy(database, { events: 3_000, instances: 2 });
    // What ZITADEL's 01_tables left (eventstore.md §2.1), with rows pointing at real legacy events. (The
    // seed makes these tables too; this test writes its own rows, written out here.)
    await tdb.query(`
      DROP TABLE IF EXISTS projections.current_sequences, projections.failed_events;
      DROP SCHEMA IF EXISTS auth, adminapi CASCADE;
      CREATE TABLE projections.current_sequences (projection_name TEXT, aggregate_type TEXT, current_sequence BIGINT, instance_id TEXT, "timestamp" TIMESTAMPTZ);
      CREATE TABLE projections.failed_events (projection_name TEXT, failed_sequence BIGINT, failure_count SMALLINT, error TEXT, instance_id TEXT, last_failed TIMESTAMPTZ);
      CREATE SCHEMA auth;
      CREATE TABLE auth.current_sequences (view_name TEXT, current_sequence BIGINT, instance_id TEXT, last_successful_spooler_run TIMESTAMPTZ);
      CREATE TABLE auth.failed_events (view_name TEXT, failed_sequence BIGINT, failure_count SMALLINT, err_msg TEXT, instance_id TEXT, last_failed TIMESTAMPTZ);
      INSERT INTO projections.current_sequences
        SELECT 'projections.orgs', aggregate_type, event_sequence, instance_id, '2024-01-01T00:00:00Z' FROM eventstore.events
        WHERE aggregate_type = 'org' AND instance_id <> '' ORDER BY event_sequence LIMIT 3;
      INSERT INTO projections.current_sequences
        SELECT 'projections.orgs1', aggregate_type, event_sequence, instance_id, '2024-01-01T00:00:00Z' FROM eventstore.events
        WHERE aggregate_type = 'org' AND instance_id <> '' ORDER BY event_sequence DESC LIMIT 1;
      INSERT INTO auth.current_sequences
        SELECT 'auth.users2', max(event_sequence), instance_id, '2024-01-02T00:00:00Z' FROM eventstore.events WHERE instance_id <> '' GROUP BY instance_id;
      INSERT INTO auth.failed_events
        SELECT 'auth.users2', event_sequence, 3, 'boom', instance_id, '2024-01-03T00:00:00Z' FROM eventstore.events
        WHERE aggregate_type = 'user' ORDER BY event_sequence LIMIT 1;`);
    const [last] = await tdb.query(`SELECT instance_id, event_sequence FROM eventstore.events WHERE aggregate_type = 'org' AND instance_id <> '' ORDER BY event_sequence DESC LIMIT 1`);
    await run();
    // projections.orgs: the state of its highest sequence per instance, with that event's time and position.
    const orgs = await tdb.query(`
      SELECT s.instance_id, s.event_date = e.created_at AND s."position" = e."position" AS matches, s.last_updated, s.aggregate_id, s.filter_offset
      FROM projections.current_states s
      JOIN projections.current_sequences cs ON cs.projection_name = s.projection_name AND cs.instance_id = s.instance_id
      JOIN eventstore.events2 e ON e.instance_id = cs.instance_id AND e.aggregate_type = cs.aggregate_type AND e."sequence" = cs.current_sequence
      WHERE s.projection_name = 'projections.orgs'
        AND cs.current_sequence = (SELECT max(current_sequence) FROM projections.current_sequences c2 WHERE c2.projection_name = cs.projection_name AND c2.instance_id = cs.instance_id)`);
    expect(orgs.length).toBeGreaterThan(0);
    for (const o of orgs) expect(o).toMatchObject({ matches: true, aggregate_id: null, filter_offset: null });
    expect(new Date(orgs[0].last_updated).toISOString()).toBe('2024-01-01T00:00:00.000Z');
    expect((await tdb.query(`SELECT count(*)::int AS n FROM projections.current_states WHERE projection_name = 'auth.users2'`))[0].n).toBe(2);
    expect(await tdb.query(`SELECT projection_name, failure_count, error FROM projections.failed_events2 WHERE projection_name = 'auth.users2'`))
      .toEqual([{ projection_name: 'auth.users2', failure_count: 3, error: 'boom' }]);
    // projections.orgs1 had a legacy state but no table: zsetup created the table and prefilled it whole,
    // from the first event, not from the legacy position (which would have left the earlier orgs out).
    const [{ n: orgRows }] = await tdb.query(`SELECT count(*)::int AS n FROM projections.orgs1 WHERE instance_id = $1`, [last.instance_id]);
    const [{ n: orgAdded }] = await tdb.query(
      `SELECT count(DISTINCT aggregate_id)::int AS n FROM eventstore.events2 WHERE instance_id = $1 AND event_type = 'org.added'
         AND aggregate_id NOT IN (SELECT aggregate_id FROM eventstore.events2 WHERE instance_id = $1 AND event_type = 'org.removed')`, [last.instance_id]);
    expect(orgRows).toBe(orgAdded);
    expect(orgRows).toBeGreaterThan(0);
  });

  it('rebuilds a projection that lacks one of its tables instead of continuing with the new table empty', async () => {
    await seedLegacy(database, { events: 3_000, instances: 2 });
    await run();
    // A first prefill creates every table: nothing to rebuild, nothing said about it.
    expect(logs.filter((l) => /prefilled again/.test(l))).toEqual([]);
    const humans = await tdb.query(`SELECT * FROM projections.users14_humans ORDER BY instance_id, user_id`);
    expect(humans.length).toBeGreaterThan(0);
    await tdb.query(`DROP TABLE projections.users14_humans`);
    await run();
    expect(logs.filter((l) => /prefilled again/.test(l))).toEqual(['projections.users14 lacked some of its tables: it is prefilled again from the start']);
    // Said before the projection writes anything, not after its prefill.
    const said = timeline.indexOf('projections.users14 lacked some of its tables: it is prefilled again from the start');
    const wrote = timeline.indexOf('projection:projections.users14 wrote');
    expect(wrote).toBeGreaterThan(-1);
    expect(said).toBeLessThan(wrote);
    expect(await tdb.query(`SELECT * FROM projections.users14_humans ORDER BY instance_id, user_id`)).toEqual(humans);
  });

  it('writes no rows and no positions for a removed instance', async () => {
    // With 3 or more instances the seed removes the last one.
    await seedLegacy(database, { events: 3_000, instances: 3 });
    await run();
    const removed = await tdb.query(`SELECT DISTINCT instance_id FROM eventstore.events2 WHERE event_type = 'instance.removed'`);
    expect(removed.length).toBe(1);
    const id = removed[0].instance_id;
    // (Legacy handler states the step-15 copy brings over keep their rows, as in ZITADEL.)
    expect(await tdb.query(`SELECT projection_name FROM projections.current_states WHERE instance_id = $1 AND projection_name = ANY($2)`, [id, PROJECTIONS])).toEqual([]);
    expect(await tdb.query(`SELECT * FROM projections.milestones3 WHERE instance_id = $1`, [id])).toEqual([]);
    // The other instances have positions.
    const [{ n }] = await tdb.query(`SELECT count(DISTINCT instance_id)::int AS n FROM projections.current_states WHERE projection_name = 'projections.orgs1'`);
    expect(n).toBe(2);
  });
});

describe('status lists ZITADEL\'s own steps', () => {
  it('shows what zsetup recorded and what ZITADEL\'s setup will still run', async () => {
    const { getStatus } = await import('../src/status.js');
    await seedLegacy(database, { events: 2_000, instances: 2 });
    await run();
    const status = await getStatus(database, await loadSteps({ initProjections: true }));
    const byName = new Map(status.zitadel.map((z) => [z.name, z]));
    for (const name of ['14_events_push', '15_current_projection_state', '17_add_offset_col_to_current_states', '36_fill_v3_milestones', 'projections.users14']) {
      expect(byName.get(name), name).toMatchObject({ recorded: 'done', pending: false, owner: 'zsetup' });
    }
    // Left to ZITADEL, not recorded: its setup runs them.
    expect(byName.get('40_init_push_func_v4')).toMatchObject({ recorded: null, pending: true, owner: 'zitadel' });
    expect(byName.get('projection_tables')).toMatchObject({ recorded: null, pending: true, owner: 'zitadel' });
  });
});

describe('bookkeeping tables of a shape no ZITADEL version leaves', () => {
  it('is refused with exit 5 and the columns found, before anything is written', async () => {
    await seedLegacy(database, { events: 2_000, instances: 2 });
    await run(false);
    await tdb.query(`CREATE TABLE projections.current_states (projection_name TEXT NOT NULL, instance_id TEXT NOT NULL,
      last_updated TIMESTAMPTZ, aggregate_type TEXT, "sequence" INT8, event_date TIMESTAMPTZ, "position" DECIMAL, owner_id TEXT NOT NULL,
      PRIMARY KEY (projection_name, instance_id))`);
    const before = await systemEvents();
    // Refused while the runner weighs the projections, before any of them runs (RefusedError: exit 5).
    const refused = await migrate(database, { steps: await loadSteps({ initProjections: true }), lockWaitMs: 10_000, stepOptions: { concurrency: 2, exact: false }, version: 'test' })
      .then((r) => r.steps.find((s) => s.status === 'failed')?.error, (err) => err);
    expect(refused).toMatchObject({ exitCode: 5 });
    expect(refused.message).toMatch(/current_states lacks column\(s\) aggregate_id and has NOT NULL column\(s\) without default owner_id/);
    expect(await systemEvents()).toEqual(before);
    expect(await tdb.query(`SELECT to_regclass('projections.failed_events2') AS t`)).toEqual([{ t: null }]);
  });
});

describe('tables created where later ZITADEL steps are already recorded', () => {
  it('carry those steps\' columns and indexes (25 on users14_notifications, 48 on apps7_saml_configs)', async () => {
    await seedLegacy(database, { events: 2_000, instances: 2 });
    await run(false);
    // ZITADEL recorded 25 and 48 done (they did nothing: the tables did not exist yet), and never runs them again.
    const { recordMigrations } = await import('../src/zitadel/migrations.js');
    await recordMigrations(database.pool, [{ name: '25_user14_add_lower_fields_to_verified_email' }, { name: '48_apps7_saml_configs_login_version' }]);
    await run();
    const cols = await tdb.query(`SELECT table_name, column_name, is_generated, generation_expression FROM information_schema.columns
      WHERE table_schema = 'projections' AND column_name IN ('verified_email_lower', 'login_version', 'login_base_uri') ORDER BY 1, 2`);
    expect(cols.map((c) => `${c.table_name}.${c.column_name}`)).toEqual([
      'apps7_oidc_configs.login_base_uri', 'apps7_oidc_configs.login_version',
      'apps7_saml_configs.login_base_uri', 'apps7_saml_configs.login_version', 'users14_notifications.verified_email_lower',
    ]);
    expect(cols.find((c) => c.column_name === 'verified_email_lower')).toMatchObject({ is_generated: 'ALWAYS', generation_expression: 'lower(verified_email)' });
    expect(await tdb.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'users14_notifications_email_search'`)).toEqual([
      { indexdef: 'CREATE INDEX users14_notifications_email_search ON projections.users14_notifications USING btree (instance_id, verified_email_lower)' },
    ]);
  });
});
