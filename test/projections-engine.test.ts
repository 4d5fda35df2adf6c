import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { migrate } from '../src/migrate.js';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { foldBatch, writeBatch } from '../src/projections/batch.js';
import { ensureTables } from '../src/projections/ddl.js';
import { captureEndPoint, StreamReader } from '../src/projections/events.js';
import { compileProjection, type ProjectionModel } from '../src/projections/model.js';
import { prefillProjection } from '../src/projections/prefill.js';
import { loadProjectionSteps } from '../steps/03-projections.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { dump, EventLog, type TestEvent } from './support/events.js';

const models = BUILTIN_PROJECTIONS.map(compileProjection);
const TABLES: [string, string][] = [
  ['projections.instances', 'id'], ['projections.orgs1', 'instance_id, id'], ['projections.projects4', 'instance_id, id'],
  ['projections.apps7', 'instance_id, id'], ['projections.apps7_api_configs', 'instance_id, app_id'], ['projections.apps7_oidc_configs', 'instance_id, app_id'],
  ['projections.apps7_saml_configs', 'instance_id, app_id'], ['projections.users14', 'instance_id, id'], ['projections.users14_humans', 'instance_id, user_id'],
  ['projections.users14_machines', 'instance_id, user_id'], ['projections.users14_notifications', 'instance_id, user_id'],
  ['projections.milestones3', 'instance_id, type'],
];
const STATE_COLUMNS = 'projection_name, instance_id, aggregate_id, aggregate_type, "sequence", event_date, "position", filter_offset';

/** A deterministic stream with every kind of change, cascades and some events sharing a position. */
function stream(instances: string[], perInstance: number, seed = 7): TestEvent[] {
  let s = seed;
  // mulberry32: deterministic and well spread in the low bits.
  const rnd = (n: number) => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
  const out: TestEvent[] = [];
  let pos = 1_700_000_000;
  for (let k = 0; k < perInstance; k++) {
    for (const i of instances) {
      pos += 1;
      const o = `o${rnd(6)}`;
      const p = `p${rnd(10)}`;
      const u = `u${rnd(30)}`;
      const choice = rnd(20);
      const base = { instance: i, position: `${pos}.5`, inTxOrder: 1 };
      if (k === 0) out.push({ ...base, aggregateType: 'instance', aggregateId: i, type: 'instance.added', payload: { name: i } });
      else if (choice < 3) out.push({ ...base, aggregateType: 'org', aggregateId: o, type: rnd(2) ? 'org.added' : 'org.changed', payload: { name: `org ${k}` } });
      else if (choice === 3) out.push({ ...base, aggregateType: 'org', aggregateId: o, type: rnd(12) ? 'org.deactivated' : 'org.removed', payload: {} });
      else if (choice < 6) out.push({ ...base, aggregateType: 'project', aggregateId: p, owner: o, type: rnd(3) ? 'project.added' : 'project.removed', payload: { name: `p${k}` } });
      else if (choice < 8) out.push({ ...base, aggregateType: 'project', aggregateId: p, owner: o, type: 'project.application.added', payload: { appId: `a${rnd(20)}`, name: `app ${k}` } });
      else if (choice === 8) out.push({ ...base, aggregateType: 'project', aggregateId: p, owner: o, type: 'project.application.removed', payload: { appId: `a${rnd(20)}` } });
      else if (choice < 12) out.push({ ...base, aggregateType: 'user', aggregateId: u, owner: o, type: 'user.human.added', payload: { userName: u, firstName: `f${k}`, email: `${u}@x` } });
      else if (choice < 15) out.push({ ...base, aggregateType: 'user', aggregateId: u, owner: o, type: 'user.human.profile.changed', payload: { lastName: `l${k}` } });
      else if (choice === 15) out.push({ ...base, aggregateType: 'user', aggregateId: u, owner: o, type: rnd(2) ? 'user.removed' : 'user.locked' });
      else if (choice === 16) out.push({ ...base, aggregateType: 'milestone', aggregateId: i, type: 'milestone.v2.reached', payload: { type: ['InstanceCreated', 'ProjectCreated', 'ApplicationCreated'][rnd(3)] } });
      else if (choice === 17) {
        // Two events of one transaction: same position, ordered by in_tx_order.
        out.push({ ...base, aggregateType: 'user', aggregateId: u, owner: o, type: 'user.human.email.changed', payload: { email: `${k}@y` } });
        out.push({ ...base, inTxOrder: 2, aggregateType: 'user', aggregateId: u, owner: o, type: 'user.human.email.verified' });
      } else out.push({ ...base, aggregateType: 'session', aggregateId: `s${k}`, type: 'session.added', payload: {} });
    }
  }
  return out;
}

