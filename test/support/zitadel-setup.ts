/**
 * An emulator of ZITADEL's `setup` command and of the parts of its runtime that continue from what
 * setup left behind, written by hand from ../shared/spec/zitadel-handoff.md (§1 steps, §2 bookkeeping,
 * §3.0–3.1 projection DDL, §4 current_states / failed_events2 and the handler's catch-up) and
 * zitadel-eventstore.md §2–§5 (step 14, push). It is the oracle of the hand-off tests, so it shares
 * no code with zsetup: everything below is SQL against the database, derived from the spec.
 *
 * What is modelled with SQL: every step that touches eventstore.* or projections.* objects the
 * hand-off depends on (events2, fields, unique_constraints, current_states, failed_events2, the six
 * projections' tables, step 40's push functions). Steps whose objects live elsewhere (auth, adminapi,
 * system, logstore, cache, or projection tables of other projections) are modelled as succeeding
 * without SQL; each says so where it is declared. Their bookkeeping events are still written.
 */
import pg from 'pg';

// ------------------------------------------------------------------------------------------------
// Names

/** The six projections zsetup prefills, under the names ZITADEL's `--init-projections` uses (§2.6). */
export const SIX_PROJECTIONS = [
  'projections.instances', 'projections.orgs1', 'projections.projects4',
  'projections.apps7', 'projections.users14', 'projections.milestones3',
] as const;
export type ProjectionName = (typeof SIX_PROJECTIONS)[number];

/** Every table of the six projections (§3.1), parents before children. */
export const PROJECTION_TABLES: Readonly<Record<ProjectionName, readonly string[]>> = {
  'projections.instances': ['instances'],
  'projections.orgs1': ['orgs1'],
  'projections.projects4': ['projects4'],
  'projections.apps7': ['apps7', 'apps7_api_configs', 'apps7_oidc_configs', 'apps7_saml_configs'],
  'projections.users14': ['users14', 'users14_humans', 'users14_machines', 'users14_notifications'],
  'projections.milestones3': ['milestones3'],
};

const APP = 'project.application.';
const HUMAN = 'user.human.';

/** What each projection subscribes to: aggregate type → event types (§3.3–§3.7). */
export const SUBSCRIPTIONS: Readonly<Record<ProjectionName, Readonly<Record<string, readonly string[]>>>> = {
  'projections.instances': {
    instance: ['instance.added', 'instance.changed', 'instance.default.org.set', 'instance.iam.project.set',
      'instance.iam.console.set', 'instance.default.language.set', 'instance.removed'],
  },
  'projections.orgs1': {
    org: ['org.added', 'org.changed', 'org.deactivated', 'org.reactivated', 'org.domain.primary.set', 'org.removed'],
    instance: ['instance.removed'],
  },
  'projections.projects4': {
    project: ['project.added', 'project.changed', 'project.deactivated', 'project.reactivated', 'project.removed'],
    org: ['org.removed'],
    instance: ['instance.removed'],
  },
  'projections.apps7': {
    project: [
      `${APP}added`, `${APP}changed`, `${APP}deactivated`, `${APP}reactivated`, `${APP}removed`, 'project.removed',
      `${APP}config.api.added`, `${APP}config.api.changed`, `${APP}config.api.secret.changed`, `${APP}config.api.secret.updated`,
      `${APP}config.oidc.added`, `${APP}config.oidc.changed`, `${APP}config.oidc.secret.changed`, `${APP}config.oidc.secret.updated`,
      `${APP}config.saml.added`, `${APP}config.saml.changed`,
    ],
    org: ['org.removed'],
    instance: ['instance.removed'],
  },
  'projections.users14': {
    user: [
      `${HUMAN}added`, 'user.added', `${HUMAN}selfregistered`, 'user.selfregistered',
      `${HUMAN}initialization.code.added`, 'user.initialization.code.added',
      `${HUMAN}initialization.check.succeeded`, 'user.initialization.check.succeeded',
      'user.locked', 'user.unlocked', 'user.deactivated', 'user.reactivated', 'user.removed',
      'user.username.changed', 'user.domain.claimed',
      `${HUMAN}profile.changed`, 'user.profile.changed', `${HUMAN}email.changed`, 'user.email.changed',
      `${HUMAN}email.verified`, 'user.email.verified', `${HUMAN}phone.changed`, 'user.phone.changed',
      `${HUMAN}phone.removed`, 'user.phone.removed', `${HUMAN}phone.verified`, 'user.phone.verified',
      `${HUMAN}avatar.added`, `${HUMAN}avatar.removed`, `${HUMAN}password.changed`,
      'user.machine.added', 'user.machine.changed', 'user.machine.secret.set', 'user.machine.secret.updated', 'user.machine.secret.removed',
      `${HUMAN}mfa.init.skipped`, 'user.mfa.otp.init.skipped',
      `${HUMAN}mfa.otp.verified`, 'user.mfa.otp.verified', `${HUMAN}mfa.otp.sms.added`, `${HUMAN}mfa.otp.email.added`,
      `${HUMAN}mfa.u2f.token.verified`, `${HUMAN}passwordless.token.verified`,
    ],
    org: ['org.removed'],
    instance: ['instance.removed'],
  },
  'projections.milestones3': { milestone: ['milestone.v2.reached', 'milestone.v2.pushed'] },
};

/** Whether `projection` subscribes to an event of this aggregate type and event type. */
export function isSubscribed(projection: ProjectionName, aggregateType: string, eventType: string): boolean {
  return SUBSCRIPTIONS[projection][aggregateType]?.includes(eventType) ?? false;
}

const MIGRATION = {
  started: 'system.migration.started',
  done: 'system.migration.done',
  failed: 'system.migration.failed',
  repeatableDone: 'system.migration.repeatable.done',
} as const;

// ------------------------------------------------------------------------------------------------
// Errors

/** A failure as ZITADEL's setup would log it: message and SQLSTATE when the database raised it. */
export class SetupError extends Error {
  constructor(message: string, readonly sqlstate?: string) {
    super(message);
  }
}

/** The text pgx gives a PostgreSQL error (§2.2: `ERROR: <message> (SQLSTATE <code>)`). */
function errorText(err: unknown): { text: string; sqlstate?: string } {
  const e = err as { message?: string; code?: string; severity?: string };
  if (err instanceof SetupError) return { text: err.message, sqlstate: err.sqlstate };
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
    return { text: `${e.severity ?? 'ERROR'}: ${e.message} (SQLSTATE ${e.code})`, sqlstate: e.code };
  }
  return { text: String(e.message ?? err) };
}

// ------------------------------------------------------------------------------------------------
// Push (§2.1, zitadel-eventstore.md §5)

/** A command to push: one event to be. */
export interface Command {
  readonly instanceId: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly type: string;
  readonly payload?: Record<string, unknown> | null;
  /** Default 1. */
  readonly revision?: number;
  /** Default `system`. */
  readonly creator?: string;
  /** Used only for a new aggregate: an existing aggregate keeps the owner of its latest event. */
  readonly owner: string;
}

/** A unique constraint change a push makes in the same transaction. */
export interface UniqueConstraintChange {
  readonly action: 'add' | 'remove';
  readonly type: string;
  readonly field: string;
  /** The error ZITADEL raises when an add collides (23505). */
  readonly errorId?: string;
}

/** An event as it was written. */
export interface PushedEvent {
  readonly instanceId: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly type: string;
  readonly sequence: string;
  readonly position: string;
  readonly inTxOrder: number;
  readonly createdAt: Date;
  readonly owner: string;
}

const RETURNING = `instance_id AS "instanceId", aggregate_type AS "aggregateType", aggregate_id AS "aggregateId",
  event_type AS type, "sequence"::text AS "sequence", "position"::text AS "position", in_tx_order::int AS "inTxOrder",
  created_at AS "createdAt", owner`;

/**
 * Pushes `commands` as one push inside the caller's transaction on `c`: through `eventstore.push`
 * when step 40 created it, else the way the Go pusher did before it (§5.1). Then the unique
 * constraint changes; a collision becomes SetupError(errorId, '23505').
 */
export async function pushInTransaction(
  c: pg.ClientBase, commands: readonly Command[], constraints: readonly UniqueConstraintChange[] = [],
): Promise<PushedEvent[]> {
  const hasFunction = (await c.query(
    `SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'eventstore' AND p.proname = 'push') AS f`,
  )).rows[0].f as boolean;
  const events = hasFunction ? await pushThroughFunction(c, commands) : await pushFromClient(c, commands);
  for (const u of constraints) await applyConstraint(c, u);
  return events;
}

/** {@link pushInTransaction} in a transaction of its own. */
export async function push(c: pg.ClientBase, commands: readonly Command[], constraints: readonly UniqueConstraintChange[] = []): Promise<PushedEvent[]> {
  await c.query('BEGIN');
  try {
    const events = await pushInTransaction(c, commands, constraints);
    await c.query('COMMIT');
    return events;
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  }
}

function commandRows(commands: readonly Command[]): string {
  return JSON.stringify(commands.map((m) => ({
    instance_id: m.instanceId, aggregate_type: m.aggregateType, aggregate_id: m.aggregateId, command_type: m.type,
    revision: m.revision ?? 1, payload: m.payload ?? null, creator: m.creator ?? 'system', owner: m.owner,
  })));
}

async function pushThroughFunction(c: pg.ClientBase, commands: readonly Command[]): Promise<PushedEvent[]> {
  const r = await c.query<PushedEvent>(
    `SELECT ${RETURNING} FROM eventstore.push(ARRAY(
       SELECT ROW(x.instance_id, x.aggregate_type, x.aggregate_id, x.command_type, x.revision, x.payload, x.creator, x.owner)::eventstore.command
       FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (instance_id text, aggregate_type text, aggregate_id text, command_type text,
                                                         revision int2, payload jsonb, creator text, owner text))
            WITH ORDINALITY AS x(instance_id, aggregate_type, aggregate_id, command_type, revision, payload, creator, owner, ord)
       ORDER BY x.ord))`,
    [commandRows(commands)],
  );
  return r.rows;
}

