/**
 * Large bytea values (SAML metadata) travel without copies (issue 16 §3): `optBytes` keeps the payload's
 * base64 text (Base64Bytes), and COPY decodes it straight into a piece of the data sent. These tests pin
 * that the bytes written are the same as from the hex form a reducer may write, whatever the path: the
 * COPY data itself, and the table after COPY, the JSON upsert and update, and the event-by-event replay.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compileProjection, reduceEvent } from '../src/projections/model.js';
import { Base64Bytes, optBytes, payloadOf } from '../src/projections/payload.js';
import { copyData } from '../src/projections/write.js';
import { blobProjection, prefillTestDatabase } from './support/prefill-db.js';

const B = 'custom.blobs';
const def = blobProjection((e) => optBytes(payloadOf(e), 'b64'), 'a\tb\\c');
const model = compileProjection(def);
const table = model.tables.find((t) => t.name === B)!;

/** Bytes with every value that needs escaping in some form (00, 5c, 0a, 0d, 09, ff), then random ones. */
const blobOf = (size: number) => Buffer.concat([Buffer.from([0x00, 0x5c, 0x0a, 0x0d, 0x09, 0xff]), randomBytes(size)]).subarray(0, size);
const hexOf = (bytes: Buffer) => `\\x${bytes.toString('hex')}`;
/** Base64 as Go's encoding/json writes it, optionally broken into lines (which decoding ignores). */
const b64 = (bytes: Buffer, lines = false) => (lines ? bytes.toString('base64').replace(/.{76}/g, '$&\r\n') : bytes.toString('base64'));
/** The COPY data as one buffer. */
const copied = (rows: Parameters<typeof copyData>[1]) => Buffer.concat([...copyData(table, rows)]);

describe('bytea values from base64 payloads', () => {
  // Around the sizes from which a value is a piece of its own (64 KiB of text: 32,767 bytes in hex,
  // 49,150 in base64), and well over them.
  const sizes = [0, 1, 2, 3, 1000, 32_766, 32_767, 49_149, 49_150, 49_152, 49_153, 65_536, 300_001];

  it('are written into COPY data byte for byte as their hex form is', () => {
    for (const size of sizes) {
      const bytes = blobOf(size);
      const row = (data: unknown) => ({ instance_id: 'i', id: `x${size}`, data, note: 'a\tb\\c' }) as never;
      const expected = Buffer.from(`i\tx${size}\t\\${hexOf(bytes)}\ta\\tb\\\\c\n`, 'latin1');
      const b = new Base64Bytes(b64(bytes));
      expect(b.length, `length of ${size}`).toBe(size);
      expect(copied([row(hexOf(bytes))]).equals(expected), `hex form, ${size} bytes`).toBe(true);
      expect(copied([row(b)]).equals(expected), `base64, ${size} bytes`).toBe(true);
      expect(b.toJSON()).toBe(hexOf(bytes));
    }
    // Several rows, small and large values and NULL in turn: one stream of data, in row order.
    const values = sizes.map(blobOf);
    const rows = values.flatMap((v, i) => [{ instance_id: 'i', id: `b${i}`, data: new Base64Bytes(b64(v)), note: null }, { instance_id: 'i', id: `n${i}`, data: null, note: null }]);
    const text = values.map((v, i) => `i\tb${i}\t\\${hexOf(v)}\t\\N\ni\tn${i}\t\\N\t\\N\n`).join('');
    expect(copied(rows).equals(Buffer.from(text, 'latin1'))).toBe(true);
  });

  it('keep the payload text itself (no copy) and are validated as base64 with padding', () => {
    const text = b64(blobOf(100_000));
    const read = optBytes({ b64: text }, 'b64')!;
    expect(read.base64).toBe(text);
    const lines = blobOf(5000);
    expect(optBytes({ b64: b64(lines, true) }, 'b64')!.base64).toBe(b64(lines));
    for (const bad of ['abc', 'ab=c', '####', 'YQ']) expect(() => optBytes({ b64: bad }, 'b64'), bad).toThrow(/standard base64/);
    expect(() => optBytes({ b64: 7 }, 'b64')).toThrow(/a base64 string/);
  });

  it('reduce to ops whose JSON and query-parameter forms are the hex form', () => {
    const bytes = blobOf(70_000);
    const [op] = reduceEvent(model, { ...base(), payload: { b64: b64(bytes, true) } });
    const data = (op as { row: Record<string, unknown> }).row.data as Base64Bytes;
    expect(data).toBeInstanceOf(Base64Bytes);
    expect(JSON.parse(JSON.stringify({ data })).data).toBe(hexOf(bytes));
    expect(data.toPostgres()).toBe(hexOf(bytes));
  });
});

describe('bytea values from base64 payloads in the database', () => {
  const db = prefillTestDatabase('projbytea64');
  const prefill = () => db.prefill(model);
  const blob = (id: string, type: string, bytes: Buffer | null, lines = false) =>
    ({ aggregateType: 'blob', aggregateId: id, type, payload: { b64: bytes === null ? null : b64(bytes, lines) } });
  const rows = () => db.tdb.query(`SELECT id, '\\x' || encode(data, 'hex') AS data FROM custom.blobs ORDER BY id`);

  it('round-trip through COPY, the JSON upsert and update paths, and the per-event replay', async () => {
    const [big, big2, big3, small] = [blobOf(300_000), blobOf(200_000), blobOf(150_000), blobOf(9)];
    await db.log.append(blob('a', 'blob.set', big, true), blob('b', 'blob.set', small), blob('n', 'blob.set', null));
    expect(await prefill()).toMatchObject({ events: 3, failedEvents: 0, replayedBatches: 0 });
    expect(await rows()).toEqual([{ id: 'a', data: hexOf(big) }, { id: 'b', data: hexOf(small) }, { id: 'n', data: null }]);

    // A stored key again: the batch goes as upserts from JSON; b is a partial update (jsonb_populate_record).
    await db.log.append(blob('a', 'blob.set', big2), blob('b', 'blob.changed', big3));
    expect(await prefill()).toMatchObject({ events: 2, failedEvents: 0, replayedBatches: 0 });
    expect(await rows()).toEqual([{ id: 'a', data: hexOf(big2) }, { id: 'b', data: hexOf(big3) }, { id: 'n', data: null }]);

    // A child of a missing parent: the batch is replayed event by event, values as query parameters.
    await db.log.append(blob('c', 'blob.set', big), blob('zz', 'child.added', null), blob('n', 'blob.changed', small));
    expect(await prefill()).toMatchObject({ events: 3, failedEvents: 1, replayedBatches: 1 });
    expect(await rows()).toEqual([
      { id: 'a', data: hexOf(big2) }, { id: 'b', data: hexOf(big3) }, { id: 'c', data: hexOf(big) }, { id: 'n', data: hexOf(small) }]);
  });
});

function base() {
  return { instanceId: 'inst1', aggregateType: 'blob', aggregateId: 'x', eventType: 'blob.set', sequence: 1, revision: 1,
    createdAt: '2024-01-01T00:00:00Z', payload: null, creator: 'c', owner: 'o', position: '1', inTxOrder: 0 };
}
