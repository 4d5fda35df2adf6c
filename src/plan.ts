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
  for (const step of options.steps) {
    if (options.only && step.id !== options.only) continue;
    const row = states.get(step.id);
    const base = { id: step.id, title: step.title, state: row?.status ?? 'pending' } as const;
    if (row?.status === 'succeeded' && !(await isBehind(database, step))) {
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
