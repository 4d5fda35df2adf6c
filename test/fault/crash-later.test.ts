/**
 * Faults after the events2 step: kill -9 during the milestone conversion and the projection prefill
 * (between units and inside an open transaction), SIGINT / SIGTERM, and connections terminated by the
 * server. Every case ends with a rerun and the independent oracle.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CURRENT_STATES_TABLE } from '../../src/schema.js';
import {
  admin, copyOf, dropAll, migrateArgs, prepareCli, seededTemplate, startCli, waitFor, waitNoBackends, waitStopped, zsetup, zsetupBackends,
  type FaultDb,
} from './harness.js';
import { expectEndStateRight } from './oracle.js';

let template: FaultDb;
beforeAll(async () => {
  prepareCli();
  template = await seededTemplate('zfl', { events: 12_000, instances: 6 });
});
afterAll(dropAll);

async function rerunAndCheck(db: FaultDb): Promise<void> {
  await waitNoBackends(db);
  const rerun = await zsetup(migrateArgs(db));
  expect(rerun.code, rerun.stderr).toBe(0);
  await expectEndStateRight(db);
  await db.drop();
}

/**
 * Holds `lock` in an open transaction, starts the run, waits until one of zsetup's backends is blocked
 * on it inside a statement matching `query`, kills the CLI with SIGKILL there, then releases the lock.
 */
async function killWhileBlocked(db: FaultDb, lock: string, query: RegExp): Promise<void> {
  const holder: pg.Client = await db.client();
  await holder.query('BEGIN');
  await holder.query(lock);
  const run = startCli(migrateArgs(db));
  await waitFor(`a zsetup backend blocked in ${query}`, async () =>
    (await zsetupBackends(db)).some((b) => b.wait_event_type === 'Lock' && query.test(b.query)));
  run.child.kill('SIGKILL');
  expect((await run.done).signal).toBe('SIGKILL');
  await holder.query('ROLLBACK');
}

describe('kill -9 during the milestone conversion and the projection prefill, then rerun', () => {
  const points: { at: string; name: string }[] = [
    { at: 'start milestones-v2', name: 'as the milestone conversion starts' },
    { at: 'progress milestones-v2 1 convert', name: 'before the first milestone batch' },
    { at: 'start projection:projections.instances', name: 'as the first projection starts' },
    { at: 'progress projection:projections.users14 1', name: 'in the users14 prefill, a batch in flight' },
    { at: 'start projection:projections.milestones3', name: 'as the last projection starts, the others done' },
  ];
  for (const point of points) {
    it(`ends right after a kill ${point.name} (${point.at})`, async () => {
      const db = await copyOf(template);
      const killed = await zsetup(migrateArgs(db), { ZSETUP_TEST_KILL_AT: point.at });
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      await rerunAndCheck(db);
    });
  }

  it('ends right after a kill inside a milestone batch transaction (its INSERT blocked by a lock)', async () => {
    const db = await copyOf(template);
    expect((await zsetup(['migrate', '--only', 'events2', '-d', db.url])).code).toBe(0);
    await killWhileBlocked(db, 'LOCK TABLE eventstore.events2 IN SHARE MODE', /names \(type, name\)/);
    // (the statement text shown is cut at 1 kB: the batch's INSERT … SELECT is recognised by its first CTE)
    await waitNoBackends(db);
    // The batch rolled back: no milestone event was written.
    expect((await db.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE aggregate_type = 'milestone'`))[0].n).toBe(0);
    await rerunAndCheck(db);
  });

  it('ends right after a kill inside a prefill batch, after its rows and before its position were written', async () => {
    const db = await copyOf(template);
    expect((await zsetup(['migrate', '-d', db.url])).code).toBe(0);
    await db.query(CURRENT_STATES_TABLE);
    await killWhileBlocked(db, 'LOCK TABLE projections.current_states IN SHARE MODE', /INSERT INTO projections\.current_states/);
    await waitNoBackends(db);
    // A batch sent as one message (BEGIN; …; COMMIT) may still commit after its client died: whole, with its
    // position, which is just as safe. Either way the rerun must end exactly like a clean prefill.
    await rerunAndCheck(db);
  });
});

describe('SIGINT / SIGTERM stop cleanly and a rerun resumes', () => {
  const cases: { signal: string; at: string }[] = [
    { signal: 'SIGTERM', at: 'progress events2 2 copy' },
    { signal: 'SIGINT', at: 'progress events2 1 index' },
    { signal: 'SIGTERM', at: 'progress milestones-v2 1 convert' },
    { signal: 'SIGINT', at: 'progress projection:projections.orgs1 1' },
  ];
  for (const c of cases) {
    it(`${c.signal} at ${c.at}: exit 130, state recorded as interrupted, rerun completes`, async () => {
      const db = await copyOf(template);
      const stopped = await zsetup(migrateArgs(db), { ZSETUP_TEST_KILL_AT: c.at, ZSETUP_TEST_KILL_SIGNAL: c.signal });
      expect(stopped.code, stopped.stderr).toBe(130);
      expect(stopped.stderr).toContain(`${c.signal} received: stopping after the current unit of work`);
      expect(stopped.stdout + stopped.stderr).toMatch(/rerun .*resumes/);
      const stepId = c.at.split(' ')[1];
      const row = await db.query(`SELECT status, last_error->>'exitCode' AS code FROM zsetup.steps WHERE id = $1`, [stepId]);
      expect(row).toEqual([{ status: 'interrupted', code: '130' }]);
      // The lock is released on the way out: a rerun starts at once.
      const rerun = await zsetup(migrateArgs(db, '--lock-wait', '5s'));
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(rerun.stderr).not.toContain('waiting for the runner lock');
      await expectEndStateRight(db);
      await db.drop();
    });
  }
});

describe('connections dropped by the server', () => {
  it("pg_terminate_backend on zsetup's sessions mid-copy: clear error, non-zero exit, rerun completes", async () => {
    const db = await copyOf(template);
    // Freeze the CLI mid-copy (SIGSTOP), cut all its connections, let it continue.
    const run = startCli(migrateArgs(db), { ZSETUP_TEST_KILL_AT: 'progress events2 2 copy', ZSETUP_TEST_KILL_SIGNAL: 'SIGSTOP' });
    await waitStopped(run);
    const terminated = await admin(`SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE datname = $1 AND application_name = 'zsetup'`, [db.name]);
    expect(terminated.length).toBeGreaterThan(0);
    run.child.kill('SIGCONT');
    const r = await run.done;
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.signal).toBeNull();
    expect(r.stderr + r.stdout).toMatch(/terminat|connection/i);
    await rerunAndCheck(db);
  });
});
