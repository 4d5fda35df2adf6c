import { expect } from 'vitest';
import { keysSql, writerEventsFound, type LegacyWriter } from './legacy-writer.js';
import { zsetup, type FaultDb } from '../fault/harness.js';
import { events2Difference, events2Shape, EXPECTED_INDEXES } from '../fault/oracle.js';

/**
 * After a completed run: every legacy event is in events2 exactly once as the spec maps it (the fault
 * oracle's SQL), events2 has its final shape, and `zsetup verify` agrees. Events that later steps
 * append (milestones, ZITADEL's migration records) are not compared.
 */
export async function expectMovedExactly(db: FaultDb): Promise<void> {
  const d = await events2Difference(db);
  expect(d.missing).toBe(0);
  expect(d.old).toBeGreaterThan(0);
  expect(await events2Shape(db)).toEqual({ indexes: EXPECTED_INDEXES, primaryKey: ['PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence)'], nullable: ['payload'] });
  expect(await db.query(`SELECT id FROM zsetup.steps WHERE status <> 'succeeded'`)).toEqual([]);
  const verify = await zsetup(['verify', '-d', db.url]);
  expect(verify.code, verify.stdout + verify.stderr).toBe(0);
}

/**
 * The legacy writer's side of an online move that finished: each committed event is in events2 once
 * (its key once, with the writer's creator and marker), no rolled-back or unfinished one is in events2
 * or events_old, and every failed insert failed with 42P01 (queued behind the cut-over, then the table
 * was gone), nothing else.
 */
export async function expectWriterExactlyOnce(db: { query(text: string): Promise<any[]> }, writer: LegacyWriter, minCommitted = 1): Promise<void> {
  const committed = writer.committed();
  expect(committed.length).toBeGreaterThanOrEqual(minCommitted);
  const [c] = await db.query(`WITH k(instance_id, seq) AS (VALUES ${keysSql(committed)})
    SELECT (SELECT count(DISTINCT (k.instance_id, k.seq))::int FROM k) AS distinct_keys,
           (SELECT count(*)::int FROM k JOIN eventstore.events2 e ON e.instance_id = k.instance_id AND e."sequence" = k.seq
              AND e.creator LIKE 'user-%' AND e.payload->>'by' = 'legacy-writer') AS in_events2`);
  expect(c).toEqual({ distinct_keys: committed.length, in_events2: committed.length });
  expect(await writerEventsFound(db, writer.notCommitted())).toBe(0);
  expect(await writerEventsFound(db, writer.notCommitted(), 'eventstore.events_old', true)).toBe(0);
  const failures = writer.records.filter((r) => r.outcome === 'failed');
  expect(failures.filter((f) => f.code !== '42P01').map((f) => `${f.code}: ${f.message}`)).toEqual([]);
}
