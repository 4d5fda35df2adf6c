import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { migrate, type MigrateOptions } from '../src/migrate.js';
import { rfc3339Nano } from '../src/milestones/events-sql.js';
import { planMigrate } from '../src/plan.js';
import { EVENTS2_TABLE_COMPLETE, LEGACY_MILESTONES_TABLE } from '../src/schema.js';
import type { RunEvent, Step } from '../src/step.js';
import { createMilestonesStep, milestonesStep } from '../steps/02-milestones.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

let tdb: TestDatabase;
let database: Database;

beforeAll(async () => {
  tdb = await createTestDatabase('milestones');
  database = await tdb.open();
});
afterAll(() => tdb?.drop());
beforeEach(async () => {
  await tdb.query('DROP SCHEMA IF EXISTS eventstore, projections, zsetup CASCADE');
});

const options = (steps: Step<any>[]): MigrateOptions => ({
  steps,
  lockWaitMs: 10_000,
  stepOptions: { concurrency: 2, exact: false },
  version: 'test',
});

type Row = [instance: string, type: number, reached: string | null, pushed: string | null];

async function arrange(rows: Row[], { events2 = true } = {}): Promise<void> {
  if (events2) await tdb.query(EVENTS2_TABLE_COMPLETE);
  await tdb.query(LEGACY_MILESTONES_TABLE);
  for (const r of rows) {
    await tdb.query('INSERT INTO projections.milestones (instance_id, type, reached_date, last_pushed_date) VALUES ($1, $2, $3, $4)', r);
  }
}

/** An event written by hand, as the reference system (or anyone else) would have written it. */
async function addEvent(instance: string, seq: number, eventType: string, payload: unknown, aggregateType = 'milestone'): Promise<void> {
  await tdb.query(
    `INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at,
       payload, creator, owner, "position", in_tx_order)
     VALUES ($1, $2, $3, $4, $5, 2, now(), $6, '', $1, EXTRACT(EPOCH FROM now()), 1)`,
    [instance, aggregateType, aggregateType === 'system' ? 'SYSTEM' : instance, eventType, seq, JSON.stringify(payload)],
  );
}

async function milestoneEvents(): Promise<any[]> {
  return tdb.query(`SELECT instance_id, aggregate_id, aggregate_type, event_type, "sequence", revision, creator, owner,
      payload, in_tx_order, "position", EXTRACT(EPOCH FROM created_at)::text AS created_epoch
    FROM eventstore.events2 WHERE aggregate_type = 'milestone' ORDER BY instance_id, "sequence"`);
}

/** Waits until some session of this database is blocked by the `holder` client's locks. */
async function waitForLockWait(holder: { query: (q: string) => Promise<{ rows: any[] }> }): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await holder.query(`SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND pg_backend_pid() = ANY (pg_blocking_pids(pid))`);
    if (r.rows[0].n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the step never waited for the concurrent writer');
}

const brief = (events: any[]) => events.map((e) => `${e.instance_id}#${e.sequence} ${e.event_type.replace('milestone.v2.', '')} ${e.payload.type}`);

async function stepRow(id = 'milestones-v2'): Promise<any> {
  return (await tdb.query('SELECT * FROM zsetup.steps WHERE id = $1', [id]))[0];
}

async function plan(steps: Step<any>[] = [milestonesStep]) {
  const result = await planMigrate(database, { steps, stepOptions: { concurrency: 2, exact: false } });
  return result.steps[0];
}

const SAMPLE: Row[] = [
  ['i1', 1, '2023-05-06 07:08:09.123456+00', '2023-05-07 01:02:03.5+02'],
  ['i1', 3, '2023-06-01 00:00:00+00', null],
  ['i1', 2, null, null],
  ['i2', 1, '2022-01-01 10:00:00.000001+00', null],
  ['i2', 4, '2022-01-01 10:00:00.000001+00', '2022-02-03 04:05:06.12+00'],
];

