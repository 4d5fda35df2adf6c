/**
 * The online events2 move in-process: the exact split between the bulk copy and the capture queue
 * (rows written while a chunk is copied, transactions committing out of order), the legacy writer
 * through a whole move, --prepare then the cut-over, abort-move, the refusal of in-place changes,
 * cut-over retries behind a lock, the dry-run's online figures.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { EXIT } from '../src/errors.js';
import { abortMove } from '../src/events2/abort.js';
import { indexSyncNote } from '../src/events2/plan.js';
import { planMigrate } from '../src/plan.js';
import type { RunContext, Step } from '../src/step.js';
import { events2Step, events2StepFor } from '../steps/01-events2.js';
import { crashingStep, DIFFERENCE_SQL, run, seedAwkwardLegacy } from './events2-support.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { LegacyWriter } from './support/legacy-writer.js';
import { expectWriterExactlyOnce as expectWriterExactlyOnceShared } from './support/moved.js';

let tdb: TestDatabase | undefined;
const writers: LegacyWriter[] = [];
afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.stop()));
  await tdb?.drop();
  tdb = undefined;
});

async function legacy(perInstance = 2000): Promise<{ t: TestDatabase; database: Database; total: number }> {
  tdb = await createTestDatabase('ev2o');
  const total = await seedAwkwardLegacy(tdb, perInstance);
  return { t: tdb, database: await tdb.open({ maxConnections: 12 }), total };
}

async function writer(t: TestDatabase, eventsPerSecond = 300): Promise<LegacyWriter> {
  const w = await LegacyWriter.start({ url: t.url, eventsPerSecond, connections: 4, instances: ['inst-a', 'inst-b', 'ïnst ☃ ü'] });
  writers.push(w);
  return w;
}

/** One insert of a legacy event on its own client (for scripted interleavings). */
function insertSql(instance: string, sequence: number): string {
  return `INSERT INTO eventstore.events (event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence, event_data,
    editor_user, editor_service, resource_owner, instance_id) VALUES ('x.added', 'x', 'x-${sequence}', 'v2', ${sequence},
    '{"scripted": true}', 'scripted', 'zitadel', '${instance}', '${instance}')`;
}

/** The capture, queue and digests are gone, events_old holds everything, events2 equals its mapping. */
async function expectMovedExactly(t: TestDatabase): Promise<void> {
  expect((await t.query(DIFFERENCE_SQL))[0]).toEqual({ missing: 0, extra: 0 });
  const r = await t.query(`SELECT to_regclass('eventstore.events')::text AS legacy, to_regclass('zsetup.events2_log')::text AS log,
    to_regclass('zsetup.events2_unsupported_writes')::text AS unsupported, to_regclass('zsetup.events2_digests')::text AS digests,
    to_regclass('zsetup.events2_chunks')::text AS chunks,
    (SELECT count(*)::int FROM pg_trigger WHERE tgname LIKE 'zsetup_events2_%') AS triggers,
    (SELECT count(*)::int FROM pg_proc WHERE proname LIKE 'events2_%' AND pronamespace = 'zsetup'::regnamespace) AS functions,
    (SELECT count(*)::int FROM pg_index WHERE indrelid = 'eventstore.events2'::regclass AND indisvalid) AS indexes`);
  expect(r[0]).toEqual({ legacy: null, log: null, unsupported: null, digests: null, chunks: null, triggers: 0, functions: 0, indexes: 4 });
}

/** The shared check, and some of the writer's transactions did roll back (so their absence was tested). */
async function expectWriterExactlyOnce(t: TestDatabase, w: LegacyWriter): Promise<void> {
  expect(w.notCommitted().length).toBeGreaterThan(0);
  await expectWriterExactlyOnceShared(t, w, 21);
}

