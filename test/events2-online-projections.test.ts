/**
 * Warm projections before the online cut-over (`migrate --init-projections` on a legacy database with the
 * old version writing): the projections are prefilled from events2 before the cut-over and only the
 * seconds since are caught up after it. The end point of the pass before the cut-over never passes an
 * event that is not in events2 yet (a key in the capture queue, a writer transaction still open); a
 * kill -9 between that pass and the cut-over reruns to the exact end state. The oracle compares every
 * projection with a clean prefill of the same final events2 on a copy of the database.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/connection.js';
import { migrate } from '../src/migrate.js';
import type { Step } from '../src/step.js';
import { tableDdl } from '../src/projections/ddl.js';
import { loadProjectionModels } from '../steps/03-projections.js';
import { composeSteps, type Composition } from '../steps/index.js';
import { copyOf, dropAll, migrateArgs, prepareCli, seededTemplate, waitNoBackends, zsetup, type FaultDb } from './fault/harness.js';
import { expectEndStateRight } from './fault/oracle.js';
import { LegacyWriter } from './support/legacy-writer.js';
import { expectWriterExactlyOnce } from './support/moved.js';

let template: FaultDb;
beforeAll(async () => {
  prepareCli();
  template = await seededTemplate('zfw', { events: 8_000, instances: 4 });
});
afterAll(dropAll);

/** The old version writing, into the instances not removed (a removed instance is never prefilled). */
async function writer(db: FaultDb): Promise<LegacyWriter> {
  const live = await db.query<{ id: string }>(`SELECT DISTINCT instance_id AS id FROM eventstore.events e WHERE instance_id <> ''
    AND NOT EXISTS (SELECT 1 FROM eventstore.events r WHERE r.instance_id = e.instance_id AND r.event_type = 'instance.removed') ORDER BY 1`);
  expect(live.length).toBeGreaterThan(1);
  return LegacyWriter.start({ url: db.url, eventsPerSecond: 300, connections: 4, projectionPayloads: true, instances: live.map((r) => r.id) });
}


/** The writer's committed `org.added` events, each a row of projections.orgs1 named as the writer named it. */
async function expectWriterOrgsProjected(db: FaultDb): Promise<void> {
  const [r] = await db.query(`SELECT
      (SELECT count(DISTINCT (instance_id, aggregate_id))::int FROM eventstore.events2 WHERE event_type = 'org.added' AND payload->>'by' = 'legacy-writer') AS written,
      (SELECT count(*)::int FROM projections.orgs1 WHERE name LIKE 'Org w%') AS projected`);
  expect(r.written).toBeGreaterThan(0);
  expect(r.projected).toBe(r.written);
}

type StepLine = { id: string; title: string; status: string; summary?: { events?: number; endPoint?: string } };

/** The run's steps in order: events2 up to the cut-over, the projections, events2 again, milestones, the projections again. */
function expectWarmOrder(steps: StepLine[]): { before: StepLine[]; after: StepLine[] } {
  const ids = steps.map((s) => s.id);
  const second = ids.indexOf('events2', 1);
  expect(ids[0]).toBe('events2');
  expect(second).toBeGreaterThan(1);
  expect(ids[second + 1]).toBe('milestones-v2');
  const before = steps.slice(1, second);
  const after = steps.slice(second + 2);
  expect(before.map((s) => s.id)).toEqual(after.map((s) => s.id));
  expect(before.every((s) => s.id.startsWith('projection:') && s.title.endsWith('(before the cut-over)'))).toBe(true);
  expect(after.every((s) => s.title.endsWith('(after the cut-over)'))).toBe(true);
  expect(steps[0].title).toMatch(/up to the cut-over/);
  return { before, after };
}

/**
 * Per projection: the pass before the cut-over applied exactly the events now in events2 before its end
 * point (none arrived behind it later: not from the capture queue, not from a transaction open then),
 * and the pass after it exactly those from there to its own end point: the seconds since.
 */
