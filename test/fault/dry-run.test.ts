/**
 * Dry-runs write nothing, whatever the database looks like, and their counts are what the real run
 * then does. "Nothing" is checked with a before/after snapshot (catalog, row counts, row hashes) and,
 * on PostgreSQL ≥ 15, with the database's own tuple counters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyOf, dropAll, emptyDb, migrateArgs, prepareCli, seededTemplate, waitNoBackends, zsetup, type FaultDb } from './harness.js';
import { snapshot, writeCounters } from './oracle.js';

let template: FaultDb;
beforeAll(async () => {
  prepareCli();
  template = await seededTemplate('zfd', { events: 4_000, instances: 4 });
});
afterAll(dropAll);

const DRY_RUNS = [
  ['migrate', '--init-projections', '--dry-run', '--json'],
  ['migrate', '--init-projections', '--dry-run', '--exact', '--json'],
  ['migrate', '--only', 'milestones-v2', '--dry-run', '--json'],
  ['init-projections', '--dry-run', '--json'],
];

/** Database shapes, each made from a copy of the seeded legacy template (or from nothing). */
const SHAPES: Record<string, () => Promise<FaultDb>> = {
  'empty database': () => emptyDb(),
  'legacy event store': () => copyOf(template),
  'copy killed half-way': async () => {
    const db = await copyOf(template);
    expect((await zsetup(migrateArgs(db), { ZSETUP_TEST_KILL_AT: 'progress events2 2 copy' })).signal).toBe('SIGKILL');
    return db;
  },
  'events2 done, milestones not': async () => {
    const db = await copyOf(template);
    expect((await zsetup(['migrate', '--only', 'events2', '-d', db.url])).code).toBe(0);
    return db;
  },
  'everything done': async () => {
    const db = await copyOf(template);
    expect((await zsetup(migrateArgs(db))).code).toBe(0);
    return db;
  },
  'not an event store': async () => {
    const db = await emptyDb();
    await db.query(`CREATE TABLE public.orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1)`);
    return db;
  },
  'events2 half-filled by another tool': async () => {
    const db = await copyOf(template);
    await db.query(`ALTER TABLE eventstore.events RENAME TO events_old;
      CREATE TABLE eventstore.events2 AS SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence AS "sequence",
        substr(aggregate_version, 2)::smallint AS revision, creation_date AS created_at, event_data AS payload, editor_user AS creator,
        resource_owner AS owner, EXTRACT(EPOCH FROM creation_date) AS "position", event_sequence::integer AS in_tx_order
      FROM eventstore.events_old WHERE event_sequence % 2 = 0`);
    return db;
  },
  'legacy table missing a column, an unparsable version, an unknown milestone type': async () => {
    const db = await copyOf(template);
    await db.query(`ALTER TABLE eventstore.events DROP COLUMN editor_user;
      UPDATE eventstore.events SET aggregate_version = 'x' WHERE event_sequence = (SELECT min(event_sequence) FROM eventstore.events);
      INSERT INTO projections.milestones (instance_id, type, reached_date) SELECT instance_id, 42, now() FROM projections.milestones LIMIT 1`);
    return db;
  },
};

describe('dry-run writes nothing', () => {
  for (const [shape, make] of Object.entries(SHAPES)) {
    it(`on: ${shape}`, async () => {
      const db = await make();
      await waitNoBackends(db);
      const before = await snapshot(db);
      const counters = await writeCounters(db);
      for (const args of DRY_RUNS) {
        const r = await zsetup([...args, '-d', db.url]);
        // 0; 1 when a step's plan reports an error; 5 for a refusal (the same exit code as the run's).
        expect([0, 1, 5], `${args.join(' ')}: ${r.stderr}`).toContain(r.code);
        expect(r.stdout.trim().startsWith('{'), `${args.join(' ')}: no JSON report; stderr: ${r.stderr}`).toBe(true);
      }
      await waitNoBackends(db);
      expect(await snapshot(db)).toEqual(before);
      if (counters) expect(await writeCounters(db)).toEqual(counters);
      await db.drop();
    });
  }
});

interface PlanJson { steps: { id: string; plan?: { details: Record<string, any> }; error?: unknown }[] }
interface RunJson { steps: { id: string; status: string; summary?: Record<string, any> }[] }

describe('dry-run counts match the real run', () => {
  it('events to copy, milestone events to write, events per projection', async () => {
    const db = await copyOf(template);
    const plan1 = JSON.parse((await zsetup(['migrate', '--dry-run', '--exact', '--json', '-d', db.url])).stdout) as PlanJson;
    const counters = await writeCounters(db);
    const run1 = JSON.parse((await zsetup(['migrate', '--json', '-d', db.url])).stdout) as RunJson;
    // The counters the dry-run checks do see a real run's writes.
    await waitNoBackends(db);
    if (counters) expect(Number((await writeCounters(db))!.ins)).toBeGreaterThan(Number(counters.ins) + 1000);
    const planned = (id: string, p: PlanJson) => p.steps.find((s) => s.id === id)!.plan!.details;
    const done = (id: string, r: RunJson) => r.steps.find((s) => s.id === id)!.summary!;
    expect(planned('events2', plan1).events).toBe(done('events2', run1).events);
    expect(planned('events2', plan1).eventsCounted).toBe('exact');
    // Before events2 exists the milestone plan already knows what it will write.
    const m = done('milestones-v2', run1);
    expect(planned('milestones-v2', plan1)).toMatchObject({ reachedEvents: m.reachedEvents, pushedEvents: m.pushedEvents });
    expect(m.reachedEvents).toBeGreaterThan(0);
    const plan2 = JSON.parse((await zsetup(['init-projections', '--dry-run', '--json', '-d', db.url])).stdout) as PlanJson;
    const run2 = JSON.parse((await zsetup(['init-projections', '--json', '-d', db.url])).stdout) as RunJson;
    const projections = plan2.steps.map((s) => s.id);
    expect(projections.length).toBeGreaterThanOrEqual(5);
    for (const id of projections) {
      expect({ id, events: planned(id, plan2).eventsToProcess }).toEqual({ id, events: done(id, run2).events });
    }
    await db.drop();
  });
});