describe('online move: copy and capture split exactly', () => {
  it('copies or applies each row once when writers insert during a chunk copy and commit out of order', async () => {
    const { t, database, total } = await legacy(3000);
    const a = await t.client();
    const b = await t.client();
    let scripted: Promise<void> | undefined;
    // At the first chunk: A inserts and stays open across the whole copy, B inserts later and commits
    // first; C commits between two chunks. A commits only once the index builds begin.
    const step: Step<any> = {
      ...events2Step,
      run(ctx: RunContext<any>) {
        let copies = 0;
        return events2Step.run({
          ...ctx,
          progress(update) {
            if (update.phase === 'copy' && copies++ === 1) {
              scripted = (async () => {
                await a.query('BEGIN');
                await a.query(insertSql('inst-a', 900001));
                await b.query(`BEGIN; ${insertSql('inst-a', 900002)}; ${insertSql('inst-b', 900003)}; COMMIT`);
              })();
            }
            if (update.phase.startsWith('index') && scripted) {
              const pending = scripted;
              scripted = pending.then(() => a.query('COMMIT')).then(() => {});
            }
            ctx.progress(update);
          },
          transaction: async (fn) => {
            if (scripted) await scripted;
            return ctx.transaction(fn);
          },
        });
      },
    };
    const w = await writer(t, 200);
    const result = (await run(database, [step], 3)).steps[0];
    await w.stop();
    expect(result.error).toBeUndefined();
    expect(result.summary).toMatchObject({ online: true, verified: true });
    expect(result.summary?.events).toBe(total + 3 + w.committed().length);
    await expectMovedExactly(t);
    expect((await t.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE payload->>'scripted' = 'true'`))[0].n).toBe(3);
    await expectWriterExactlyOnce(t, w);
  });

  it('moves with the legacy writer running throughout; writes after the cut-over fail with 42P01', async () => {
    const { t, database } = await legacy(4000);
    const w = await writer(t, 400);
    const result = (await run(database, [events2Step], 3)).steps[0];
    await new Promise((r) => setTimeout(r, 300));
    await w.stop();
    expect(result.error).toBeUndefined();
    const cut = result.summary?.cutOver as { attempts: number; lockHeldMs: number; at: string };
    expect(cut.attempts).toBeGreaterThanOrEqual(1);
    expect(cut.lockHeldMs).toBeLessThan(1000);
    expect(result.summary?.appliedFromCapture).toBeGreaterThan(0);
    await expectMovedExactly(t);
    await expectWriterExactlyOnce(t, w);
    // Before the cut-over no write failed; after it every attempt did, with 42P01.
    const at = Date.parse(cut.at);
    expect(w.records.filter((r) => r.outcome === 'failed' && r.end < at - 1000)).toEqual([]);
    expect(w.records.filter((r) => r.start > at + 100).every((r) => r.outcome === 'failed' && r.code === '42P01')).toBe(true);
    expect(w.records.filter((r) => r.outcome === 'failed').length).toBeGreaterThan(0);
  });
});

describe('online move: the copy leaves its rows hinted', () => {
  it('reads each chunk back after its commit, so no later reader logs events2 again as page images (on a server that logs hint bits)', async () => {
    const { t, database } = await legacy(3000);
    // Stopped as the index builds start: events2 holds exactly what the chunks copied, nothing has read it since.
    expect((await run(database, [crashingStep({ phase: 'index', onPhase: true }, events2StepFor('prepare'))])).steps[0].status).toBe('failed');
    // A control nobody has read: written from the legacy table (reading events2 here would set its hints).
    await t.query(`CREATE TABLE eventstore.unread AS SELECT * FROM eventstore.events`);
    /** Full page images the first full read of `table` after a checkpoint writes (EXPLAIN's own count), and its pages. */
    const firstRead = async (table: string) => {
      await t.query('CHECKPOINT');
      const [plan] = await t.query(`EXPLAIN (ANALYZE, WAL, FORMAT JSON) SELECT count(*) FROM ${table}`);
      const [{ pages }] = await t.query(`SELECT (pg_relation_size($1) / current_setting('block_size')::int)::int AS pages`, [table]);
      return { images: Number(plan['QUERY PLAN'][0].Plan['WAL FPI'] ?? 0), pages: pages as number };
    };
    const [{ logged }] = await t.query(`SELECT current_setting('data_checksums') = 'on' OR current_setting('wal_log_hints') = 'on' AS logged`);
    const copied = await firstRead('eventstore.events2');
    const control = await firstRead('eventstore.unread');
    if (logged) {
      // The control (rows nobody has read) is logged whole by its first reader; events2 is not.
      expect(control.images).toBeGreaterThan(control.pages / 2);
      expect(copied.images).toBeLessThan(copied.pages / 10);
    } else {
      // Without checksums or wal_log_hints a hint bit is never logged (and the copy does not read back).
      expect(control.images).toBe(0);
    }
  });
});

describe('online move: --prepare, cut-over later, abort-move', () => {
  it('prepares (capture left on, nothing recorded for ZITADEL), then a plain run catches up and cuts over', async () => {
    const { t, database } = await legacy(1000);
    const w = await writer(t, 300);
    const prepared = (await run(database, [events2StepFor('prepare')])).steps[0];
    expect(prepared.error).toBeUndefined();
    expect(prepared.status).toBe('succeeded');
    expect(prepared.summary).toMatchObject({ prepared: true });
    const r = await t.query(`SELECT to_regclass('eventstore.events')::text AS legacy, to_regclass('eventstore.events_old')::text AS old,
      (SELECT count(*)::int FROM eventstore.events2 WHERE payload->>'name' = '14_events_push') AS recorded,
      (SELECT checkpoint->>'stage' FROM zsetup.steps WHERE id = 'events2') AS stage`);
    expect(r[0]).toEqual({ legacy: 'eventstore.events', old: null, recorded: 0, stage: 'catch-up' });
    // The old version keeps writing for a while; the queue grows.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await t.query(`SELECT count(*)::int AS n FROM zsetup.events2_log`))[0].n).toBeGreaterThan(0);
    // The dry-run of the prepared state shows the backlog and the expected downtime.
    const plan = (await planMigrate(database, { steps: [events2Step], stepOptions: { concurrency: 2, exact: false } })).steps[0];
    expect(plan.plan?.action).toMatch(/prepared: catch up/);
    expect(plan.plan?.details).toMatchObject({ online: true, stage: 'catch-up' });
    expect(plan.plan?.details.captureBacklog).toBeGreaterThan(0);
    expect(plan.plan?.details.oldVersionInsertsPerSecond).toBeGreaterThan(50);
    expect(plan.plan?.details.expectedDowntimeSeconds).toBeLessThan(1);
    // The index builds are behind it: no warning about their sync any more.
    expect(plan.plan?.notes?.some((n) => n.includes('vm.dirty_background_bytes'))).toBe(false);
    // A plain run: the step is due again (the capture is on) and cuts over.
    const done = (await run(database)).steps[0];
    await w.stop();
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');
    expect(done.summary).toMatchObject({ online: true, verified: true });
    expect(done.summary?.appliedFromCapture).toBeGreaterThan(0);
    await expectMovedExactly(t);
    await expectWriterExactlyOnce(t, w);
    expect((await t.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE payload->>'name' = '14_events_push'`))[0].n).toBe(1);
    expect((await run(database)).steps[0].status).toBe('skipped');
  });

  it('abort-move removes everything the move added and leaves eventstore.events exactly as it was', async () => {
    const { t, database } = await legacy(500);
    const before = await t.query(`SELECT count(*)::int AS n, sum(hashtextextended(e::text, 0))::text AS h FROM eventstore.events e`);
    const catalogBefore = await t.query(`SELECT relname FROM pg_class WHERE relnamespace = 'eventstore'::regnamespace ORDER BY 1`);
    expect((await run(database, [events2StepFor('prepare')])).steps[0].status).toBe('succeeded');
    const result = await abortMove(database, { lockWaitMs: 5000 });
    expect(result).toMatchObject({ status: 'aborted', stage: 'catch-up' });
    expect(result.status === 'aborted' && result.removed).toEqual(['the capture triggers on eventstore.events', 'the capture queue', 'eventstore.events2', 'the digests', 'the throttle\'s probe table']);
    expect(await t.query(`SELECT count(*)::int AS n, sum(hashtextextended(e::text, 0))::text AS h FROM eventstore.events e`)).toEqual(before);
    expect(await t.query(`SELECT relname FROM pg_class WHERE relnamespace = 'eventstore'::regnamespace ORDER BY 1`)).toEqual(catalogBefore);
    const left = await t.query(`SELECT (SELECT count(*)::int FROM pg_trigger WHERE tgname LIKE 'zsetup_%') AS triggers,
      (SELECT count(*)::int FROM pg_class WHERE relnamespace = 'zsetup'::regnamespace AND relname LIKE 'events2%') AS tables,
      (SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'zsetup'::regnamespace) AS functions,
      (SELECT count(*)::int FROM zsetup.steps WHERE id = 'events2') AS rows`);
    expect(left[0]).toEqual({ triggers: 0, tables: 0, functions: 0, rows: 0 });
    expect(await abortMove(database, { lockWaitMs: 5000 })).toMatchObject({ status: 'nothing-to-abort' });
    // Starting over works, and after the cut-over there is nothing to abort.
    expect((await run(database)).steps[0].status).toBe('succeeded');
    await expectMovedExactly(t);
    await expect(abortMove(database, { lockWaitMs: 5000 })).rejects.toMatchObject({ exitCode: EXIT.refused });
  });
});

