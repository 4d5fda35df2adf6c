import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { EXIT } from '../src/errors.js';
import { planMigrate } from '../src/plan.js';
import { events2Step } from '../steps/01-events2.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { crashingStep, DIFFERENCE_SQL, MOVED_EVENTS2, offlineStep, run, seedAwkwardLegacy, type CrashPoint } from './events2-support.js';

let tdb: TestDatabase | undefined;
afterEach(async () => {
  await tdb?.drop();
  tdb = undefined;
});

async function legacy(perInstance = 300): Promise<{ t: TestDatabase; database: Database; total: number }> {
  tdb = await createTestDatabase('ev2r');
  const total = await seedAwkwardLegacy(tdb, perInstance);
  return { t: tdb, database: await tdb.open(), total };
}

async function expectComplete(t: TestDatabase, total: number) {
  expect((await t.query(DIFFERENCE_SQL))[0]).toEqual({ missing: 0, extra: 0 });
  const r = await t.query(`
    SELECT (SELECT count(*)::int FROM (${MOVED_EVENTS2}) m) AS n,
           (SELECT count(*)::int FROM pg_index WHERE indrelid = 'eventstore.events2'::regclass AND indisvalid) AS valid_indexes,
           (SELECT count(*)::int FROM pg_constraint WHERE conname = 'events2_pkey') AS pk,
           to_regclass('zsetup.events2_chunks')::text AS chunks,
           to_regclass('zsetup.events2_digests')::text AS digests`);
  expect(r[0]).toEqual({ n: total, valid_indexes: 4, pk: 1, chunks: null, digests: null });
}

