import type { Database } from './db/connection.js';
import { describeError, type ErrorReport } from './errors.js';
import { isBehind } from './migrate.js';
import type { Step, StepOptions, StepPlan } from './step.js';
import { readSteps, type StepStatus } from './steps-table.js';

/** Inputs of {@link planMigrate}. */
export interface PlanOptions {
  readonly steps: readonly Step<any>[];
  readonly only?: string;
  readonly stepOptions: StepOptions;
}

/** The dry-run report of one step. */
export interface StepPlanReport {
  readonly id: string;
  readonly title: string;
  /** Recorded state; `pending` when the step never ran. */
  readonly state: StepStatus;
  /** Absent for steps already succeeded (nothing to do). */
  readonly plan?: StepPlan;
  readonly error?: ErrorReport;
}

/** The dry-run report. */
export interface PlanResult {
  readonly steps: readonly StepPlanReport[];
}

/**
 * The dry-run: every pending step's `plan` runs inside its own READ ONLY transaction, so an attempted
 * write fails loudly instead of changing anything. Reads `zsetup.steps` without creating it.
 */
export async function planMigrate(database: Database, options: PlanOptions): Promise<PlanResult> {
  const { db } = database;
  const states = await readSteps(db);
  const reports: StepPlanReport[] = [];
  // A step id the list repeats (the projections before and after an online cut-over) is planned whatever
  // its state: the steps before it in the run (the catch-up, the cut-over) give it work.
  const repeated = new Set(options.steps.filter((s, i) => options.steps.findIndex((t) => t.id === s.id) !== i).map((s) => s.id));
  for (const step of options.steps) {
    if (options.only && step.id !== options.only) continue;
    const row = states.get(step.id);
    const base = { id: step.id, title: step.title, state: row?.status ?? 'pending' } as const;
    if (!repeated.has(step.id) && row?.status === 'succeeded' && !(await isBehind(database, step))) {
      reports.push(base);
      continue;
    }
    try {
      const plan = await db
        .transaction()
        .setAccessMode('read only')
        .execute((tx) => step.plan({ tx, options: options.stepOptions, state: row }));
      reports.push({ ...base, plan });
    } catch (err) {
      reports.push({ ...base, error: describeError(err) });
    }
  }
  return { steps: reports };
}

/** When this run would cut the old version's writers off eventstore.events, as far as the plan foresees. */
export interface PlannedCutOff {
  readonly stepId: string;
  /**
   * `offline`: at the start of the step (the rename comes first); `online`: at its cut-over, at the
   * end of the step; `earlier`: an earlier attempt already renamed the table.
   */
  readonly mode: 'offline' | 'online' | 'earlier';
  /** Seconds after the start of the run. */
  readonly fromSeconds: number;
  /** Seconds after the start of the run: its end, after which the new version can start. */
  readonly untilSeconds: number;
  /** Online: how long writers are blocked in the cut-over itself, when the step says. */
  readonly blockedSeconds?: number;
}

/** One step's place in the estimated run. */
export interface PlannedTime {
  readonly id: string;
  readonly startSeconds: number;
  readonly seconds: number;
}

/** Totals of a dry-run, for the human and Markdown reports. */
export interface PlanSummary {
  /** Estimated duration of the whole run; steps of a parallel group overlap. */
  readonly estimatedSeconds: number;
  readonly times: readonly PlannedTime[];
  /** Steps that would change something but gave no estimate; their time is not in the total. */
  readonly unestimated: readonly string[];
  readonly cutOff: PlannedCutOff | null;
  /** Sum of the steps' `diskNeededBytesEstimate`, or null when no step estimates its disk. */
  readonly diskBytes: number | null;
}

/** Inputs of {@link summarizePlan}. */
export interface SummaryOptions {
  /** Steps of one parallel group run side by side, at most this many at once. */
  readonly concurrency: number;
  /** The parallel group of a step id, if any (see `StepSchedule.group`). */
  readonly groupOf?: (stepId: string) => string | undefined;
}

/**
 * Adds up a dry-run: the estimated time (a parallel group takes the longer of its longest step and
 * its total spread over `concurrency`), when old writers are cut off and until when, and the disk.
 */
export function summarizePlan(plan: PlanResult, options: SummaryOptions): PlanSummary {
  const times: PlannedTime[] = [];
  const unestimated: string[] = [];
  let clock = 0;
  let cutOff: Omit<PlannedCutOff, 'untilSeconds'> | null = null;
  let disk: number | null = null;
  const steps = plan.steps;
  for (let i = 0; i < steps.length;) {
    const group = options.groupOf?.(steps[i].id);
    let j = i + 1;
    while (group && j < steps.length && options.groupOf?.(steps[j].id) === group) j++;
    const members = steps.slice(i, j);
    const seconds = members.map((s) => secondsOf(s, unestimated));
    const total = seconds.reduce((a, b) => a + b, 0);
    const span = members.length === 1 ? total : Math.max(Math.max(...seconds), total / Math.max(1, options.concurrency));
    members.forEach((s, k) => times.push({ id: s.id, startSeconds: clock, seconds: seconds[k] }));
    for (const s of members) {
      const bytes = s.plan?.details.diskNeededBytesEstimate;
      if (typeof bytes === 'number') disk = (disk ?? 0) + bytes;
      cutOff ??= cutOffOf(s, clock, seconds[members.indexOf(s)]);
    }
    clock += span;
    i = j;
  }
  return { estimatedSeconds: clock, times, unestimated, cutOff: cutOff && { ...cutOff, untilSeconds: clock }, diskBytes: disk };
}

function secondsOf(s: StepPlanReport, unestimated: string[]): number {
  if (!s.plan || !s.plan.willChange) return 0;
  if (s.plan.estimatedSeconds === undefined) {
    unestimated.push(s.id);
    return 0;
  }
  return s.plan.estimatedSeconds;
}

/**
 * The events2 step on a database the old version still writes (`source` eventstore.events) cuts it
 * off: at its start (offline: the rename comes first) or at its cut-over (`online` in its details).
 * With events_old as its source, the rename already happened in an earlier attempt.
 */
function cutOffOf(s: StepPlanReport, start: number, seconds: number): Omit<PlannedCutOff, 'untilSeconds'> | null {
  const d = s.plan?.willChange ? s.plan.details : undefined;
  if (!d || s.id !== 'events2') return null;
  if (d.source === 'eventstore.events_old') return { stepId: s.id, mode: 'earlier', fromSeconds: 0 };
  if (d.source !== 'eventstore.events') return null;
  if (d.online !== true) return { stepId: s.id, mode: 'offline', fromSeconds: start };
  if (isPrepareOnly(s)) return null;
  const blocked = typeof d.expectedDowntimeSeconds === 'number' ? { blockedSeconds: d.expectedDowntimeSeconds } : {};
  return { stepId: s.id, mode: 'online', fromSeconds: start + seconds, ...blocked };
}

/**
 * An online events2 plan under `--prepare`, or the first events2 occurrence of a run that prefills the
 * projections before the cut-over: it stops before the cut-over, so it cuts nobody off.
 */
export function isPrepareOnly(s: StepPlanReport): boolean {
  return s.id === 'events2' && s.plan?.details.online === true && (s.plan.action.includes('--prepare') || s.plan.details.beforeCutOver === true);
}
