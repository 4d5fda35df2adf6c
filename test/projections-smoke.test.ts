import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { compileProjection } from '../src/projections/model.js';
import { prefillProjection } from '../src/projections/prefill.js';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { EventLog } from './support/events.js';

let tdb: TestDatabase;
let database: Database;
beforeAll(async () => {
  tdb = await createTestDatabase('projsmoke');
  database = await tdb.open();
});
afterAll(() => tdb?.drop());

const ctx = { progress: () => {}, log: () => {}, throwIfStopped: () => {} };

it('prefills orgs', async () => {
  const log = await EventLog.create(database.pool);
  await log.append(
    { aggregateType: 'org', aggregateId: 'o1', type: 'org.added', payload: { name: 'one' } },
    { aggregateType: 'org', aggregateId: 'o1', type: 'org.changed', payload: { name: 'uno' } },
    { aggregateType: 'org', aggregateId: 'o2', type: 'org.added', payload: { name: 'two' } },
    { aggregateType: 'org', aggregateId: 'o2', type: 'org.deactivated', payload: {} },
  );
  for (const def of BUILTIN_PROJECTIONS) {
    await prefillProjection(database, compileProjection(def), { endPoint: '9999999999', concurrency: 2 }, ctx);
  }
  const rows = await tdb.query('SELECT id, name, org_state, sequence FROM projections.orgs1 ORDER BY id');
  expect(rows).toEqual([{ id: 'o1', name: 'uno', org_state: 1, sequence: 2 }, { id: 'o2', name: 'two', org_state: 2, sequence: 2 }]);
});
