import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/connection.js';
import { RefusedError } from '../src/errors.js';
import { migrate } from '../src/migrate.js';
import { EVENTS2_TABLE_COMPLETE, LEGACY_MILESTONES_TABLE } from '../src/schema.js';
import type { Step } from '../src/step.js';
import { events2Step } from '../steps/01-events2.js';
import { milestonesStep } from '../steps/02-milestones.js';
import { loadProjectionSteps } from '../steps/03-projections.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

let tdb: TestDatabase;
const role = `zt_role_${crypto.randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  tdb = await createTestDatabase('preflight');
  await tdb.query(`${EVENTS2_TABLE_COMPLETE} ${LEGACY_MILESTONES_TABLE}
    INSERT INTO projections.milestones (instance_id, type, reached_date) VALUES ('i1', 1, '2024-01-02T03:04:05.123456Z');
    CREATE ROLE ${role} LOGIN PASSWORD 'pw';
    GRANT CONNECT, CREATE ON DATABASE ${tdb.name} TO ${role};
    GRANT USAGE ON SCHEMA eventstore, projections TO ${role};
    GRANT SELECT ON projections.milestones TO ${role};`);
});
afterAll(async () => {
  await tdb?.drop();
  await tdb?.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
});

const run = async (steps: Step<any>[]) => {
  const u = new URL(tdb.url);
  u.username = role;
  u.password = 'pw';
  const database = await openDatabase({ kind: 'url', url: u.toString() }, { statementTimeoutMs: 0, lockTimeoutMs: 5000, maxConnections: 4 });
  try {
    return await migrate(database, { steps, lockWaitMs: 5000, stepOptions: { concurrency: 2, exact: false }, version: 'test' });
  } finally {
    await database.close();
  }
};

describe('preflight', () => {
  it('lists what every pending step lacks, at once, before any step runs', async () => {
    const steps = [events2Step, milestonesStep, ...(await loadProjectionSteps({ names: ['orgs1'] }))];
    const err = await run(steps).catch((e) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect(err.exitCode).toBe(5);
    const message = String(err.message);
    expect(message).toContain(`role ${role} lacks privileges`);
    expect(message).toContain('milestones-v2: SELECT on eventstore.events2');
    expect(message).toContain('milestones-v2: INSERT on eventstore.events2');
    expect(message).toContain('projection:projections.orgs1: SELECT on eventstore.events2');
    expect(message).toContain('projection:projections.orgs1: CREATE on schema projections');
    // events2 is already there, so the events2 step needs nothing; and nothing ran.
    expect(message).not.toContain('events2: ');
    expect(await tdb.query('SELECT count(*)::int AS n FROM eventstore.events2')).toEqual([{ n: 0 }]);
    // Refused before zsetup's own schema was created: the database is exactly as it was.
    expect(await tdb.query(`SELECT to_regnamespace('zsetup')::text AS s`)).toEqual([{ s: null }]);
  });

  it('without USAGE on a schema: refused naming it, with the GRANT, before anything is read there or created', async () => {
    await tdb.query(`REVOKE USAGE ON SCHEMA eventstore FROM ${role}`);
    try {
      const err = await run([events2Step, milestonesStep]).catch((e) => e);
      expect(err).toBeInstanceOf(RefusedError);
      expect(err.message).toBe(`role ${role} lacks USAGE on schema eventstore; nothing was changed`);
      expect(err.hint).toBe(`as a superuser or the owner: GRANT USAGE ON SCHEMA eventstore TO ${role}`);
      expect(err.sqlstate).toBe('42501');
      expect(await tdb.query(`SELECT to_regnamespace('zsetup')::text AS s`)).toEqual([{ s: null }]);
    } finally {
      await tdb.query(`GRANT USAGE ON SCHEMA eventstore TO ${role}`);
    }
  });

  it('runs once the privileges are granted', async () => {
    await tdb.query(`GRANT SELECT, INSERT, UPDATE ON eventstore.events2 TO ${role}`);
    const r = await run([events2Step, milestonesStep]);
    expect(r.steps.map((s) => [s.id, s.status])).toEqual([['events2', 'succeeded'], ['milestones-v2', 'succeeded']]);
    expect(await tdb.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE event_type = 'milestone.v2.reached'`)).toEqual([{ n: 1 }]);
  });
});
