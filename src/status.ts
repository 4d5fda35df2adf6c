import type { Database } from './db/connection.js';
import { lockHolder } from './db/lock.js';
import { projectionStates, type ProjectionState } from './projection-status.js';
import type { LockHolder, Step } from './step.js';
import { readSteps, type StepRow, type StepStatus } from './steps-table.js';
import { readMigrations, type MigrationState } from './zitadel/migrations.js';
import { ZITADEL_SETUP_STEPS, type StepOwner } from './zitadel/setup-steps.js';

/** One of ZITADEL's own setup steps, as its setup will see it on its next start. */
export interface ZitadelStepReport {
  readonly name: string;
  /** The latest recorded event, or null when ZITADEL has no record of the step. */
  readonly recorded: MigrationState | null;
  readonly at: string | null;
  /** Whether ZITADEL's setup still runs it: not done (a `started` one blocks its setup until it is resolved). */
  readonly pending: boolean;
  readonly owner: StepOwner;
  readonly why: string;
}

/**
 * ZITADEL's steps from 14 on (setup-steps.ts) plus the prefill names of the projections zsetup knows,
 * with what the database records for each. Read-only.
 */
export async function zitadelStatus(database: Database, steps: readonly Step<any>[]): Promise<ZitadelStepReport[]> {
  const recorded = await readMigrations(database.pool);
  const prefills = steps.filter((s) => s.id.startsWith('projection:')).map((s) => ({
    name: s.id.slice('projection:'.length), owner: 'zsetup' as const, why: `zsetup step ${s.id} (ZITADEL's --init-projections prefill of the same name)`,
  }));
  return [...ZITADEL_SETUP_STEPS, ...prefills].map((z) => {
    const r = recorded.get(z.name);
    return { ...z, recorded: r?.state ?? null, at: r?.at ?? null, pending: r?.state !== 'done' };
  });
}

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
  /** A projection's state read from the database (`status --init-projections`); absent while it runs. */
  readonly projection?: ProjectionState;
}

/** The status report. */
export interface StatusResult {
  /** The runner holding the lock right now, if any. */
  readonly runner: LockHolder | null;
  readonly steps: readonly StepStatusReport[];
  /** ZITADEL's own recorded setup steps: what its setup and server will still do on their first start. */
  readonly zitadel: readonly ZitadelStepReport[];
}

/** Inputs of {@link getStatus}. */
export interface StatusOptions {
  /** Also read every projection's backlog and recorded positions from the database. Default is false. */
  readonly projections?: boolean;
}

/** Reads every known step's state (plus rows of steps this build does not know). Writes nothing. */
export async function getStatus(database: Database, steps: readonly Step<any>[], options: StatusOptions = {}): Promise<StatusResult> {
  const [rows, runner, zitadel] = await Promise.all([readSteps(database.db), lockHolder(database.pool), zitadelStatus(database, steps)]);
  const report = (id: string, title: string): StepStatusReport => {
    const row = rows.get(id);
    const recorded = row?.status ?? 'pending';
    const live = recorded === 'running' && runner !== null;
    const status = recorded === 'running' && runner === null ? 'interrupted' : recorded;
    return { id, title, status, live, row };
  };
  const known = await withProjectionStates(database, steps, steps.map((s) => report(s.id, s.title)), options);
  const extra = [...rows.keys()].filter((id) => !steps.some((s) => s.id === id)).map((id) => report(id, id));
  return { runner, steps: [...known, ...extra], zitadel };
}

async function withProjectionStates(database: Database, steps: readonly Step<any>[], reports: StepStatusReport[], options: StatusOptions): Promise<StepStatusReport[]> {
  if (!options.projections) return reports;
  const states = await projectionStates(database, steps, new Set(reports.filter((r) => r.live).map((r) => r.id)));
  return reports.map((r) => (states.has(r.id) ? { ...r, projection: states.get(r.id) } : r));
}