async function tables(db: Database): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [t, order] of TABLES) out[t] = await dump(db.pool, t, order);
  out.states = await dump(db.pool, `(SELECT ${STATE_COLUMNS} FROM projections.current_states) `, 'projection_name, instance_id');
  return out;
}

const quiet = { progress: () => {}, log: () => {}, throwIfStopped: () => {} };

async function prefill(db: Database, options: { batchSize?: number; endPoint?: string; ctx?: typeof quiet; only?: ProjectionModel[] } = {}) {
  const results = [];
  for (const m of options.only ?? models) {
    results.push(await prefillProjection(db, m, { endPoint: options.endPoint ?? '9999999999', concurrency: 2, batchSize: options.batchSize }, options.ctx ?? quiet));
  }
  return results;
}

const created: TestDatabase[] = [];
async function fresh(events: TestEvent[]): Promise<{ tdb: TestDatabase; db: Database; log: EventLog }> {
  const tdb = await createTestDatabase('projeng');
  created.push(tdb);
  const db = await tdb.open();
  const log = await EventLog.create(db.pool);
  if (events.length) await log.append(...events);
  return { tdb, db, log };
}
afterAll(async () => {
  for (const t of created) await t.drop();
});

const EVENTS = stream(['i1', 'i2', 'i3'], 600);
let reference: Record<string, string[]>;

beforeAll(async () => {
  const { db } = await fresh(EVENTS);
  await prefill(db, { batchSize: 100_000 });
  reference = await tables(db);
});

