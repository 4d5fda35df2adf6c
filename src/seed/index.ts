/**
 * `seedLegacy`: builds a realistic pre-v2.39 database — `eventstore.events` with its constraints and
 * indexes, filled with instances, orgs, projects with apps, users, login flows and the system events
 * of older setup runs, plus the old `projections.milestones` consistent with those events.
 * Everything is generated inside the database with set-based SQL; no event row passes through Node.
 */
import os from 'node:os';
import type pg from 'pg';
import type { Database } from '../db/connection.js';
import { RefusedError } from '../errors.js';
import { LEGACY_EVENTS_INDEXES, LEGACY_EVENTS_TABLE, LEGACY_MILESTONES_TABLE } from '../schema.js';
import { INSERT_SYSTEM_EVENTS_SQL, insertEventsSql } from './events-sql.js';
import { planSeed, type InstancePlan, type SeedPlan } from './instances.js';
import { INSERT_MILESTONES_SQL } from './milestones-sql.js';
import { MEAN_SCENE_EVENTS, templateRows } from './scenes.js';
import {
  FILL_INSTANCES_SQL, FILL_TEMPLATES_SQL, RESOLVE_SQL, SCENES_SQL, SHORT_INSTANCES_SQL, STAGE, STAGE_TABLES_SQL,
  generateScenesSql, helperFunctionsSql,
} from './stage-sql.js';

export { minimumEvents } from './instances.js';

/** Throws ConfigError when the options cannot be seeded (e.g. too few events for the instances). */
export function checkSeedOptions(options: SeedOptions): void {
  planSeed(options.events, options.instances, options.seed ?? 1);
}

/** Options of {@link seedLegacy}. */
export interface SeedOptions {
  /** Total number of events, system events included. */
  readonly events: number;
  readonly instances: number;
  /** Same seed, same rows. Default is 1. */
  readonly seed?: number;
  /** Called as events are written: events done so far and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** What {@link seedLegacy} built. */
export interface SeedSummary {
  readonly events: number;
  readonly instances: number;
  /** Rows of `projections.milestones`. */
  readonly milestones: number;
  readonly durationMs: number;
  readonly [k: string]: unknown;
}

/** Events per insert statement, about; instances are grouped into chunks of roughly this size. */
const CHUNK_EVENTS = 100_000;

/** Legacy setup step after which `created_at` was written by clock_timestamp() (`11_event_created_at`). */
const CREATED_AT_STEP = '11_event_created_at';

/**
 * Builds and fills the legacy tables in a database that has no event store yet.
 * Throws RefusedError when `eventstore.events`, `events_old` or `events2` exists, ConfigError when
 * `events` is too small for `instances`.
 */
export async function seedLegacy(database: Database, options: SeedOptions): Promise<SeedSummary> {
  const started = Date.now();
  const seed = options.seed ?? 1;
  const plan = planSeed(options.events, options.instances, seed);
  await refuseExisting(database.pool);
  const progress = options.onProgress ?? (() => {});
  progress(0, options.events);
  try {
    const stageStarted = Date.now();
    await stage(database.pool, plan, seed);
    const stageMs = Date.now() - stageStarted;
    const loadStarted = Date.now();
    const constraints = await createTables(database.pool);
    await database.pool.query(INSERT_SYSTEM_EVENTS_SQL, [
      plan.systemEvents.map((e) => e.eventType), plan.systemEvents.map((e) => e.step), plan.systemEvents.map((e) => e.at), String(seed),
    ]);
    let done = plan.systemEvents.length;
    progress(done, options.events);
    const createdAtSince = plan.systemEvents.find((e) => e.step === CREATED_AT_STEP && e.eventType.endsWith('.done'))!.at;
    const insert = insertEventsSql(seed);
    await forEachConcurrently(chunks(plan.instances), workers(database), async (chunk) => {
      await withClient(database.pool, async (c) => {
        await c.query(`SET work_mem = '256MB'`);
        await c.query(insert, [chunk[0].inst, chunk[chunk.length - 1].inst, createdAtSince]);
      });
      done += chunk.reduce((n, i) => n + i.budget, 0);
      progress(done, options.events);
    });
    const loadMs = Date.now() - loadStarted;
    const indexStarted = Date.now();
    await buildIndexes(database, constraints);
    const indexMs = Date.now() - indexStarted;
    const milestones = (await database.pool.query(INSERT_MILESTONES_SQL)).rowCount ?? 0;
    await database.pool.query('ANALYZE eventstore.events; ANALYZE projections.milestones');
    return {
      events: options.events,
      instances: options.instances,
      milestones,
      durationMs: Date.now() - started,
      seed,
      systemEvents: plan.systemEvents.length,
      removedInstances: plan.instances.filter((i) => i.removed).map((i) => i.instanceId),
      timings: { stageMs, loadMs, indexMs },
    };
  } finally {
    await database.pool.query(`DROP SCHEMA IF EXISTS ${STAGE} CASCADE`).catch(() => {});
  }
}

/** Drops the schemas `eventstore`, `projections` and `zsetup` (for `zsetup seed --reset`). Returns those that existed. */
export async function dropSeedTargets(database: Database): Promise<string[]> {
  const names = ['eventstore', 'projections', 'zsetup'];
  const r = await database.pool.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname = ANY($1) ORDER BY nspname`, [names]);
  if (r.rows.length > 0) await database.pool.query(`DROP SCHEMA IF EXISTS ${names.join(', ')} CASCADE`);
  return r.rows.map((row) => row.nspname);
}

/** The event store tables the database already has (`eventstore.events`, `events_old`, `events2`). */
export async function existingEventStore(pool: pg.Pool): Promise<string[]> {
  const r = await pool.query<{ name: string }>(
    `SELECT 'eventstore.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'eventstore' AND c.relname IN ('events', 'events_old', 'events2') ORDER BY 1`,
  );
  return r.rows.map((x) => x.name);
}

