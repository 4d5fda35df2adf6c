import { describe, expect, it } from 'vitest';
import { compileProjection, reduceEvent } from '../../src/projections/model.js';
import { blobProjection, prefillTestDatabase } from '../support/prefill-db.js';

// bytea values are strings in PostgreSQL's hex form (`\x…`). They travel three ways: COPY text format
// (new rows), JSON through json_populate_recordset / jsonb_populate_record (upserts after a COPY met a
// stored key, partial updates), and query parameters (the event-by-event replay). Each is exercised
// here with bytes that need escaping somewhere: 00 (NUL), 5c (backslash), 0a/0d/09 (line break, tab), ff.
const def = blobProjection((e) => (e.payload as { hex: string | null }).hex);
const model = compileProjection(def);

const db = prefillTestDatabase('projbytea');
const prefill = () => db.prefill(model);
const blob = (id: string, type: string, hex: string | null) => ({ aggregateType: 'blob', aggregateId: id, type, payload: { hex } });
const rows = () => db.tdb.query(`SELECT id, '\\x' || encode(data, 'hex') AS data FROM custom.blobs ORDER BY id`);

describe('bytea columns', () => {
  it('accepts only the hex form', () => {
    const set = (hex: string) => reduceEvent(model, { ...base(), payload: { hex } });
    expect(set('\\x00FFab')[0]).toMatchObject({ kind: 'upsert', row: { data: '\\x00FFab' } });
    for (const bad of ['abc', '\\x0', '\\xzz', '\\\\x00', '']) expect(() => set(bad), bad).toThrow(/cannot hold/);
  });

  it('round-trips through COPY (new rows), the JSON upsert and update paths, and the per-event replay', async () => {
    await db.log.append(blob('a', 'blob.set', '\\x005c0a0d09ff'), blob('b', 'blob.set', '\\x'), blob('n', 'blob.set', null));
    const first = await prefill();
    expect(first).toMatchObject({ events: 3, failedEvents: 0, replayedBatches: 0 });
    expect(await rows()).toEqual([{ id: 'a', data: '\\x005c0a0d09ff' }, { id: 'b', data: '\\x' }, { id: 'n', data: null }]);

    // A stored key again: the COPY meets it and the batch is written as upserts from JSON; b is a stored
    // row's partial update (jsonb_populate_record).
    await db.log.append(blob('a', 'blob.set', '\\x5c5c00'), blob('b', 'blob.changed', '\\x0a5c'));
    const second = await prefill();
    expect(second).toMatchObject({ events: 2, failedEvents: 0, replayedBatches: 0 });
    expect(await rows()).toEqual([{ id: 'a', data: '\\x5c5c00' }, { id: 'b', data: '\\x0a5c' }, { id: 'n', data: null }]);

    // A child of a missing parent fails the bulk write on its foreign key: the batch is replayed event
    // by event (values as query parameters) and only that event is recorded as failed.
    await db.log.append(blob('c', 'blob.set', '\\xdeadbeef00'), blob('zz', 'child.added', null), blob('n', 'blob.changed', '\\x09'));
    const third = await prefill();
    expect(third).toMatchObject({ events: 3, failedEvents: 1, replayedBatches: 1 });
    expect(await rows()).toEqual([
      { id: 'a', data: '\\x5c5c00' }, { id: 'b', data: '\\x0a5c' }, { id: 'c', data: '\\xdeadbeef00' }, { id: 'n', data: '\\x09' }]);
    expect(await db.tdb.query(`SELECT aggregate_id, error FROM projections.failed_events2`)).toEqual([
      { aggregate_id: 'zz', error: expect.stringMatching(/fk_children_ref_blobs/) }]);
  });
});

function base() {
  return { instanceId: 'inst1', aggregateType: 'blob', aggregateId: 'x', eventType: 'blob.set', sequence: 1, revision: 1,
    createdAt: '2024-01-01T00:00:00Z', payload: null, creator: 'c', owner: 'o', position: '1', inTxOrder: 0 };
}