describe('prefill engine', () => {
  it('gives the same tables and positions with batches of 7 as with one batch', async () => {
    expect(reference['projections.users14'].length).toBeGreaterThan(10);
    expect(reference['projections.apps7'].length).toBeGreaterThan(3);
    const { db } = await fresh(EVENTS);
    const results = await prefill(db, { batchSize: 7 });
    expect(results.find((r) => r.projection === 'projections.users14')!.batches).toBeGreaterThan(20);
    expect(await tables(db)).toEqual(reference);
  });

  it('writes each instance that fits in a batch in one transaction, however the instances interleave in time', async () => {
    // Eight instances whose events alternate in time, prefilled with batches of 20 (two streams of four
    // instances): one ordered stream per group would cut every instance across batches.
    const events = stream(['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8'], 40, 11);
    const users = models.find((m) => m.name === 'projections.users14')!;
    const { db } = await fresh(events);
    await prefill(db, { batchSize: 20, only: [users] });
    const written = await db.pool.query(`SELECT instance_id, count(DISTINCT xmin::text)::int AS transactions, count(*)::int AS n
      FROM (SELECT instance_id, xmin FROM projections.users14 UNION ALL SELECT instance_id, xmin FROM projections.users14_humans) r
      GROUP BY instance_id ORDER BY instance_id`);
    expect(written.rows).toHaveLength(8);
    expect(written.rows.map((r) => [r.instance_id, r.transactions])).toEqual(written.rows.map((r) => [r.instance_id, 1]));
    const { db: whole } = await fresh(events);
    await prefill(whole, { batchSize: 100_000, only: [users] });
    for (const [t, order] of TABLES.filter(([t]) => t.startsWith('projections.users14'))) expect(await dump(db.pool, t, order)).toEqual(await dump(whole.pool, t, order));
  });

  it('catches up only the events that arrived since, and skips a projection at the head', async () => {
    const half = EVENTS.length / 2;
    const { db, log } = await fresh(EVENTS.slice(0, half));
    await prefill(db, { batchSize: 50 });
    await log.append(...EVENTS.slice(half));
    const second = await prefill(db, { batchSize: 50 });
    const expected = EVENTS.slice(half).filter((e) => models.find((m) => m.name === 'projections.orgs1')!.eventTypes.includes(e.type)).length;
    expect(second.find((r) => r.projection === 'projections.orgs1')!.events).toBe(expected);
    expect(await tables(db)).toEqual(reference);
    const third = await prefill(db);
    expect(third.every((r) => r.atHead && r.events === 0)).toBe(true);
  });

  it('reads instances at different positions as one stream: each continues after its own recorded position', async () => {
    const { db } = await fresh(EVENTS);
    await prefill(db, { batchSize: 60 });
    // Forget instance i1 in every projection: its stream starts at its first event again, while i2 and
    // i3 are at the head and their events in the same windows must be skipped.
    for (const [t] of TABLES) await db.pool.query(`DELETE FROM ${t} WHERE ${t === 'projections.instances' ? 'id' : 'instance_id'} = 'i1'`);
    await db.pool.query(`DELETE FROM projections.current_states WHERE instance_id = 'i1'`);
    const rerun = await prefill(db, { batchSize: 60 });
    for (const m of models) {
      const ownEvents = EVENTS.filter((e) => e.instance === 'i1' && m.aggregateTypes.includes(e.aggregateType) && m.eventTypes.includes(e.type)).length;
      const r = rerun.find((x) => x.projection === m.name)!;
      expect([m.name, r.events, r.instances]).toEqual([m.name, ownEvents, ownEvents ? 1 : 0]);
    }
    expect(await tables(db)).toEqual(reference);
  });

  it('reads a stream in the database\'s order whatever the batch size: one large transaction, tied keys, positions of any scale or precision', async () => {
    const orgs = models.find((m) => m.name === 'projections.orgs1')!;
    const org = (instance: string, id: string, position: string, inTxOrder: number): TestEvent =>
      ({ instance, aggregateType: 'org', aggregateId: id, type: 'org.changed', payload: { name: id }, position, inTxOrder });
    const events: TestEvent[] = [];
    for (let k = 0; k < 30; k++) events.push(org(k % 2 ? 'i1' : 'i2', `o${k}`, `${1_700_000_000 + k}.25`, 0));
    // One transaction of 40 events at one position: more than twice any small batch, so no window can split it.
    for (let k = 0; k < 40; k++) events.push(org('i1', `big${k}`, '1700000100.5', 39 - k));
    // Two events sharing (position, in_tx_order): only the database's collation orders them.
    events.push(org('i2', 'a-tie', '1700000101.75', 1), org('i2', 'B-tie', '1700000101.75', 1), org('i1', 'x', '1700000101.75', 2));
    // The same number written with different scales.
    events.push(org('i1', 'scale1', '1700000102.5', 0), org('i1', 'scale2', '1700000102.50', 1), org('i1', 'scale3', '1700000102.500', 2));
    // Two positions one double cannot tell apart, the later one first in in_tx_order.
    events.push(org('i2', 'fine2', '1700000103.00000002', 0), org('i1', 'fine1', '1700000103.00000001', 1));
    for (let k = 0; k < 25; k++) events.push(org('i2', `late${k}`, `${1_700_000_200 + k * 1000}.0`, 0));
    const { tdb, db } = await fresh(events);
    const expected = (await tdb.query(`SELECT instance_id || '/' || aggregate_id AS k FROM eventstore.events2
      ORDER BY "position", in_tx_order, instance_id, aggregate_type, aggregate_id, "sequence"`)).map((r) => r.k);
    for (const batchSize of [3, 7, 16, 1000]) {
      const starts = ['i1', 'i2'].map((instanceId) => ({ instanceId, from: null, firstPosition: '1700000000' }));
      const reader = new StreamReader(db.pool, orgs, starts, '1800000000', batchSize, events.length);
      const got: string[] = [];
      for (let batch = await reader.next(); batch; batch = await reader.next()) {
        expect(batch.length).toBeLessThanOrEqual(2 * batchSize);
        got.push(...batch.map((e) => `${e.instanceId}/${e.aggregateId}`));
      }
      expect([batchSize, got]).toEqual([batchSize, expected]);
    }
  });

  it('reads an event whose text columns contain the separator of packed rows exactly', async () => {
    const orgs = models.find((m) => m.name === 'projections.orgs1')!;
    const { db } = await fresh([
      { aggregateType: 'org', aggregateId: 'o1', type: 'org.added', payload: { name: 'plain' } },
      { aggregateType: 'org', aggregateId: 'o2', type: 'org.added', payload: { name: 'odd' }, creator: 'user\x1fwith separator' },
    ]);
    const reader = new StreamReader(db.pool, orgs, [{ instanceId: 'inst1', from: null, firstPosition: '1700000000' }], '1800000000', 100, 2);
    const batch = await reader.next();
    expect(batch!.map((e) => [e.aggregateId, e.creator, e.payload])).toEqual([['o1', 'creator', { name: 'plain' }], ['o2', 'user\x1fwith separator', { name: 'odd' }]]);
    expect(await reader.next()).toBeNull();
  });

  it('writes new rows with COPY exactly as upserts write them: every column type, escapes, arrays, JSON', async () => {
    const T = 'projections.ztypes';
    const cols = ['text', 'smallint', 'integer', 'bigint', 'numeric', 'boolean', 'timestamptz', 'jsonb', 'text[]', 'smallint[]'] as const;
    const model = compileProjection({
      name: T,
      tables: [{ name: T, primaryKey: ['id'], columns: [{ name: 'id', type: 'text' }, ...cols.map((type, i) => ({ name: `c${i}`, type, nullable: true }))] }],
      reducers: { z: { 'z.set': (e, w) => w.upsert(T, { id: e.aggregateId, ...(e.payload as Record<string, never>) }) } },
    });
    const tricky = ['tab\there', 'new\nline', 'cr\rlf\r\n', 'back\\slash', '\\N', 'a\\.b', 'quote"s\'', '{braces},', 'NULL', '', ' spaced ', 'ünïcødé ✓ 🎉'];
    const rows: Record<string, unknown>[] = tricky.map((t, i) => ({
      c0: t, c1: -i, c2: 2147483647 - i, c3: 9007199254740991 - i, c4: i % 2 ? '12.3400' : 1e-7 * (i + 1), c5: i % 2 === 0,
      c6: `2024-0${(i % 9) + 1}-1${i % 10}T0${i % 10}:00:00.12345${i % 10}+02:00`,
      c7: i % 3 === 0 ? { k: t, nested: [t, i, null, { x: t }] } : i % 3 === 1 ? t : [t, true],
      c8: i % 4 === 0 ? [] : [t, 'x,y', '"q"', '\\', 'NULL', ''], c9: i % 4 === 0 ? [] : [i, -32768, 32767],
    }));
    rows.push({}); // every nullable column NULL
    const events = rows.map((payload, i) => ({
      instanceId: 'i1', aggregateType: 'z', aggregateId: `id${i}`, eventType: 'z.set', sequence: 1, revision: 1, createdAt: '2024-01-01T00:00:00.000000Z',
      creator: 'c', owner: 'o', payload, position: `${1000 + i}`, inTxOrder: 1,
    }));
    const { db } = await fresh([]);
    const client = await db.pool.connect();
    try {
      await ensureTables(client, model);
      const sent: string[] = [];
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: unknown }).query = (q: unknown, ...rest: unknown[]) => {
        sent.push(typeof q === 'string' ? q : String((q as { text?: string }).text));
        return query(q, ...rest);
      };
      const written = async (transfer: { copy: boolean }) => {
        await client.query(`TRUNCATE ${T}`);
        const outcome = await writeBatch(client, model, foldBatch(model, events, new Map()), transfer);
        expect(outcome).toEqual({ failed: 0, replayed: false });
        return dump(db.pool, T, 'id');
      };
      const upserted = await written({ copy: false });
      expect(sent.some((t) => t.startsWith('COPY'))).toBe(false);
      const transfer = { copy: true };
      expect(await written(transfer)).toEqual(upserted);
      expect(sent.filter((t) => t.startsWith('COPY'))).toHaveLength(1);
      expect(transfer.copy).toBe(true);
      expect(upserted).toHaveLength(rows.length);
      // A COPY that meets a stored key: the batch is written again as upserts, and later batches too.
      await client.query(`DELETE FROM ${T} WHERE id <> 'id3'`);
      await client.query(`UPDATE ${T} SET c0 = 'stale'`);
      expect(await writeBatch(client, model, foldBatch(model, events, new Map()), transfer)).toEqual({ failed: 0, replayed: false });
      expect(transfer.copy).toBe(false);
      expect(await dump(db.pool, T, 'id')).toEqual(upserted);
    } finally {
      client.release();
    }
  });

  it('after a crash mid-prefill, a rerun gives the same tables and positions as a clean run', async () => {
    const { db } = await fresh(EVENTS);
    let batches = 0;
    const crashing = { ...quiet, throwIfStopped: () => { if (++batches === 5) throw new Error('simulated crash'); } };
    await expect(prefill(db, { batchSize: 40, ctx: crashing })).rejects.toThrow('simulated crash');
    const partial = await db.pool.query(`SELECT count(*)::int AS n FROM projections.current_states`);
    expect(partial.rows[0].n).toBeGreaterThan(0);
    await prefill(db, { batchSize: 40 });
    expect(await tables(db)).toEqual(reference);
  });

  it('records an event a reducer cannot apply in failed_events2 and applies the rest', async () => {
    const { tdb, db } = await fresh([
      { aggregateType: 'org', aggregateId: 'o1', type: 'org.added', payload: { name: 'ok' } },
      { aggregateType: 'org', aggregateId: 'o2', type: 'org.added', payload: 'not an object' },
      { aggregateType: 'org', aggregateId: 'o3', type: 'org.added', payload: { name: 42 } },
      { aggregateType: 'user', aggregateId: 'u1', owner: 'o1', type: 'user.human.added', payload: { userName: 123 } },
      { aggregateType: 'milestone', aggregateId: 'inst1', type: 'milestone.v2.reached', payload: { type: 'InstanceCreated', reachedDate: '2024-02-30T00:00:00Z' } },
      { aggregateType: 'org', aggregateId: 'o1', type: 'org.changed', payload: { name: 'still applied' } },
    ]);
    const results = await prefill(db);
    expect(results.find((r) => r.projection === 'projections.orgs1')!.failedEvents).toBe(2);
    expect(await tdb.query('SELECT id, name FROM projections.orgs1')).toEqual([{ id: 'o1', name: 'still applied' }]);
    const failed = await tdb.query('SELECT projection_name, aggregate_id, failed_sequence, failure_count, error FROM projections.failed_events2 ORDER BY 1, 2');
    expect(failed.map((f) => [f.projection_name, f.aggregate_id, f.failure_count])).toEqual([
      ['projections.milestones3', 'inst1', 1],
      ['projections.orgs1', 'o2', 1],
      ['projections.orgs1', 'o3', 1],
      ['projections.users14', 'u1', 1],
    ]);
    // The invalid date passes the reducer's format check; PostgreSQL rejects it and the batch is replayed event by event.
    expect(results.find((r) => r.projection === 'projections.milestones3')!.replayedBatches).toBe(1);
    expect(failed[1].error).toMatch(/JSON object/);
    const state = await tdb.query(`SELECT aggregate_id FROM projections.current_states WHERE projection_name = 'projections.orgs1'`);
    expect(state).toEqual([{ aggregate_id: 'o1' }]);
  });

  it('does not skip an event of a transaction that was open when the end point was taken', async () => {
    const { tdb, db, log } = await fresh([{ aggregateType: 'org', aggregateId: 'o1', type: 'org.added', payload: { name: 'first' } }]);
    const writer = await tdb.client();
    await writer.query('BEGIN');
    // Position = the transaction's start, as the push function stamps it; committed only later.
    await writer.query(`INSERT INTO eventstore.events2 VALUES ('inst1', 'org', 'o2', 'org.added', 1, 1, now(), '{"name":"slow"}', 'c', 'o2', EXTRACT(EPOCH FROM now()), 1)`);
    await new Promise((r) => setTimeout(r, 50));
    await log.append({ aggregateType: 'org', aggregateId: 'o3', type: 'org.added', payload: { name: 'fast' }, position: `${Date.now() / 1000}` });
    const orgs = models.filter((m) => m.name === 'projections.orgs1');
    const bound = await captureEndPoint(db.pool, 200);
    expect(bound.openTransactions).toBe(1);
    await prefill(db, { endPoint: bound.position, only: orgs });
    expect(await tdb.query('SELECT id FROM projections.orgs1 ORDER BY id')).toEqual([{ id: 'o1' }]);
    await writer.query('COMMIT');
    await prefill(db, { endPoint: (await captureEndPoint(db.pool)).position, only: orgs });
    expect(await tdb.query('SELECT id FROM projections.orgs1 ORDER BY id')).toEqual([{ id: 'o1' }, { id: 'o2' }, { id: 'o3' }]);
  });

  it('creates the shared tables once when every projection creates its tables at the same moment', async () => {
    const { tdb, db } = await fresh([]);
    for (let round = 0; round < 5; round++) {
      await tdb.query('DROP SCHEMA IF EXISTS projections CASCADE');
      const clients = await Promise.all(models.map(() => db.pool.connect()));
      try {
        // Without serialization, CREATE SCHEMA / TABLE IF NOT EXISTS of two sessions collide in the catalog (23505).
        await Promise.all(models.map((m, i) => ensureTables(clients[i], m)));
      } finally {
        for (const c of clients) c.release();
      }
      const n = await tdb.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'projections'`);
      expect(n[0].n).toBe(TABLES.length + 2);
    }
  });

  it('runs as steps: recorded in zsetup.steps, a rerun runs again only projections with new events (isBehind); custom projections load from a .js file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zsetup-proj-'));
    const file = path.join(dir, 'my-projections.js');
    fs.writeFileSync(file, `
export const projections = [{
  name: 'custom.org_names',
  tables: [{ name: 'custom.org_names', columns: [{ name: 'instance_id', type: 'text' }, { name: 'id', type: 'text' }, { name: 'name', type: 'text' }], primaryKey: ['instance_id', 'id'] }],
  reducers: { org: {
    'org.added': (e, w) => w.upsert('custom.org_names', { instance_id: e.instanceId, id: e.aggregateId, name: String(e.payload.name) }),
    'org.removed': (e, w) => w.delete('custom.org_names', { instance_id: e.instanceId, id: e.aggregateId }),
  } },
}];`);
    const { tdb, db, log } = await fresh([{ aggregateType: 'org', aggregateId: 'o1', type: 'org.added', payload: { name: 'acme' } }]);
    const run = async () => {
      const steps = await loadProjectionSteps({ names: ['orgs1', 'custom.org_names'], file });
      return migrate(db, { steps, lockWaitMs: 5000, stepOptions: { concurrency: 2, exact: false }, version: 'test' });
    };
    const first = await run();
    expect(first.steps.map((s) => [s.id, s.status])).toEqual([['projection:projections.orgs1', 'succeeded'], ['projection:custom.org_names', 'succeeded']]);
    expect(await tdb.query('SELECT name FROM custom.org_names')).toEqual([{ name: 'acme' }]);
    await log.append({ aggregateType: 'org', aggregateId: 'o1', type: 'org.changed', payload: { name: 'renamed' } });
    const second = await run();
    // Only orgs1 handles org.changed: the custom projection is at the head and stays done.
    expect(second.steps.map((s) => [s.id, s.status])).toEqual([['projection:projections.orgs1', 'succeeded'], ['projection:custom.org_names', 'skipped']]);
    expect(second.steps[0].summary?.events).toBe(1);
    expect(await tdb.query('SELECT name FROM projections.orgs1')).toEqual([{ name: 'renamed' }]);
    await expect(loadProjectionSteps({ names: ['nope'] })).rejects.toThrow(/unknown nope/);
  });
});
