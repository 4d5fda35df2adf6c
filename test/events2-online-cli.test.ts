/**
 * The online move through the built CLI, as an operator runs it: `migrate --prepare` hours ahead,
 * `status`, `migrate --dry-run`, `abort-move`, then `migrate` at deploy time; the flag combinations
 * that make no sense exit 2.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { seedAwkwardLegacy } from './events2-support.js';

let tdb: TestDatabase;
beforeAll(async () => {
  ensureBuilt();
  tdb = await createTestDatabase('ev2c');
  await seedAwkwardLegacy(tdb, 300);
});
afterAll(async () => tdb?.drop());

const json = (out: string) => JSON.parse(out);

describe('zsetup migrate --prepare / abort-move / migrate', () => {
  it('rejects --offline with --prepare, and --prepare with other steps, with exit 2', async () => {
    for (const extra of [['--offline'], ['--only', 'milestones-v2']]) {
      const r = await runCli(['migrate', '--prepare', ...extra, '-d', tdb.url]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--prepare/);
    }
  });

  it('prepares, shows it, aborts it, prepares again and cuts over', async () => {
    const prepared = await runCli(['migrate', '--prepare', '--json', '-d', tdb.url]);
    expect(prepared.code, prepared.stderr).toBe(0);
    const steps = json(prepared.stdout).steps;
    // --prepare runs the events2 step alone.
    expect(steps.map((s: { id: string; status: string }) => [s.id, s.status])).toEqual([['events2', 'succeeded']]);
    expect(steps[0].summary).toMatchObject({ prepared: true });
    expect(prepared.stderr).toContain('capture on');

    const status = await runCli(['status', '-d', tdb.url]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/prepared the online move/);

    const plan = await runCli(['migrate', '--dry-run', '--json', '-d', tdb.url]);
    expect(plan.code, plan.stderr).toBe(0);
    const events2 = json(plan.stdout).steps.find((s: { id: string }) => s.id === 'events2');
    expect(events2.plan.action).toMatch(/prepared: catch up/);
    expect(events2.plan.details).toMatchObject({ online: true, stage: 'catch-up', captureBacklog: 0 });

    const aborted = await runCli(['abort-move', '-d', tdb.url]);
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(aborted.stdout).toMatch(/aborted the online move .*removed the capture triggers on eventstore.events, the capture queue, eventstore.events2/);
    const again = await runCli(['abort-move', '--json', '-d', tdb.url]);
    expect(again.code, again.stderr).toBe(0);
    expect(json(again.stdout)).toMatchObject({ status: 'nothing-to-abort' });

    expect((await runCli(['migrate', '--prepare', '-d', tdb.url])).code).toBe(0);
    const done = await runCli(['migrate', '--json', '-d', tdb.url]);
    expect(done.code, done.stderr).toBe(0);
    const moved = json(done.stdout).steps.find((s: { id: string }) => s.id === 'events2');
    expect(moved.status).toBe('succeeded');
    expect(moved.summary).toMatchObject({ online: true, verified: true, events: 904 });
    expect(moved.summary.cutOver.lockHeldMs).toBeLessThan(1000);
    expect(done.stderr).toMatch(/cut over on attempt 1: lock held \d+ ms/);

    const late = await runCli(['abort-move', '-d', tdb.url]);
    expect(late.code).toBe(5);
    expect(late.stderr).toMatch(/already cut over/);
  });
});
