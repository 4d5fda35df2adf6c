/**
 * `seedLegacy`: builds a realistic database of a ZITADEL-style event store. The base is a pre-v2.39
 * (legacy) database — `eventstore.events` with its constraints and indexes, filled with instances,
 * orgs, projects with apps, users, login flows and the system events of older setup runs, the old
 * `projections.milestones` consistent with those events, and what the legacy handlers kept (their
 * sequences, failures and locks, the migration unique constraints). `zitadelVersion` then replays the
 * setup runs of a later ZITADEL version on it (upgrade.ts). Everything is generated inside the
 * database with set-based SQL; no event row passes through Node.
 */
import os from 'node:os';
import type pg from 'pg';
import type { Database } from '../db/connection.js';
import { ConfigError, RefusedError } from '../errors.js';
import { LEGACY_EVENTS_INDEXES, LEGACY_EVENTS_TABLE, LEGACY_MILESTONES_TABLE } from '../schema.js';
import {
  INSERT_SYSTEM_EVENTS_SQL, MAX_PAYLOAD_BYTES, MAX_SAML_METADATA_BYTES, insertEventsSql, padTableSql, samlPadTableSql, type EventShape,
} from './events-sql.js';
import { HANDLER_ROWS_SQL, HANDLER_TABLES_SQL, INSERT_UNIQUE_CONSTRAINTS_SQL } from './handlers-sql.js';
import { planSeed, type InstancePlan, type SeedPlan } from './instances.js';
import { INSERT_MILESTONES_SQL } from './milestones-sql.js';
import { MEAN_SCENE_EVENTS, samlApps, templateRows } from './scenes.js';
import {
  FILL_INSTANCES_SQL, FILL_TEMPLATES_SQL, POOL_SQL, RESOLVE_SQL, SCENES_SQL, SHORT_INSTANCES_SQL, STAGE, STAGE_TABLES_SQL,
  generateScenesSql, helperFunctionsSql,
} from './stage-sql.js';
import { applyUpgrades, type UpgradeSummary } from './upgrade.js';
import { ZITADEL_VERSIONS, isZitadelVersion, migrationConstraints, type ZitadelVersion } from './zitadel-steps.js';

export { minimumEvents } from './instances.js';
export { MAX_PAYLOAD_BYTES, MAX_SAML_METADATA_BYTES } from './events-sql.js';
export { ZITADEL_VERSIONS, isZitadelVersion, type ZitadelVersion } from './zitadel-steps.js';

/** The phases of a seed, in order. */
export type SeedPhase = 'stage' | 'load' | 'indexes' | 'milestones' | 'analyze' | 'upgrade';

/** Options of {@link seedLegacy}. */
export interface SeedOptions {
  /** Events of the legacy history, its system events included; later setup runs add theirs. */
  readonly events: number;
  readonly instances: number;
  /** Same seed, same rows. Default is 1. */
  readonly seed?: number;
  /** The ZITADEL version whose setup last ran on the database. Default is `v2.38` (legacy, before events2). */
  readonly zitadelVersion?: ZitadelVersion;
  /**
   * About this many distinct aggregates in the database: logins then reuse a pool of sessions, OIDC
   * sessions and auth requests. Default: as many as the scenes create (about one per five events).
   */
  readonly aggregates?: number;
  /** Pads each non-NULL payload to about this many bytes of JSON text (at most 65536). Default: natural sizes. */
  readonly payloadBytes?: number;
  /** Consecutive events of an instance share one creation_date (one transaction) in groups of this many. Default: per push. */
  readonly eventsPerTx?: number;
  /**
   * The apps of `app_api` scenes are SAML apps whose metadata is about this many bytes (at most 4 MiB;
   * base64 in the payload): large payloads, as SAML metadata is in ZITADEL. Default: no SAML apps.
   */
  readonly samlMetadataBytes?: number;
  /** Called as events are written: events done so far and the total. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Called as each phase starts: `stage`, `load` (then onProgress), `indexes`, `milestones`, `analyze`, `upgrade`. */
  readonly onPhase?: (phase: SeedPhase) => void;
}

/** What {@link seedLegacy} built. */
export interface SeedSummary {
  readonly events: number;
  readonly instances: number;
  /** Rows of `projections.milestones`. */
  readonly milestones: number;
  readonly zitadelVersion: ZitadelVersion;
  readonly durationMs: number;
  readonly [k: string]: unknown;
}