describe('events2 step, offline (--offline): crash and resume', () => {
  const points: [string, CrashPoint][] = [
    ['inside the cut-off transaction', { phase: '', inTransaction: 1 }],
    ['inside the 3rd chunk of the copy', { phase: 'copy', inTransaction: 3 }],
    ['after some chunks, between units', { phase: 'index', onPhase: true }],
    ['inside the first index build', { phase: 'index', inTransaction: 1 }],
    ['before ANALYZE', { phase: 'analyze', onPhase: true }],
    ['before verify', { phase: 'verify', onPhase: true }],
  ];
  for (const [name, point] of points) {
    it(`finishes with an exact copy after a crash ${name}`, async () => {
      const { t, database, total } = await legacy();
      const crashed = (await run(database, [crashingStep(point, offlineStep)])).steps[0];
      expect(crashed.status).toBe('failed');
      expect(crashed.error?.message).toContain('simulated crash');
      if (point.phase === 'copy') {
        // Only whole chunks are in events2, each marked copied, never one twice.
        const r = await t.query(`SELECT (SELECT count(*)::int FROM eventstore.events2) AS n,
          (SELECT coalesce(sum(events), 0)::int FROM zsetup.events2_chunks WHERE copied_at IS NOT NULL) AS marked,
          (SELECT count(*)::int FROM zsetup.events2_chunks) AS chunks`);
        expect(r[0].n).toBe(r[0].marked);
        expect(r[0].n).toBeLessThan(total);
        expect(r[0].chunks).toBeGreaterThan(3);
        // The digests survive with exactly the committed chunks: per chunk their counts equal its mark,
        // and per instance they count what events2 holds; the chunk in flight left none.
        const digests = await t.query(`SELECT
          (SELECT count(*)::int FROM zsetup.events2_chunks c WHERE (c.copied_at IS NOT NULL) <> EXISTS (SELECT 1 FROM zsetup.events2_digests d WHERE d.chunk = c.chunk)) AS unmatched_chunks,
          (SELECT count(*)::int FROM zsetup.events2_chunks c WHERE c.copied_at IS NOT NULL
             AND c.events <> (SELECT sum(events) FROM zsetup.events2_digests d WHERE d.chunk = c.chunk)) AS wrong_counts,
          (SELECT count(*)::int FROM (SELECT instance_id, sum(events) AS n FROM zsetup.events2_digests GROUP BY 1) d
             FULL JOIN (SELECT instance_id, count(*) AS n FROM eventstore.events2 GROUP BY 1) e USING (instance_id)
             WHERE d.n IS DISTINCT FROM e.n) AS wrong_instances`);
        expect(digests[0]).toEqual({ unmatched_chunks: 0, wrong_counts: 0, wrong_instances: 0 });
      }
      if (point.phase === '') {
        const r = await t.query(`SELECT to_regclass('eventstore.events')::text AS legacy, to_regclass('eventstore.events2')::text AS e2`);
        expect(r[0]).toEqual({ legacy: 'eventstore.events', e2: null });
      }
      const resumed = (await run(database, [offlineStep])).steps[0];
      expect(resumed.error).toBeUndefined();
      expect(resumed.status).toBe('succeeded');
      expect(resumed.summary).toMatchObject({ events: total, verified: true });
      await expectComplete(t, total);
    });
  }

  it('checks events2 against the digests stored by the copy, naming a changed instance, and keeps them for the rerun', async () => {
    const { t, database } = await legacy(100);
    expect((await run(database, [crashingStep({ phase: 'verify', onPhase: true }, offlineStep)])).steps[0].status).toBe('failed');
    const victim = (await t.query(`SELECT instance_id FROM eventstore.events2 WHERE instance_id <> '' ORDER BY instance_id LIMIT 1`))[0].instance_id;
    await t.query(`UPDATE eventstore.events2 SET payload = '{"changed": true}'
      WHERE ctid = (SELECT min(ctid) FROM eventstore.events2 WHERE instance_id = '${victim}')`);
    const step = (await run(database, [offlineStep])).steps[0];
    expect(step.status).toBe('failed');
    expect(step.error?.exitCode).toBe(EXIT.verifyMismatch);
    expect(step.error?.message).toMatch(new RegExp(`1 instance\\(s\\): instance '${victim}': (\\d+) event\\(s\\) in events_old, \\1 in events2, contents differ$`));
    expect((await t.query(`SELECT to_regclass('zsetup.events2_digests')::text AS d`))[0].d).toBe('zsetup.events2_digests');
  });

  it('uses the digests instead of re-reading events_old: a digest that disagrees with the copy fails the step', async () => {
    const { t, database } = await legacy(100);
    expect((await run(database, [crashingStep({ phase: 'verify', onPhase: true }, offlineStep)])).steps[0].status).toBe('failed');
    const victim = (await t.query(`SELECT instance_id FROM zsetup.events2_digests ORDER BY instance_id DESC LIMIT 1`))[0].instance_id;
    await t.query(`UPDATE zsetup.events2_digests SET hash = hash + 1 WHERE (chunk, instance_id) = (SELECT min(chunk), '${victim}' FROM zsetup.events2_digests WHERE instance_id = '${victim}')`);
    const step = (await run(database, [offlineStep])).steps[0];
    expect(step.error?.exitCode).toBe(EXIT.verifyMismatch);
    expect(step.error?.message).toContain(`instance '${victim}'`);
    // With the digest table gone, the check falls back to reading events_old in full, which agrees.
    await t.query(`DROP TABLE zsetup.events2_digests`);
    const rerun = (await run(database, [offlineStep])).steps[0];
    expect(rerun.error).toBeUndefined();
    expect(rerun.status).toBe('succeeded');
  });

  it('drops an index left invalid by an interrupted CONCURRENTLY build and rebuilds it', async () => {
    const { t, database, total } = await legacy(100);
    expect((await run(database, [crashingStep({ phase: 'index', onPhase: true }, offlineStep)])).steps[0].status).toBe('failed');
    // What a killed CREATE INDEX CONCURRENTLY leaves behind: an invalid index of that name.
    await t.query(`CREATE UNIQUE INDEX CONCURRENTLY es_wm ON eventstore.events2 (instance_id)`).catch(() => {});
    expect((await t.query(`SELECT indisvalid FROM pg_index WHERE indexrelid = 'eventstore.es_wm'::regclass`))[0].indisvalid).toBe(false);
    expect((await run(database, [offlineStep])).steps[0].status).toBe('succeeded');
    const r = await t.query(`SELECT indisvalid, pg_get_indexdef(indexrelid) AS def FROM pg_index WHERE indexrelid = 'eventstore.es_wm'::regclass`);
    expect(r[0]).toEqual({ indisvalid: true, def: 'CREATE INDEX es_wm ON eventstore.events2 USING btree (aggregate_id, instance_id, aggregate_type, event_type)' });
    await expectComplete(t, total);
  });

  it('resumes after an earlier tool renamed the table but never copied', async () => {
    const { t, database, total } = await legacy(100);
    await t.query(`ALTER TABLE eventstore.events RENAME TO events_old`);
    expect((await run(database, [offlineStep])).steps[0].status).toBe('succeeded');
    await expectComplete(t, total);
  });

  it("completes the reference tool's full but unindexed copy once it verifies equal", async () => {
    const { t, database, total } = await legacy(100);
    await t.query(`ALTER TABLE eventstore.events RENAME TO events_old;
      CREATE TABLE eventstore.events2 AS SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence AS "sequence",
        substr(aggregate_version, 2)::smallint AS revision, creation_date AS created_at, event_data AS payload, editor_user AS creator,
        resource_owner AS owner, EXTRACT(EPOCH FROM creation_date) AS "position", event_sequence AS in_tx_order FROM eventstore.events_old`);
    const step = (await run(database, [offlineStep])).steps[0];
    expect(step.error).toBeUndefined();
    expect(step.status).toBe('succeeded');
    await expectComplete(t, total);
    const r = await t.query(`SELECT data_type FROM information_schema.columns WHERE table_schema = 'eventstore' AND table_name = 'events2' AND column_name = 'in_tx_order'`);
    expect(r[0].data_type).toBe('integer');
  });

  it('refuses a partial copy it did not make, and changes nothing', async () => {
    const { t, database } = await legacy(100);
    await t.query(`ALTER TABLE eventstore.events RENAME TO events_old;
      CREATE TABLE eventstore.events2 AS SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence AS "sequence",
        substr(aggregate_version, 2)::smallint AS revision, creation_date AS created_at, event_data AS payload, editor_user AS creator,
        resource_owner AS owner, EXTRACT(EPOCH FROM creation_date) AS "position", event_sequence::integer AS in_tx_order
        FROM eventstore.events_old WHERE instance_id <> 'inst-b'`);
    const step = (await run(database, [offlineStep])).steps[0];
    expect(step.error?.exitCode).toBe(EXIT.refused);
    expect(step.error?.message).toContain("instance 'inst-b': 100 event(s) in events_old, 0 in events2");
    expect(step.error?.hint).toContain('DROP TABLE eventstore.events2');
    expect((await t.query(`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'eventstore.events2'::regclass`))[0].n).toBe(0);
  });

  it('refuses an events2 with rows but no primary key when events_old is gone', async () => {
    const { t, database } = await legacy(20);
    await t.query(`CREATE TABLE eventstore.events2 AS SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence AS "sequence",
        substr(aggregate_version, 2)::smallint AS revision, creation_date AS created_at, event_data AS payload, editor_user AS creator,
        resource_owner AS owner, EXTRACT(EPOCH FROM creation_date) AS "position", event_sequence::integer AS in_tx_order FROM eventstore.events;
      DROP TABLE eventstore.events`);
    const step = (await run(database, [offlineStep])).steps[0];
    expect(step.error?.exitCode).toBe(EXIT.refused);
    expect(step.error?.message).toMatch(/has rows but lacks its primary key.*no eventstore.events_old/);
  });
});

