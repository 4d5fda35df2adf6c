/**
 * The prefill's memory is bounded in bytes (issue 16 §3): PostgreSQL sends a read no more payload text
 * than its budget (one payload more at most), streams share one byte budget, and the seed writes the
 * large SAML payloads the benchmark measures with.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { StreamReader, type Queryable } from '../src/projections/events.js';
import { compileProjection } from '../src/projections/model.js';
import { batchShare, ByteBudget, LARGE_EVENT_BYTES, LARGE_EVENTS_SHARE } from '../src/projections/pipeline.js';
import type { ProjectionEvent } from '../src/projections/types.js';
import { seedLegacy } from '../src/seed/index.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { EventLog } from './support/events.js';

const orgs = compileProjection(BUILTIN_PROJECTIONS.find((d) => d.name === 'projections.orgs1')!);
const MAX_BYTES = 200_000;
const EVENT_BYTES = 90_000;

const tdbs: TestDatabase[] = [];

afterAll(async () => {
  await Promise.all(tdbs.map((t) => t.drop()));
});

/** The pool, recording the payload text each query returned (a real database underneath). */
function recording(db: Queryable, sent: number[]): Queryable {
  return {
    async query(text: any, values?: unknown[]) {
      const r = await db.query(text, values);
      sent.push(r.rows.reduce((n: number, row: any) => n + (Array.isArray(row) ? row.reduce((m: number, v: unknown) => m + (typeof v === 'string' && v.startsWith('{') ? v.length : 0), 0) : 0), 0));
      return r;
    },
  };
}

describe('StreamReader: PostgreSQL caps each read in bytes', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase('zmem');
    tdbs.push(tdb);
    const log = await EventLog.create(tdb);
    // 60 events of ~90 KB, all in one window by count (a batch of 1000 would take them all): 5.4 MB.
    // The first 20 at distinct positions (the unsorted read), the last 40 at one position (read sorted).
    await log.append(...Array.from({ length: 60 }, (_, i) => ({
      aggregateType: 'org', aggregateId: `o${String(i).padStart(2, '0')}`, type: 'org.changed',
      payload: { name: `n${i}`, metadata: String.fromCharCode(97 + (i % 26)).repeat(i === 30 ? 3 * MAX_BYTES : EVENT_BYTES) },
      ...(i >= 20 ? { position: '1700000500.5', inTxOrder: i - 20 } : {}),
    })));
  });

  it('never receives much more than the budget in one query, and loses no event', async () => {
    const db = await tdb.open({ maxConnections: 2 });
    try {
      const sent: number[] = [];
      const count = (await tdb.query(`SELECT count(*)::int AS n FROM eventstore.events2`))[0].n;
      const reader = new StreamReader(recording(db.pool, sent), orgs, [{ instanceId: 'inst1', from: null, firstPosition: '1700000000' }], '1800000000', 1000, count, MAX_BYTES);
      const batches: ProjectionEvent[][] = [];
      for (let b = await reader.next(); b; b = await reader.next()) batches.push(b);
      const expected = (await tdb.query(`SELECT aggregate_id FROM eventstore.events2 ORDER BY "position", in_tx_order`)).map((r) => r.aggregate_id);
      expect(batches.flat().map((e) => e.aggregateId)).toEqual(expected);
      // A query returns at most the budget and one payload more (the 600 KB one alone exceeds it).
      const largest = 3 * MAX_BYTES + 100;
      for (const n of sent) expect(n).toBeLessThanOrEqual(MAX_BYTES + largest);
      expect(sent.filter((n) => n > MAX_BYTES + EVENT_BYTES + 100).length).toBeLessThanOrEqual(1);
      // A count bound alone reads all 5.4 MB in one batch; bytes cut it into many.
      expect(batches.length).toBeGreaterThanOrEqual(Math.ceil((59 * EVENT_BYTES) / MAX_BYTES));
      expect(batches.some((b) => b.length === 1 && b[0].aggregateId === 'o30')).toBe(true);
    } finally {
      await db.close();
    }
  });

  it('a batch passed a smaller share of the budget is cut by it', async () => {
    const db = await tdb.open({ maxConnections: 2 });
    try {
      const reader = new StreamReader(db.pool, orgs, [{ instanceId: 'inst1', from: null, firstPosition: '1700000000' }], '1800000000', 1000, 60, 16 * 1024 * 1024);
      const first = await reader.next(MAX_BYTES);
      expect(first!.length).toBeGreaterThan(0);
      expect(reader.lastBytes).toBeLessThanOrEqual(MAX_BYTES);
      expect(first!.length).toBeLessThanOrEqual(Math.floor(MAX_BYTES / EVENT_BYTES));
    } finally {
      await db.close();
    }
  });
});

