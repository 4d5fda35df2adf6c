import { sql } from 'kysely';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { RUNNER_LOCK } from '../src/db/lock.js';
import { LockTimeoutError } from '../src/errors.js';
import { migrate, type MigrateOptions } from '../src/migrate.js';
import { planMigrate } from '../src/plan.js';
import { getStatus } from '../src/status.js';
import type { RunEvent, Step } from '../src/step.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

/** A step that inserts `units` rows one transaction each, checkpointing the next unit; can fail once at `failAt`. */
function unitStep(id: string, units: number, behaviour: { failAt?: number; onUnit?: (n: number) => void } = {}): Step<{ next: number }> {
  let failed = false;
  return {
    id,
    title: `test step ${id}`,
    async plan(ctx) {
      const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM t.units WHERE step = ${id}`.execute(ctx.tx);
      return { action: `insert ${units - r.rows[0].n} units`, willChange: true, details: { units } };
    },
    async run(ctx) {
      for (let n = ctx.checkpoint?.next ?? 0; n < units; n++) {
        ctx.throwIfStopped();
        if (n === behaviour.failAt && !failed) {
          failed = true;
          throw new Error(`planned failure at unit ${n}`);
        }
        await ctx.transaction(async (tx) => {
          await sql`INSERT INTO t.units (step, n) VALUES (${id}, ${n})`.execute(tx);
          await ctx.saveCheckpoint(tx, { next: n + 1 });
        });
        ctx.progress({ phase: 'insert', done: n + 1, total: units, unit: 'units' });
        behaviour.onUnit?.(n);
      }
      return { message: `inserted ${units} units`, units };
    },
  };
}

let tdb: TestDatabase;
let database: Database;

beforeEach(async () => {
  await tdb?.drop();
  tdb = await createTestDatabase('migrate');
  await tdb.query('CREATE SCHEMA t; CREATE TABLE t.units (step text, n int, PRIMARY KEY (step, n))');
  database = await tdb.open();
});
afterAll(() => tdb?.drop());

const base = (steps: Step<any>[], extra: Partial<MigrateOptions> = {}): MigrateOptions => ({
  steps,
  lockWaitMs: 10_000,
  stepOptions: { concurrency: 2, exact: false },
  version: 'test',
  ...extra,
});

async function units(): Promise<string[]> {
  return (await tdb.query('SELECT step, n FROM t.units ORDER BY step, n')).map((r) => `${r.step}:${r.n}`);
}

describe('migrate', () => {
  it('runs steps in order, records them, and skips them on the next run', async () => {
    const order: string[] = [];
    const steps = [unitStep('a', 2, { onUnit: () => order.push('a') }), unitStep('b', 2, { onUnit: () => order.push('b') })];
    const first = await migrate(database, base(steps));
    expect(first.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded']);
    expect(order).toEqual(['a', 'a', 'b', 'b']);
    const rows = await tdb.query('SELECT id, status, attempts, checkpoint, runner FROM zsetup.steps ORDER BY id');
    expect(rows.map((r) => [r.id, r.status, r.attempts])).toEqual([['a', 'succeeded', 1], ['b', 'succeeded', 1]]);
    expect(rows[0].runner.pid).toBe(process.pid);
    const second = await migrate(database, base(steps));
    expect(second.upToDate).toBe(true);
    expect(second.steps.map((s) => s.status)).toEqual(['skipped', 'skipped']);
    expect(await units()).toEqual(['a:0', 'a:1', 'b:0', 'b:1']);
  });

  it('stops at a failed step and resumes it from its checkpoint on the next run', async () => {
    const steps = [unitStep('a', 5, { failAt: 3 }), unitStep('b', 1)];
    const first = await migrate(database, base(steps));
    expect(first.steps.map((s) => s.status)).toEqual(['failed', 'not-run']);
    expect(first.steps[0].error?.message).toContain('planned failure at unit 3');
    const row = (await tdb.query(`SELECT status, checkpoint, last_error FROM zsetup.steps WHERE id = 'a'`))[0];
    expect(row).toMatchObject({ status: 'failed', checkpoint: { next: 3 } });
    expect(row.last_error.message).toContain('planned failure');
    const second = await migrate(database, base(steps));
    expect(second.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded']);
    expect(second.steps[0].attempt).toBe(2);
    expect(await units()).toEqual(['a:0', 'a:1', 'a:2', 'a:3', 'a:4', 'b:0']);
  });

  it('treats a row left running by a dead runner as interrupted and resumes it without clean-up', async () => {
    await migrate(database, base([unitStep('a', 3, { failAt: 2 })]));
    await tdb.query(`UPDATE zsetup.steps SET status = 'running', last_error = NULL WHERE id = 'a'`);
    const status = await getStatus(database, [unitStep('a', 3)]);
    expect(status.steps[0]).toMatchObject({ status: 'interrupted', live: false });
    const events: RunEvent[] = [];
    const r = await migrate(database, base([unitStep('a', 3)], { onEvent: (e) => events.push(e) }));
    expect(r.steps[0].status).toBe('succeeded');
    expect(events.find((e) => e.type === 'step-start')).toMatchObject({ resuming: true, attempt: 2 });
    expect(await units()).toEqual(['a:0', 'a:1', 'a:2']);
  });

  it('lets four concurrent runners do the work exactly once, all ending without error', async () => {
    let runs = 0;
    const make = () => [unitStep('a', 20, { onUnit: (n) => n === 0 && runs++ })];
    const dbs = await Promise.all([1, 2, 3, 4].map(() => tdb.open()));
    const results = await Promise.all(dbs.map((d) => migrate(d, base(make(), { lockWaitMs: 60_000 }))));
    expect(runs).toBe(1);
    expect(results.filter((r) => r.steps[0].status === 'succeeded')).toHaveLength(1);
    expect(results.filter((r) => r.upToDate)).toHaveLength(3);
    expect((await units()).length).toBe(20);
  });

  it('times out waiting for the lock and names the holder', async () => {
    const holder = await tdb.client();
    await holder.query('SELECT pg_advisory_lock($1, $2)', [...RUNNER_LOCK]);
    const pid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const waits: RunEvent[] = [];
    const run = migrate(database, base([unitStep('a', 1)], { lockWaitMs: 1200, onEvent: (e) => waits.push(e) }));
    await expect(run).rejects.toBeInstanceOf(LockTimeoutError);
    await expect(run).rejects.toThrow(`backend pid ${pid}`);
    expect(waits.some((e) => e.type === 'lock-wait' && e.holder?.pid === pid)).toBe(true);
    expect(await units()).toEqual([]);
  });

  it('stops after the current unit when aborted, records interrupted, and a rerun resumes', async () => {
    const stop = new AbortController();
    const r = await migrate(database, base([unitStep('a', 10, { onUnit: (n) => n === 3 && stop.abort('SIGINT') })], { signal: stop.signal }));
    expect(r.steps[0].status).toBe('interrupted');
    expect(await units()).toHaveLength(4);
    expect((await tdb.query(`SELECT status FROM zsetup.steps`))[0].status).toBe('interrupted');
    const again = await migrate(database, base([unitStep('a', 10)]));
    expect(again.steps[0].status).toBe('succeeded');
    expect(await units()).toHaveLength(10);
  });

  it('does not start the next step once a stop was requested, and reports it as interrupted', async () => {
    const stop = new AbortController();
    const steps = [unitStep('a', 2, { onUnit: (n) => n === 1 && stop.abort('SIGTERM') }), unitStep('b', 2)];
    const r = await migrate(database, base(steps, { signal: stop.signal }));
    // 'a' finished its last unit before noticing; 'b' never started.
    expect(r.steps.map((s) => s.status)).toEqual(['succeeded', 'interrupted']);
    expect(r.steps[1].error?.exitCode).toBe(130);
    expect(await units()).toEqual(['a:0', 'a:1']);
  });

  it('emits the first progress event of every phase despite the throttle', async () => {
    const events: RunEvent[] = [];
    const step: Step = {
      id: 'phases',
      title: 'phases',
      plan: async () => ({ action: 'x', willChange: true, details: {} }),
      async run(ctx) {
        ctx.progress({ phase: 'one', done: 1, total: 1 });
        ctx.progress({ phase: 'two', done: 0, total: 2 });
        ctx.progress({ phase: 'two', done: 1, total: 2 });
        ctx.progress({ phase: 'three', done: 0, total: 1 });
        return { message: 'ok' };
      },
    };
    await migrate(database, base([step], { onEvent: (e) => events.push(e) }));
    const seen = events.flatMap((e) => (e.type === 'step-progress' ? [`${e.progress.phase}:${e.progress.done}`] : []));
    expect(seen).toEqual(['one:1', 'two:0', 'three:0']);
  });

  it('runs the steps of a parallel group side by side, heaviest first, and halts after the group when one fails', async () => {
    const order: string[] = [];
    const running = new Set<string>();
    let overlapped = false;
    const grouped = (id: string, weight: number, fail = false): Step => ({
      ...unitStep(id, 1),
      schedule: { group: 'g', remaining: async () => weight },
      async run() {
        order.push(id);
        running.add(id);
        overlapped ||= running.size > 1;
        await new Promise((r) => setTimeout(r, 150));
        running.delete(id);
        if (fail) throw new Error(`planned failure of ${id}`);
        return { message: `ran ${id}` };
      },
    });
    const steps = [grouped('light', 1), grouped('heavy', 9), grouped('middle', 5), unitStep('after', 1)];
    const r = await migrate(database, base(steps));
    expect(r.steps.map((s) => [s.id, s.status])).toEqual([['light', 'succeeded'], ['heavy', 'succeeded'], ['middle', 'succeeded'], ['after', 'succeeded']]);
    // Two workers take the two heaviest at once (either may record itself first), the light one after.
    expect(order.slice(0, 2).sort()).toEqual(['heavy', 'middle']);
    expect(order[2]).toBe('light');
    expect(overlapped).toBe(true);

    const failing = [grouped('x2', 2), grouped('x1', 3, true), grouped('x3', 1), unitStep('after2', 1)];
    const f = await migrate(database, base(failing, { stepOptions: { concurrency: 1, exact: false } }));
    // One at a time (concurrency 1): the heaviest, x1, runs first and fails, so x2 and x3 never start and
    // the step after the group does not run.
    expect(f.steps.map((s) => [s.id, s.status])).toEqual([['x2', 'not-run'], ['x1', 'failed'], ['x3', 'not-run'], ['after2', 'not-run']]);
  });

  it('shows live progress of a running step to status from another connection', async () => {
    const observer = await tdb.open();
    let seen: unknown;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const step: Step = {
      id: 'slow',
      title: 'slow',
      plan: async () => ({ action: 'x', willChange: true, details: {} }),
      async run(ctx) {
        ctx.progress({ phase: 'copy', done: 5, total: 10, unit: 'events' });
        await gate;
        return { message: 'ok' };
      },
    };
    const run = migrate(database, base([step], { heartbeatMs: 100 }));
    for (let i = 0; i < 50 && !seen; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const s = await getStatus(observer, [step]);
      if (s.steps[0].live && s.steps[0].row?.progress) seen = s.steps[0];
    }
    release();
    await run;
    expect(seen).toMatchObject({ status: 'running', live: true, row: { progress: { phase: 'copy', done: 5, total: 10 } } });
  });
});

describe('planMigrate (dry-run)', () => {
  it('writes nothing: no steps table is created, and a write attempt fails loudly', async () => {
    const writer: Step = {
      id: 'writer',
      title: 'tries to write in plan',
      async plan(ctx) {
        await sql`INSERT INTO t.units VALUES ('x', 1)`.execute(ctx.tx);
        return { action: 'x', willChange: true, details: {} };
      },
      run: async () => ({ message: 'ok' }),
    };
    const before = await tdb.query(`SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()`);
    const plan = await planMigrate(database, { steps: [unitStep('a', 3), writer], stepOptions: { concurrency: 1, exact: true } });
    expect(plan.steps[0]).toMatchObject({ state: 'pending', plan: { action: 'insert 3 units' } });
    expect(plan.steps[1].error).toMatchObject({ sqlstate: '25006' });
    expect((await tdb.query(`SELECT to_regclass('zsetup.steps') AS t`))[0].t).toBeNull();
    expect(await units()).toEqual([]);
    await tdb.query('SELECT pg_stat_force_next_flush()').catch(() => {});
    const after = await tdb.query(`SELECT tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()`);
    expect(after[0].tup_inserted).toBe(before[0].tup_inserted);
  });

  it('reports succeeded steps as done without planning them', async () => {
    await migrate(database, base([unitStep('a', 1)]));
    const plan = await planMigrate(database, { steps: [unitStep('a', 1)], stepOptions: { concurrency: 1, exact: false } });
    expect(plan.steps[0]).toEqual({ id: 'a', title: 'test step a', state: 'succeeded' });
  });
});
