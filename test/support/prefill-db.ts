import { afterAll, beforeAll } from 'vitest';
import type { Database } from '../../src/db/connection.js';
import type { ProjectionModel } from '../../src/projections/model.js';
import { prefillProjection, type PrefillResult } from '../../src/projections/prefill.js';
import type { ColumnValue, ProjectionDefinition, ProjectionEvent } from '../../src/projections/types.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { EventLog } from './events.js';

/** A prefill's context that reports nothing and is never stopped. */
const QUIET = { progress: () => {}, log: () => {}, throwIfStopped: () => {} };

/** The database of {@link prefillTestDatabase}, ready once the tests run. */
export interface PrefillTestDatabase {
  readonly tdb: TestDatabase;
  readonly database: Database;
  /** Appends events to its events2. */
  readonly log: EventLog;
  /** Prefills one projection up to the head, on one stream. */
  prefill(model: ProjectionModel): Promise<PrefillResult>;
}

/**
 * A database of its own for the tests of a file or a describe block, with events2 for an event log:
 * created before them, dropped after them.
 */
export function prefillTestDatabase(prefix: string): PrefillTestDatabase {
  let env: { tdb: TestDatabase; database: Database; log: EventLog } | undefined;
  beforeAll(async () => {
    const tdb = await createTestDatabase(prefix);
    const database = await tdb.open();
    env = { tdb, database, log: await EventLog.create(database.pool) };
  });
  afterAll(() => env?.tdb.drop());
  const ready = () => {
    if (!env) throw new Error('prefillTestDatabase: used outside a test');
    return env;
  };
  return {
    get tdb() { return ready().tdb; },
    get database() { return ready().database; },
    get log() { return ready().log; },
    prefill: (model) => prefillProjection(ready().database, model, { endPoint: '9999999999', concurrency: 1 }, QUIET),
  };
}

/**
 * A custom projection for bytea tests: `custom.blobs` (a nullable bytea `data`, and with `note` a text
 * column set to it on `blob.set`) and `custom.blob_children` under it. `blob.set` upserts and
 * `blob.changed` updates `data` with what `data(event)` takes from the payload.
 */
export function blobProjection(data: (event: ProjectionEvent) => ColumnValue | undefined, note?: string): ProjectionDefinition {
  const B = 'custom.blobs';
  const C = 'custom.blob_children';
  const noteColumn = note === undefined ? [] : [{ name: 'note', type: 'text', nullable: true } as const];
  return {
    name: B,
    tables: [
      { name: B, primaryKey: ['instance_id', 'id'], columns: [
        { name: 'instance_id', type: 'text' }, { name: 'id', type: 'text' }, { name: 'data', type: 'bytea', nullable: true }, ...noteColumn] },
      { name: C, primaryKey: ['instance_id', 'id'], columns: [{ name: 'instance_id', type: 'text' }, { name: 'id', type: 'text' }],
        parent: { table: B, columns: { instance_id: 'instance_id', id: 'id' }, constraint: 'fk_children_ref_blobs' } },
    ],
    reducers: { blob: {
      'blob.set': (e, w) => w.upsert(B, { instance_id: e.instanceId, id: e.aggregateId, data: data(e) ?? null, ...(note === undefined ? {} : { note }) }),
      'blob.changed': (e, w) => w.update(B, { instance_id: e.instanceId, id: e.aggregateId }, { data: data(e) ?? null }),
      'child.added': (e, w) => w.upsert(C, { instance_id: e.instanceId, id: e.aggregateId }),
    } },
  };
}
