import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detailRows, renderPlanMarkdown, renderPlanText } from '../src/cli/plan-report.js';
import { summarizePlan, type PlanResult, type StepPlanReport } from '../src/plan.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { ensureBuilt, runCli } from './support/cli.js';

const MB = 1024 * 1024;

function events2(details: Record<string, unknown>, estimatedSeconds = 600): StepPlanReport {
  return { id: 'events2', title: 'move', state: 'pending', plan: { action: 'legacy database: move', willChange: true, details, estimatedSeconds } };
}
function projection(name: string, estimatedSeconds: number): StepPlanReport {
  return { id: `projection:${name}`, title: name, state: 'pending', plan: { action: `apply events to ${name}`, willChange: true, details: { eventsToProcess: estimatedSeconds * 15_000 }, estimatedSeconds } };
}
const milestones: StepPlanReport = { id: 'milestones-v2', title: 'm', state: 'pending', plan: { action: 'write 3 events', willChange: true, details: {}, estimatedSeconds: 10 } };
const groupOf = (id: string) => (id.startsWith('projection:') ? 'projections' : undefined);
// The steps as the renderers learn their parallel groups.
const steps = ['a', 'b', 'c'].map((n) => ({ id: `projection:${n}`, schedule: { group: 'projections' } })) as any[];