async function refuseExisting(pool: pg.Pool): Promise<void> {
  const existing = await existingEventStore(pool);
  if (existing.length > 0) {
    throw new RefusedError(
      `the database already has an event store (${existing.join(', ')}); seed only fills an empty database`,
      'rerun with --reset to drop the schemas eventstore, projections and zsetup first, or use another database',
    );
  }
}

/** Plans every scene of every instance in the scratch schema. */
async function stage(pool: pg.Pool, plan: SeedPlan, seed: number): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS ${STAGE} CASCADE`);
  await pool.query(helperFunctionsSql(seed));
  await pool.query(STAGE_TABLES_SQL);
  const is = plan.instances;
  await pool.query(FILL_INSTANCES_SQL, [
    is.map((i) => i.inst), is.map((i) => i.instanceId), is.map((i) => i.base), is.map((i) => i.name), is.map((i) => i.budget),
    is.map((i) => i.activity), is.map((i) => i.removed), is.map((i) => i.start), is.map((i) => i.spanUs),
  ]);
  const t = templateRows();
  await pool.query(FILL_TEMPLATES_SQL, [
    t.map((r) => r.kind), t.map((r) => r.ord), t.map((r) => r.push), t.map((r) => r.agg), t.map((r) => r.eventType),
    t.map((r) => r.editor), t.map((r) => r.service), t.map((r) => r.arg),
  ]);
  const generate = generateScenesSql(MEAN_SCENE_EVENTS);
  do await pool.query(generate);
  while ((await pool.query<{ n: number }>(SHORT_INSTANCES_SQL)).rows[0].n > 0);
  await pool.query(SCENES_SQL);
  await pool.query(RESOLVE_SQL);
  await pool.query(`ANALYZE ${STAGE}.scene_r, ${STAGE}.tpl, ${STAGE}.inst`);
}

/** A table constraint dropped for the bulk load and added back afterwards. */
interface ConstraintDef {
  readonly name: string;
  readonly definition: string;
}

/**
 * Creates the legacy tables from the shared DDL. The primary key and unique constraints are taken off
 * for the load (their definitions read from the catalog) and added back with the other indexes.
 */
async function createTables(pool: pg.Pool): Promise<ConstraintDef[]> {
  await pool.query(LEGACY_EVENTS_TABLE);
  await pool.query(LEGACY_MILESTONES_TABLE);
  const r = await pool.query<ConstraintDef>(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
     WHERE conrelid = 'eventstore.events'::regclass AND contype IN ('p', 'u') ORDER BY conname`,
  );
  for (const c of r.rows) await pool.query(`ALTER TABLE eventstore.events DROP CONSTRAINT ${c.name}`);
  return r.rows;
}

/** Adds the constraints back and builds the legacy indexes, several at once. */
async function buildIndexes(database: Database, constraints: readonly ConstraintDef[]): Promise<void> {
  const statements = [
    ...constraints.map((c) => `ALTER TABLE eventstore.events ADD CONSTRAINT ${c.name} ${c.definition}`),
    ...LEGACY_EVENTS_INDEXES.split(';').map((s) => s.trim()).filter(Boolean),
  ];
  await forEachConcurrently(statements, workers(database), (statement) =>
    withClient(database.pool, async (c) => {
      await c.query(`SET maintenance_work_mem = '256MB'`);
      await c.query(statement);
    }),
  );
}

/** Groups consecutive instances into chunks of about {@link CHUNK_EVENTS} events. */
function chunks(instances: readonly InstancePlan[]): InstancePlan[][] {
  const out: InstancePlan[][] = [];
  let current: InstancePlan[] = [];
  let size = 0;
  for (const i of instances) {
    current.push(i);
    size += i.budget;
    if (size >= CHUNK_EVENTS) {
      out.push(current);
      current = [];
      size = 0;
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

function workers(database: Database): number {
  const cpus = os.availableParallelism?.() ?? os.cpus().length;
  return Math.max(1, Math.min(cpus, database.pool.options.max ?? 2, 4));
}

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

/** Runs `fn` over `items` with at most `limit` at once; the first failure rejects after the others settle. */
async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length && errors.length === 0) {
      const item = items[next++];
      await fn(item).catch((err) => errors.push(err));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
}