/**
 * The pre-function push (§5.1): lock each aggregate's latest event, number the commands latest+1…,
 * created_at = statement time, position = epoch of the clock, in_tx_order = index in the batch from 0.
 */
async function pushFromClient(c: pg.ClientBase, commands: readonly Command[]): Promise<PushedEvent[]> {
  const latest = new Map<string, { sequence: bigint; owner: string }>();
  const rows = [];
  for (const [i, m] of commands.entries()) {
    const key = JSON.stringify([m.instanceId, m.aggregateType, m.aggregateId]);
    if (!latest.has(key)) {
      const r = await c.query(
        `SELECT "sequence"::text AS s, owner FROM eventstore.events2 WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3
         ORDER BY "sequence" DESC LIMIT 1 FOR NO KEY UPDATE`, [m.instanceId, m.aggregateType, m.aggregateId]);
      latest.set(key, r.rows[0] ? { sequence: BigInt(r.rows[0].s), owner: r.rows[0].owner } : { sequence: 0n, owner: m.owner });
    }
    const state = latest.get(key)!;
    state.sequence += 1n;
    rows.push({ ...JSON.parse(commandRows([m]))[0], sequence: state.sequence.toString(), owner: state.owner, in_tx_order: i });
  }
  const r = await c.query<PushedEvent>(
    `INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at, payload, creator, owner, "position", in_tx_order)
     SELECT x.instance_id, x.aggregate_type, x.aggregate_id, x.command_type, x.sequence::bigint, x.revision, statement_timestamp(), x.payload,
            x.creator, x.owner, EXTRACT(EPOCH FROM clock_timestamp()), x.in_tx_order
     FROM jsonb_to_recordset($1::jsonb) AS x(instance_id text, aggregate_type text, aggregate_id text, command_type text, sequence text,
                                            revision int2, payload jsonb, creator text, owner text, in_tx_order int)
     ORDER BY x.in_tx_order
     RETURNING ${RETURNING}`,
    [JSON.stringify(rows)],
  );
  return r.rows;
}

async function applyConstraint(c: pg.ClientBase, u: UniqueConstraintChange): Promise<void> {
  if (u.action === 'remove') {
    await c.query(`DELETE FROM eventstore.unique_constraints WHERE instance_id = '' AND unique_type = $1 AND unique_field = lower($2)`, [u.type, u.field]);
    return;
  }
  await c.query('SAVEPOINT unique_constraint');
  try {
    await c.query(`INSERT INTO eventstore.unique_constraints (instance_id, unique_type, unique_field) VALUES ('', $1, lower($2))`, [u.type, u.field]);
    await c.query('RELEASE SAVEPOINT unique_constraint');
  } catch (err) {
    if ((err as { code?: string }).code !== '23505') throw err;
    await c.query('ROLLBACK TO SAVEPOINT unique_constraint');
    throw new SetupError(`${u.errorId ?? 'Errors.AlreadyExists'} (unique constraint ${u.type} / ${u.field} exists)`, '23505');
  }
}

// ------------------------------------------------------------------------------------------------
// Step states (§2.3)

type StepState = { readonly state: 'started' | 'done' | 'failed'; readonly lastRun: Record<string, unknown> | undefined };

/**
 * The step states as ZITADEL's setup reads them: instance '', aggregate system/SYSTEM, the four types,
 * ordered by sequence; the last event per name wins. Without events2 the query falls back to the v1
 * table and its column names (zitadel-eventstore.md §2 item 4).
 */
export async function readStepStates(c: pg.ClientBase): Promise<Map<string, StepState>> {
  const t = (await c.query(`SELECT to_regclass('eventstore.events2') IS NOT NULL AS v2, to_regclass('eventstore.events') IS NOT NULL AS v1`)).rows[0];
  if (!t.v2 && !t.v1) return new Map();
  const query = t.v2
    ? `SELECT event_type, payload FROM eventstore.events2 WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM'
         AND event_type = ANY($1) ORDER BY "sequence"`
    : `SELECT event_type, event_data AS payload FROM eventstore.events WHERE instance_id = '' AND aggregate_type = 'system' AND aggregate_id = 'SYSTEM'
         AND event_type = ANY($1) ORDER BY event_sequence`;
  const r = await c.query(query, [Object.values(MIGRATION)]);
  const states = new Map<string, StepState>();
  for (const row of r.rows) {
    const name = row.payload?.name;
    if (typeof name !== 'string') continue;
    const state = row.event_type === MIGRATION.started ? 'started' : row.event_type === MIGRATION.failed ? 'failed' : 'done';
    states.set(name, { state, lastRun: row.payload?.lastRun });
  }
  return states;
}

// ------------------------------------------------------------------------------------------------
// Steps

/** Which list of which version a step belongs to (§1.2, §1.3, §4.1). */
export type StepList = 'ref' | 'ref-repeatable' | 'ref-second' | 'main' | 'main-repeatable' | 'main-second' | 'idx' | 'init-projections';

/** What happened to one step in one run. */
export interface StepOutcome {
  readonly name: string;
  readonly list: StepList;
  readonly result: 'skipped' | 'succeeded' | 'failed' | 'would-prefill';
  /** `sql`: its effect is modelled by SQL; `none`: modelled as succeeding without SQL (objects outside the modelled schemas). */
  readonly modelled: 'sql' | 'none';
  readonly reason?: string;
  readonly sqlstate?: string;
}

interface StepContext {
  readonly c: pg.Client;
  /** The step's started event; null when its push was tolerated to fail (step 14). */
  readonly started: PushedEvent | null;
  readonly options: ResolvedSetupOptions;
}

interface Step {
  readonly name: string;
  readonly list: StepList;
  readonly modelled: 'sql' | 'none';
  readonly execute: (ctx: StepContext) => Promise<void>;
  /** Repeatable steps: run again iff check(lastRun); their done event carries lastRun(). */
  readonly repeatable?: { check(lastRun: Record<string, unknown> | undefined, o: ResolvedSetupOptions): boolean; lastRun(o: ResolvedSetupOptions): Record<string, unknown> };
  /** The started push may fail with this SQLSTATE (only step 14: 42P01). */
  readonly continueOnPushError?: string;
  /** For a step modelled without SQL: the objects it would touch. */
  readonly why?: string;
}

/** A step modelled as succeeding without SQL; `why` names the objects it would touch. */
function noSql(name: string, list: StepList, why: string): Step {
  return { name, list, modelled: 'none', why, execute: async () => {} };
}

function sqlStep(name: string, list: StepList, execute: (ctx: StepContext) => Promise<void>, extra: Partial<Step> = {}): Step {
  return { name, list, modelled: 'sql', execute, ...extra };
}

/** Runs statements one by one outside a transaction (CONCURRENTLY forbids one), like ExecContext per file. */
async function exec(c: pg.Client, ...statements: string[]): Promise<void> {
  for (const s of statements) await c.query(s);
}

async function inTransaction(c: pg.Client, work: () => Promise<void>): Promise<void> {
  await c.query('BEGIN');
  try {
    await work();
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  }
}

/** Distinct instance ids of `instance.added` events, removed ones included (§4.4). */
async function addedInstances(c: pg.Client): Promise<string[]> {
  const r = await c.query(`SELECT DISTINCT instance_id FROM eventstore.events2 WHERE aggregate_type = 'instance' AND event_type = 'instance.added' ORDER BY 1`);
  return r.rows.map((x) => x.instance_id);
}

/** {@link addedInstances} minus those whose aggregate has an `instance.removed` event (steps 47, R5). */
async function activeInstancesByAggregate(c: pg.Client): Promise<string[]> {
  const r = await c.query(
    `SELECT DISTINCT instance_id FROM eventstore.events2 a WHERE aggregate_type = 'instance' AND event_type = 'instance.added'
       AND aggregate_id NOT IN (SELECT aggregate_id FROM eventstore.events2 WHERE aggregate_type = 'instance' AND event_type = 'instance.removed')
     ORDER BY 1`);
  return r.rows.map((x) => x.instance_id);
}

/**
 * A field handler's trigger (steps 29, 30, 47, R4): it needs eventstore.fields and writes its own
 * state row (partial columns, as ZITADEL's handlers do) after the instance's last event of the
 * aggregate types it handles. The field rows themselves are not modelled: none of the six projections
 * reads them.
 */
async function fieldHandler(c: pg.Client, name: string, instances: readonly string[], aggregateTypes: readonly string[]): Promise<void> {
  await c.query('SELECT 1 FROM eventstore.fields LIMIT 1');
  for (const instance of instances) {
    await c.query(
      `INSERT INTO projections.current_states (projection_name, instance_id, aggregate_id, aggregate_type, "sequence", event_date, "position", filter_offset, last_updated)
       SELECT $1, e.instance_id, e.aggregate_id, e.aggregate_type, e."sequence", e.created_at, e."position", 1, now()
       FROM eventstore.events2 e WHERE e.instance_id = $2 AND e.aggregate_type = ANY($3)
       ORDER BY e."position" DESC, e.in_tx_order DESC LIMIT 1
       ON CONFLICT (projection_name, instance_id) DO UPDATE SET aggregate_id = EXCLUDED.aggregate_id, aggregate_type = EXCLUDED.aggregate_type,
         "sequence" = EXCLUDED."sequence", event_date = EXCLUDED.event_date, "position" = EXCLUDED."position",
         filter_offset = EXCLUDED.filter_offset, last_updated = statement_timestamp()`,
      [name, instance, aggregateTypes]);
  }
}

// --- step 14 (zitadel-eventstore.md §2) ---