/** Throws ConfigError when the options cannot be seeded (e.g. too few events for the instances), naming every problem. */
export function checkSeedOptions(options: SeedOptions): void {
  const problems: string[] = [];
  const version = options.zitadelVersion ?? 'v2.38';
  if (!isZitadelVersion(version)) problems.push(`--zitadel-version must be one of ${ZITADEL_VERSIONS.join(', ')}, got ${String(version)}`);
  const positive = (name: string, value: number | undefined, max = Number.MAX_SAFE_INTEGER) => {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1 || value > max)) {
      problems.push(`${name} must be an integer from 1 to ${max === Number.MAX_SAFE_INTEGER ? 'any size' : max}, got ${value}`);
    }
  };
  positive('--aggregates', options.aggregates);
  positive('--payload-bytes', options.payloadBytes, MAX_PAYLOAD_BYTES);
  positive('--events-per-tx', options.eventsPerTx);
  positive('--saml-metadata-bytes', options.samlMetadataBytes, MAX_SAML_METADATA_BYTES);
  try {
    planSeed(options.events, options.instances, options.seed ?? 1);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(err.message);
  }
  if (problems.length > 0) throw new ConfigError(problems.join('; '));
}

/** Events per insert statement, about; instances are grouped into chunks of roughly this size. */
const CHUNK_EVENTS = 100_000;

/** Legacy setup step after which `created_at` was written by clock_timestamp() (`11_event_created_at`). */
const CREATED_AT_STEP = '11_event_created_at';

/**
 * Builds and fills the tables in a database that has no event store yet.
 * Throws RefusedError when `eventstore.events`, `events_old` or `events2` (or the legacy handler
 * schemas `adminapi` / `auth`) exists, ConfigError when the options cannot be seeded.
 */
export async function seedLegacy(database: Database, options: SeedOptions): Promise<SeedSummary> {
  const started = Date.now();
  checkSeedOptions(options);
  const seed = options.seed ?? 1;
  const version = options.zitadelVersion ?? 'v2.38';
  const plan = planSeed(options.events, options.instances, seed);
  await refuseExisting(database.pool);
  const progress = options.onProgress ?? (() => {});
  const phase = options.onPhase ?? (() => {});
  progress(0, options.events);
  try {
    phase('stage');
    const stageStarted = Date.now();
    await stage(database.pool, plan, seed, options);
    const stageMs = Date.now() - stageStarted;
    phase('load');
    const loadStarted = Date.now();
    const constraints = await createTables(database.pool);
    await insertSystemEvents(database.pool, plan, seed);
    let done = plan.systemEvents.length;
    progress(done, options.events);
    const createdAtSince = plan.systemEvents.find((e) => e.step === CREATED_AT_STEP && e.eventType.endsWith('.done'))!.at;
    const insert = insertEventsSql(seed, eventShape(options));
    await forEachConcurrently(chunks(plan.instances), workers(database), async (chunk) => {
      await withClient(database.pool, async (c) => {
        await c.query(`SET work_mem = '256MB'`);
        await c.query(insert, [chunk[0].inst, chunk[chunk.length - 1].inst, createdAtSince]);
      });
      done += chunk.reduce((n, i) => n + i.budget, 0);
      progress(done, options.events);
    });
    const loadMs = Date.now() - loadStarted;
    phase('indexes');
    const indexStarted = Date.now();
    await buildIndexes(database, constraints);
    const indexMs = Date.now() - indexStarted;
    phase('milestones');
    const milestones = (await database.pool.query(INSERT_MILESTONES_SQL)).rowCount ?? 0;
    await database.pool.query(HANDLER_ROWS_SQL);
    phase('analyze');
    await database.pool.query('ANALYZE eventstore.events; ANALYZE projections.milestones');
    phase('upgrade');
    const upgradeStarted = Date.now();
    const upgrade = await applyUpgrades(database, version, (statements) => runParallel(database, statements));
    return {
      events: options.events,
      instances: options.instances,
      milestones,
      zitadelVersion: version,
      durationMs: Date.now() - started,
      seed,
      systemEvents: plan.systemEvents.length,
      removedInstances: plan.instances.filter((i) => i.removed).map((i) => i.instanceId),
      shape: {
        aggregates: options.aggregates ?? null, payloadBytes: options.payloadBytes ?? null, eventsPerTx: options.eventsPerTx ?? null,
        samlMetadataBytes: options.samlMetadataBytes ?? null,
      },
      upgrade: upgrade satisfies UpgradeSummary,
      timings: { stageMs, loadMs, indexMs, upgradeMs: Date.now() - upgradeStarted },
    };
  } finally {
    await database.pool.query(`DROP SCHEMA IF EXISTS ${STAGE} CASCADE`).catch(() => {});
  }
}

function eventShape(options: SeedOptions): EventShape {
  return {
    foldAggregates: options.aggregates !== undefined, payloadBytes: options.payloadBytes, eventsPerTx: options.eventsPerTx,
    samlMetadataBytes: options.samlMetadataBytes,
  };
}

