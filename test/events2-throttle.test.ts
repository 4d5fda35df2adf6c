/**
 * The online copy's throttle: its decisions as a pure function of the probe latencies (backs off,
 * recovers, never past its floor), and real online moves under the legacy writer with the throttle
 * engaged all the way to its floor: every committed event arrives once, a crash mid-copy resumes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { abortMove } from '../src/events2/abort.js';
import {
  budgetCap, DEFAULT_THROTTLE, heldBack, initialThrottle, nextThrottle, throttleLevels, type ThrottleSettings, type ThrottleState,
} from '../src/events2/throttle.js';
import { formatProgress } from '../src/cli/format.js';
import { migrate } from '../src/migrate.js';
import { ProgressMeter } from '../src/progress.js';
import type { RunContext, Step, StepOptions } from '../src/step.js';
import { events2Step, events2StepFor } from '../steps/01-events2.js';
import { DIFFERENCE_SQL, seedAwkwardLegacy } from './events2-support.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { LegacyWriter } from './support/legacy-writer.js';
import { expectWriterExactlyOnce } from './support/moved.js';

/** Feeds `ms` samples every `every` ms from `from`, returning every state. */
function feed(state: ThrottleState, samples: readonly number[], from: number, every = 150, baseline = 2, maxLevel = 5): ThrottleState[] {
  const out: ThrottleState[] = [];
  samples.forEach((ms, i) => {
    state = nextThrottle(state, ms, from + i * every, baseline, maxLevel);
    out.push(state);
  });
  return out;
}

describe('throttle decisions (pure)', () => {
  it('has a ladder from all connections down to one, then one that pauses; the floor still copies', () => {
    const levels = throttleLevels(2);
    expect(levels).toEqual([{ workers: 2, nice: 0 }, { workers: 1, nice: 0 }, ...DEFAULT_THROTTLE.niceRatios.map((nice) => ({ workers: 1, nice }))]);
    expect(heldBack(levels[0], 2)).toBe(0);
    expect(heldBack(levels[1], 2)).toBe(0.5);
    const floor = heldBack(levels[levels.length - 1], 2);
    expect(floor).toBeLessThan(1);
    expect(1 - floor).toBeGreaterThan(0.05);
    expect(throttleLevels(1)[0]).toEqual({ workers: 1, nice: 0 });
  });

  it('stays at full speed while the probe is near its baseline, and ignores a single slow probe', () => {
    const states = feed(initialThrottle(0), [2, 2.5, 3, 2, 40, 2, 2, 3.5, 2], 1000);
    expect(states.map((s) => s.level)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('backs off one rung at a time while slow, at most every backOffEveryMs, and stops at the floor', () => {
    const states = feed(initialThrottle(0), Array(40).fill(20), 1000);
    const levels = states.map((s) => s.level);
    // One rung per 400 ms (probes 150 ms apart).
    expect(levels.slice(0, 8)).toEqual([1, 1, 1, 2, 2, 2, 3, 3]);
    expect(Math.max(...levels)).toBe(5);
    expect(levels[levels.length - 1]).toBe(5);
    for (let i = 1; i < levels.length; i++) expect(levels[i] - levels[i - 1]).toBeLessThanOrEqual(1);
  });

  it('recovers one rung per recoverAfterMs once fast again, back to full speed; a middling probe holds it', () => {
    const slow = feed(initialThrottle(0), Array(40).fill(20), 0);
    const atFloor = slow[slow.length - 1];
    expect(atFloor.level).toBe(5);
    const t0 = 40 * 150;
    // 1.3× baseline: neither slow (> 1.5× + 1 ms) nor fast (≤ 1.2× + 1 ms): hold.
    const held = feed(atFloor, Array(20).fill(2 * 1.3 + 1.2), t0);
    expect(held.map((s) => s.level).every((l) => l === 5)).toBe(true);
    const fast = feed(held[held.length - 1], Array(60).fill(2), t0 + 20 * 150);
    const levels = fast.map((s) => s.level);
    expect(levels[levels.length - 1]).toBe(0);
    // About one rung per second: from 5 to 0 takes at least 5 s (33 probes of 150 ms).
    expect(levels.findIndex((l) => l === 0)).toBeGreaterThanOrEqual(33);
    for (let i = 1; i < levels.length; i++) expect(levels[i - 1] - levels[i]).toBeLessThanOrEqual(1);
  });

  it('keeps within its time budget: the whole ladder until it held back (maxSlowdown − 1) × the time copied, then only the shallow rungs', () => {
    const levels = throttleLevels(2);
    const s = { ...DEFAULT_THROTTLE, maxSlowdown: 2, budgetGraceMs: 1000 };
    expect(budgetCap(levels, 2, 0, 0, s)).toBe(levels.length - 1);
    expect(budgetCap(levels, 2, 5999, 5000, s)).toBe(levels.length - 1);
    // Budget spent: at most 1 − 1/2 = 50 % held back, i.e. one connection without pauses.
    expect(budgetCap(levels, 2, 6000, 5000, s)).toBe(1);
    // The default 1.5×: at most a third held back, so on two connections only full speed.
    expect(budgetCap(levels, 2, 10_000, 1000)).toBe(0);
    // A throttle held at its cap: its held-back share converges to the budget's, never beyond.
    let lost = 0;
    let effective = 0;
    for (let t = 0; t < 600; t++) {
      const held = heldBack(levels[budgetCap(levels, 2, lost, effective, s)], 2);
      lost += 100 * held;
      effective += 100 * (1 - held);
    }
    expect(lost / effective).toBeGreaterThan(0.9);
    expect(lost / effective).toBeLessThan(1.05);
  });

  it('shows the throttle next to the phase name without making it a new phase (rate and ETA carry on)', () => {
    let now = 0;
    const meter = new ProgressMeter(15_000, () => now);
    meter.update({ phase: 'copy', done: 0, total: 1000, unit: 'events' });
    now = 3000;
    const p = meter.update({ phase: 'copy', done: 300, total: 1000, unit: 'events', note: 'throttled 50%' });
    expect(p.rate).toBe(100);
    expect(formatProgress(p)).toBe('copy (throttled 50%): 300 / 1,000 events (30%), 100 events/s, ETA 7.0s');
    now = 4000;
    expect(formatProgress(meter.update({ phase: 'copy', done: 400, total: 1000, unit: 'events' }))).toMatch(/^copy: 400/);
  });

  it('backs off again at once when the probe turns slow while recovering', () => {
    const slow = feed(initialThrottle(0), Array(40).fill(20), 0);
    const fast = feed(slow[slow.length - 1], Array(10).fill(2), 6000);
    const before = fast[fast.length - 1].level;
    expect(before).toBeLessThan(5);
    const again = feed(fast[fast.length - 1], [20, 20, 20, 20], 6000 + 10 * 150 + 400);
    expect(again[again.length - 1].level).toBeGreaterThan(before);
  });
});

// ——— real runs ———

let tdb: TestDatabase | undefined;
const writers: LegacyWriter[] = [];
afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.stop()));
  await tdb?.drop();
  tdb = undefined;
});