async function eventsPush({ c }: StepContext): Promise<void> {
  const n = (await c.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'eventstore' AND table_name LIKE 'events2'`)).rows[0].n;
  if (n === 1) return;
  await exec(c,
    `ALTER TABLE eventstore.events RENAME TO events_old`,
    // Released Postgres CTAS: in_tx_order is the old event_sequence as it is, a BIGINT.
    `CREATE TABLE eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at, payload, creator, owner, "position", in_tx_order)
     AS SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence, substr(aggregate_version, 2)::SMALLINT, creation_date,
               event_data, editor_user, resource_owner, EXTRACT(EPOCH FROM creation_date), event_sequence
     FROM eventstore.events_old`,
    `BEGIN; ALTER TABLE eventstore.events2 DROP CONSTRAINT IF EXISTS events2_pkey;
     ALTER TABLE eventstore.events2 ADD PRIMARY KEY (instance_id, aggregate_type, aggregate_id, "sequence"); COMMIT`,
    `ALTER TABLE eventstore.events2 ALTER COLUMN event_type SET NOT NULL, ALTER COLUMN revision SET NOT NULL, ALTER COLUMN created_at SET NOT NULL,
       ALTER COLUMN creator SET NOT NULL, ALTER COLUMN owner SET NOT NULL, ALTER COLUMN "position" SET NOT NULL, ALTER COLUMN in_tx_order SET NOT NULL`,
    `CREATE INDEX IF NOT EXISTS es_active_instances ON eventstore.events2 (created_at DESC, instance_id)`,
    `CREATE INDEX IF NOT EXISTS es_wm ON eventstore.events2 (aggregate_id, instance_id, aggregate_type, event_type)`,
    `CREATE INDEX IF NOT EXISTS es_projection ON eventstore.events2 (instance_id, aggregate_type, event_type, "position")`,
  );
}

// --- step 40 / 64 / 81: the push functions (zitadel-eventstore.md §5.2) ---

/** When a pushed event is stamped: REF = transaction start; MAIN step 64 = statement; IDX step 81 = clock at insert. */
type PushClock = 'transaction' | 'statement' | 'clock';

async function pushFunctions(c: pg.Client, clock: PushClock, withType: boolean): Promise<void> {
  const dataType = (await c.query(
    `SELECT data_type FROM information_schema.columns WHERE table_schema = 'eventstore' AND table_name = 'events2' AND column_name = 'in_tx_order'`,
  )).rows[0]?.data_type;
  if (!dataType) throw new SetupError('events2.in_tx_order not found');
  const createdAt = clock === 'transaction' ? 'now()' : 'statement_timestamp()';
  const position = clock === 'transaction' ? 'now()' : clock === 'statement' ? 'statement_timestamp()' : 'clock_timestamp()';
  if (withType) {
    await c.query(`DO $$ BEGIN
      CREATE TYPE eventstore.command AS (instance_id TEXT, aggregate_type TEXT, aggregate_id TEXT, command_type TEXT, revision INT2, payload JSONB, creator TEXT, owner TEXT);
      EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await c.query(`CREATE OR REPLACE FUNCTION eventstore.latest_aggregate_state(instance_id TEXT, aggregate_type TEXT, aggregate_id TEXT, OUT "sequence" BIGINT, OUT owner TEXT)
      LANGUAGE sql STABLE AS $fn$
        SELECT e."sequence", e.owner FROM eventstore.events2 e WHERE e.instance_id = $1 AND e.aggregate_type = $2 AND e.aggregate_id = $3
        ORDER BY e."sequence" DESC LIMIT 1 $fn$`);
  }
  // RETURN QUERY checks the row shape at run time: events2's columns must be in this order and of these types.
  await c.query(`CREATE OR REPLACE FUNCTION eventstore.commands_to_events(commands eventstore.command[]) RETURNS SETOF eventstore.events2
    LANGUAGE plpgsql VOLATILE AS $fn$ BEGIN RETURN QUERY
      SELECT x.instance_id, x.aggregate_type, x.aggregate_id, x.command_type,
             (COALESCE(s."sequence", 0) + row_number() OVER (PARTITION BY x.instance_id, x.aggregate_type, x.aggregate_id ORDER BY x.ord))::BIGINT,
             x.revision, ${createdAt}, x.payload, x.creator, COALESCE(s.owner, x.owner),
             EXTRACT(EPOCH FROM ${position})::NUMERIC, x.ord::${dataType}
      FROM unnest(commands) WITH ORDINALITY AS x(instance_id, aggregate_type, aggregate_id, command_type, revision, payload, creator, owner, ord)
      LEFT JOIN LATERAL eventstore.latest_aggregate_state(x.instance_id, x.aggregate_type, x.aggregate_id) s ON TRUE
      ORDER BY x.ord;
    END $fn$`);
  if (withType) {
    await c.query(`CREATE OR REPLACE FUNCTION eventstore.push(commands eventstore.command[]) RETURNS SETOF eventstore.events2
      LANGUAGE sql VOLATILE AS $fn$
        INSERT INTO eventstore.events2 SELECT * FROM eventstore.commands_to_events(commands) ORDER BY in_tx_order RETURNING * $fn$`);
  }
}

// --- step 01 (projections part) and the legacy handler tables ---

const LEGACY_PROJECTIONS_TABLES = {
  locks: `projections.locks (locker_id TEXT, locked_until TIMESTAMPTZ(3), projection_name TEXT, instance_id TEXT NOT NULL, PRIMARY KEY (projection_name, instance_id))`,
  current_sequences: `projections.current_sequences (projection_name TEXT, aggregate_type TEXT, current_sequence BIGINT, instance_id TEXT NOT NULL,
    "timestamp" TIMESTAMPTZ, PRIMARY KEY (projection_name, aggregate_type, instance_id))`,
  failed_events: `projections.failed_events (projection_name TEXT, failed_sequence BIGINT, failure_count SMALLINT, error TEXT, instance_id TEXT NOT NULL,
    last_failed TIMESTAMPTZ, PRIMARY KEY (projection_name, failed_sequence, instance_id))`,
};

function viewTables(schema: 'adminapi' | 'auth'): string[] {
  return [
    `${schema}.current_sequences (view_name TEXT, current_sequence BIGINT, event_timestamp TIMESTAMPTZ, last_successful_spooler_run TIMESTAMPTZ,
      instance_id TEXT NOT NULL, PRIMARY KEY (view_name, instance_id))`,
    `${schema}.failed_events (view_name TEXT, failed_sequence BIGINT, failure_count SMALLINT, err_msg TEXT, instance_id TEXT NOT NULL,
      last_failed TIMESTAMPTZ, PRIMARY KEY (view_name, failed_sequence, instance_id))`,
  ];
}

/**
 * The objects ZITADEL's `init` creates before any setup step and that the steps rely on:
 * `eventstore.unique_constraints`. A database that a real ZITADEL ran on always has it.
 */
export async function createInitObjects(c: pg.ClientBase): Promise<void> {
  await c.query(`CREATE SCHEMA IF NOT EXISTS eventstore;
    CREATE TABLE IF NOT EXISTS eventstore.unique_constraints (instance_id TEXT, unique_type TEXT, unique_field TEXT,
      PRIMARY KEY (instance_id, unique_type, unique_field))`);
}

/**
 * The legacy handler tables that `01_tables` (and `05_last_failed`) left in every pre-v2.39 database,
 * which step 15 reads: projections/adminapi/auth `current_sequences` and `failed_events`, plus
 * projections.locks. A seeded database records 01 as done without having them.
 */
export async function createLegacyHandlerTables(c: pg.ClientBase): Promise<void> {
  const tables = [...Object.values(LEGACY_PROJECTIONS_TABLES), ...viewTables('adminapi'), ...viewTables('auth')];
  await c.query(`CREATE SCHEMA IF NOT EXISTS projections; CREATE SCHEMA IF NOT EXISTS adminapi; CREATE SCHEMA IF NOT EXISTS auth;
    ${tables.map((t) => `CREATE TABLE IF NOT EXISTS ${t};`).join('\n')}`);
}

// --- step 15 (§1.2 row 14) ---

async function currentProjectionState({ c }: StepContext): Promise<void> {
  await exec(c,
    `CREATE TABLE IF NOT EXISTS projections.failed_events2 (projection_name TEXT NOT NULL, instance_id TEXT NOT NULL, aggregate_type TEXT NOT NULL,
       aggregate_id TEXT NOT NULL, event_creation_date TIMESTAMPTZ NOT NULL, failed_sequence INT8 NOT NULL, failure_count INT2 DEFAULT 0, error TEXT,
       last_failed TIMESTAMPTZ, PRIMARY KEY (projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence))`,
    `CREATE INDEX IF NOT EXISTS fe2_instance_id_idx ON projections.failed_events2 (instance_id)`,
    failedEventsCopy('projections.failed_events', 'projection_name', 'error'),
    failedEventsCopy('adminapi.failed_events', 'view_name', 'err_msg'),
    failedEventsCopy('auth.failed_events', 'view_name', 'err_msg'),
    `CREATE TABLE IF NOT EXISTS projections.current_states (projection_name TEXT NOT NULL, instance_id TEXT NOT NULL, last_updated TIMESTAMPTZ,
       aggregate_id TEXT, aggregate_type TEXT, "sequence" INT8, event_date TIMESTAMPTZ, "position" DECIMAL, PRIMARY KEY (projection_name, instance_id))`,
    `CREATE INDEX IF NOT EXISTS cs_instance_id_idx ON projections.current_states (instance_id)`,
    `INSERT INTO projections.current_states (projection_name, instance_id, event_date, "position", last_updated)
     SELECT DISTINCT ON (s.projection_name, s.instance_id) s.projection_name, s.instance_id, e.created_at, e."position", s."timestamp"
     FROM projections.current_sequences s
     JOIN eventstore.events2 e ON e.instance_id = s.instance_id AND e.aggregate_type = s.aggregate_type AND e."sequence" = s.current_sequence
     ORDER BY s.projection_name, s.instance_id, s.current_sequence DESC
     ON CONFLICT DO NOTHING`,
    viewStatesCopy('adminapi.current_sequences'),
    viewStatesCopy('auth.current_sequences'),
  );
}

