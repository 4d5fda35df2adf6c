/** StreamReader bounds a batch in bytes of event text as well as in events (issue 16 §3, memory). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { StreamReader } from '../src/projections/events.js';
import { compileProjection } from '../src/projections/model.js';
import type { ProjectionEvent } from '../src/projections/types.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { EventLog, type TestEvent } from './support/events.js';

const orgs = compileProjection(BUILTIN_PROJECTIONS.find((d) => d.name === 'projections.orgs1')!);
const MAX_BYTES = 100_000;

let tdb: TestDatabase;

beforeAll(async () => {
  tdb = await createTestDatabase('zbytes');
});

afterAll(async () => {
  await tdb?.drop();
});

/** Deterministic sizes: mostly a few KB, some near the budget, a few larger than it. */
function sizes(n: number): number[] {
  let s = 11;
  return Array.from({ length: n }, (_, i) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    if (i % 17 === 5) return MAX_BYTES + 20_000;
    return s % 3 === 0 ? 45_000 + (s % 10_000) : s % 8_000;
  });
}

const blob = (size: number, i: number) => String.fromCharCode(97 + (i % 26)).repeat(size);

async function readAll(batchSize: number): Promise<ProjectionEvent[][]> {
  const db = await tdb.open({ maxConnections: 2 });
  try {
    const count = (await tdb.query(`SELECT count(*)::int AS n FROM eventstore.events2`))[0].n;
    const reader = new StreamReader(db.pool, orgs, [{ instanceId: 'inst1', from: null, firstPosition: '1700000000' }], '1800000000', batchSize, count, MAX_BYTES);
    const out: ProjectionEvent[][] = [];
    for (let batch = await reader.next(); batch; batch = await reader.next()) out.push(batch);
    return out;
  } finally {
    await db.close();
  }
}

describe('StreamReader: batches bounded in bytes', () => {
  it('cuts a stream of large payloads into batches under the byte budget, in stream order, losing nothing', async () => {
    const log = await EventLog.create(tdb);
    const list = sizes(120);
    const events: TestEvent[] = list.map((size, i) => ({
      aggregateType: 'org', aggregateId: `o${i}`, type: 'org.changed', payload: { name: `n${i}`, metadata: blob(size, i) },
      // The last 40 share one position (one large transaction): those are read sorted, a prefix at a time.
      ...(i >= 80 ? { position: '1700000500.5', inTxOrder: i - 80 } : {}),
    }));
    await log.append(...events);
    const expected = (await tdb.query(`SELECT aggregate_id FROM eventstore.events2 ORDER BY "position", in_tx_order`)).map((r) => r.aggregate_id);
    const payloadBytes = (e: ProjectionEvent) => JSON.stringify(e.payload).length;
    for (const batchSize of [1000, 7]) {
      const batches = await readAll(batchSize);
      expect(batches.flat().map((e) => e.aggregateId)).toEqual(expected);
      for (const b of batches) {
        // A batch over the budget is a single event larger than the budget.
        if (b.length > 1) expect(b.reduce((n, e) => n + payloadBytes(e), 0)).toBeLessThanOrEqual(MAX_BYTES);
        expect(b.length).toBeLessThanOrEqual(2 * batchSize);
      }
      // Counted in events alone, a batch size of 1000 would read all 120 events in one batch.
      expect(batches.length).toBeGreaterThanOrEqual(Math.ceil(list.reduce((n, x) => n + x, 0) / MAX_BYTES));
      expect(batches.some((b) => b.length === 1 && payloadBytes(b[0]) > MAX_BYTES)).toBe(true);
    }
  });
});
