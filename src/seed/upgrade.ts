/**
 * Turns a seeded legacy database into what a later ZITADEL version's own setup leaves behind
 * (`--zitadel-version v2.71` / `v4`): replays that version's setup runs, writing their
 * `system.migration.*` events and applying the steps' effects on `eventstore` and `projections`.
 */
import type pg from 'pg';
import type { Database } from '../db/connection.js';
import { isoMicros } from './instances.js';
import {
  CREATE_EVENTS2_AS_SQL, EVENTS2_CONSTRAINTS_SQL, EVENTS2_INDEXES_SQL, FIELDS_SQL, INSERT_RUN_EVENTS_SQL, IN_TX_ORDER_TYPE_SQL,
  RENAME_LEGACY_SQL, STEP15_COPY_SQL, STEP15_TABLES_SQL, STEP17_SQL, STEP36_SQL, permissionObjectsSql, pushFunctionsSql, startMarkerSql,
  step82Sql,
} from './upgrade-sql.js';
import { INSERT_UNIQUE_CONSTRAINTS_SQL } from './handlers-sql.js';
import { migrationConstraints, upgradeRuns, type RunEvent, type ZitadelVersion } from './zitadel-steps.js';

/** What the replayed setup runs left. */
export interface UpgradeSummary {
  /** Setup runs after the legacy history (0 for v2.38). */
  readonly setupRuns: number;
  /** `system.migration.*` events those runs wrote. */
  readonly migrationEvents: number;
  /** `milestone.v2.*` events of step 36. */
  readonly milestoneEvents: number;
}

/** Microseconds between step 36's pushes (one per instance). */
const MILESTONE_PUSH_GAP_US = 1_013;

/**
 * Replays the setup runs of `version` on the legacy database just seeded. Runs `parallel` index
 * builds at once. Does nothing for v2.38.
 */
export async function applyUpgrades(database: Database, version: ZitadelVersion, parallel: ParallelRunner): Promise<UpgradeSummary> {
  const runs = upgradeRuns(version);
  if (runs.length === 0) return { setupRuns: 0, migrationEvents: 0, milestoneEvents: 0 };
  const pool = database.pool;
  const events = runs.flat();
  await moveToEvents2(pool);
  const inTxOrderType = (await pool.query<{ data_type: string }>(IN_TX_ORDER_TYPE_SQL)).rows[0].data_type;
  await createStepObjects(pool, version, inTxOrderType);
  await insertRunEvents(pool, events);
  await pool.query(STEP15_TABLES_SQL);
  await pool.query(STEP15_COPY_SQL);
  await pool.query(STEP17_SQL);
  const milestoneEvents = await fillMilestones(pool, events);
  await startMarker(pool, events, '38_back_channel_logout_notification_start_', 'projections.notifications_back_channel_logout', false);
  if (version === 'v4') {
    await startMarker(pool, events, '55_execution_handler_start', 'projections.execution_handler', true);
    await pool.query(step82Sql(inTxOrderType));
  }
  const constraints = runs.flatMap((run) => migrationConstraints(run));
  await pool.query(`${INSERT_UNIQUE_CONSTRAINTS_SQL} ON CONFLICT DO NOTHING`, [constraints.map((c) => c.type), constraints.map((c) => c.field)]);
  await parallel(EVENTS2_INDEXES_SQL);
  await pool.query('ANALYZE eventstore.events2; ANALYZE projections.current_states; ANALYZE projections.failed_events2');
  return { setupRuns: runs.length, migrationEvents: events.length, milestoneEvents };
}

/** Runs statements side by side on several connections (the seed's index builder). */
export type ParallelRunner = (statements: readonly string[]) => Promise<void>;

/** Step 14, ZITADEL's way: rename, CREATE TABLE … AS, primary key, NOT NULLs. */
async function moveToEvents2(pool: pg.Pool): Promise<void> {
  await pool.query(RENAME_LEGACY_SQL);
  await pool.query(CREATE_EVENTS2_AS_SQL);
  await pool.query(EVENTS2_CONSTRAINTS_SQL);
}

/**
 * The objects in `eventstore` that recorded steps made and that later ZITADEL steps build on: the
 * fields table (28, 31, 43), the push functions (40; the newest stamps as 64 and 81 left them) and
 * the permission views and function (46, 49). A step recorded done is never run again, so a database
 * recording them without these objects would fail ZITADEL's next steps.
 */
async function createStepObjects(pool: pg.Pool, version: ZitadelVersion, inTxOrderType: string): Promise<void> {
  await pool.query(FIELDS_SQL);
  await pool.query(pushFunctionsSql(inTxOrderType, version === 'v4' ? 'clock' : 'transaction'));
  // 53's function is not named in the spec sheet; only 46's (which 49 re-creates) is made.
  await pool.query(permissionObjectsSql(['permitted_orgs']));
}

async function insertRunEvents(pool: pg.Pool, events: readonly RunEvent[]): Promise<void> {
  await pool.query(INSERT_RUN_EVENTS_SQL, [
    events.map((e) => e.eventType), events.map((e) => e.name), events.map((e) => isoMicros(e.atUs)), events.map((e) => e.path),
    events.map((e) => (e.lastRun ? JSON.stringify(e.lastRun) : null)),
  ]);
}

/** The started event of a step in the replayed runs. */
function startedOf(events: readonly RunEvent[], name: string): RunEvent {
  const e = events.find((x) => x.name === name && x.eventType === 'system.migration.started');
  if (!e) throw new Error(`no started event for ${name} in the setup runs`);
  return e;
}

/** Step 36's pushes, starting a millisecond after its started event. Returns the events written. */
async function fillMilestones(pool: pg.Pool, events: readonly RunEvent[]): Promise<number> {
  const from = startedOf(events, '36_fill_v3_milestones').atUs + 1_000;
  const r = await pool.query(STEP36_SQL, [isoMicros(from), MILESTONE_PUSH_GAP_US]);
  return r.rowCount ?? 0;
}

async function startMarker(pool: pg.Pool, events: readonly RunEvent[], step: string, handler: string, overwrite: boolean): Promise<void> {
  const at = startedOf(events, step).atUs + 500;
  await pool.query(startMarkerSql(overwrite), [handler, step, isoMicros(at)]);
}