function failedEventsCopy(table: string, nameColumn: string, errorColumn: string): string {
  return `INSERT INTO projections.failed_events2 (projection_name, instance_id, aggregate_type, aggregate_id, event_creation_date, failed_sequence, failure_count, error, last_failed)
    SELECT f.${nameColumn}, f.instance_id, e.aggregate_type, e.aggregate_id, e.created_at, f.failed_sequence, f.failure_count, f.${errorColumn}, f.last_failed
    FROM ${table} f JOIN eventstore.events2 e ON e.instance_id = f.instance_id AND e."sequence" = f.failed_sequence
    ON CONFLICT DO NOTHING`;
}

function viewStatesCopy(table: string): string {
  return `INSERT INTO projections.current_states (projection_name, instance_id, event_date, "position", last_updated)
    SELECT DISTINCT ON (s.view_name, s.instance_id) s.view_name, s.instance_id, e.created_at, e."position", s.last_successful_spooler_run
    FROM ${table} s JOIN eventstore.events2 e ON e.instance_id = s.instance_id AND e."sequence" = s.current_sequence
    ORDER BY s.view_name, s.instance_id, s.current_sequence DESC, e."position" DESC
    ON CONFLICT DO NOTHING`;
}

// --- step 28 and the fields indexes (the spec gives the number of indexes, not their names: these are ours) ---

async function addFieldTable({ c }: StepContext): Promise<void> {
  await exec(c,
    `CREATE TABLE eventstore.fields (id TEXT NOT NULL DEFAULT gen_random_uuid()::TEXT, instance_id TEXT NOT NULL, resource_owner TEXT NOT NULL,
       aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, object_type TEXT NOT NULL, object_id TEXT NOT NULL, object_revision INT2,
       field_name TEXT NOT NULL, "value" JSONB NOT NULL, value_must_be_unique BOOLEAN, should_index BOOLEAN, PRIMARY KEY (instance_id, id))`,
    ...['(instance_id, object_type, object_id)', '(instance_id, aggregate_type, aggregate_id)', '(instance_id, field_name)',
      '(instance_id, object_type, field_name)', '(instance_id, resource_owner)', '(instance_id, object_type, object_revision)',
      '(instance_id, aggregate_type, object_type)',
    ].map((cols, i) => `CREATE INDEX IF NOT EXISTS fields_emulated_${i + 1}_idx ON eventstore.fields ${cols}`),
  );
}

// --- step 36 (zitadel-eventstore.md §6.5) ---

const MILESTONE_NAMES: Readonly<Record<number, string>> = {
  1: 'InstanceCreated', 2: 'AuthenticationSucceededOnInstance', 3: 'ProjectCreated', 4: 'ApplicationCreated',
  5: 'AuthenticationSucceededOnApplication', 6: 'InstanceDeleted',
};

async function fillV3Milestones({ c }: StepContext): Promise<void> {
  let rows: { instance_id: string; type: number; reached: string; pushed: string | null }[];
  try {
    rows = (await c.query(
      `SELECT instance_id, type, to_char(reached_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS reached,
              to_char(last_pushed_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS pushed
       FROM projections.milestones WHERE reached_date IS NOT NULL ORDER BY instance_id, reached_date`)).rows;
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return;
    throw err;
  }
  const instances = [...new Set(rows.map((r) => r.instance_id))].sort();
  for (const instance of instances) {
    // The write model has no instance filter in setup context: it matches the aggregate id only.
    const done = (await c.query(
      `SELECT EXISTS (SELECT 1 FROM eventstore.events2 WHERE aggregate_type = 'milestone' AND aggregate_id = $1
                      AND event_type = 'milestone.v2.reached' AND payload->>'type' = 'InstanceCreated') AS d`, [instance])).rows[0].d;
    if (done) continue;
    const commands: Command[] = [];
    for (const r of rows.filter((x) => x.instance_id === instance)) {
      const base = { instanceId: instance, aggregateType: 'milestone', aggregateId: instance, owner: instance, revision: 2, creator: '' };
      commands.push({ ...base, type: 'milestone.v2.reached', payload: { type: MILESTONE_NAMES[r.type], reachedDate: r.reached } });
      if (r.pushed) commands.push({ ...base, type: 'milestone.v2.pushed', payload: { type: MILESTONE_NAMES[r.type], externalDomain: '', endpoints: null, pushedDate: r.pushed } });
    }
    await push(c, commands);
  }
}

// --- step 38 ---

async function backChannelLogoutStart({ c, started }: StepContext): Promise<void> {
  if (!started) throw new SetupError('38 needs its started event');
  await c.query(
    `INSERT INTO projections.current_states (projection_name, instance_id, last_updated, aggregate_id, aggregate_type, "sequence", event_date, "position", filter_offset)
     SELECT 'projections.notifications_back_channel_logout', e.instance_id, now(), NULL, NULL, $1::bigint, $2::timestamptz, $3::numeric, 0
     FROM eventstore.events2 e WHERE e.aggregate_type = 'instance' AND e.event_type = 'instance.added'
     ON CONFLICT DO NOTHING`, [started.sequence, started.createdAt, started.position]);
}

// --- step 55 (MAIN): an upsert, unlike 38 ---

async function executionHandlerStart({ c, started }: StepContext): Promise<void> {
  if (!started) throw new SetupError('55 needs its started event');
  await c.query(
    `INSERT INTO projections.current_states (projection_name, instance_id, last_updated, aggregate_id, aggregate_type, "sequence", event_date, "position", filter_offset)
     SELECT DISTINCT 'projections.execution_handler', e.instance_id, now(), NULL::text, NULL::text, $1::bigint, $2::timestamptz, $3::numeric, 0
     FROM eventstore.events2 e WHERE e.aggregate_type = 'instance' AND e.event_type = 'instance.added'
     ON CONFLICT (instance_id, projection_name) DO UPDATE SET "sequence" = EXCLUDED."sequence", event_date = EXCLUDED.event_date,
       "position" = EXCLUDED."position", filter_offset = EXCLUDED.filter_offset, last_updated = EXCLUDED.last_updated`,
    [started.sequence, started.createdAt, started.position]);
}

// --- step 43_correct_project_owners (file 45) ---

async function correctProjectOwners({ c }: StepContext): Promise<void> {
  for (const instance of await addedInstances(c)) {
    const projects = (await c.query(
      `SELECT aggregate_id FROM eventstore.events2 WHERE instance_id = $1 AND aggregate_type = 'project'
       GROUP BY aggregate_id HAVING count(DISTINCT owner) > 1 ORDER BY 1`, [instance])).rows.map((r) => r.aggregate_id as string);
    for (const project of projects) {
      await inTransaction(c, async () => {
        const events = (await c.query(
          `SELECT "sequence"::text AS s, owner FROM eventstore.events2 WHERE instance_id = $1 AND aggregate_type = 'project' AND aggregate_id = $2
           ORDER BY "sequence"`, [instance, project])).rows;
        const owner = events[0].owner;
        const previousOwners = Object.fromEntries(events.filter((e) => e.owner !== owner).map((e) => [e.s, e.owner]));
        await c.query(`UPDATE eventstore.events2 SET owner = $3 WHERE instance_id = $1 AND aggregate_type = 'project' AND aggregate_id = $2 AND owner <> $3`,
          [instance, project, owner]);
        await pushInTransaction(c, [{ instanceId: instance, aggregateType: 'project', aggregateId: project, type: 'project.owner.corrected',
          payload: { previousOwners }, creator: 'SETUP', owner }]);
      });
    }
  }
}

// --- step 46 / 49 / 53: same-named views and functions of a simple shape, over eventstore.fields ---

async function permissionFunctions({ c }: StepContext): Promise<void> {
  const view = (name: string, objectType: string) =>
    `CREATE OR REPLACE VIEW eventstore.${name} AS SELECT instance_id, aggregate_id, object_id AS user_id, "value" #>> '{}' AS role
     FROM eventstore.fields WHERE object_type = '${objectType}' AND field_name = 'role'`;
  await exec(c,
    `CREATE OR REPLACE VIEW eventstore.role_permissions AS SELECT instance_id, aggregate_id, object_id AS role, "value" #>> '{}' AS permission
     FROM eventstore.fields WHERE aggregate_type = 'permission' AND object_type = 'role_permission' AND field_name = 'permission'`,
    `CREATE OR REPLACE VIEW eventstore.instance_orgs AS SELECT instance_id, aggregate_id AS org_id FROM eventstore.fields
     WHERE aggregate_type = 'org' AND object_type = 'org' AND field_name = 'state'`,
    view('instance_members', 'instance_member_role'), view('org_members', 'org_member_role'), view('project_members', 'project_member_role'),
  );
  await permittedOrgs(c, 'permitted_orgs');
}

async function permittedOrgs(c: pg.Client, name: string): Promise<void> {
  await c.query(`CREATE OR REPLACE FUNCTION eventstore.${name}(instance_id TEXT, user_id TEXT, perm TEXT, OUT org_ids TEXT[])
    LANGUAGE sql STABLE AS $fn$ SELECT array_agg(DISTINCT o.org_id) FROM eventstore.instance_orgs o WHERE o.instance_id = $1 $fn$`);
}

// --- the projections' tables (§3.0, §3.1) ---

/** The DDL variant: REF, or MAIN (saml login columns, users14_humans email index). */
export type DdlVersion = 'ref' | 'main';

const NN = 'NOT NULL';