describe('online move: what it refuses and waits for', () => {
  it('refuses the cut-over (exit 5) after the old version updated an event, saying what it saw; abort-move then cleans up', async () => {
    const { t, database } = await legacy(300);
    expect((await run(database, [events2StepFor('prepare')])).steps[0].status).toBe('succeeded');
    const c = new pg.Client({ connectionString: t.url, application_name: 'old-zitadel' });
    await c.connect();
    await c.query(`UPDATE eventstore.events SET event_data = '{}' WHERE instance_id = 'inst-b' AND event_sequence IN (5, 6)`);
    await c.query(`DELETE FROM eventstore.events WHERE instance_id = 'inst-b' AND event_sequence = 999999`);
    await c.end();
    const step = (await run(database)).steps[0];
    expect(step.status).toBe('failed');
    expect(step.error?.exitCode).toBe(EXIT.refused);
    expect(step.error?.message).toMatch(/UPDATE of 2 row\(s\) at .* by \w+ \(old-zitadel\)/);
    expect(step.error?.message).not.toMatch(/DELETE/);
    expect((await t.query(`SELECT to_regclass('eventstore.events')::text AS t`))[0].t).toBe('eventstore.events');
    expect(await abortMove(database, { lockWaitMs: 5000 })).toMatchObject({ status: 'aborted' });
  });

  it('refuses (exit 4) when events2 differs from what the copy wrote, before the cut-over; eventstore.events untouched', async () => {
    const { t, database } = await legacy(300);
    const before = await t.query(`SELECT count(*)::int AS n, sum(hashtextextended(e::text, 0))::text AS h FROM eventstore.events e`);
    // Killed as the index builds start: events2 holds exactly the copied rows; then one of them is lost.
    expect((await run(database, [crashingStep({ phase: 'index', onPhase: true }, events2StepFor('prepare'))])).steps[0].status).toBe('failed');
    await t.query(`DELETE FROM eventstore.events2 WHERE ctid = (SELECT min(ctid) FROM eventstore.events2 WHERE instance_id = 'inst-b')`);
    const step = (await run(database, [events2StepFor('prepare')])).steps[0];
    expect(step.status).toBe('failed');
    expect(step.error?.exitCode).toBe(EXIT.verifyMismatch);
    expect(step.error?.message).toMatch(/events2 differs from what the online move copied for 1 instance\(s\): instance 'inst-b': 300 event\(s\) copied or applied, 299 in events2/);
    expect(await t.query(`SELECT count(*)::int AS n, sum(hashtextextended(e::text, 0))::text AS h FROM eventstore.events e`)).toEqual(before);
    // The move stays before its cut-over, unverified, and abort-move cleans up.
    const [cp] = await t.query(`SELECT checkpoint->>'stage' AS stage, checkpoint->>'events2Verified' AS verified FROM zsetup.steps WHERE id = 'events2'`);
    expect(cp).toEqual({ stage: 'catch-up', verified: null });
    expect(await abortMove(database, { lockWaitMs: 5000 })).toMatchObject({ status: 'aborted' });
  });

  it('refuses (exit 4) after the cut-over when events_old differs from what the copy and the catch-up recorded', async () => {
    const { t, database, total } = await legacy(300);
    expect((await run(database, [events2StepFor('prepare')])).steps[0].status).toBe('succeeded');
    // What the copy recorded for one instance no longer matches the rows it took from eventstore.events.
    await t.query(`UPDATE zsetup.events2_digests SET events = events + 1 WHERE (chunk, instance_id) = (SELECT min(chunk), 'inst-b' FROM zsetup.events2_digests WHERE instance_id = 'inst-b')`);
    const step = (await run(database)).steps[0];
    expect(step.status).toBe('failed');
    expect(step.error?.exitCode).toBe(EXIT.verifyMismatch);
    expect(step.error?.message).toMatch(/the events copied to events2 differ from events_old for 1 instance\(s\): instance 'inst-b': 300 event\(s\) in events_old, 301 in events2/);
    // The cut-over has happened: events_old is kept as it was, the step stays due at its verification.
    const [cp] = await t.query(`SELECT checkpoint->>'stage' AS stage, to_regclass('eventstore.events_old')::text AS old, (SELECT count(*)::int FROM eventstore.events_old) AS n FROM zsetup.steps WHERE id = 'events2'`);
    expect(cp).toEqual({ stage: 'verify', old: 'eventstore.events_old', n: total });
  });

  it('retries the cut-over while another session holds eventstore.events, never cancelling it', async () => {
    const { t, database } = await legacy(300);
    expect((await run(database, [events2StepFor('prepare')])).steps[0].status).toBe('succeeded');
    const holder = await t.client();
    await holder.query(`BEGIN; ${insertSql('inst-c', 1)}`);
    const logs: string[] = [];
    const running = (await import('../src/migrate.js')).migrate(database, {
      steps: [events2Step], lockWaitMs: 10_000, stepOptions: { concurrency: 2, exact: false }, version: 'test',
      onEvent: (e) => { if (e.type === 'log') logs.push(e.message); },
    });
    await new Promise((r) => setTimeout(r, 1500));
    await holder.query('COMMIT');
    const step = (await running).steps[0];
    expect(step.error).toBeUndefined();
    const cut = step.summary?.cutOver as { attempts: number };
    expect(cut.attempts).toBeGreaterThan(1);
    expect(logs.some((l) => /cut-over attempt 1 rolled back \(lock not granted within 100 ms; held by pid \d+/.test(l))).toBe(true);
    // The holder's transaction committed normally, and its event was moved.
    expect((await t.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE instance_id = 'inst-c'`))[0].n).toBe(1);
    await expectMovedExactly(t);
  });

  it('dry-run of a legacy database: online by default, with the expected downtime; --offline plans the cut-off first', async () => {
    const { database } = await legacy(200);
    const online = (await planMigrate(database, { steps: [events2Step], stepOptions: { concurrency: 2, exact: true } })).steps[0].plan!;
    expect(online.action).toMatch(/^legacy database, online move: capture new events/);
    expect(online.details).toMatchObject({ online: true, stage: 'capture', oldVersionInsertsPerSecond: 0, cutOverLockTimeoutMs: 100 });
    expect(online.details.expectedDowntimeSeconds).toBeGreaterThan(0);
    expect(online.details.expectedDowntimeSeconds).toBeLessThan(1);
    // The index builds are ahead: the operator is told what their end costs the old version's commits.
    expect(online.notes).toContain(indexSyncNote(database.serverVersionNum));
    expect(indexSyncNote(160000)).toMatch(/at the end of each index build PostgreSQL syncs/);
    expect(indexSyncNote(170000)).toMatch(/17\+ leaves the sync of each new index to the next checkpoint/);
    const offline = (await planMigrate(database, { steps: [events2StepFor('offline')], stepOptions: { concurrency: 2, exact: true } })).steps[0].plan!;
    expect(offline.action).toMatch(/^legacy database: rename eventstore.events to events_old/);
    expect(offline.details.online).toBeUndefined();
  });
});