describe('ByteBudget', () => {
  it('hands out up to what is free, makes a taker wait below the least share, and wakes it on give', async () => {
    const budget = new ByteBudget(100);
    expect(await budget.take(60, 10)).toBe(60);
    expect(await budget.take(60, 10)).toBe(40);
    let woke = 0;
    const waiting = budget.take(60, 10).then((n) => (woke = n));
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(0);
    budget.give(40);
    expect(await waiting).toBe(40);
    // Nothing else taken: a taker gets its least share even from a budget smaller than that.
    const small = new ByteBudget(5);
    expect(await small.take(60, 10)).toBe(10);
    small.give(10);
    small.force(7);
    expect(small.taken).toBe(7);
  });

  it('runs a full garbage collection at the give-back after every `collectEvery` bytes read, and only then', async () => {
    const budget = new ByteBudget(100, 10);
    let garbage: object | null = { large: 'x'.repeat(1 << 20) };
    const ref = new WeakRef(garbage);
    garbage = null;
    // A WeakRef keeps its target until the current job ends.
    await new Promise((r) => setTimeout(r, 0));
    budget.force(6);
    budget.give(6);
    expect(budget.collections).toBe(0);
    budget.force(6);
    expect(budget.collections).toBe(0);
    budget.give(6);
    expect(budget.collections).toBe(1);
    expect(ref.deref()).toBeUndefined();
    budget.force(4);
    budget.give(4);
    expect(budget.collections).toBe(1);
  });
});

describe('batchShare', () => {
  it('keeps the full share for small events, and asks for LARGE_EVENTS_SHARE at most after a batch of large ones', () => {
    const full = 16 << 20;
    expect(batchShare(full, 7_000_000, 20_000)).toBe(full);
    expect(batchShare(full, 0, 0)).toBe(full);
    expect(batchShare(full, 16 << 20, 12)).toBe(LARGE_EVENTS_SHARE);
    expect(batchShare(full, LARGE_EVENT_BYTES * 10, 10)).toBe(LARGE_EVENTS_SHARE);
    expect(batchShare(full, LARGE_EVENT_BYTES * 10 - 1, 10)).toBe(full);
    expect(batchShare(1 << 20, 16 << 20, 12)).toBe(1 << 20);
    expect(LARGE_EVENTS_SHARE).toBeLessThan(full);
  });
});

describe('zsetup seed --saml-metadata-bytes', () => {
  it('writes SAML configs whose metadata (base64 in the payload) is about that size; the other events as without it', async () => {
    const [plain, saml] = await Promise.all([createTestDatabase('zmemseed'), createTestDatabase('zmemsaml')]);
    tdbs.push(plain, saml);
    await seedLegacy(await plain.open(), { events: 20_000, instances: 3 });
    await seedLegacy(await saml.open(), { events: 20_000, instances: 3, samlMetadataBytes: 100_000 });
    const configs = await saml.query(`SELECT event_data->>'entityId' AS entity, length(decode(event_data->>'metadata', 'base64')) AS n,
        convert_from(decode(event_data->>'metadata', 'base64'), 'UTF8') LIKE '<md:EntityDescriptor%</md:EntityDescriptor>' AS xml
      FROM eventstore.events WHERE event_type = 'project.application.config.saml.added'`);
    expect(configs.length).toBeGreaterThan(0);
    for (const c of configs) {
      expect(c.n).toBeGreaterThan(99_000);
      expect(c.n).toBeLessThanOrEqual(100_000);
      expect(c.xml).toBe(true);
      expect(c.entity).toMatch(/^https:\/\//);
    }
    // The SAML configs take the API configs' place in app scenes; every other event is the same.
    const others = `SELECT md5(string_agg(id::text || event_type || coalesce(event_data::text, ''), ',' ORDER BY instance_id, event_sequence)) AS h, count(*)::int AS n
      FROM eventstore.events WHERE event_type NOT LIKE 'project.application.config.%.added'`;
    expect((await saml.query(others))[0]).toEqual((await plain.query(others))[0]);
    const apiMinusSaml = `SELECT count(*) FILTER (WHERE event_type = 'project.application.config.api.added')::int AS api,
      count(*) FILTER (WHERE event_type = 'project.application.config.saml.added')::int AS saml FROM eventstore.events`;
    const [p, s] = [(await plain.query(apiMinusSaml))[0], (await saml.query(apiMinusSaml))[0]];
    expect(p.saml).toBe(0);
    expect(s.api + s.saml).toBe(p.api);
  }, 120_000);
});