/** Each projection's statements (guarded creates), tables in schema `s`. */
export function projectionTablesDdl(s: string, version: DdlVersion): Record<ProjectionName, string[]> {
  const table = (name: string, columns: string[], pk: string, fk?: { name: string; parent: string }) =>
    `CREATE TABLE IF NOT EXISTS ${s}.${name} (${columns.join(', ')}, PRIMARY KEY ${pk}${
      fk ? `, CONSTRAINT ${fk.name} FOREIGN KEY ${pk} REFERENCES ${s}.${fk.parent} (instance_id, id) ON DELETE CASCADE` : ''})`;
  const index = (tbl: string, name: string, cols: string) => `CREATE INDEX IF NOT EXISTS ${tbl}_${name}_idx ON ${s}.${tbl} ${cols}`;
  const child = (key: string) => [`${key} TEXT ${NN}`, `instance_id TEXT ${NN}`];
  const entity = (extra: string[]) => [`id TEXT ${NN}`, `creation_date TIMESTAMPTZ ${NN}`, `change_date TIMESTAMPTZ ${NN}`,
    `"sequence" BIGINT ${NN}`, `resource_owner TEXT ${NN}`, `instance_id TEXT ${NN}`, ...extra];
  const main = version === 'main';
  return {
    'projections.instances': [table('instances', [`id TEXT ${NN}`, `name TEXT ${NN} DEFAULT ''`, `change_date TIMESTAMPTZ ${NN}`,
      `creation_date TIMESTAMPTZ ${NN}`, `default_org_id TEXT ${NN} DEFAULT ''`, `iam_project_id TEXT ${NN} DEFAULT ''`,
      `console_client_id TEXT ${NN} DEFAULT ''`, `console_app_id TEXT ${NN} DEFAULT ''`, `"sequence" BIGINT ${NN}`,
      `default_language TEXT ${NN} DEFAULT ''`], '(id)')],
    'projections.orgs1': [
      table('orgs1', entity([`org_state SMALLINT ${NN}`, `name TEXT ${NN}`, `primary_domain TEXT ${NN} DEFAULT ''`]), '(instance_id, id)'),
      index('orgs1', 'domain', '(primary_domain)'), index('orgs1', 'name', '(name)'),
    ],
    'projections.projects4': [
      table('projects4', entity([`state SMALLINT ${NN}`, `name TEXT ${NN}`, `project_role_assertion BOOLEAN ${NN}`,
        `project_role_check BOOLEAN ${NN}`, `has_project_check BOOLEAN ${NN}`, `private_labeling_setting SMALLINT ${NN}`]), '(instance_id, id)'),
      index('projects4', 'resource_owner', '(resource_owner)'),
    ],
    'projections.apps7': [
      table('apps7', entity([`name TEXT ${NN}`, `project_id TEXT ${NN}`, `state SMALLINT ${NN}`]), '(instance_id, id)'),
      table('apps7_api_configs', [...child('app_id'), `client_id TEXT ${NN}`, 'client_secret TEXT', `auth_method SMALLINT ${NN}`],
        '(instance_id, app_id)', { name: 'fk_api_configs_ref_apps7', parent: 'apps7' }),
      table('apps7_oidc_configs', [...child('app_id'), `version SMALLINT ${NN}`, `client_id TEXT ${NN}`, 'client_secret TEXT',
        'redirect_uris TEXT[]', 'response_types SMALLINT[]', 'grant_types SMALLINT[]', `application_type SMALLINT ${NN}`,
        `auth_method_type SMALLINT ${NN}`, 'post_logout_redirect_uris TEXT[]', `is_dev_mode BOOLEAN ${NN}`, `access_token_type SMALLINT ${NN}`,
        `access_token_role_assertion BOOLEAN ${NN} DEFAULT false`, `id_token_role_assertion BOOLEAN ${NN} DEFAULT false`,
        `id_token_userinfo_assertion BOOLEAN ${NN} DEFAULT false`, `clock_skew BIGINT ${NN} DEFAULT 0`, 'additional_origins TEXT[]',
        `skip_native_app_success_page BOOLEAN ${NN} DEFAULT false`, 'back_channel_logout_uri TEXT', 'login_version SMALLINT', 'login_base_uri TEXT'],
        '(instance_id, app_id)', { name: 'fk_oidc_configs_ref_apps7', parent: 'apps7' }),
      table('apps7_saml_configs', [...child('app_id'), `entity_id TEXT ${NN}`, `metadata BYTEA ${NN}`, `metadata_url TEXT ${NN}`,
        ...(main ? ['login_version SMALLINT', 'login_base_uri TEXT'] : [])],
        '(instance_id, app_id)', { name: 'fk_saml_configs_ref_apps7', parent: 'apps7' }),
      index('apps7', 'project_id', '(project_id)'),
      index('apps7_api_configs', 'client_id', '(client_id)'),
      index('apps7_oidc_configs', 'client_id', '(client_id)'),
      index('apps7_saml_configs', 'entity_id', '(entity_id)'),
    ],
    'projections.users14': [
      table('users14', entity([`state SMALLINT ${NN}`, `username TEXT ${NN}`, `type SMALLINT ${NN}`]), '(instance_id, id)'),
      table('users14_humans', [...child('user_id'), `first_name TEXT ${NN}`, `last_name TEXT ${NN}`, 'nick_name TEXT', 'display_name TEXT',
        'preferred_language TEXT', 'gender SMALLINT', 'avatar_key TEXT', `email TEXT ${NN}`, `is_email_verified BOOLEAN ${NN} DEFAULT false`,
        'phone TEXT', 'is_phone_verified BOOLEAN', `password_change_required BOOLEAN ${NN}`, 'password_changed TIMESTAMPTZ', 'mfa_init_skipped TIMESTAMPTZ'],
        '(instance_id, user_id)', { name: 'fk_humans_ref_users14', parent: 'users14' }),
      table('users14_machines', [...child('user_id'), `name TEXT ${NN}`, 'description TEXT', 'secret TEXT', `access_token_type SMALLINT ${NN} DEFAULT 0`],
        '(instance_id, user_id)', { name: 'fk_machines_ref_users14', parent: 'users14' }),
      table('users14_notifications', [...child('user_id'), 'last_email TEXT', 'verified_email TEXT', 'last_phone TEXT', 'verified_phone TEXT',
        `password_set BOOLEAN ${NN} DEFAULT false`], '(instance_id, user_id)', { name: 'fk_notifications_ref_users14', parent: 'users14' }),
      index('users14', 'username', '(username)'), index('users14', 'resource_owner', '(resource_owner)'),
      ...(main ? [index('users14_humans', 'email', '(instance_id, lower(email))')] : []),
    ],
    'projections.milestones3': [table('milestones3', [`instance_id TEXT ${NN}`, `type SMALLINT ${NN}`, 'reached_date TIMESTAMPTZ', 'last_pushed_date TIMESTAMPTZ'],
      '(instance_id, type)')],
  };
}

/** Step 25's additions to users14_notifications (guarded). */
function step25(s: string): string[] {
  return [
    `ALTER TABLE IF EXISTS ${s}.users14_notifications ADD COLUMN IF NOT EXISTS verified_email_lower TEXT GENERATED ALWAYS AS (lower(verified_email)) STORED`,
    `CREATE INDEX IF NOT EXISTS users14_notifications_email_search ON ${s}.users14_notifications (instance_id, verified_email_lower)`,
  ];
}

/** `projection_tables`: one transaction per projection; a name collision (42P07) is tolerated (§3.0). */
async function projectionTables(c: pg.Client, version: DdlVersion): Promise<void> {
  for (const statements of Object.values(projectionTablesDdl('projections', version))) {
    try {
      await inTransaction(c, () => exec(c, ...statements));
    } catch (err) {
      if ((err as { code?: string }).code !== '42P07') throw err;
    }
  }
}

// --- count triggers (MAIN repeatables on instances, orgs1, projects4, users14): only the attach is modelled ---

async function countTrigger(c: pg.Client, table: string): Promise<void> {
  await exec(c,
    `CREATE OR REPLACE FUNCTION projections.emulated_count_resource() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN RETURN NULL; END $fn$`,
    `CREATE OR REPLACE TRIGGER count_${table} AFTER INSERT OR DELETE ON projections.${table} FOR EACH ROW EXECUTE FUNCTION projections.emulated_count_resource()`,
  );
}

// --- the step lists ---

const always = { check: () => true, lastRun: () => ({}) };