describe('milestones-v2 step', () => {
  it('writes one reached event per reached row and one pushed event per pushed row, in the reference envelope', async () => {
    await arrange(SAMPLE);
    const oldBefore = await tdb.query('SELECT * FROM projections.milestones ORDER BY instance_id, type');
    const result = await migrate(database, options([milestonesStep]));
    expect(result.steps[0].status).toBe('succeeded');
    const events = await milestoneEvents();
    expect(brief(events)).toEqual([
      'i1#1 reached InstanceCreated',
      'i1#2 pushed InstanceCreated',
      'i1#3 reached ProjectCreated',
      'i2#1 reached InstanceCreated',
      'i2#2 reached ApplicationCreated',
      'i2#3 pushed ApplicationCreated',
    ]);
    expect(events[0].payload).toEqual({ type: 'InstanceCreated', reachedDate: '2023-05-06T07:08:09.123456Z' });
    expect(events[1].payload).toEqual({
      type: 'InstanceCreated', externalDomain: '', primaryDomain: '', endpoints: null, pushedDate: '2023-05-06T23:02:03.5Z',
    });
    expect(events[2].payload).toEqual({ type: 'ProjectCreated', reachedDate: '2023-06-01T00:00:00Z' });
    expect(events[3].payload).toEqual({ type: 'InstanceCreated', reachedDate: '2022-01-01T10:00:00.000001Z' });
    for (const e of events) {
      expect([e.aggregate_type, e.aggregate_id, e.owner, e.revision, e.creator]).toEqual(['milestone', e.instance_id, e.instance_id, 2, '']);
    }
    // One batch = one transaction: in_tx_order numbers all its events from 1, position = transaction time.
    expect(events.map((e) => e.in_tx_order)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(new Set(events.map((e) => e.position)).size).toBe(1);
    expect(Number(events[0].position)).toBeCloseTo(Number(events[0].created_epoch), 6);
    expect(await tdb.query('SELECT * FROM projections.milestones ORDER BY instance_id, type')).toEqual(oldBefore);
    expect((await stepRow()).summary).toMatchObject({ instancesConverted: 2, instancesSkipped: 0, reachedEvents: 4, pushedEvents: 2 });
  });

  it('preserves every original date to the microsecond', async () => {
    const rows: Row[] = [];
    for (let i = 0; i < 40; i++) {
      const us = String((i * 123457) % 1_000_000).padStart(6, '0');
      rows.push([`inst-${i}`, 1 + (i % 6), `2021-0${1 + (i % 9)}-1${i % 10} 0${i % 10}:1${i % 6}:2${i % 10}.${us}+0${i % 5}`,
        i % 3 === 0 ? `2024-12-31 23:59:59.${us}-03` : null]);
    }
    await arrange(rows);
    expect((await migrate(database, options([createMilestonesStep({ batchSize: 7 })]))).steps[0].status).toBe('succeeded');
    const mismatches = await tdb.query(`
      SELECT m.instance_id, m.type FROM projections.milestones m
      LEFT JOIN eventstore.events2 r ON r.aggregate_id = m.instance_id AND r.event_type = 'milestone.v2.reached'
      LEFT JOIN eventstore.events2 p ON p.aggregate_id = m.instance_id AND p.event_type = 'milestone.v2.pushed'
      WHERE (r.payload->>'reachedDate')::timestamptz IS DISTINCT FROM m.reached_date
         OR (p.payload->>'pushedDate')::timestamptz IS DISTINCT FROM m.last_pushed_date`);
    expect(mismatches).toEqual([]);
    const pushed = await tdb.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE event_type = 'milestone.v2.pushed'`);
    expect(pushed[0].n).toBe(rows.filter((r) => r[3] !== null).length);
  });

  it('formats dates like Go RFC3339Nano in UTC', async () => {
    const cases: Record<string, string> = {
      '2023-01-02 03:04:05+00': '2023-01-02T03:04:05Z',
      '2023-01-02 03:04:05.1+00': '2023-01-02T03:04:05.1Z',
      '2023-01-02 03:04:05.120000+00': '2023-01-02T03:04:05.12Z',
      '2023-01-02 03:04:05.000010+00': '2023-01-02T03:04:05.00001Z',
      '2023-01-01 01:30:00.5+02:30': '2022-12-31T23:00:00.5Z',
      '0001-01-01 00:00:00+00': '0001-01-01T00:00:00Z',
    };
    for (const [input, expected] of Object.entries(cases)) {
      const r = await sql<{ s: string }>`SELECT ${rfc3339Nano('t')} AS s FROM (SELECT ${input}::timestamptz AS t) x`.execute(database.db);
      expect(r.rows[0].s, input).toBe(expected);
    }
  });

  it('succeeds with nothing to do when projections.milestones does not exist', async () => {
    await tdb.query(EVENTS2_TABLE_COMPLETE);
    expect((await plan()).plan).toMatchObject({ willChange: false });
    const result = await migrate(database, options([milestonesStep]));
    expect(result.steps[0].status).toBe('succeeded');
    expect(result.steps[0].summary?.message).toMatch(/does not exist/);
    expect(await milestoneEvents()).toEqual([]);
  });

  it('fails clearly when eventstore.events2 does not exist at run time', async () => {
    await arrange(SAMPLE, { events2: false });
    const result = await migrate(database, options([milestonesStep]));
    expect(result.steps[0].status).toBe('failed');
    expect(result.steps[0].error).toMatchObject({ kind: 'RefusedError', exitCode: 5 });
    expect(result.steps[0].error?.message).toMatch(/eventstore\.events2 does not exist/);
  });

  it('refuses rows it cannot convert, listing them, and writes nothing', async () => {
    await arrange([...SAMPLE, ['i3', 7, '2023-01-01 00:00:00+00', null], ['i4', 2, null, '2023-01-01 00:00:00+00'],
      ['i5', 0, null, null], ['i6', 1, 'infinity', null]]);
    const planned = await plan();
    expect(planned.plan?.details).toMatchObject({ rejectedRows: 4 });
    expect(planned.plan?.action).toMatch(/^refuse/);
    const result = await migrate(database, options([milestonesStep]));
    expect(result.steps[0].status).toBe('failed');
    expect(result.steps[0].error).toMatchObject({ kind: 'RefusedError', exitCode: 5 });
    const message = result.steps[0].error?.message ?? '';
    expect(message).toMatch(/4 row\(s\)/);
    expect(message).toMatch(/"i3" type 7: unknown milestone type 7/);
    expect(message).toMatch(/"i4" type 2: pushed date without a reached date/);
    expect(message).toMatch(/"i5" type 0: unknown milestone type 0/);
    expect(message).toMatch(/"i6" type 1: reached date outside/);
    expect(await milestoneEvents()).toEqual([]);
  });

  it('skips instances the reference system already converted and continues sequences after existing events', async () => {
    await arrange([...SAMPLE, ['i3', 1, '2021-03-03 03:03:03.3+00', null], ['i3', 3, '2021-04-04 04:04:04+00', null]]);
    await addEvent('', 1, 'system.migration.done', { name: '36_fill_v3_milestones' }, 'system');
    // i1 fully converted by the reference (type names decode case-insensitively there).
    await addEvent('i1', 1, 'milestone.v2.reached', { type: 'InstanceCreated', reachedDate: '2023-05-06T07:08:09.123456Z' });
    await addEvent('i1', 2, 'milestone.v2.pushed', { type: 'instancecreated', pushedDate: '2023-05-06T23:02:03.5Z' });
    await addEvent('i1', 3, 'milestone.v2.reached', { type: 'ProjectCreated', reachedDate: '2023-06-01T00:00:00Z' });
    // i3 already holds other milestone events, with a gap: new ones continue after the highest sequence.
    await addEvent('i3', 4, 'milestone.v2.reached', { type: 'AuthenticationSucceededOnInstance' });
    await addEvent('i3', 9, 'milestone.v2.reached', { type: 'ApplicationCreated' });
    const planned = await plan();
    expect(planned.plan?.details).toMatchObject({
      instances: 3, instancesToConvert: 2, instancesSkipped: 1, reachedEvents: 4, pushedEvents: 1, eventsAlreadyPresent: 3,
      referenceStepsDone: ['36_fill_v3_milestones'],
    });
    const result = await migrate(database, options([milestonesStep]));
    expect(result.steps[0].summary).toMatchObject({ instancesConverted: 2, instancesSkipped: 1, reachedEvents: 4, pushedEvents: 1 });
    expect(brief(await milestoneEvents())).toEqual([
      'i1#1 reached InstanceCreated',
      'i1#2 pushed instancecreated',
      'i1#3 reached ProjectCreated',
      'i2#1 reached InstanceCreated',
      'i2#2 reached ApplicationCreated',
      'i2#3 pushed ApplicationCreated',
      'i3#4 reached AuthenticationSucceededOnInstance',
      'i3#9 reached ApplicationCreated',
      'i3#10 reached InstanceCreated',
      'i3#11 reached ProjectCreated',
    ]);
  });

  it('writes nothing when rerun after success, even with its record gone', async () => {
    await arrange(SAMPLE);
    await migrate(database, options([milestonesStep]));
    const first = await milestoneEvents();
    expect((await migrate(database, options([milestonesStep]))).steps[0].status).toBe('skipped');
    await tdb.query('DELETE FROM zsetup.steps');
    expect((await plan()).plan).toMatchObject({ willChange: false, details: { instancesSkipped: 2, instancesToConvert: 0 } });
    const again = await migrate(database, options([milestonesStep]));
    expect(again.steps[0].summary).toMatchObject({ instancesConverted: 0, instancesSkipped: 2, reachedEvents: 0, pushedEvents: 0, eventsAlreadyPresent: 6 });
    expect(await milestoneEvents()).toEqual(first);
  });

  it('resumes after a crash in the k-th batch and writes every event exactly once', async () => {
    const rows: Row[] = [];
    for (let i = 0; i < 9; i++) rows.push([`inst-${i}`, 1, `2020-01-01 00:00:0${i}.25+00`, i % 2 ? `2020-02-02 00:00:0${i}+00` : null]);
    await arrange(rows);
    const step = createMilestonesStep({ batchSize: 2 });
    // Work done inside the third batch's transaction, then the process "dies" before the commit.
    const crashing: Step<any> = {
      ...step,
      run(ctx) {
        let calls = 0;
        return step.run({
          ...ctx,
          transaction: (fn) => ctx.transaction(async (tx) => {
            const r = await fn(tx);
            if (++calls === 3) throw new Error('simulated crash before commit');
            return r;
          }),
        });
      },
    };
    const failed = await migrate(database, options([crashing]));
    expect(failed.steps[0].status).toBe('failed');
    expect((await stepRow()).checkpoint).toMatchObject({ lastInstanceId: 'inst-3', instancesConverted: 4 });
    expect(new Set((await milestoneEvents()).map((e) => e.instance_id))).toEqual(new Set(['inst-0', 'inst-1', 'inst-2', 'inst-3']));
    const planned = await plan([step]);
    expect(planned.plan?.details).toMatchObject({ instancesToConvert: 5, instancesSkipped: 4 });
    const resumed = await migrate(database, options([step]));
    expect(resumed.steps[0].status).toBe('succeeded');
    expect(resumed.steps[0].summary).toMatchObject({ instancesConverted: 9, reachedEvents: 9, pushedEvents: 4, eventsAlreadyPresent: 0 });
    const events = await milestoneEvents();
    expect(brief(events)).toEqual(rows.flatMap(([id, , , pushed]) =>
      [`${id}#1 reached InstanceCreated`, ...(pushed ? [`${id}#2 pushed InstanceCreated`] : [])]));
  });

  it('reports progress in instances and stops between batches when asked, resuming on the next run', async () => {
    const rows: Row[] = Array.from({ length: 7 }, (_, i): Row => [`inst-${i}`, 1, '2020-01-01 00:00:00+00', null]);
    await arrange(rows);
    const step = createMilestonesStep({ batchSize: 3 });
    const stop = new AbortController();
    // Ctrl-C arrives while the first batch commits.
    const stoppedAfterFirstBatch: Step<any> = {
      ...step,
      run: (ctx) => step.run({ ...ctx, transaction: async (fn) => {
        const r = await ctx.transaction(fn);
        stop.abort('test stop');
        return r;
      } }),
    };
    const seen: RunEvent[] = [];
    const stopped = await migrate(database, { ...options([stoppedAfterFirstBatch]), signal: stop.signal, onEvent: (e) => seen.push(e) });
    expect(stopped.steps[0].status).toBe('interrupted');
    expect((await stepRow()).checkpoint).toMatchObject({ lastInstanceId: 'inst-2' });
    expect((await milestoneEvents()).length).toBe(3);
    const progress = seen.flatMap((e) => (e.type === 'step-progress' ? [e.progress] : []));
    expect(progress[0]).toMatchObject({ phase: 'convert', done: 0, total: 7, unit: 'instances' });
    const resumedProgress: number[] = [];
    const resumed = await migrate(database, {
      ...options([step]),
      onEvent: (e) => { if (e.type === 'step-progress') resumedProgress.push(e.progress.done); },
    });
    expect(resumed.steps[0].summary).toMatchObject({ instancesConverted: 7, reachedEvents: 7 });
    expect(resumedProgress[0]).toBe(3);
    expect(resumedProgress.at(-1)).toBe(7);
    expect(brief(await milestoneEvents())).toEqual(rows.map(([id]) => `${id}#1 reached InstanceCreated`));
  });

  it('writes each event once when a crash also lost the checkpoint', async () => {
    const rows: Row[] = Array.from({ length: 5 }, (_, i): Row => [`inst-${i}`, 1, '2020-01-01 00:00:00+00', null]);
    await arrange(rows);
    const step = createMilestonesStep({ batchSize: 2 });
    await migrate(database, options([step]));
    // As if the events of the first instances were written by a run whose bookkeeping is gone.
    await tdb.query(`DELETE FROM eventstore.events2 WHERE aggregate_id IN ('inst-3', 'inst-4')`);
    await tdb.query(`UPDATE zsetup.steps SET status = 'failed', checkpoint = NULL`);
    const rerun = await migrate(database, options([step]));
    expect(rerun.steps[0].summary).toMatchObject({ instancesConverted: 2, instancesSkipped: 3, reachedEvents: 2 });
    expect(brief(await milestoneEvents())).toEqual(rows.map(([id]) => `${id}#1 reached InstanceCreated`));
  });

  it('does not collide with a concurrent writer that appends to a milestone aggregate mid-run', async () => {
    await arrange(SAMPLE);
    // A writer that does not lock (as the reference's SQL push function): its uncommitted event takes
    // sequence 1 of i1, so the step's insert waits on the primary key, collides, and redoes the batch.
    const writer = await tdb.client();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence",
      revision, created_at, payload, creator, owner, "position", in_tx_order)
      VALUES ('i1', 'milestone', 'i1', 'milestone.v2.reached', 1, 2, now(), '{"type":"AuthenticationSucceededOnInstance"}',
      '', 'i1', EXTRACT(EPOCH FROM now()), 1)`);
    const running = migrate(database, options([milestonesStep]));
    await waitForLockWait(writer);
    await writer.query('COMMIT');
    expect((await running).steps[0].status).toBe('succeeded');
    expect(brief(await milestoneEvents()).filter((e) => e.startsWith('i1'))).toEqual([
      'i1#1 reached AuthenticationSucceededOnInstance',
      'i1#2 reached InstanceCreated',
      'i1#3 pushed InstanceCreated',
      'i1#4 reached ProjectCreated',
    ]);
  });

  it('waits for a writer holding the latest row of a milestone aggregate, then appends after it', async () => {
    await arrange(SAMPLE);
    await addEvent('i2', 1, 'milestone.v2.reached', { type: 'ProjectCreated' });
    // A writer as the reference's Go pusher: lock the aggregate's latest event, append the next one.
    const writer = await tdb.client();
    await writer.query('BEGIN');
    await writer.query(`SELECT 1 FROM eventstore.events2 WHERE instance_id = 'i2' AND aggregate_type = 'milestone'
      AND aggregate_id = 'i2' AND "sequence" = 1 FOR NO KEY UPDATE`);
    await writer.query(`INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence",
      revision, created_at, payload, creator, owner, "position", in_tx_order)
      VALUES ('i2', 'milestone', 'i2', 'milestone.v2.reached', 2, 2, now(), '{"type":"AuthenticationSucceededOnApplication"}',
      '', 'i2', EXTRACT(EPOCH FROM now()), 1)`);
    const running = migrate(database, options([milestonesStep]));
    await waitForLockWait(writer);
    await writer.query('COMMIT');
    expect((await running).steps[0].status).toBe('succeeded');
    expect(brief(await milestoneEvents()).filter((e) => e.startsWith('i2'))).toEqual([
      'i2#1 reached ProjectCreated',
      'i2#2 reached AuthenticationSucceededOnApplication',
      'i2#3 reached InstanceCreated',
      'i2#4 reached ApplicationCreated',
      'i2#5 pushed ApplicationCreated',
    ]);
  });

  it('plans exactly what the run then does, read-only, also before events2 exists', async () => {
    await arrange(SAMPLE, { events2: false });
    const early = await plan();
    expect(early.error).toBeUndefined();
    expect(early.plan?.details).toMatchObject({ events2: false, instances: 2, instancesToConvert: 2, reachedEvents: 4, pushedEvents: 2, rowsNotReached: 1 });
    await tdb.query(EVENTS2_TABLE_COMPLETE);
    await addEvent('i2', 1, 'milestone.v2.reached', { type: 'InstanceCreated' });
    const planned = await plan();
    expect(await tdb.query(`SELECT to_regclass('zsetup.steps') AS t`)).toEqual([{ t: null }]);
    expect((await milestoneEvents()).length).toBe(1);
    const result = await migrate(database, options([milestonesStep]));
    const { instancesToConvert, instancesSkipped, reachedEvents, pushedEvents, eventsAlreadyPresent } = planned.plan?.details as any;
    expect(result.steps[0].summary).toMatchObject({ instancesConverted: instancesToConvert, instancesSkipped, reachedEvents, pushedEvents, eventsAlreadyPresent });
    expect([instancesToConvert, reachedEvents, pushedEvents, eventsAlreadyPresent]).toEqual([2, 3, 2, 1]);
  });
});