describe('events2 dry-run', () => {
  async function snapshot(t: TestDatabase) {
    const catalog = await t.query(`SELECT relname, relfilenode, relkind FROM pg_class WHERE relnamespace IN ('eventstore'::regnamespace) OR relname LIKE 'events2%' ORDER BY relname`);
    const schemas = await t.query(`SELECT nspname FROM pg_namespace ORDER BY nspname`);
    // Table statistics are flushed by the backends within a second: wait so earlier writes are in.
    await new Promise((r) => setTimeout(r, 1200));
    const stats = await t.query(`SELECT pg_stat_clear_snapshot(); SELECT tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()`);
    return { catalog, schemas, stats };
  }

  it('reports a legacy move with the exact count and sizes, writing nothing', async () => {
    const { t, database, total } = await legacy(200);
    const before = await snapshot(t);
    const plan = await planMigrate(database, { steps: [offlineStep], stepOptions: { concurrency: 2, exact: true } });
    const report = plan.steps[0];
    expect(report.error).toBeUndefined();
    expect(report.plan?.action).toMatch(/^legacy database: rename eventstore.events to events_old/);
    expect(report.plan?.willChange).toBe(true);
    expect(report.plan?.details).toMatchObject({ source: 'eventstore.events', events: total, eventsCounted: 'exact' });
    expect(report.plan?.details.sourceTableBytes).toBeGreaterThan(0);
    expect(report.plan?.details.events2TableBytesEstimate).toBeGreaterThan(0);
    expect(report.plan?.details.diskNeededBytesEstimate).toBeGreaterThan(0);
    expect(report.plan?.estimatedSeconds).toBeGreaterThanOrEqual(0);
    const estimate = await planMigrate(database, { steps: [offlineStep], stepOptions: { concurrency: 2, exact: false } });
    expect(estimate.steps[0].plan?.details.eventsCounted).toBe('estimate');
    expect(estimate.steps[0].plan?.details.events).toBeGreaterThan(total / 2);
    expect(estimate.steps[0].plan?.details.events).toBeLessThan(total * 2);
    const after = await snapshot(t);
    expect(after.catalog).toEqual(before.catalog);
    expect(after.schemas).toEqual(before.schemas);
    expect(after.stats).toEqual(before.stats);
  });

  it('reports fresh and already-done databases', async () => {
    tdb = await createTestDatabase('ev2p');
    const database = await tdb.open();
    const plan = async () => (await planMigrate(database, { steps: [events2Step], stepOptions: { concurrency: 2, exact: false } })).steps[0];
    expect((await plan()).plan).toMatchObject({ willChange: true, action: expect.stringMatching(/^fresh database/) });
    await run(database);
    await tdb.query('DELETE FROM zsetup.steps');
    expect((await plan()).plan).toMatchObject({ willChange: false, action: expect.stringMatching(/^already done/) });
  });
});