function refSteps(): Step[] {
  const L: StepList = 'ref';
  const concurrently = (name: string, ...statements: string[]) => sqlStep(name, L, ({ c }) => exec(c, ...statements));
  return [
    sqlStep('14_events_push', L, eventsPush, { continueOnPushError: '42P01' }),
    sqlStep('40_init_push_func_v4', L, ({ c }) => pushFunctions(c, 'transaction', true)),
    sqlStep('01_tables', L, ({ c }) => exec(c, // the adminapi/auth half of 01 is not modelled
      ...Object.values(LEGACY_PROJECTIONS_TABLES).map((t) => `CREATE TABLE ${t}`))),
    noSql('02_assets', L, 'system.assets'),
    sqlStep('28_add_search_table', L, addFieldTable),
    concurrently('31_add_aggregate_index_to_fields',
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS f_aggregate_object_type_idx ON eventstore.fields (aggregate_type, aggregate_id, object_type)`),
    sqlStep('03_default_instance', L, async () => {
      throw new SetupError('03_default_instance is not recorded done: ZITADEL would set up another instance');
    }),
    noSql('05_last_failed', L, 'legacy projections.current_sequences/failed_events of 01 (guarded); recorded done by every database that has them'),
    noSql('06_resource_owner_columns', L, 'adminapi.styling2, auth.users2, … (unguarded creates there)'),
    noSql('07_logstore', L, 'logstore schema'),
    noSql('08_auth_token_indexes', L, 'auth.tokens'),
    noSql('12_auth_users_otp_columns', L, 'auth.users2'),
    noSql('13_fix_quota_constraints', L, 'projections.quotas, not one of the six; drops NOT NULLs only where the table exists'),
    sqlStep('15_current_projection_state', L, currentProjectionState),
    sqlStep('16_unique_constraint_lower', L, ({ c }) => exec(c,
      `UPDATE eventstore.unique_constraints u SET unique_field = lower(u.unique_field)
       WHERE u.unique_field <> lower(u.unique_field) AND NOT EXISTS (SELECT 1 FROM eventstore.unique_constraints o
         WHERE o.instance_id = u.instance_id AND o.unique_type = u.unique_type AND o.unique_field = lower(u.unique_field))`)),
    sqlStep('17_add_offset_col_to_current_states', L, ({ c }) => exec(c, `ALTER TABLE projections.current_states ADD COLUMN filter_offset INTEGER`)),
    concurrently('19_add_current_sequences_index',
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS events2_current_sequence ON eventstore.events2 ("sequence" DESC, aggregate_id, aggregate_type, instance_id)`),
    noSql('20_add_by_user_index_on_session', L, 'auth.user_sessions'),
    concurrently('22_active_instance_events_index',
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS active_instances_events ON eventstore.events2 (aggregate_type, event_type)
       WHERE aggregate_type = 'instance' AND event_type IN ('instance.added', 'instance.removed')`),
    sqlStep('23_correct_global_unique_constraints', L, ({ c }) => exec(c,
      `UPDATE eventstore.unique_constraints u SET instance_id = '' WHERE u.unique_type = 'instance_domain' AND u.instance_id <> ''
       AND NOT EXISTS (SELECT 1 FROM eventstore.unique_constraints o WHERE o.instance_id = '' AND o.unique_type = u.unique_type AND o.unique_field = u.unique_field)`)),
    noSql('24_add_actor_col_to_auth_tokens', L, 'auth.tokens, auth.refresh_tokens'),
    noSql('26_auth_users3', L, 'auth.users3'),
    sqlStep('29_init_fields_for_project_grant', L, async ({ c }) => fieldHandler(c, 'project_grant_fields', await addedInstances(c), ['project'])),
    sqlStep('30_fill_fields_for_org_domain_verified', L, async ({ c }) => fieldHandler(c, 'org_domain_verified_fields', await addedInstances(c), ['org'])),
    noSql('34_add_cache_schema', L, 'cache schema'),
    concurrently('35_add_position_to_index_es_wm',
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS es_wm_temp ON eventstore.events2 (instance_id, aggregate_id, aggregate_type, event_type, "position")`,
      `DROP INDEX IF EXISTS eventstore.es_wm`,
      `ALTER INDEX eventstore.es_wm_temp RENAME TO es_wm`),
    sqlStep('36_fill_v3_milestones', L, fillV3Milestones),
    sqlStep('38_back_channel_logout_notification_start_', L, backChannelLogoutStart),
    concurrently('44_replace_current_sequences_index',
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS events2_current_sequence2 ON eventstore.events2 (aggregate_id, aggregate_type, instance_id, "sequence" DESC)`,
      `DROP INDEX IF EXISTS eventstore.events2_current_sequence`),
    sqlStep('43_correct_project_owners', L, correctProjectOwners),
    sqlStep('46_init_permission_functions', L, permissionFunctions),
    sqlStep('47_fill_membership_fields', L, async ({ c }) => fieldHandler(c, 'membership_fields', await activeInstancesByAggregate(c), ['instance', 'org', 'project'])),
  ];
}

function refRepeatables(): Step[] {
  const L: StepList = 'ref-repeatable';
  return [
    { ...noSql('config_change', L, 'pushes instance domain events when the external domain changed; none of the six subscribes to them'),
      repeatable: {
        check: (last, o) => last?.externalDomain !== o.externalDomain || last?.externalSecure !== o.externalSecure || last?.externalPort !== o.externalPort,
        lastRun: (o) => ({ externalDomain: o.externalDomain, externalSecure: o.externalSecure, externalPort: o.externalPort }),
      } },
    sqlStep('projection_tables', L, ({ c }) => projectionTables(c, 'ref'), {
      repeatable: { check: (last, o) => last?.version !== o.refVersion, lastRun: (o) => ({ version: o.refVersion }) },
    }),
    sqlStep('repeatable_delete_stale_org_fields', L, async ({ c }) => {
      for (const instance of await addedInstances(c)) {
        await c.query(`DELETE FROM eventstore.fields WHERE instance_id = $1 AND aggregate_type = 'org' AND aggregate_id IN
          (SELECT aggregate_id FROM eventstore.events2 WHERE instance_id = $1 AND aggregate_type = 'org' AND event_type = 'org.removed')`, [instance]);
      }
    }, { repeatable: always }),
    sqlStep('repeatable_fill_fields_for_instance_domains', L,
      async ({ c }) => fieldHandler(c, 'instance_domain_fields', await addedInstances(c), ['instance']), { repeatable: always }),
    // Its permission.* pushes are not modelled (aggregate `permission`, not subscribed by the six); it reads the view.
    sqlStep('repeatable_sync_role_permissions', L, ({ c }) => exec(c, 'SELECT count(*) FROM eventstore.role_permissions'), { repeatable: always }),
  ];
}

function refSecondList(): Step[] {
  const L: StepList = 'ref-second';
  return [
    noSql('18_add_lower_fields_to_login_names', L, 'projections.login_names3_*, not one of the six (guarded)'),
    noSql('21_add_block_field_to_limits', L, 'projections.limits, not one of the six (guarded)'),
    sqlStep('25_user14_add_lower_fields_to_verified_email', L, ({ c }) => exec(c, ...step25('projections'))),
    noSql('27_idp_templates6_add_saml_name_id_format', L, 'projections.idp_templates6_saml, not one of the six (guarded)'),
    noSql('32_add_auth_sessionID', L, 'auth.user_sessions'),
    noSql('33_sms_configs3_twilio_add_verification_sid', L, 'projections.sms_configs3_twilio, not one of the six (guarded)'),
    sqlStep('37_apps7_oidc_configs_add_back_channel_logout_uri', L, ({ c }) => exec(c,
      `ALTER TABLE IF EXISTS projections.apps7_oidc_configs ADD COLUMN IF NOT EXISTS back_channel_logout_uri TEXT`)),
    sqlStep('40_apps7_oidc_configs_login_version', L, ({ c }) => exec(c,
      `ALTER TABLE IF EXISTS projections.apps7_oidc_configs ADD COLUMN IF NOT EXISTS login_version SMALLINT, ADD COLUMN IF NOT EXISTS login_base_uri TEXT`)),
    sqlStep('43_create_fields_domain_index', L, ({ c }) => exec(c,
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS fields_instance_domains_idx ON eventstore.fields (object_id)
       WHERE object_type = 'instance_domain' AND field_name = 'domain'`)),
  ];
}

/**
 * MAIN's additional steps (§1.3). Names the spec leaves out (50–52, 56, 61, 62, 65) are read in
 * public versions of their files in ZITADEL's repository.
 */
function mainSteps(): Step[] {
  const L: StepList = 'main';
  const R: StepList = 'main-repeatable';
  const S: StepList = 'main-second';
  const counted = ['instances', 'orgs1', 'projects4', 'users14'];
  return [
    sqlStep('49_init_permitted_orgs_function', L, ({ c }) => permittedOrgs(c, 'permitted_orgs')),
    noSql('50_idp_templates6_add_use_pkce', L, 'projections.idp_templates6_*, not one of the six'),
    noSql('51_idp_templates6_add_root_ca', L, 'projections.idp_templates6_*, not one of the six'),
    noSql('52_idp_templates6_ldap2', L, 'projections.idp_templates6_*, not one of the six'),
    sqlStep('53_init_permitted_orgs_function_v2', L, ({ c }) => permittedOrgs(c, 'permitted_orgs2')),
    sqlStep('54_instance_position_index_remove_again', L, ({ c }) => exec(c, `DROP INDEX IF EXISTS eventstore.es_instance_position`)),
    sqlStep('55_execution_handler_start', L, executionHandlerStart),
    noSql('56_idp_templates6_add_saml_federated_logout', L, 'projections.idp_templates6_saml, not one of the six'),
    sqlStep('57_create_resource_counts', L, ({ c }) => exec(c,
      `CREATE TABLE IF NOT EXISTS projections.resource_counts (id SERIAL PRIMARY KEY, instance_id TEXT NOT NULL, table_name TEXT NOT NULL,
         parent_type TEXT NOT NULL, parent_id TEXT NOT NULL, resource_name TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
         amount INTEGER NOT NULL DEFAULT 0)`)),
    noSql('58_replace_login_names3_view', L, 'projections.login_names3 view, not one of the six'),
    noSql('60_generate_system_id', L, 'system schema'),
    noSql('61_idp_templates6_add_saml_signature_algorithm', L, 'projections.idp_templates6_saml, not one of the six'),
    noSql('62_http_provider_add_signing_key', L, 'projections.smtp/http provider tables, not one of the six'),
    sqlStep('63_alter_resource_counts', L, ({ c }) => exec(c, `ALTER TABLE projections.resource_counts ALTER COLUMN amount SET DEFAULT 0`)),
    sqlStep('64_change_push_position', L, ({ c }) => pushFunctions(c, 'statement', false)),
    noSql('65_fix_user_metadata5_index', L, 'projections.user_metadata5, not one of the six'),
    sqlStep('67_sync_member_role_fields', L, ({ c }) => exec(c, `SELECT count(*) FROM eventstore.fields WHERE object_type LIKE '%member_role'`)),
    noSql('repeatable_transactional_tables', R, 'tables outside the modelled schemas'),
    sqlStep('projection_tables', R, ({ c }) => projectionTables(c, 'main'), {
      repeatable: { check: (last, o) => last?.version !== o.mainVersion, lastRun: (o) => ({ version: o.mainVersion }) },
    }),
    ...counted.map((t) => sqlStep(`repeatable_${t}_count_trigger`, R, ({ c }) => countTrigger(c, t), { repeatable: always })),
    { ...noSql('repeatable_migrate_river', R, 'the river queue schema'), repeatable: always },
    sqlStep('48_apps7_saml_configs_login_version', S, ({ c }) => exec(c,
      `ALTER TABLE IF EXISTS projections.apps7_saml_configs ADD COLUMN IF NOT EXISTS login_version SMALLINT, ADD COLUMN IF NOT EXISTS login_base_uri TEXT`)),
    noSql('59_setup_webkeys', S, 'pushes web_key events, which none of the six subscribes to'),
    noSql('66_session_recovery_code_checked_at', S, 'projections.sessions*, not one of the six'),
  ];
}

