/**
 * Kill -9 the real CLI at moments spread over the events2 step (cut-off, copy chunks, index builds,
 * ANALYZE, verification), rerun `zsetup migrate --init-projections`, and check the end state against the
 * independent oracle.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyOf, dropAll, migrateArgs, prepareCli, seededTemplate, waitNoBackends, zsetup, type FaultDb } from './harness.js';
import { expectEndStateRight } from './oracle.js';

let template: FaultDb;
beforeAll(async () => {
  prepareCli();
  template = await seededTemplate('zfe2', { events: 12_000, instances: 6 });
});
afterAll(dropAll);

/** Kill points: ZSETUP_TEST_KILL_AT values, with what must be true right after the kill. */
const POINTS: { at: string; name: string; after?: (db: FaultDb) => Promise<void> }[] = [
  {
    at: 'start events2',
    name: 'as the events2 step starts (before the cut-off)',
    async after(db) {
      // The cut-off is one transaction: nothing of it may be visible.
      expect(await db.query(`SELECT to_regclass('eventstore.events')::text AS legacy, to_regclass('eventstore.events2')::text AS e2`))
        .toEqual([{ legacy: 'eventstore.events', e2: null }]);
    },
  },
  {
    at: 'progress events2 1 copy',
    name: 'right after the cut-off committed, before the first chunk',
    async after(db) {
      const r = await db.query(`SELECT to_regclass('eventstore.events')::text AS legacy, (SELECT count(*)::int FROM zsetup.events2_chunks) AS chunks`);
      expect(r[0].legacy).toBeNull();
      expect(r[0].chunks).toBeGreaterThan(4);
    },
  },
  { at: 'progress events2 2 copy', name: 'in the middle of the copy, a chunk in flight', after: chunksConsistent },
  { at: 'progress events2 1 index', name: 'as the index builds start', after: chunklessCopyComplete },
  // The builds run at once and progress is throttled: the 2nd index event is a later build's, or the last one's end.
  { at: 'progress events2 2 index', name: 'while or right after the index builds, before the primary key is attached', after: chunklessCopyComplete },
  { at: 'progress events2 1 analyze', name: 'before ANALYZE', after: chunklessCopyComplete },
  { at: 'progress events2 1 verify', name: 'as the verification starts', after: chunklessCopyComplete },
];

/** Each copied chunk's rows are in events2 exactly once: the marked counts add up to the table. */
async function chunksConsistent(db: FaultDb): Promise<void> {
  const r = await db.query(`SELECT (SELECT count(*)::int FROM eventstore.events2) AS n,
    (SELECT coalesce(sum(events), 0)::int FROM zsetup.events2_chunks WHERE copied_at IS NOT NULL) AS marked`);
  expect(r[0].n).toBe(r[0].marked);
}

async function chunklessCopyComplete(db: FaultDb): Promise<void> {
  const r = await db.query(`SELECT (SELECT count(*)::int FROM eventstore.events2) AS n, (SELECT count(*)::int FROM eventstore.events_old) AS old,
    (SELECT checkpoint->>'stage' FROM zsetup.steps WHERE id = 'events2') AS stage`);
  expect(r[0].n).toBe(r[0].old);
  expect(r[0].stage).toBe('build');
}

describe('kill -9 during the events2 step, then rerun', () => {
  for (const point of POINTS) {
    it(`ends right after a kill ${point.name} (${point.at})`, async () => {
      const db = await copyOf(template);
      const killed = await zsetup(migrateArgs(db), { ZSETUP_TEST_KILL_AT: point.at });
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      await waitNoBackends(db);
      await point.after?.(db);
      const status = await zsetup(['status', '--json', '-d', db.url]);
      expect(JSON.parse(status.stdout).steps.find((s: { id: string }) => s.id === 'events2').status).toBe('interrupted');
      const rerun = await zsetup(migrateArgs(db));
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(rerun.stderr).toContain('was interrupted; resuming');
      await expectEndStateRight(db);
      await db.drop();
    });
  }
});