const cli = new URL('../bin/zsetup.js', import.meta.url).pathname;
describe.skipIf(!fs.existsSync(new URL('../dist/src/cli/commands/verify.js', import.meta.url)))('zsetup verify (built CLI)', () => {
  it('exits 0 with nothing to verify, 0 when equal and 4 on a mismatch', async () => {
    const { t, database } = await legacy(50);
    const verify = () => promisify(execFile)(process.execPath, [cli, 'verify', '-d', t.url, '--json']).then(
      (r) => ({ code: 0, out: JSON.parse(r.stdout), err: r.stderr }),
      (e) => ({ code: e.code as number, out: JSON.parse(e.stdout), err: e.stderr as string }));
    const nothing = await verify();
    expect(nothing).toMatchObject({ code: 0, out: { status: 'nothing-to-verify' } });
    expect((await run(database, [offlineStep])).steps[0].status).toBe('succeeded');
    expect(await verify()).toMatchObject({ code: 0, out: { status: 'equal', events: 154, instances: 4 } });
    await t.query(`DELETE FROM eventstore.events2 WHERE instance_id = 'inst-a' AND "sequence" = 3`);
    const bad = await verify();
    expect(bad).toMatchObject({ code: 4, out: { status: 'mismatch', mismatches: [{ instanceId: 'inst-a', movedEvents: 51, missing: 1, differing: 0 }] } });
    expect(bad.out.mismatches[0].examples).toEqual([expect.objectContaining({ sequence: 3, problem: 'missing' })]);
  });
});
