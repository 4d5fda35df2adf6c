import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { ensureBuilt, runCli } from './support/cli.js';

let tdb: TestDatabase;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zsetup-module-'));
const module = (table: string) => {
  const file = path.join(dir, `${table}.mjs`);
  fs.writeFileSync(file, `export const projections = [{
  name: 'custom.${table}',
  tables: [{ name: 'custom.${table}', primaryKey: ['instance_id', 'id'],
    columns: [{ name: 'instance_id', type: 'text' }, { name: 'id', type: 'text' }, { name: 'name', type: 'text' }] }],
  reducers: { org: { 'org.added': (e, w) => w.upsert('custom.${table}', { instance_id: e.instanceId, id: e.aggregateId, name: String(e.payload.name) }) } },
}];\n`);
  return file;
};

beforeAll(async () => {
  ensureBuilt();
  tdb = await createTestDatabase('cpm');
  expect((await runCli(['seed', '--events', '2000', '--instances', '2', '-d', tdb.url])).code).toBe(0);
  expect((await runCli(['migrate', '-d', tdb.url])).code).toBe(0);
});
afterAll(async () => {
  await tdb?.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('--projections-module (not one letter away from --projection)', () => {
  it('is the flag shown in --help; the old spelling --projections is hidden but still read', async () => {
    const help = await runCli(['init-projections', '--help']);
    expect(help.stdout).toContain('--projections-module <file.js>');
    expect(help.stdout).not.toMatch(/--projections </);
    const [{ n: orgs }] = await tdb.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE event_type = 'org.added'`);
    for (const [flag, table] of [['--projections-module', 'by_module'], ['--projections', 'by_old_flag']] as const) {
      const r = await runCli(['init-projections', flag, module(table), '--projection', `custom.${table}`, '-d', tdb.url]);
      expect(r.code, r.stderr).toBe(0);
      const [{ n }] = await tdb.query(`SELECT count(*)::int AS n FROM custom.${table}`);
      expect(n).toBe(orgs);
    }
  });
});