function idxSteps(): Step[] {
  return [
    sqlStep('81_eventstore_commands_to_events_clock_timestamp', 'idx', ({ c }) => pushFunctions(c, 'clock', false)),
    sqlStep('82_current_states_in_tx_order', 'idx', currentStatesInTxOrder),
  ];
}

/** Step 82 (§4.1): the column, its back-fill, and the two triggers that null it on updates not setting it. */
async function currentStatesInTxOrder({ c }: StepContext): Promise<void> {
  const dataType = (await c.query(
    `SELECT data_type FROM information_schema.columns WHERE table_schema = 'eventstore' AND table_name = 'events2' AND column_name = 'in_tx_order'`)).rows[0].data_type;
  await exec(c,
    `ALTER TABLE projections.current_states ADD COLUMN IF NOT EXISTS in_tx_order ${dataType}`,
    `UPDATE projections.current_states s SET in_tx_order = e.in_tx_order FROM eventstore.events2 e
     WHERE s.instance_id = e.instance_id AND s.aggregate_id = e.aggregate_id AND s.aggregate_type = e.aggregate_type AND s."sequence" = e."sequence"
       AND e.in_tx_order <> 0`,
    `CREATE OR REPLACE FUNCTION projections.emulated_keep_in_tx_order_flag() RETURNS trigger LANGUAGE plpgsql AS $fn$
     BEGIN PERFORM set_config('emulated.keep_in_tx_order', 'true', true); RETURN NULL; END $fn$`,
    `CREATE OR REPLACE FUNCTION projections.emulated_keep_in_tx_order() RETURNS trigger LANGUAGE plpgsql AS $fn$
     BEGIN IF current_setting('emulated.keep_in_tx_order', true) IS DISTINCT FROM 'true' THEN NEW.in_tx_order := NULL; END IF; RETURN NEW; END $fn$`,
    `CREATE OR REPLACE TRIGGER emulated_keep_in_tx_order_flag BEFORE UPDATE OF in_tx_order ON projections.current_states
     FOR EACH STATEMENT EXECUTE FUNCTION projections.emulated_keep_in_tx_order_flag()`,
    `CREATE OR REPLACE TRIGGER emulated_keep_in_tx_order BEFORE UPDATE ON projections.current_states
     FOR EACH ROW EXECUTE FUNCTION projections.emulated_keep_in_tx_order()`,
  );
}

// ------------------------------------------------------------------------------------------------
// The setup run

/** Options of {@link runSetup}. */
export interface SetupOptions {
  /** Which versions' lists to run, in this order. Default all: REF (list, repeatables, second list), then MAIN, then IDX. */
  readonly versions?: readonly ('ref' | 'main' | 'idx')[];
  /** Stop after this step (inclusive), e.g. `47_fill_membership_fields` for "a v2 ZITADEL ran 14…47". */
  readonly stopAfter?: string;
  /** Also `--init-projections` for the six projections, last. Default false. */
  readonly initProjections?: boolean;
  /**
   * Go on after a failed step to report every failing step at once. ZITADEL itself stops at the first
   * (a diagnostic aid, not its behaviour). Default false.
   */
  readonly keepGoing?: boolean;
  /** Binary versions seen by `projection_tables`. Defaults `v2.71.0` and `v4.0.0`. */
  readonly refVersion?: string;
  readonly mainVersion?: string;
  /** config_change's configuration. Defaults localhost / false / 8080. */
  readonly externalDomain?: string;
  readonly externalSecure?: boolean;
  readonly externalPort?: number;
}
type ResolvedSetupOptions = Required<Omit<SetupOptions, 'stopAfter'>> & { stopAfter?: string };

/** What a setup run did. */
export interface SetupRun {
  readonly outcomes: readonly StepOutcome[];
  /** The outcomes that are a failure of the hand-off (failed steps). */
  readonly failures: readonly StepOutcome[];
}

function stepsFor(versions: readonly string[]): Step[] {
  const out: Step[] = [];
  for (const v of versions) {
    if (v === 'ref') out.push(...refSteps(), ...refRepeatables(), ...refSecondList());
    if (v === 'main') out.push(...mainSteps());
    if (v === 'idx') out.push(...idxSteps());
  }
  return out;
}

/** Runs ZITADEL's setup (as the spec describes it) on the database at `url`. */
export async function runSetup(url: string, options: SetupOptions = {}): Promise<SetupRun> {
  const o: ResolvedSetupOptions = {
    versions: options.versions ?? ['ref', 'main', 'idx'], initProjections: options.initProjections ?? false, keepGoing: options.keepGoing ?? false,
    refVersion: options.refVersion ?? 'v2.71.0', mainVersion: options.mainVersion ?? 'v4.0.0', externalDomain: options.externalDomain ?? 'localhost',
    externalSecure: options.externalSecure ?? false, externalPort: options.externalPort ?? 8080, stopAfter: options.stopAfter,
  };
  const c = new pg.Client({ connectionString: url, application_name: 'zitadel_setup_emulator' });
  await c.connect();
  const outcomes: StepOutcome[] = [];
  try {
    for (const step of stepsFor(o.versions)) {
      const outcome = await migrate(c, step, o);
      outcomes.push(outcome);
      if (outcome.result === 'failed' && !o.keepGoing) return result(outcomes);
      if (step.name === o.stopAfter) return result(outcomes);
    }
    if (o.initProjections) for (const p of SIX_PROJECTIONS) outcomes.push(await initProjection(c, p));
    return result(outcomes);
  } finally {
    await c.end();
  }
}

function result(outcomes: StepOutcome[]): SetupRun {
  return { outcomes, failures: outcomes.filter((x) => x.result === 'failed') };
}

/** One step through ZITADEL's Migrate (§1.1, §2.3): decide, push started, execute, push done or failed. */
async function migrate(c: pg.Client, step: Step, o: ResolvedSetupOptions): Promise<StepOutcome> {
  const base = { name: step.name, list: step.list, modelled: step.modelled };
  const state = (await readStepStates(c)).get(step.name);
  if (state?.state === 'started') {
    return { ...base, result: 'failed', reason: 'migration already started: setup would wait for it forever' };
  }
  if (state?.state === 'done' && (!step.repeatable || !step.repeatable.check(state.lastRun, o))) return { ...base, result: 'skipped' };
  let started: PushedEvent | null = null;
  try {
    [started] = await push(c, [migrationCommand(MIGRATION.started, step.name)],
      [{ action: 'add', type: 'migration_started', field: step.name, errorId: 'Errors.Step.Started.AlreadyExists' }]);
  } catch (err) {
    if ((err as { code?: string }).code !== step.continueOnPushError || !step.continueOnPushError) {
      const e = errorText(err);
      return { ...base, result: 'failed', reason: `push of started: ${e.text}`, sqlstate: e.sqlstate };
    }
  }
  try {
    await step.execute({ c, started, options: o });
  } catch (err) {
    const e = errorText(err);
    await c.query('ROLLBACK').catch(() => {}); // a statement batch that failed inside its own BEGIN
    const lastRun = step.repeatable ? { lastRun: step.repeatable.lastRun(o) } : {};
    await push(c, [migrationCommand(MIGRATION.failed, step.name, { error: e.text, ...lastRun })],
      [{ action: 'remove', type: 'migration_started', field: step.name }]).catch(() => {});
    return { ...base, result: 'failed', reason: e.text, sqlstate: e.sqlstate };
  }
  try {
    if (step.repeatable) {
      await push(c, [migrationCommand(MIGRATION.repeatableDone, step.name, { lastRun: step.repeatable.lastRun(o) })],
        [{ action: 'remove', type: 'migration_started', field: step.name }]);
    } else {
      await push(c, [migrationCommand(MIGRATION.done, step.name)],
        [{ action: 'add', type: 'migration_done', field: step.name, errorId: 'Errors.Step.Done.AlreadyExists' }]);
    }
  } catch (err) {
    const e = errorText(err);
    return { ...base, result: 'failed', reason: `push of done: ${e.text}`, sqlstate: e.sqlstate };
  }
  return { ...base, result: 'succeeded', ...(step.why ? { reason: `modelled without SQL: ${step.why}` } : {}) };
}

function migrationCommand(type: string, name: string, extra: Record<string, unknown> = {}): Command {
  return { instanceId: '', aggregateType: 'system', aggregateId: 'SYSTEM', type, payload: { name, ...extra }, revision: 1, creator: 'system', owner: 'SYSTEM' };
}

/**
 * `--init-projections` for one projection (§2.6): done ⇒ skipped; otherwise ZITADEL would prefill it,
 * each instance up to the position of the step's started event. Reported (with how many events each
 * instance's catch-up would still reduce) without pushing or reducing anything.
 */
