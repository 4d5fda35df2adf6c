import os from 'node:os';
import { sql, type Generated, type Kysely } from 'kysely';
import type { Db, Tx, ZsetupSchema } from './db/connection.js';
import { RefusedError, type ErrorReport } from './errors.js';

/** Status of a step in `zsetup.steps`. */
export type StepStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'interrupted';

/** Progress as stored in the steps table and shown by `status`. */
export interface Progress {
  readonly phase: string;
  readonly done: number;
  readonly total: number | null;
  readonly unit: string;
  /** Units per second over the recent window. */
  readonly rate: number | null;
  readonly etaSeconds: number | null;
  /** See ProgressUpdate.note. */
  readonly note?: string;
}

/** Who ran a step. */
export interface RunnerInfo {
  readonly host: string;
  readonly pid: number;
  readonly version: string;
}

/** Row shape of `zsetup.steps` for kysely. */
export interface StepsTable {
  id: string;
  status: StepStatus;
  attempts: Generated<number>;
  started_at: Date | null;
  finished_at: Date | null;
  heartbeat_at: Date | null;
  duration_ms: number | null;
  checkpoint: unknown;
  progress: Progress | null;
  last_error: ErrorReport | null;
  runner: RunnerInfo | null;
  summary: unknown;
}

/** One row of `zsetup.steps`, as returned to callers. */
export type StepRow = Readonly<Omit<StepsTable, 'attempts'> & { attempts: number }>;

/** The DDL of zsetup's own bookkeeping. Idempotent. */
const STEPS_DDL = sql`
  CREATE SCHEMA IF NOT EXISTS zsetup;
  CREATE TABLE IF NOT EXISTS zsetup.steps (
    id           text PRIMARY KEY,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'interrupted')),
    attempts     integer NOT NULL DEFAULT 0,
    started_at   timestamptz,
    finished_at  timestamptz,
    heartbeat_at timestamptz,
    duration_ms  bigint,
    checkpoint   jsonb,
    progress     jsonb,
    last_error   jsonb,
    runner       jsonb,
    summary      jsonb
  );
`;

/** Creates `zsetup.steps` if missing. Call while holding the runner lock (CREATE SCHEMA races otherwise). */
export async function ensureStepsTable(db: Db): Promise<void> {
  await checkStepsTablePrivileges(db);
  await STEPS_DDL.execute(db);
}

/**
 * Refuses, before the first write, a role that cannot keep zsetup's state: it needs CREATE on the
 * database while schema zsetup does not exist, else USAGE and CREATE on that schema.
 */
async function checkStepsTablePrivileges(db: Db): Promise<void> {
  const r = await sql<{ me: string; database: string; schema: boolean; on_db: boolean; usage: boolean; create: boolean }>`
    SELECT current_user AS me, current_database() AS database, to_regnamespace('zsetup') IS NOT NULL AS schema,
           has_database_privilege(current_database(), 'CREATE') AS on_db,
           to_regnamespace('zsetup') IS NOT NULL AND has_schema_privilege('zsetup', 'USAGE') AS usage,
           to_regnamespace('zsetup') IS NOT NULL AND has_schema_privilege('zsetup', 'CREATE') AS create`.execute(db);
  const p = r.rows[0];
  const missing = !p.schema ? (p.on_db ? [] : [`CREATE on database ${p.database}`])
    : [!p.usage && 'USAGE on schema zsetup', !p.create && 'CREATE on schema zsetup'].filter((x): x is string => Boolean(x));
  if (missing.length === 0) return;
  throw new RefusedError(
    `role ${p.me} lacks ${missing.join(', ')}, needed to record zsetup's progress in schema zsetup; nothing was changed`,
    `as a superuser or the owner: ${missing.map((m) => `GRANT ${m.replace(' on ', ' ON ').replace('database', 'DATABASE').replace('schema', 'SCHEMA')} TO ${p.me}`).join('; ')}`,
  );
}

/** Reads all step rows; an absent table (nothing ever ran, or a read-only dry-run) reads as no rows. */
export async function readSteps(db: Kysely<ZsetupSchema> | Tx): Promise<Map<string, StepRow>> {
  const exists = await sql<{ t: string | null }>`SELECT to_regclass('zsetup.steps')::text AS t`.execute(db);
  if (!exists.rows[0]?.t) return new Map();
  const rows = await db.selectFrom('zsetup.steps').selectAll().execute();
  return new Map(rows.map((r) => [r.id, r as StepRow]));
}

/** This process, as recorded in `runner`. */
export function thisRunner(version: string): RunnerInfo {
  return { host: os.hostname(), pid: process.pid, version };
}

/** Marks a step as running: a new attempt. The checkpoint is kept so the step can resume. */
export async function markRunning(db: Db, id: string, runner: RunnerInfo): Promise<StepRow> {
  return (await db
    .insertInto('zsetup.steps')
    .values({ id, status: 'running', attempts: 1, started_at: sql`clock_timestamp()`, heartbeat_at: sql`clock_timestamp()`,
      runner: json(runner), finished_at: null, duration_ms: null, checkpoint: null, progress: null, last_error: null, summary: null })
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        status: 'running',
        attempts: sql`zsetup.steps.attempts + 1`,
        started_at: sql`clock_timestamp()`,
        heartbeat_at: sql`clock_timestamp()`,
        finished_at: null,
        duration_ms: null,
        runner: json(runner),
        last_error: null,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow()) as StepRow;
}

/** Records the end of an attempt. */
export async function markFinished(
  db: Db,
  id: string,
  status: Extract<StepStatus, 'succeeded' | 'failed' | 'interrupted'>,
  fields: { durationMs: number; error?: ErrorReport; summary?: unknown; progress?: Progress | null },
): Promise<void> {
  await db
    .updateTable('zsetup.steps')
    .set({
      status,
      finished_at: sql`clock_timestamp()`,
      heartbeat_at: sql`clock_timestamp()`,
      duration_ms: fields.durationMs,
      last_error: fields.error ? json(fields.error) : null,
      ...(fields.summary !== undefined ? { summary: json(fields.summary) } : {}),
      ...(fields.progress !== undefined ? { progress: json(fields.progress) } : {}),
    })
    .where('id', '=', id)
    .execute();
}

/** Heartbeat plus the latest progress, so `status` in another shell sees a live run. */
export async function writeHeartbeat(db: Db, id: string, progress: Progress | null): Promise<void> {
  await db
    .updateTable('zsetup.steps')
    .set({ heartbeat_at: sql`clock_timestamp()`, ...(progress ? { progress: json(progress) } : {}) })
    .where('id', '=', id)
    .execute();
}

/** Stores a step's checkpoint inside the caller's transaction, so work and checkpoint commit together. */
export async function saveCheckpoint(tx: Tx, id: string, checkpoint: unknown): Promise<void> {
  await tx.updateTable('zsetup.steps').set({ checkpoint: json(checkpoint) }).where('id', '=', id).execute();
}

/** A JSON value as a jsonb parameter. */
export function json<T>(value: T) {
  return sql<T>`${JSON.stringify(value)}::jsonb`;
}
