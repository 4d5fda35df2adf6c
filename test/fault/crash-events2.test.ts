/**
 * Kill -9 the real CLI at moments spread over the events2 step, rerun `zsetup migrate --init-projections`,
 * and check the end state against the independent oracle. The offline move (`--offline`): cut-off,
 * copy chunks, index builds, ANALYZE, verification. The online move (the default), with the legacy
 * writer inserting all the while: capture setup, copy, index builds, catch-up, inside a cut-over
 * attempt, after it; every committed event must then be in events2 exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LegacyWriter } from '../support/legacy-writer.js';
import { expectWriterExactlyOnce } from '../support/moved.js';
import { copyOf, dropAll, migrateArgs, prepareCli, seededTemplate, waitNoBackends, zsetup, type FaultDb } from './harness.js';
import { expectEndStateRight } from './oracle.js';

let template: FaultDb;
beforeAll(async () => {
  prepareCli();
  template = await seededTemplate('zfe2', { events: 12_000, instances: 6 });
});
afterAll(dropAll);

/** Kill points: ZSETUP_TEST_KILL_AT values, with what must be true right after the kill. */
const OFFLINE_POINTS: { at: string; name: string; after?: (db: FaultDb) => Promise<void> }[] = [
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

async function expectInterruptedThenResumes(db: FaultDb, rerun: Awaited<ReturnType<typeof zsetup>>): Promise<void> {
  expect(rerun.code, rerun.stderr).toBe(0);
  expect(rerun.stderr).toContain('was interrupted; resuming');
}

describe('kill -9 during the offline events2 move (--offline), then rerun', () => {
  for (const point of OFFLINE_POINTS) {
    it(`ends right after a kill ${point.name} (${point.at})`, async () => {
      const db = await copyOf(template);
      const killed = await zsetup(migrateArgs(db, '--offline'), { ZSETUP_TEST_KILL_AT: point.at });
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      await waitNoBackends(db);
      await point.after?.(db);
      const status = await zsetup(['status', '--json', '-d', db.url]);
      expect(JSON.parse(status.stdout).steps.find((s: { id: string }) => s.id === 'events2').status).toBe('interrupted');
      // Without --offline: a move under way continues the way it began.
      await expectInterruptedThenResumes(db, await zsetup(migrateArgs(db)));
      await expectEndStateRight(db);
      await db.drop();
    });
  }
});

/** The capture is still on and eventstore.events untouched: the old version could go on writing. */
async function stillCapturing(db: FaultDb): Promise<void> {
  const r = await db.query(`SELECT to_regclass('eventstore.events')::text AS legacy, to_regclass('eventstore.events_old')::text AS old,
    (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'eventstore.events'::regclass AND tgname LIKE 'zsetup_events2_%') AS triggers`);
  expect(r[0]).toEqual({ legacy: 'eventstore.events', old: null, triggers: 4 });
}

const ONLINE_POINTS: { at: string; name: string; after?: (db: FaultDb) => Promise<void> }[] = [
  {
    at: 'progress events2 1 capture locked',
    name: 'inside the capture setup transaction (lock held)',
    async after(db) {
      const r = await db.query(`SELECT to_regclass('eventstore.events2')::text AS e2, to_regclass('zsetup.events2_log')::text AS log,
        (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'eventstore.events'::regclass AND tgname LIKE 'zsetup_%') AS triggers`);
      expect(r[0]).toEqual({ e2: null, log: null, triggers: 0 });
    },
  },
  { at: 'progress events2 2 copy', name: 'in the middle of the copy', after: stillCapturing },
  { at: 'progress events2 2 index', name: 'during the index builds', after: stillCapturing },
  { at: 'progress events2 1 catch-up', name: 'in the catch-up', after: stillCapturing },
  { at: 'progress events2 1 verify', name: 'as events2 is verified before the cut-over', after: stillCapturing },
  { at: 'progress events2 1 cut-over locked', name: 'inside a cut-over attempt, the lock held', after: stillCapturing },
  {
    at: 'progress events2 1 verify events_old',
    name: 'right after the cut-over committed',
    async after(db) {
      const r = await db.query(`SELECT to_regclass('eventstore.events')::text AS legacy, (SELECT checkpoint->>'stage' FROM zsetup.steps WHERE id = 'events2') AS stage`);
      expect(r[0]).toEqual({ legacy: null, stage: 'verify' });
    },
  },
];

describe('kill -9 during the online events2 move with the old version writing, then rerun', () => {
  for (const point of ONLINE_POINTS) {
    it(`ends right after a kill ${point.name} (${point.at})`, async () => {
      const db = await copyOf(template);
      const writer = await LegacyWriter.start({ url: db.url, eventsPerSecond: 150, connections: 3 });
      try {
        const killed = await zsetup(migrateArgs(db), { ZSETUP_TEST_KILL_AT: point.at });
        expect(killed.signal, killed.stderr).toBe('SIGKILL');
        await waitNoBackends(db);
        await point.after?.(db);
        await expectInterruptedThenResumes(db, await zsetup(migrateArgs(db)));
      } finally {
        await writer.stop();
      }
      await expectEndStateRight(db);
      await expectWriterExactlyOnce(db, writer);
      await db.drop();
    });
  }
});