async function expectPassesSplitAtTheirEndPoints(db: FaultDb, before: StepLine[], after: StepLine[]): Promise<void> {
  const models = new Map((await loadProjectionModels()).map((m) => [`projection:${m.name}`, m]));
  const counted: string[] = [];
  for (const [i, warm] of before.entries()) {
    const model = models.get(warm.id)!;
    const late = after[i];
    const warmEnd = String(warm.summary?.endPoint);
    // A pass after the cut-over that was skipped had nothing to do; its summary is the earlier pass's.
    const lateEnd = late.status === 'succeeded' ? String(late.summary?.endPoint) : null;
    const [n] = await db.query(`SELECT count(*) FILTER (WHERE e."position" < $1::numeric)::int AS before,
        count(*) FILTER (WHERE e."position" >= $1::numeric AND ($2::numeric IS NULL OR e."position" < $2::numeric))::int AS after
      FROM eventstore.events2 e WHERE e.aggregate_type = ANY($3) AND e.event_type = ANY($4)
        AND NOT EXISTS (SELECT 1 FROM eventstore.events2 r WHERE r.instance_id = e.instance_id AND r.aggregate_type = 'instance' AND r.event_type = 'instance.removed')`,
      [warmEnd, lateEnd, model.aggregateTypes, model.eventTypes]);
    expect({ id: warm.id, before: warm.summary?.events, after: lateEnd ? late.summary?.events : 0 }).toEqual({ id: warm.id, ...n });
    counted.push(`${warm.id} ${n.before} + ${n.after}`);
  }
  expect(before.reduce((t, s) => t + (s.summary?.events ?? 0), 0)).toBeGreaterThan(0);
  console.log(`events applied before + after the cut-over: ${counted.join(', ')}`);
}