/** The legacy setup runs' events and the unique constraints their pushes left. */
async function insertSystemEvents(pool: pg.Pool, plan: SeedPlan, seed: number): Promise<void> {
  const events = plan.systemEvents;
  await pool.query(INSERT_SYSTEM_EVENTS_SQL, [events.map((e) => e.eventType), events.map((e) => e.step), events.map((e) => e.at), String(seed)]);
  const rows = migrationConstraints(events.map((e) => ({ eventType: e.eventType, name: e.step })));
  await pool.query(INSERT_UNIQUE_CONSTRAINTS_SQL, [rows.map((r) => r.type), rows.map((r) => r.field)]);
}

/** The schemas the seed and zsetup write. */
const SEED_SCHEMAS = ['adminapi', 'auth', 'eventstore', 'projections', 'zsetup'];

/**
 * Drops the schemas the seed and zsetup write (`eventstore`, `projections`, the legacy handlers'
 * `adminapi` and `auth`, `zsetup`), for `zsetup seed --reset`. Returns those that existed.
 */
export async function dropSeedTargets(database: Database): Promise<string[]> {
  const names = SEED_SCHEMAS;
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
  const reset = `rerun with --reset to drop the schemas ${SEED_SCHEMAS.join(', ')} first, or use another database`;
  const existing = await existingEventStore(pool);
  if (existing.length > 0) {
    throw new RefusedError(`the database already has an event store (${existing.join(', ')}); seed only fills an empty database`, reset);
  }
  const r = await pool.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname IN ('adminapi', 'auth') ORDER BY 1`);
  if (r.rows.length > 0) {
    throw new RefusedError(`the database already has the legacy handler schema(s) ${r.rows.map((x) => x.nspname).join(', ')}; seed only fills an empty database`, reset);
  }
}

/** Plans every scene of every instance in the scratch schema. */
async function stage(pool: pg.Pool, plan: SeedPlan, seed: number, options: SeedOptions): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS ${STAGE} CASCADE`);
  await pool.query(helperFunctionsSql(seed));
  await pool.query(STAGE_TABLES_SQL);
  const is = plan.instances;
  await pool.query(FILL_INSTANCES_SQL, [
    is.map((i) => i.inst), is.map((i) => i.instanceId), is.map((i) => i.base), is.map((i) => i.name), is.map((i) => i.budget),
    is.map((i) => i.activity), is.map((i) => i.removed), is.map((i) => i.start), is.map((i) => i.spanUs),
  ]);
  const t = options.samlMetadataBytes !== undefined ? samlApps(templateRows()) : templateRows();
  await pool.query(FILL_TEMPLATES_SQL, [
    t.map((r) => r.kind), t.map((r) => r.ord), t.map((r) => r.push), t.map((r) => r.agg), t.map((r) => r.eventType),
    t.map((r) => r.editor), t.map((r) => r.service), t.map((r) => r.arg),
  ]);
  const generate = generateScenesSql(MEAN_SCENE_EVENTS);
  do await pool.query(generate);
  while ((await pool.query<{ n: number }>(SHORT_INSTANCES_SQL)).rows[0].n > 0);
  await pool.query(SCENES_SQL);
  await pool.query(RESOLVE_SQL);
  if (options.aggregates !== undefined) await pool.query(POOL_SQL, [options.aggregates]);
  if (options.payloadBytes !== undefined) await pool.query(padTableSql(seed, options.payloadBytes));
  if (options.samlMetadataBytes !== undefined) await pool.query(samlPadTableSql(seed, options.samlMetadataBytes));
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
  await pool.query(HANDLER_TABLES_SQL);
  const r = await pool.query<ConstraintDef>(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
     WHERE conrelid = 'eventstore.events'::regclass AND contype IN ('p', 'u') ORDER BY conname`,
  );
  for (const c of r.rows) await pool.query(`ALTER TABLE eventstore.events DROP CONSTRAINT ${c.name}`);
  return r.rows;
}

/** Adds the constraints back and builds the legacy indexes, several at once. */
async function buildIndexes(database: Database, constraints: readonly ConstraintDef[]): Promise<void> {
  await runParallel(database, [
    ...constraints.map((c) => `ALTER TABLE eventstore.events ADD CONSTRAINT ${c.name} ${c.definition}`),
    ...LEGACY_EVENTS_INDEXES.split(';').map((s) => s.trim()).filter(Boolean),
  ]);
}

/** Runs DDL statements (index builds) several at once, each on its own connection. */
async function runParallel(database: Database, statements: readonly string[]): Promise<void> {
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
