import { expect } from 'vitest';
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