describe('migrate --init-projections on a legacy database with the old version writing', () => {
  it('prefills before the cut-over, catches up the seconds since after it, and ends equal to a clean prefill', async () => {
    const db = await copyOf(template);
    const w = await writer(db);
    const run = await zsetup([...migrateArgs(db), '--json']);
    expect(run.code, run.stderr).toBe(0);
    const steps: StepLine[] = JSON.parse(run.stdout).steps;
    const { before, after } = expectWarmOrder(steps);
    expect(before.every((s) => s.status === 'succeeded')).toBe(true);
    expect(after.every((s) => s.status === 'succeeded' || s.status === 'skipped')).toBe(true);
    expect(run.stderr).toMatch(/cut over on attempt \d+/);
    await w.stop();
    await expectPassesSplitAtTheirEndPoints(db, before, after);
    await expectWriterExactlyOnce(db, w, 21);
    // Nothing recorded for ZITADEL before the cut-over is left unrecorded after it.
    const [m] = await db.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE aggregate_type = 'system' AND event_type = 'system.migration.done' AND payload->>'name' = 'projections.orgs1'`);
    expect(m.n).toBe(1);
    // The old version stopped: a last prefill, then every projection equals a clean prefill of the same events2 on a copy.
    const last = await zsetup(['init-projections', '--concurrency', '2', '-d', db.url]);
    expect(last.code, last.stderr).toBe(0);
    await expectWriterOrgsProjected(db);
    await waitNoBackends(db);
    const copy = await copyOf(db);
    await expectEndStateRight(copy);
  }, 240_000);
});

/** The legacy insert the old version makes, on a client of the test's own. */
async function insertOrg(c: pg.Client, instance: string, sequence: number, name: string): Promise<void> {
  await c.query(
    `INSERT INTO eventstore.events (event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence, event_data,
       editor_user, editor_service, resource_owner, instance_id)
     VALUES ('org.added', 'org', $1, 'v1', $2, $3, 'scripted', 'zitadel', $4, $4)`,
    [`scripted-${sequence}`, sequence, JSON.stringify({ name }), instance],
  );
}

async function run(database: Database, composition: Composition, wrap: (s: Step<any>) => Step<any> = (s) => s) {
  const steps = (await composeSteps(database.db, composition)).map(wrap);
  const result = await migrate(database, { steps, lockWaitMs: 10_000, stepOptions: { concurrency: 2, exact: false }, version: 'test' });
  for (const s of result.steps) expect(s.error, `${s.id}: ${s.error?.message}`).toBeUndefined();
  return result;
}

describe('the end point of the pass before the cut-over', () => {
  // queued: an event committed and left in the capture queue, then a later one in a transaction held
  // open (the queue binds); open: only the transaction held open (its start binds).
  const cases = [
    { name: 'a key left in the capture queue', queued: true, held: 'queued org' },
    { name: 'a writer transaction held open across the pass', queued: false, held: 'open org' },
  ];
  for (const c of cases) {
    it(`stays before ${c.name}; the event is projected after the cut-over`, async () => {
      const db = await copyOf(template);
      const database = await openDatabase({ kind: 'url', url: db.url }, { statementTimeoutMs: 0, lockTimeoutMs: 30_000, maxConnections: 8 });
      const queued = await db.client();
      const open = await db.client();
      try {
        expect((await run(database, { move: 'prepare' })).steps.map((s) => [s.id, s.status])).toEqual([['events2', 'succeeded']]);
        const [{ instance, next }] = await db.query(`SELECT instance_id AS instance, max(event_sequence)::int + 1 AS next FROM eventstore.events
          WHERE instance_id <> '' GROUP BY 1 ORDER BY 1 LIMIT 1`);
        const names = c.queued ? ['queued org', 'open org'] : ['open org'];
        // As the pass begins (after its events2 occurrence caught up), before its end point is taken.
        const holdBack = (s: Step<any>): Step<any> => s.id !== 'projection:projections.orgs1' ? s : {
          ...s,
          async run(ctx) {
            if (c.queued) await insertOrg(queued, instance, next + 1, 'queued org');
            await open.query('BEGIN');
            await insertOrg(open, instance, next, 'open org');
            return s.run(ctx);
          },
        };
        const warm = await run(database, { move: 'prepare', initProjections: true, projections: ['orgs1'] }, holdBack);
        expect(warm.steps.map((s) => [s.id, s.status, s.title])).toEqual([
          ['events2', 'succeeded', 'move events to eventstore.events2, up to the cut-over'],
          ['projection:projections.orgs1', 'succeeded', 'prefill projections.orgs1 (before the cut-over)'],
        ]);
        // The creation date of the held event (the queued one committed first; the open one is visible only to its session).
        const [held] = c.queued
          ? await db.query(`SELECT EXTRACT(EPOCH FROM creation_date)::numeric::text AS p FROM eventstore.events WHERE instance_id = $1 AND event_sequence = $2`, [instance, next + 1])
          : (await open.query(`SELECT EXTRACT(EPOCH FROM creation_date)::numeric::text AS p FROM eventstore.events WHERE instance_id = $1 AND event_sequence = $2`, [instance, next])).rows;
        const endPoint = String(warm.steps[1].summary?.endPoint);
        // The end point is exclusive: the prefill takes the events before it, the held one is at or after it.
        const [state] = await db.query(`SELECT $1::numeric <= $2::numeric AS before, bool_and("position" < $2::numeric) AS states_before,
            (SELECT count(*)::int FROM zsetup.events2_log WHERE instance_id = $3) AS in_queue,
            (SELECT count(*)::int FROM projections.orgs1 WHERE name = ANY($4)) AS projected
          FROM projections.current_states WHERE projection_name = 'projections.orgs1'`, [endPoint, held.p, instance, names]);
        expect(state).toEqual({ before: true, states_before: true, in_queue: c.queued ? 1 : 0, projected: 0 });
        // The pass is not recorded for ZITADEL while the old version writes eventstore.events.
        const [r] = await db.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE event_type LIKE 'system.migration.%' AND payload->>'name' = 'projections.orgs1'`);
        expect(r.n).toBe(0);
        await open.query('COMMIT');

        // The catch-up before the pass leaves a small queue in place (the cut-over drains it), so the pass
        // may have nothing to add; the pass after the cut-over takes the held events.
        const moved = await run(database, { initProjections: true, projections: ['orgs1'] });
        expect(moved.steps.map((s) => [s.id, s.status])).toEqual([
          ['events2', 'succeeded'],
          ['projection:projections.orgs1', expect.stringMatching(/^(succeeded|skipped)$/)],
          ['events2', 'succeeded'],
          ['milestones-v2', 'succeeded'],
          ['projection:projections.orgs1', 'succeeded'],
        ]);
        expect(moved.steps[2].summary).toMatchObject({ online: true, verified: true });
        const [after] = await db.query(`SELECT (SELECT count(*)::int FROM projections.orgs1 WHERE name = ANY($1)) AS projected,
            (SELECT count(*)::int FROM eventstore.events2 WHERE event_type = 'system.migration.done' AND payload->>'name' = 'projections.orgs1') AS recorded,
            to_regclass('eventstore.events')::text AS legacy`, [names]);
        expect(after).toEqual({ projected: names.length, recorded: 1, legacy: null });
      } finally {
        await database.close();
      }
    }, 120_000);
  }
});