/**
 * Settings under which every probe counts as slow: each probe steps a rung down, to the floor, and it stays
 * there. The ladder is short (full, 50 %, 90 %), so two probes reach the floor well inside the copy even when
 * a loaded machine makes each probe slow (with the default four pause ratios a CI run once ended at 75 %).
 */
const ALWAYS_SLOW: Partial<ThrottleSettings> = { slowRatio: 0, slackMs: -1000, backOffEveryMs: 0, probeEveryMs: 20, maxSlowdown: 100, niceRatios: [4] };

function run(database: Database, steps: Step<any>[], throttle: StepOptions['throttle'] = ALWAYS_SLOW) {
  return migrate(database, { steps, lockWaitMs: 10_000, stepOptions: { concurrency: 2, exact: false, throttle }, version: 'test' });
}

async function setUp(perInstance: number): Promise<{ t: TestDatabase; database: Database; w: LegacyWriter }> {
  tdb = await createTestDatabase('ev2t');
  await seedAwkwardLegacy(tdb, perInstance);
  const database = await tdb.open({ maxConnections: 12 });
  const w = await LegacyWriter.start({ url: tdb.url, eventsPerSecond: 300, connections: 4, instances: ['inst-a', 'inst-b'] });
  writers.push(w);
  return { t: tdb, database, w };
}

/** events2 equals the mapping of events_old; every committed event of the writer is in it once, no other. */
async function expectExact(t: TestDatabase, w: LegacyWriter): Promise<void> {
  expect((await t.query(DIFFERENCE_SQL))[0]).toEqual({ missing: 0, extra: 0 });
  await expectWriterExactlyOnce(t, w, 21);
  expect((await t.query(`SELECT to_regclass('zsetup.events2_probe')::text AS probe`))[0].probe).toBeNull();
}