describe('plan summary (no database)', () => {
  const legacy = { source: 'eventstore.events', events: 2_000_000, eventsCounted: 'estimate', diskNeededBytesEstimate: 1536 * MB };
  const plan: PlanResult = { steps: [events2(legacy), milestones, projection('a', 100), projection('b', 60), projection('c', 20)] };

  it('adds up sequential steps and runs a parallel group side by side', () => {
    const s = summarizePlan(plan, { concurrency: 2, groupOf });
    // 600 + 10, then the projections: longest 100 vs 180 / 2 = 90 → 100.
    expect(s.estimatedSeconds).toBe(710);
    expect(s.times.find((t) => t.id === 'projection:c')?.startSeconds).toBe(610);
    expect(s.diskBytes).toBe(1536 * MB);
    expect(summarizePlan(plan, { concurrency: 1, groupOf }).estimatedSeconds).toBe(610 + 180);
  });

  it('offline: old writers are cut off from the start of events2 to the end of the run', () => {
    const s = summarizePlan(plan, { concurrency: 2, groupOf });
    expect(s.cutOff).toEqual({ stepId: 'events2', mode: 'offline', fromSeconds: 0, untilSeconds: 710 });
    const text = renderPlanText(plan, { concurrency: 2, steps });
    expect(text).toMatch(/^ {2}downtime: +old writers are cut off when events2 starts \(it renames eventstore\.events to events_old first\).*from the start of this run to its end, about 11m50s/m);
  });

  it('online: they are cut off at the cut-over, at the end of events2', () => {
    const online: PlanResult = { steps: [events2({ ...legacy, online: true, expectedDowntimeSeconds: 0.4 }), milestones] };
    const s = summarizePlan(online, { concurrency: 2, groupOf });
    expect(s.cutOff).toEqual({ stepId: 'events2', mode: 'online', fromSeconds: 600, untilSeconds: 610, blockedSeconds: 0.4 });
    expect(renderPlanText(online)).toContain("cut off at its cut-over (writes block for about 400ms in it), about 10m00s after the start, and fail from then until the new version runs: about 10.0s");
  });

  it('--prepare cuts nobody off: the cut-over is left to a later run', () => {
    const prepare: PlanResult = { steps: [{ ...events2({ ...legacy, online: true }), plan: { action: 'online move; --prepare: stops before the cut-over', willChange: true, details: { ...legacy, online: true }, estimatedSeconds: 600 } }] };
    expect(summarizePlan(prepare, { concurrency: 2 }).cutOff).toBeNull();
    expect(renderPlanText(prepare)).toMatch(/downtime: +none from this run: --prepare stops before the cut-over/);
  });

  it('a move already done cuts nobody off; one resumed from events_old did earlier', () => {
    const done: PlanResult = { steps: [{ id: 'events2', title: 'move', state: 'succeeded' }, milestones] };
    expect(summarizePlan(done, { concurrency: 2 }).cutOff).toBeNull();
    expect(renderPlanText(done)).toMatch(/downtime: +none from this run/);
    const resumed: PlanResult = { steps: [events2({ source: 'eventstore.events_old', events: 10 }, 5)] };
    expect(summarizePlan(resumed, { concurrency: 2 }).cutOff?.mode).toBe('earlier');
  });

  it('renders figures in units, with words for keys', () => {
    const rows = new Map(detailRows({
      source: 'eventstore.events', events: 2_000_000, eventsCounted: 'estimate', sourceTableBytes: 3.5 * 1024 * MB,
      events2IndexBytesEstimate: 700 * MB, sampleMs: 1250, expectedDowntimeSeconds: 0.25, instancesToConvert: 12345, referenceStepsDone: [],
    }));
    expect(Object.fromEntries(rows)).toEqual({
      'reads from': 'eventstore.events',
      events: '2,000,000 (estimate)',
      'source table': '3.5 GB',
      'events2 indexes': '700 MB (estimate)',
      'sample read in': '1.3s',
      'expected downtime': '250ms',
      'instances to convert': '12,345',
      "reference system's steps done": 'none',
    });
  });

  it('renders the same plan as Markdown', () => {
    const md = renderPlanMarkdown(plan, { database: 'postgres://u:***@db/zitadel', concurrency: 2, steps, now: new Date('2026-01-02T03:04:05Z') });
    expect(md).toMatch(/^# zsetup upgrade plan\n/);
    expect(md).toContain('Dry-run of `zsetup migrate` made 2026-01-02 03:04 UTC; nothing was written.');
    expect(md).toContain('| database | `postgres://u:***@db/zitadel` |');
    expect(md).toMatch(/^\| estimated time \| about 11m50s in total/m);
    expect(md).toMatch(/^\| downtime \| old writers are cut off when events2 starts/m);
    expect(md).toMatch(/^\| disk needed \| about 1.5 GB for eventstore\.events2/m);
    expect(md).toContain('| 1 | `events2` | pending | legacy database: move | 10m00s |');
    expect(md).toContain('## projection:a');
    expect(md).toContain('| events to apply | 1,500,000 |');
    const piped = renderPlanMarkdown({ steps: [{ ...milestones, plan: { ...milestones.plan!, action: 'a | b' } }] });
    expect(piped).toContain('a \\| b');
  });
});

describe('migrate --dry-run --init-projections on a legacy database', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    ensureBuilt();
    tdb = await createTestDatabase('planreport');
    const seed = await runCli(['seed', '--events', '20000', '--instances', '3', '-d', tdb.url]);
    expect(seed.code, seed.stderr).toBe(0);
  });
  afterAll(() => tdb?.drop());

  it('plans every projection from the legacy table, with a summary in units', async () => {
    const r = await runCli(['migrate', '--dry-run', '--init-projections', '-d', tdb.url]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toContain('cannot plan');
    expect(r.stdout).toMatch(/^ {2}estimated time: +about \S+ in total \(events2 /m);
    expect(r.stdout).toMatch(/^ {2}downtime: +old writers /m);
    expect(r.stdout).toMatch(/^ {2}disk needed: +about [\d.,]+ (kB|MB|GB) for eventstore\.events2/m);
    expect(r.stdout).toMatch(/^projection:projections\.users14: apply (about )?[\d,]+ events to projections\.users14 \(counted in eventstore\.events/m);
    // No camelCase keys, no bare byte counts.
    expect(r.stdout).not.toMatch(/^\s+[a-z]+[A-Z][A-Za-z0-9]*:/m);
    expect(r.stdout).not.toMatch(/\d{4,}(?!,)\b(?! (events|rows))/);
    expect(r.stdout).toMatch(/source table: +[\d.,]+ (kB|MB)/);
  });

  it('--exact counts what the prefill then applies', async () => {
    const plan = await runCli(['migrate', '--dry-run', '--exact', '--init-projections', '--json', '-d', tdb.url]);
    expect(plan.code, plan.stderr).toBe(0);
    const planned = JSON.parse(plan.stdout);
    expect(planned.dryRun).toBe(true);
    // --json is unchanged: the raw figures.
    const ev2 = planned.steps.find((s: any) => s.id === 'events2');
    expect(typeof ev2.plan.details.sourceTableBytes).toBe('number');
    const md = await runCli(['migrate', '--dry-run', '--init-projections', '--format', 'markdown', '-d', tdb.url]);
    expect(md.code, md.stderr).toBe(0);
    expect(md.stdout).toMatch(/^# zsetup upgrade plan$/m);
    expect(md.stdout).toMatch(/^\| downtime \| old writers /m);
    expect(md.stdout).toMatch(/^## projection:projections\.users14$/m);
    expect((await runCli(['migrate', '--format', 'markdown', '-d', tdb.url])).code).toBe(2);

    const run = await runCli(['migrate', '--init-projections', '--json', '-d', tdb.url]);
    expect(run.code, run.stderr).toBe(0);
    // On a legacy database the projections are prefilled before the cut-over, then caught up after it:
    // the plan's counts are those of the first pass (the second has nothing left without writers).
    const first = (steps: any[]) => steps.filter((s, i) => steps.findIndex((t) => t.id === s.id) === i);
    const done = new Map(first(JSON.parse(run.stdout).steps).map((s: any) => [s.id, s.summary?.events]));
    for (const s of first(planned.steps).filter((x: any) => x.id.startsWith('projection:') && x.id !== 'projection:projections.milestones3')) {
      expect(s.plan.details.eventsCounted).toBe('exact');
      expect(done.get(s.id), s.id).toBe(s.plan.details.eventsToProcess);
    }
  });
});