describe('kill -9 around the pass before the cut-over, with the old version writing', () => {
  const points = [
    { at: 'start projection:projections.users14', name: 'as a projection of the pass before the cut-over starts' },
    { at: 'progress events2 1 cut-over', name: 'after that pass, as the cut-over begins' },
  ];
  for (const point of points) {
    it(`reruns to the exact end state after a kill ${point.name} (${point.at})`, async () => {
      const db = await copyOf(template);
      const w = await writer(db);
      const killed = await zsetup(migrateArgs(db), { ZSETUP_TEST_KILL_AT: point.at });
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      const [legacy] = await db.query(`SELECT to_regclass('eventstore.events')::text AS t`);
      expect(legacy.t).toBe('eventstore.events');
      await waitNoBackends(db);
      const rerun = await zsetup([...migrateArgs(db), '--json']);
      expect(rerun.code, rerun.stderr).toBe(0);
      await expectFinishedExactly(db, w, JSON.parse(rerun.stdout).steps);
    }, 240_000);
  }
});

/**
 * The end of a composed run with the writer on: both passes in order, the writer stopped and every one of
 * its committed events in events2 once, a last prefill, the writer's orgs projected, and every table equal
 * to a clean prefill of a copy.
 */
async function expectFinishedExactly(db: FaultDb, w: LegacyWriter, steps: StepLine[]): Promise<void> {
  expectWarmOrder(steps);
  await w.stop();
  await expectWriterExactlyOnce(db, w, 21);
  const last = await zsetup(['init-projections', '--concurrency', '2', '-d', db.url]);
  expect(last.code, last.stderr).toBe(0);
  await expectWriterOrgsProjected(db);
  await waitNoBackends(db);
  await expectEndStateRight(await copyOf(db));
}

describe('migrate --prepare --init-projections hours ahead, migrate --init-projections at deploy time', () => {
  it('prepares and prefills with the old version writing, plans both passes, then cuts over and catches up', async () => {
    const db = await copyOf(template);
    const w = await writer(db);
    const prepared = await zsetup(['migrate', '--prepare', '--init-projections', '--concurrency', '2', '--json', '-d', db.url]);
    expect(prepared.code, prepared.stderr).toBe(0);
    const steps: StepLine[] = JSON.parse(prepared.stdout).steps;
    expect(steps[0]).toMatchObject({ id: 'events2', status: 'succeeded', summary: { prepared: true } });
    expect(steps.length).toBeGreaterThan(2);
    expect(steps.slice(1).every((s) => s.id.startsWith('projection:') && s.status === 'succeeded' && s.title.endsWith('(before the cut-over)'))).toBe(true);
    expect((await db.query(`SELECT to_regclass('eventstore.events')::text AS t`))[0].t).toBe('eventstore.events');
    const [users] = await db.query(`SELECT count(*)::int AS n FROM projections.users14 WHERE username LIKE 'user-w%'`);
    expect(users.n).toBeGreaterThan(0);

    // The dry-run plans both passes and the cut-over once, at the second events2.
    const plan = await zsetup(['migrate', '--dry-run', '--init-projections', '--json', '-d', db.url]);
    expect(plan.code, plan.stderr).toBe(0);
    const planned: { id: string; title: string; plan?: { action: string; details: Record<string, unknown> } }[] = JSON.parse(plan.stdout).steps;
    const events2 = planned.filter((s) => s.id === 'events2');
    expect(events2.map((s) => s.title)).toEqual(['move events to eventstore.events2, up to the cut-over', 'move events to eventstore.events2: catch up and cut over']);
    expect(events2[0].plan?.details.beforeCutOver).toBe(true);
    expect(events2[1].plan?.action).toMatch(/catch up .*cut over/);
    expect(planned.filter((s) => s.id === 'projection:projections.users14').map((s) => s.title)).toEqual([
      'prefill projections.users14 (before the cut-over)', 'prefill projections.users14 (after the cut-over)']);
    const text = await zsetup(['migrate', '--dry-run', '--init-projections', '-d', db.url]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/old writers .*cut-over/i);

    const done = await zsetup([...migrateArgs(db), '--json']);
    expect(done.code, done.stderr).toBe(0);
    await expectFinishedExactly(db, w, JSON.parse(done.stdout).steps);
  }, 240_000);
});