/** The online step, failing (as a crash would) once `chunks` chunks were reported copied; records the progress notes. */
function crashingAfterChunks(chunks: number, notes: string[]): Step<any> {
  return {
    ...events2Step,
    run(ctx: RunContext<any>) {
      let seen = 0;
      let last = 0;
      return events2Step.run({
        ...ctx,
        progress(update) {
          if (update.note) notes.push(update.note);
          // Counted once per chunk: a note alone repeats the count.
          if (update.phase === 'copy' && update.done > last && ++seen >= chunks) throw new Error('simulated crash in the copy');
          if (update.phase === 'copy') last = Math.max(last, update.done);
          ctx.progress(update);
        },
      });
    },
  };
}

describe('throttled online move (real database, legacy writer on)', () => {
  it('finishes exactly with the throttle at its floor the whole copy, and reports the time it held back and paused', async () => {
    const { t, database, w } = await setUp(5000);
    const notes: string[] = [];
    const step: Step<any> = { ...events2Step, run: (ctx: RunContext<any>) => events2Step.run({ ...ctx, progress: (u) => { if (u.note) notes.push(u.note); ctx.progress(u); } }) };
    const result = (await run(database, [step])).steps[0];
    await w.stop();
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('succeeded');
    const report = result.summary?.copyThrottle as Record<string, number>;
    const seen = JSON.stringify({ report, notes });
    expect(report.probes, seen).toBeGreaterThan(0);
    expect(report.probeBaselineMs, seen).toBeGreaterThan(0);
    expect(report.maxHeldBackPercent, seen).toBe(90);
    expect(report.throttledMs, seen).toBeGreaterThan(0);
    expect(report.pausedMs, seen).toBeGreaterThan(0);
    expect(result.summary?.copyPausedMs).toBe(report.pausedMs);
    expect(result.summary?.message).toMatch(/the copy was throttled \d+\.\d s of it \(paused \d+\.\d s\)/);
    expect(notes, seen).toContain('throttled 50%');
    expect(notes, seen).toContain('throttled 90%');
    await expectExact(t, w);
  });

  it('resumes a copy that crashed while throttled; the rerun finishes exactly', async () => {
    const { t, database, w } = await setUp(3000);
    const notes: string[] = [];
    const crashed = (await run(database, [crashingAfterChunks(3, notes)])).steps[0];
    expect(crashed.status).toBe('failed');
    const mid = await t.query(`SELECT checkpoint->>'stage' AS stage, to_regclass('zsetup.events2_probe')::text AS probe,
      (SELECT count(*)::int FROM zsetup.events2_chunks WHERE copied_at IS NOT NULL) AS copied,
      (SELECT count(*)::int FROM zsetup.events2_chunks WHERE copied_at IS NULL) AS left
      FROM zsetup.steps WHERE id = 'events2'`);
    expect(mid[0]).toMatchObject({ stage: 'copy', probe: 'zsetup.events2_probe' });
    expect(mid[0].copied).toBeGreaterThanOrEqual(3);
    expect(mid[0].left).toBeGreaterThan(0);
    // The writer keeps going between the runs.
    await new Promise((r) => setTimeout(r, 500));
    const done = (await run(database, [events2Step])).steps[0];
    await w.stop();
    expect(done.error).toBeUndefined();
    expect(done.status).toBe('succeeded');
    // Held back on the rerun too (how far depends on the time budget, which counts the run's own chunks).
    expect((done.summary?.copyThrottle as Record<string, number>).maxHeldBackPercent).toBeGreaterThan(0);
    await expectExact(t, w);
  });

  it('--throttle off copies without probing; abort-move removes the probe table with the rest', async () => {
    const { t, database, w } = await setUp(500);
    const prepared = (await run(database, [events2StepFor('prepare')], 'off')).steps[0];
    expect(prepared.status).toBe('succeeded');
    expect(prepared.summary?.copyThrottle).toBeUndefined();
    expect(prepared.summary?.copyPausedMs).toBeUndefined();
    expect((await t.query(`SELECT n::int FROM zsetup.events2_probe`))[0].n).toBe(0);
    await w.stop();
    const result = await abortMove(database, { lockWaitMs: 5000 });
    expect(result.status === 'aborted' && result.removed).toContain('the throttle\'s probe table');
    expect((await t.query(`SELECT to_regclass('zsetup.events2_probe')::text AS probe`))[0].probe).toBeNull();
  });
});
