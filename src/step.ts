import type { Database, Db, Tx } from './db/connection.js';
import type { ErrorReport } from './errors.js';
import type { ThrottleSettings } from './events2/throttle.js';
import type { Queryable } from './projections/events.js';
import type { MigrationRecord } from './zitadel/migrations.js';
import type { Progress, StepRow } from './steps-table.js';

/** Options every step may read. */
export interface StepOptions {
  /** Parallel connections a data-moving step may use. */
  readonly concurrency: number;
  /** Dry-run: count exactly instead of estimating. */
  readonly exact: boolean;
  /**
   * The online events2 copy's throttle (`--throttle`): `auto` (default) backs off while the old writers
   * slow down; an object is `auto` with some of its settings replaced (tests).
   */
  readonly throttle?: 'auto' | 'off' | Partial<ThrottleSettings>;
}

/** What a step would do, computed read-only (the dry-run). */
export interface StepPlan {
  /** One line: what running the step would do, e.g. `copy 2,000,000 legacy events`. */
  readonly action: string;
  /** False when running the step would only record it as done. */
  readonly willChange: boolean;
  /** Figures for the report: counts, sizes, estimates. Plain JSON. */
  readonly details: Readonly<Record<string, unknown>>;
  /** Estimated duration of the run, in seconds, when the step can tell. */
  readonly estimatedSeconds?: number;
  /** Further lines worth showing an operator (warnings, what was found). */
  readonly notes?: readonly string[];
}

/** What a finished step reports: a one-line message plus counts. */
export interface StepSummary {
  readonly message: string;
  readonly [key: string]: unknown;
}

/** Handed to `plan`: a READ ONLY transaction, so a write attempt fails loudly. */
export interface PlanContext {
  readonly tx: Tx;
  readonly options: StepOptions;
  /** The step's row in `zsetup.steps`, if it ever ran. */
  readonly state: StepRow | undefined;
}

/** Progress as a step reports it; rate and ETA are added by the runner. */
export interface ProgressUpdate {
  readonly phase: string;
  readonly done: number;
  readonly total?: number | null;
  /** What is counted, e.g. `events`, `instances`. Default is `units`. */
  readonly unit?: string;
  /** A passing state of the phase shown next to its name, e.g. `throttled 40%` (not a new phase). */
  readonly note?: string;
}

/** Handed to `run`. */
export interface RunContext<C = unknown> {
  readonly db: Db;
  readonly database: Database;
  readonly options: StepOptions;
  /** The checkpoint the last attempt committed, or null on a first run. */
  readonly checkpoint: C | null;
  /** 1 on the first attempt. */
  readonly attempt: number;
  /** Aborted on Ctrl-C / SIGTERM or a lost runner lock: stop after the current unit of work. */
  readonly signal: AbortSignal;
  /** Runs `fn` in a transaction on a pooled connection. */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Stores the checkpoint inside `tx`, so the work and the checkpoint commit together. */
  saveCheckpoint(tx: Tx, checkpoint: C): Promise<void>;
  progress(update: ProgressUpdate): void;
  log(message: string): void;
  /** Throws an InterruptedError when a stop was requested. Call between units of work. */
  throwIfStopped(): void;
}

/**
 * A setup step. The id is recorded in `zsetup.steps` and never changes once released.
 * `plan` only reads; `run` does the work and must be safe to rerun after a crash at any point.
 */
export interface Step<C = unknown> {
  readonly id: string;
  readonly title: string;
  plan(ctx: PlanContext): Promise<StepPlan>;
  run(ctx: RunContext<C>): Promise<StepSummary>;
  /**
   * What this role lacks for the step (privileges, as lines like `INSERT on eventstore.events2`).
   * Read-only. Before running anything, the runner asks every pending step and refuses (exit 5, nothing
   * written) listing all of them at once.
   */
  preflight?(tx: Tx): Promise<readonly string[]>;
  /** How the runner schedules the step beyond its place in the order; absent: once, alone, in order. */
  readonly schedule?: StepSchedule;
  /**
   * The ZITADEL setup steps whose whole effect this step's success leaves in the database, so that
   * ZITADEL's own setup skips them. The runner records them (`system.migration.*` events) in the
   * transaction that marks this step succeeded, and again, idempotently, whenever it finds the step
   * succeeded but one of them unrecorded. Read-only; may depend on what the database holds.
   */
  zitadelSteps?(db: Queryable): Promise<readonly MigrationRecord[]>;
}

/**
 * The runner's one notion of scheduling: which steps may run side by side, and how much work a step has
 * left (which orders a group, and reruns a succeeded step that fell behind).
 */
export interface StepSchedule {
  /**
   * Steps that name the same group and follow each other in the run order are independent of one
   * another: the runner runs them side by side, at most `concurrency` at once, the most work first.
   */
  readonly group?: string;
  /**
   * Work left, in a unit shared by the group (a projection: events to apply). Read-only, under the
   * runner lock. More than 0 after the step succeeded means it runs again (new events arrived).
   */
  remaining?(tx: Tx): Promise<number>;
}

/** Outcome of one step in a migrate run. */
export interface StepResult {
  readonly id: string;
  readonly title: string;
  readonly status: 'succeeded' | 'failed' | 'interrupted' | 'skipped' | 'not-run';
  readonly attempt?: number;
  readonly durationMs?: number;
  readonly summary?: StepSummary;
  readonly error?: ErrorReport;
}

/** Holder of the runner lock, as PostgreSQL reports it. */
export interface LockHolder {
  readonly pid: number;
  readonly applicationName: string;
  readonly clientAddr: string | null;
  readonly backendStart: string;
}

/** Everything the engine tells while it works; the CLI turns it into spinners, lines or nothing. */
export type RunEvent =
  | { readonly type: 'log'; readonly level: 'info' | 'warn'; readonly message: string; readonly stepId?: string }
  | { readonly type: 'lock-wait'; readonly holder: LockHolder | null; readonly waitedMs: number }
  | { readonly type: 'lock-acquired'; readonly waitedMs: number }
  | { readonly type: 'step-start'; readonly stepId: string; readonly title: string; readonly attempt: number; readonly resuming: boolean }
  /** `repeated`: the heartbeat re-announcing unchanged progress during a long unit of work. */
  | { readonly type: 'step-progress'; readonly stepId: string; readonly progress: Progress; readonly repeated?: boolean }
  | { readonly type: 'step-end'; readonly result: StepResult };

export type OnEvent = (event: RunEvent) => void;
