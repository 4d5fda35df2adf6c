/**
 * A prefill reads and folds while its tables are still being made, and writes only once they are ready
 * (prefillProjection's `tables`): the bookkeeping that makes them may move the positions it started from.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { ensureTables, type EnsuredTables } from '../src/projections/ddl.js';
import { compileProjection } from '../src/projections/model.js';
import { prefillProjection } from '../src/projections/prefill.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { dump, EventLog, type TestEvent } from './support/events.js';

const users = compileProjection(BUILTIN_PROJECTIONS.find((d) => d.name === 'projections.users14')!);
const quiet = { progress: () => {}, log: () => {}, throwIfStopped: () => {} };

/** Users added and changed in two instances: 2 × 300 events, each at its own position. */
const EVENTS: TestEvent[] = [];
for (let k = 0; k < 300; k++) {
  for (const instance of ['i1', 'i2']) {
    const u = `u${k % 40}`;
    EVENTS.push(k < 40
      ? { instance, aggregateType: 'user', aggregateId: u, type: 'user.human.added', payload: { userName: u, firstName: 'f', lastName: 'l', email: `${u}@x` } }
      : { instance, aggregateType: 'user', aggregateId: u, type: 'user.human.profile.changed', payload: { lastName: `l${k}` } });
  }
}

const created: TestDatabase[] = [];
afterAll(async () => {
  for (const t of created) await t.drop();
});

async function fresh(): Promise<Database> {
  const tdb = await createTestDatabase('projearly');
  created.push(tdb);
  const db = await tdb.open();
  await (await EventLog.create(db.pool)).append(...EVENTS);
  return db;
}

async function snapshot(db: Database) {
  return {
    users: await dump(db.pool, 'projections.users14', 'instance_id, id'),
    humans: await dump(db.pool, 'projections.users14_humans', 'instance_id, user_id'),
    states: await dump(db.pool, `(SELECT instance_id, aggregate_id, "sequence", "position", filter_offset FROM projections.current_states) `, 'instance_id'),
  };
}

/** The position of the n-th event (1-based) in stream order. */
async function positionOf(db: Database, n: number): Promise<string> {
  const r = await db.pool.query(`SELECT "position"::text AS p FROM eventstore.events2 ORDER BY "position", in_tx_order OFFSET $1 LIMIT 1`, [n - 1]);
  return r.rows[0].p;
}

/** Tables made on a connection of their own, after `gate` opens; `before` runs in the same scope first. */
function tablesAfter(db: Database, gate: Promise<void>, before: () => Promise<void> = async () => {}): Promise<EnsuredTables> {
  return (async () => {
    await gate;
    await before();
    const client = await db.pool.connect();
    try {
      return await ensureTables(client, users);
    } finally {
      client.release();
    }
  })();
}

describe('prefill while the tables are made', () => {
  it('writes nothing before the tables are ready, and then the same as a prefill that waited', async () => {
    const expected = await fresh();
    await prefillProjection(expected, users, { endPoint: '9999999999', concurrency: 2, batchSize: 50 }, quiet);

    const db = await fresh();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const run = prefillProjection(db, users, { endPoint: '9999999999', concurrency: 2, batchSize: 50, tables: tablesAfter(db, gate) }, quiet);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const early = await db.pool.query(`SELECT to_regclass('projections.users14') AS t, to_regclass('projections.current_states') AS s`);
    expect(early.rows[0]).toEqual({ t: null, s: null });
    open();
    const result = await run;
    expect(result.events).toBe(EVENTS.length);
    expect(await snapshot(db)).toEqual(await snapshot(expected));
  });

  it('starts again from the positions the bookkeeping moved while the first batches were read', async () => {
    // Expected: the first 200 events, then the rest from the recorded positions.
    const middle = await positionOf(await fresh(), 201);
    const expected = await fresh();
    await prefillProjection(expected, users, { endPoint: middle, concurrency: 2, batchSize: 50 }, quiet);
    const rest = await prefillProjection(expected, users, { endPoint: '9999999999', concurrency: 2, batchSize: 50 }, quiet);
    expect(rest.events).toBe(EVENTS.length - 200);

    // The same first part, then its positions taken away: the prefill starts from the beginning, and
    // the tables' bookkeeping puts them back (as step 15's copy of a legacy position does) before any write.
    const db = await fresh();
    await prefillProjection(db, users, { endPoint: middle, concurrency: 2, batchSize: 50 }, quiet);
    const saved = await db.pool.query(`SELECT * FROM projections.current_states`);
    await db.pool.query(`DELETE FROM projections.current_states`);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const restore = async () => {
      await db.pool.query(`INSERT INTO projections.current_states SELECT * FROM jsonb_populate_recordset(NULL::projections.current_states, $1::jsonb)`, [JSON.stringify(saved.rows)]);
    };
    const run = prefillProjection(db, users, { endPoint: '9999999999', concurrency: 2, batchSize: 50, tables: tablesAfter(db, gate, restore) }, quiet);
    await new Promise((resolve) => setTimeout(resolve, 300));
    open();
    const result = await run;
    // Only the events after the restored positions were applied.
    expect(result.events).toBe(EVENTS.length - 200);
    expect(await snapshot(db)).toEqual(await snapshot(expected));
  });
});
