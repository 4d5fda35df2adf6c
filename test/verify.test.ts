import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { ensureBuilt, runCli } from './support/cli.js';

let tdb: TestDatabase;
beforeAll(async () => {
  ensureBuilt();
  tdb = await createTestDatabase('verify');
  const seed = await runCli(['seed', '--events', '3000', '--instances', '3', '-d', tdb.url]);
  expect(seed.code, seed.stderr).toBe(0);
  const migrate = await runCli(['migrate', '--init-projections', '-d', tdb.url]);
  expect(migrate.code, migrate.stderr).toBe(0);
});
afterAll(() => tdb?.drop());

async function verify(): Promise<{ code: number | null; text: string; json: any }> {
  const human = await runCli(['verify', '-d', tdb.url]);
  const json = await runCli(['verify', '--json', '-d', tdb.url]);
  expect(json.code).toBe(human.code);
  return { code: human.code, text: human.stdout, json: JSON.parse(json.stdout) };
}

/** The n-th SQL block of the README's section "Rollback and a new copy", as printed there. */
function readmeSql(n: number): string {
  const readme = fs.readFileSync(path.join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Rollback and a new copy'), readme.indexOf('### Kubernetes'));
  const blocks = [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]);
  expect(blocks).toHaveLength(2);
  return blocks[n];
}

async function count(where: string): Promise<number> {
  return (await tdb.query(`SELECT count(*)::int AS n FROM ${where}`))[0].n;
}