async function initProjection(c: pg.Client, projection: ProjectionName): Promise<StepOutcome> {
  const base = { name: projection, list: 'init-projections' as const, modelled: 'sql' as const };
  const state = (await readStepStates(c)).get(projection);
  if (state?.state === 'done') return { ...base, result: 'skipped' };
  const pending: string[] = [];
  for (const instance of await prefillInstances(c)) {
    const n = (await catchUp(c, projection, instance)).events.length;
    if (n > 0) pending.push(`${instance}: ${n}`);
  }
  return { ...base, result: 'would-prefill', reason: `not recorded done; events its prefill would still reduce per instance: ${pending.join(', ') || 'none'}` };
}

/** The prefill's instance list (§4.4): instance.added minus instance.removed, in first-added order. */
export async function prefillInstances(c: pg.ClientBase): Promise<string[]> {
  const r = await c.query(
    `SELECT instance_id, event_type FROM eventstore.events2 WHERE aggregate_type = 'instance' AND event_type IN ('instance.added', 'instance.removed')
     ORDER BY "position", in_tx_order`);
  let list: string[] = [];
  for (const row of r.rows) {
    if (row.event_type === 'instance.added') list.push(row.instance_id);
    else list = list.filter((i) => i !== row.instance_id);
  }
  return [...new Set(list)];
}

// ------------------------------------------------------------------------------------------------
// Handler catch-up (§4.2 items 1, 3, 4, 5)

/** An event a handler reads. */
export interface HandledEvent {
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly sequence: string;
  readonly type: string;
  readonly position: string;
  readonly inTxOrder: number;
}

/** What one catch-up of a projection in an instance would reduce, and the state it would then store. */
export interface CatchUp {
  /** The stored state it started from; null when there was no row (the handler starts at 0). */
  readonly from: { readonly position: string; readonly filterOffset: number } | null;
  readonly events: readonly HandledEvent[];
  /** position / filter_offset after the last event (item 4); equal to `from` when nothing is new. */
  readonly to: { readonly position: string; readonly filterOffset: number } | null;
}

/**
 * One catch-up of `projection` in `instance`, read-only: state_get (row-locked without waiting),
 * the event query (subscribed pairs OR-ed; position ≥ stored and OFFSET filter_offset when the stored
 * position is > 0; ORDER BY position, in_tx_order; only positions before now(), the await filter),
 * then drop what the stored state says was reduced already. Without a bulk limit: one iteration.
 */
export async function catchUp(c: pg.ClientBase, projection: ProjectionName, instance: string): Promise<CatchUp> {
  await c.query('BEGIN');
  try {
    const s = (await c.query(
      `SELECT COALESCE(aggregate_id, '') AS aggregate_id, COALESCE(aggregate_type, '') AS aggregate_type, COALESCE("sequence", 0)::text AS seq,
              COALESCE("position", 0)::text AS pos, COALESCE(filter_offset, 0)::int AS off
       FROM projections.current_states WHERE instance_id = $1 AND projection_name = $2 FOR UPDATE NOWAIT`, [instance, projection])).rows[0];
    const position = s?.pos ?? '0';
    const offset = s?.off ?? 0;
    const pairs = Object.entries(SUBSCRIPTIONS[projection]);
    const filter = pairs.map((_, i) => `(aggregate_type = $${3 + 2 * i} AND event_type = ANY($${4 + 2 * i}))`).join(' OR ');
    const after = Number(position) > 0 ? `AND "position" >= $2::numeric` : `AND $2::numeric IS NOT NULL`;
    const r = await c.query(
      `SELECT aggregate_type AS "aggregateType", aggregate_id AS "aggregateId", "sequence"::text AS "sequence", event_type AS type,
              "position"::text AS "position", in_tx_order::int AS "inTxOrder",
              ("position" = $2::numeric AND aggregate_id = $${3 + 2 * pairs.length} AND aggregate_type = $${4 + 2 * pairs.length}
               AND "sequence" = $${5 + 2 * pairs.length}::bigint) AS stored
       FROM eventstore.events2
       WHERE instance_id = $1 AND (${filter}) ${after} AND "position" < EXTRACT(EPOCH FROM now())
       ORDER BY "position", in_tx_order
       ${Number(position) > 0 && offset > 0 ? `OFFSET ${offset}` : ''}`,
      [instance, position, ...pairs.flatMap(([agg, types]) => [agg, types]), s?.aggregate_id ?? '', s?.aggregate_type ?? '', s?.seq ?? '0'],
    );
    const storedAt = r.rows.findIndex((e) => e.stored);
    const events: HandledEvent[] = r.rows.slice(storedAt + 1).map(({ stored: _stored, ...e }) => e);
    const from = s ? { position, filterOffset: offset } : null;
    return { from, events, to: advance(from, events) };
  } finally {
    await c.query('ROLLBACK');
  }
}

/** Item 4: the counter starts at the stored offset, +1 per event, back to 1 when the position changes. */
function advance(from: CatchUp['from'], events: readonly HandledEvent[]): CatchUp['to'] {
  let state = from;
  for (const e of events) {
    const same = state !== null && Number(state.position) === Number(e.position);
    state = { position: e.position, filterOffset: same ? state!.filterOffset + 1 : 1 };
  }
  return state;
}

// ------------------------------------------------------------------------------------------------
// Table comparison

/** One table's shape as the catalog describes it, with the schema name taken out. */
interface TableShape {
  readonly columns: Record<string, { type: string; notNull: boolean; default: string | null; generated: string }>;
  readonly constraints: Record<string, string>;
  readonly indexes: Record<string, string>;
}

async function describeTable(c: pg.ClientBase, schema: string, table: string): Promise<TableShape | null> {
  const rel = `${schema}.${table}`;
  if (!(await c.query(`SELECT to_regclass($1) IS NOT NULL AS t`, [rel])).rows[0].t) return null;
  const strip = (s: string) => s.split(`${schema}.`).join('');
  const cols = await c.query(
    `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS def, a.attgenerated
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, [rel]);
  const cons = await c.query(`SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'f', 'u')`, [rel]);
  const idx = await c.query(`SELECT i.relname, pg_get_indexdef(i.oid) AS def FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass`, [rel]);
  return {
    columns: Object.fromEntries(cols.rows.map((r) => [r.attname, { type: r.type, notNull: r.attnotnull, default: r.def === null ? null : strip(r.def), generated: r.attgenerated }])),
    constraints: Object.fromEntries(cons.rows.map((r) => [r.conname, strip(r.def)])),
    indexes: Object.fromEntries(idx.rows.map((r) => [r.relname, strip(r.def)])),
  };
}

function diffRecords(table: string, what: string, actual: Record<string, unknown>, expected: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of Object.keys(expected)) {
    if (!(k in actual)) out.push(`${table}: ${what} ${k} missing (spec: ${JSON.stringify(expected[k])})`);
    else if (JSON.stringify(actual[k]) !== JSON.stringify(expected[k])) {
      out.push(`${table}: ${what} ${k} is ${JSON.stringify(actual[k])}, spec ${JSON.stringify(expected[k])}`);
    }
  }
  for (const k of Object.keys(actual)) if (!(k in expected)) out.push(`${table}: ${what} ${k} not in the spec (${JSON.stringify(actual[k])})`);
  return out;
}

/**
 * The differences between the six projections' tables in `projections` and the spec's DDL: columns
 * (type, NOT NULL, default, generated), primary key and foreign keys (names and definitions, ON DELETE
 * CASCADE included) and indexes (names and definitions). `final` = MAIN's DDL plus step 25's
 * additions: what every table looks like once setup has run. The spec's tables are built in a scratch
 * schema and compared through the catalog. Empty when equal.
 */
export async function projectionTablesDiff(c: pg.ClientBase, version: DdlVersion | 'final', options: { recordedSteps?: boolean } = {}): Promise<string[]> {
  const scratch = 'zitadel_spec_ddl';
  const recorded = options.recordedSteps ? await readStepStates(c) : new Map<string, StepState>();
  const done = (name: string) => recorded.get(name)?.state === 'done';
  await c.query(`DROP SCHEMA IF EXISTS ${scratch} CASCADE; CREATE SCHEMA ${scratch}`);
  try {
    for (const statements of Object.values(projectionTablesDdl(scratch, version === 'ref' ? 'ref' : 'main'))) await c.query(statements.join(';\n'));
    // With recordedSteps: the guarded table changes of steps already recorded done, which ZITADEL never
    // runs again, belong to the tables whoever creates them later.
    if (version === 'final' || done('25_user14_add_lower_fields_to_verified_email')) await c.query(step25(scratch).join(';\n'));
    if (done('48_apps7_saml_configs_login_version')) {
      await c.query(`ALTER TABLE ${scratch}.apps7_saml_configs ADD COLUMN IF NOT EXISTS login_version SMALLINT, ADD COLUMN IF NOT EXISTS login_base_uri TEXT`);
    }
    const out: string[] = [];
    for (const table of Object.values(PROJECTION_TABLES).flat()) {
      const expected = (await describeTable(c, scratch, table))!;
      const actual = await describeTable(c, 'projections', table);
      if (!actual) {
        out.push(`projections.${table}: missing`);
        continue;
      }
      out.push(...diffRecords(`projections.${table}`, 'column', actual.columns, expected.columns));
      out.push(...diffRecords(`projections.${table}`, 'constraint', actual.constraints, expected.constraints));
      out.push(...diffRecords(`projections.${table}`, 'index', actual.indexes, expected.indexes));
    }
    return out;
  } finally {
    await c.query(`DROP SCHEMA IF EXISTS ${scratch} CASCADE`);
  }
}

/** The tables of the six projections that do not exist. */
export async function missingProjectionTables(c: pg.ClientBase): Promise<string[]> {
  const names = Object.values(PROJECTION_TABLES).flat().map((t) => `projections.${t}`);
  const r = await c.query(`SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NULL ORDER BY n`, [names]);
  return r.rows.map((x) => x.n);
}
