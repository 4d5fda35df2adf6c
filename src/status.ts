import type { Database } from './db/connection.js';
import { lockHolder } from './db/lock.js';
import type { LockHolder, Step } from './step.js';
import { readSteps, type StepRow, type StepStatus } from './steps-table.js';

/** One step as `status` shows it. */
export interface StepStatusReport {
  readonly id: string;
  readonly title: string;
  /**
   * Recorded status, except that a row left `running` while nobody holds the runner lock is reported
   * as `interrupted`: its runner died, and the next `migrate` resumes it.
   */
  readonly status: StepStatus;
  /** True while another process is running this step right now. */
  readonly live: boolean;
  readonly row?: StepRow;
}

/** The status report. */
export interface StatusResult {
  /** The runner holding the lock right now, if any. */
  readonly runner: LockHolder | null;
  readonly steps: readonly StepStatusReport[];
}

/** Reads every known step's state (plus rows of steps this build does not know). Writes nothing. */
export async function getStatus(database: Database, steps: readonly Step<any>[]): Promise<StatusResult> {
  const [rows, runner] = await Promise.all([readSteps(database.db), lockHolder(database.pool)]);
  const report = (id: string, title: string): StepStatusReport => {
    const row = rows.get(id);
    const recorded = row?.status ?? 'pending';
    const live = recorded === 'running' && runner !== null;
    const status = recorded === 'running' && runner === null ? 'interrupted' : recorded;
    return { id, title, status, live, row };
  };
  const known = steps.map((s) => report(s.id, s.title));
  const extra = [...rows.keys()].filter((id) => !steps.some((s) => s.id === id)).map((id) => report(id, id));
  return { runner, steps: [...known, ...extra] };
}
