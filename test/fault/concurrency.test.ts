/**
 * Several runners at once: four `zsetup migrate` processes on one legacy database, and `status` /
 * `migrate --dry-run` from other processes while a run is in the middle of its copy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyOf, dropAll, migrateArgs, prepareCli, seededTemplate, startCli, waitNoBackends, waitStopped, zsetup, type FaultDb } from './harness.js';
import { expectEndStateRight, snapshot, stepRows } from './oracle.js';

let template: FaultDb;
beforeAll(async () => {
  prepareCli();
  template = await seededTemplate('zfcc', { events: 8_000, instances: 5 });
});
afterAll(dropAll);

describe('concurrent runners', () => {
  it('four migrate processes at once: one does each step, the others wait naming the holder, all exit 0', async () => {
    const db = await copyOf(template);
    const runs = await Promise.all([1, 2, 3, 4].map(() => startCli(migrateArgs(db, '--json')).done));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const results = runs.map((r) => JSON.parse(r.stdout) as { steps: { id: string; status: string }[] });
    const ids = results[0].steps.map((s) => s.id);
    expect(ids.length).toBeGreaterThanOrEqual(8);
    for (const id of ids) {
      const statuses = results.map((res) => res.steps.find((s) => s.id === id)?.status).sort();
      expect({ id, statuses }).toEqual({ id, statuses: ['skipped', 'skipped', 'skipped', 'succeeded'] });
    }
    const waiters = runs.filter((r) => r.stderr.includes('waiting for the runner lock'));
    expect(waiters.length).toBeGreaterThanOrEqual(1);
    for (const w of waiters) expect(w.stderr).toMatch(/held by backend pid \d+ \(zsetup\)/);
    // One attempt per run of a step (on a legacy database the projections and events2 run before and after the cut-over).
    const ran = (id: string) => results.flatMap((res) => res.steps).filter((s) => s.id === id && s.status === 'succeeded').length;
    expect((await stepRows(db)).filter((s) => s.attempts !== ran(s.id) || s.status !== 'succeeded')).toEqual([]);
    await expectEndStateRight(db);
  });

  it('status and migrate --dry-run during a run work and change nothing', async () => {
    const db = await copyOf(template);
    // Freeze the runner in the middle of its copy, a chunk transaction open.
    const run = startCli(migrateArgs(db), { ZSETUP_TEST_KILL_AT: 'progress events2 2 copy', ZSETUP_TEST_KILL_SIGNAL: 'SIGSTOP' });
    await waitStopped(run);
    const before = await snapshot(db);
    const status = await zsetup(['status', '--json', '-d', db.url]);
    expect(status.code, status.stderr).toBe(0);
    const events2 = JSON.parse(status.stdout).steps.find((s: { id: string }) => s.id === 'events2');
    expect(events2.status).toBe('running');
    const plan = await zsetup(['migrate', '--init-projections', '--dry-run', '--json', '-d', db.url]);
    expect(plan.code, plan.stderr).toBe(0);
    const planned = JSON.parse(plan.stdout).steps.find((s: { id: string }) => s.id === 'events2');
    expect(planned.plan.action).toContain('resume the interrupted copy');
    expect(await snapshot(db)).toEqual(before);
    run.child.kill('SIGCONT');
    const done = await run.done;
    expect(done.code, done.stderr).toBe(0);
    await waitNoBackends(db);
    await expectEndStateRight(db);
  });
});