describe('a projection the old version maintains, before the cut-over', () => {
  it('is left to the old version by the pass before and continues from its legacy position at the cut-over; one without is prefilled warm', async () => {
    const db = await copyOf(template);
    const database = await openDatabase({ kind: 'url', url: db.url }, { statementTimeoutMs: 0, lockTimeoutMs: 30_000, maxConnections: 8 });
    const w = await writer(db);
    try {
      // The old version's projections.orgs1: its table, and its handler's state in one instance at its
      // first org.added (E1); the stand-in advances it to its third (E2) during the pass before.
      const [orgs] = await loadProjectionModels({ names: ['orgs1'] });
      await db.query(orgs.tables.map(tableDdl).join('\n'));
      const [pick] = await db.query(`SELECT instance_id AS instance, (array_agg(event_sequence ORDER BY event_sequence))[1:3]::int[] AS seqs,
          (array_agg(aggregate_id ORDER BY event_sequence))[1:3] AS ids
        FROM eventstore.events e WHERE event_type = 'org.added' AND instance_id <> ''
          AND NOT EXISTS (SELECT 1 FROM eventstore.events r WHERE r.instance_id = e.instance_id AND r.event_type = 'instance.removed')
          AND NOT EXISTS (SELECT 1 FROM eventstore.events r WHERE r.instance_id = e.instance_id AND r.aggregate_id = e.aggregate_id AND r.event_type = 'org.removed')
        GROUP BY 1 HAVING count(*) >= 3 ORDER BY 1 LIMIT 1`);
      expect(pick).toBeDefined();
      const { instance, seqs, ids } = pick as { instance: string; seqs: number[]; ids: string[] };
      await db.query(`INSERT INTO projections.current_sequences (projection_name, aggregate_type, current_sequence, instance_id, "timestamp")
        VALUES ('projections.orgs1', 'org', $1, $2, '2024-01-01T00:00:00Z')`, [seqs[0], instance]);

      // The dry-run of the pass before says the same as its run.
      const plan = await zsetup(['migrate', '--dry-run', '--init-projections', '--projection', 'orgs1', '--json', '-d', db.url]);
      expect(plan.code, plan.stderr).toBe(0);
      const planned: { id: string; title: string; plan?: { action: string } }[] = JSON.parse(plan.stdout).steps;
      expect(planned.find((s) => s.title === 'prefill projections.orgs1 (before the cut-over)')?.plan?.action)
        .toBe(`projections.orgs1 is maintained by the old version until the cut-over; the pass after it continues from the old version's position`);

      let atCutOver: Record<string, number> | undefined;
      const wrap = (s: Step<any>): Step<any> => {
        if (s.id === 'projection:projections.orgs1' && s.title.endsWith('(before the cut-over)')) {
          return { ...s, async run(ctx) {
            const r = await s.run(ctx);
            // The old version's handler advancing its state after the pass looked at it, before the cut-over.
            await db.query(`UPDATE projections.current_sequences SET current_sequence = $1, "timestamp" = '2024-01-02T00:00:00Z'
              WHERE projection_name = 'projections.orgs1' AND instance_id = $2`, [seqs[2], instance]);
            return r;
          } };
        }
        if (s.id === 'events2' && s.title.includes('catch up and cut over')) {
          return { ...s, async run(ctx) {
            const [x] = await db.query(`SELECT (SELECT count(*)::int FROM projections.orgs1) AS "orgRows",
                (SELECT count(*)::int FROM projections.current_states WHERE projection_name = 'projections.orgs1') AS "orgStates",
                (SELECT count(*)::int FROM projections.current_states WHERE projection_name = 'projections.users14') AS "userStates",
                (SELECT count(*)::int FROM eventstore.events2 WHERE event_type LIKE 'system.migration.%' AND payload->>'name' = '15_current_projection_state') AS recorded15`);
            atCutOver = x;
            return s.run(ctx);
          } };
        }
        return s;
      };
      const result = await run(database, { initProjections: true, projections: ['orgs1', 'users14'] }, wrap);
      await w.stop();
      const line = (id: string, pass: string) => result.steps.find((s) => s.id === id && s.title.endsWith(`(${pass} the cut-over)`))!;
      expect(result.steps.map((s) => s.id)).toEqual(['events2', 'projection:projections.orgs1', 'projection:projections.users14', 'events2', 'milestones-v2',
        'projection:projections.orgs1', 'projection:projections.users14']);
      // Before: orgs1 left to the old version, users14 (no legacy state) prefilled warm.
      expect(line('projection:projections.orgs1', 'before')).toMatchObject({ status: 'succeeded', summary: { maintainedByOldVersion: true, events: 0,
        message: `projections.orgs1 is maintained by the old version until the cut-over; the pass after it continues from the old version's position` } });
      expect(line('projection:projections.users14', 'before').summary?.events).toBeGreaterThan(0);
      // At the cut-over nothing of orgs1 was written or copied, step 15 not recorded; users14 has its positions.
      expect(atCutOver).toMatchObject({ orgRows: 0, orgStates: 0, recorded15: 0 });
      expect(atCutOver!.userStates).toBeGreaterThan(0);

      // After: the legacy position copied is the one at the cut-over (E2), not the one at the pass before (E1).
      // A copied legacy state has a position only: the events at that position (E2's transaction) are applied again, as in any run.
      const late = line('projection:projections.orgs1', 'after');
      expect(late.status).toBe('succeeded');
      const [e2] = await db.query(`SELECT "position"::text AS p FROM eventstore.events2 WHERE instance_id = $1 AND aggregate_type = 'org' AND "sequence" = $2`, [instance, seqs[2]]);
      const [n] = await db.query(`SELECT count(*)::int AS n FROM eventstore.events2 e
        WHERE e.aggregate_type = ANY($1) AND e.event_type = ANY($2) AND e."position" < $3::numeric
          AND (e.instance_id <> $4 OR e."position" >= $5::numeric)
          AND NOT EXISTS (SELECT 1 FROM eventstore.events2 r WHERE r.instance_id = e.instance_id AND r.aggregate_type = 'instance' AND r.event_type = 'instance.removed')`,
        [orgs.aggregateTypes, orgs.eventTypes, String(late.summary?.endPoint), instance, e2.p]);
      expect(late.summary?.events).toBe(n.n);
      // The orgs the old version had projected before E2 are not applied again (a copy at E1 would add the second).
      const [rows] = await db.query(`SELECT count(*)::int AS n FROM projections.orgs1 WHERE instance_id = $1 AND id = ANY($2)`, [instance, ids.slice(0, 2)]);
      expect(rows.n).toBe(0);
      const [state] = await db.query(`SELECT "position" >= $3::numeric AS past FROM projections.current_states WHERE projection_name = $1 AND instance_id = $2`,
        ['projections.orgs1', instance, e2.p]);
      expect(state).toEqual({ past: true });
      const [recorded] = await db.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE event_type = 'system.migration.done' AND payload->>'name' = '15_current_projection_state'`);
      expect(recorded.n).toBe(1);
      await expectWriterExactlyOnce(db, w, 21);
    } finally {
      await w.stop().catch(() => {});
      await database.close();
    }
  }, 180_000);
});