describe('zsetup verify', () => {
  it('passes after a normal migrate and reports the milestone events as appended', async () => {
    const milestones = await count(`eventstore.events2 WHERE aggregate_type = 'milestone'`);
    expect(milestones).toBeGreaterThan(0);
    const moved = await count('eventstore.events_old');
    // milestones-v2's events, and any bookkeeping events zsetup writes for ZITADEL's setup.
    const appended = (await count('eventstore.events2')) - moved;
    expect(appended).toBeGreaterThanOrEqual(milestones);
    const r = await verify();
    expect(r.code, r.text).toBe(0);
    expect(r.json).toMatchObject({ status: 'equal', events: moved, mismatches: [], exitCode: 0 });
    expect(r.json.appended.events).toBe(appended);
    expect(r.text).toContain(`equal: every event of eventstore.events_old is in eventstore.events2 unchanged (${moved.toLocaleString('en-US')} moved events`);
    expect(r.text).toMatch(new RegExp(`^appended after the move: ${appended} events in \\d+ instances`, 'm'));
  });

  it('still passes when the application writes new events, and counts them', async () => {
    const before = (await verify()).json.appended.events;
    const [{ instance_id: instance }] = await tdb.query(`SELECT instance_id FROM eventstore.events_old WHERE aggregate_type = 'instance' LIMIT 1`);
    await tdb.query(`
      INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at, payload, creator, owner, "position", in_tx_order)
      VALUES ($1, 'user', 'app-written-user', 'user.human.added', 1, 1, now(), '{}', 'app', $1, EXTRACT(EPOCH FROM clock_timestamp()), 1),
             ('instance-created-later', 'instance', 'instance-created-later', 'instance.added', 1, 1, now(), '{}', 'app', 'instance-created-later', EXTRACT(EPOCH FROM clock_timestamp()), 2)`,
    [instance]);
    const r = await verify();
    expect(r.code, r.text).toBe(0);
    expect(r.json.appended.events).toBe(before + 2);
    expect(r.json.appended.byInstance).toContainEqual({ instanceId: 'instance-created-later', events: 1 });
  });

  it('exits 4 naming the instance and the event when a moved row was changed or removed', async () => {
    const [changed] = await tdb.query(`SELECT instance_id, aggregate_type, aggregate_id, event_sequence::int AS seq FROM eventstore.events_old WHERE aggregate_type = 'user' ORDER BY aggregate_id, event_sequence LIMIT 1`);
    const [removed] = await tdb.query(`SELECT instance_id, aggregate_type, aggregate_id, event_sequence::int AS seq FROM eventstore.events_old WHERE instance_id <> $1 AND aggregate_type = 'org' ORDER BY aggregate_id, event_sequence LIMIT 1`, [changed.instance_id]);
    await tdb.query(`UPDATE eventstore.events2 SET payload = '{"tampered": true}' WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 AND "sequence" = $4`,
      [changed.instance_id, changed.aggregate_type, changed.aggregate_id, changed.seq]);
    await tdb.query(`DELETE FROM eventstore.events2 WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 AND "sequence" = $4`,
      [removed.instance_id, removed.aggregate_type, removed.aggregate_id, removed.seq]);
    const r = await verify();
    expect(r.code).toBe(4);
    expect(r.json.status).toBe('mismatch');
    expect(r.json.exitCode).toBe(4);
    const byId = new Map(r.json.mismatches.map((m: any) => [m.instanceId, m]));
    expect(byId.size).toBe(2);
    expect(byId.get(changed.instance_id)).toMatchObject({ missing: 0, differing: 1, examples: [{ aggregateType: 'user', aggregateId: changed.aggregate_id, sequence: changed.seq, problem: 'differs' }] });
    expect(byId.get(removed.instance_id)).toMatchObject({ missing: 1, differing: 0, examples: [{ aggregateType: 'org', aggregateId: removed.aggregate_id, sequence: removed.seq, problem: 'missing' }] });
    expect(r.text).toContain(`instance '${changed.instance_id}'`);
    expect(r.text).toContain(`user/${changed.aggregate_id} sequence ${changed.seq} changed`);
    expect(r.text).toContain(`org/${removed.aggregate_id} sequence ${removed.seq} missing`);
    expect(r.text).toMatch(/^hint: events_old still holds every event/m);
  });

  it('the hint holds: a new copy from events_old, as the README describes, verifies equal again', async () => {
    // README "Rollback and a new copy", before the new version has written to events2: its second script.
    await tdb.query(readmeSql(1));
    const again = await runCli(['migrate', '--init-projections', '-d', tdb.url]);
    expect(again.code, again.stderr).toBe(0);
    const r = await verify();
    expect(r.code, r.text).toBe(0);
    expect(r.json.appended.events).toBe((await count('eventstore.events2')) - (await count('eventstore.events_old')));
    expect(r.json.appended.events).toBeGreaterThanOrEqual(await count(`eventstore.events2 WHERE aggregate_type = 'milestone'`));
    // The read models were prefilled again from the new copy: all at the head.
    const status = JSON.parse((await runCli(['status', '--init-projections', '--json', '-d', tdb.url])).stdout);
    for (const s of status.steps.filter((x: any) => x.id.startsWith('projection:'))) {
      expect(s.status, s.id).toBe('succeeded');
      expect(s.projection.eventsToApply, s.id).toBe(0);
    }
  });

  it('the README rollback gives the old version its table back, and a later migrate moves again', async () => {
    const moved = await count('eventstore.events_old');
    const appended = (await count('eventstore.events2')) - moved;
    const legacySteps = await count(`eventstore.events_old WHERE aggregate_type = 'system' AND event_type = 'system.migration.done'`);
    await tdb.query(readmeSql(0));
    expect(await count('eventstore.events')).toBe(moved);
    expect((await tdb.query(`SELECT to_regclass('eventstore.events_old') AS o, to_regclass('eventstore.events2') AS n, to_regclass('zsetup.steps') AS z`))[0]).toEqual({ o: null, n: null, z: null });
    // What was written since is kept aside, not lost.
    expect(await count('zsetup_rolled_back.events2')).toBe(moved + appended);
    // Only the setup records the old table has are left in unique_constraints.
    expect(await count(`eventstore.unique_constraints WHERE unique_type = 'migration_done'`)).toBe(legacySteps);
    // The old version writes again, as it does: the next event of an instance, legacy columns.
    await tdb.query(`
      INSERT INTO eventstore.events (event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence, creation_date, event_data, editor_user, editor_service, resource_owner, instance_id)
      SELECT 'org.added', 'org', 'org-after-rollback', 'v1', max(event_sequence) + 1, now(), '{"name": "after"}', 'u', 's', 'org-after-rollback', instance_id
      FROM eventstore.events WHERE instance_id = (SELECT instance_id FROM eventstore.events WHERE aggregate_type = 'instance' LIMIT 1) GROUP BY instance_id`);
    const again = await runCli(['migrate', '--init-projections', '-d', tdb.url]);
    expect(again.code, again.stderr).toBe(0);
    const r = await verify();
    expect(r.code, r.text).toBe(0);
    expect(r.json.events).toBe(moved + 1);
  });

  it('has nothing to verify before the move', async () => {
    const fresh = await createTestDatabase('verify_fresh');
    try {
      const r = await runCli(['verify', '-d', fresh.url]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('nothing to verify: eventstore.events_old and eventstore.events2 do not exist');
    } finally {
      await fresh.drop();
    }
  });
});
