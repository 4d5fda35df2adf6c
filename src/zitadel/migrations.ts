/**
 * ZITADEL's own setup bookkeeping: the `system.migration.*` events on the global `system` aggregate
 * (spec zitadel-handoff.md §2). ZITADEL's `setup` skips a step whose latest event is `done`, so zsetup
 * writes them, exactly as ZITADEL's push does, for every ZITADEL step whose whole effect it left behind.
 */
import type { Queryable } from '../projections/events.js';

/** The aggregate and event types of the bookkeeping (§2.1). */
export const SYSTEM_AGGREGATE = { instanceId: '', type: 'system', id: 'SYSTEM' } as const;
export const MIGRATION_EVENTS = {
  started: 'system.migration.started',
  done: 'system.migration.done',
  failed: 'system.migration.failed',
  repeatableDone: 'system.migration.repeatable.done',
} as const;

/** What ZITADEL's setup concludes for a step name from its latest event (§2.3). */
export type MigrationState = 'started' | 'done' | 'failed';

/** The latest recorded event of one ZITADEL step. */
export interface RecordedMigration {
  readonly name: string;
  readonly state: MigrationState;
  /** `created_at` of the latest event, ISO-8601. */
  readonly at: string;
  readonly sequence: number;
}

const STATE_OF: Readonly<Record<string, MigrationState>> = {
  [MIGRATION_EVENTS.started]: 'started',
  [MIGRATION_EVENTS.done]: 'done',
  [MIGRATION_EVENTS.repeatableDone]: 'done',
  [MIGRATION_EVENTS.failed]: 'failed',
};

/**
 * Reads ZITADEL's step states the way its setup does: the four event types of ('', system, SYSTEM) in
 * sequence order, the last event per name wins. Before the move the events are still in the legacy
 * `eventstore.events` (ZITADEL itself falls back to it); with neither table the map is empty.
 */
export async function readMigrations(db: Queryable): Promise<Map<string, RecordedMigration>> {
  const t = await db.query<{ events2: boolean; legacy: boolean }>(
    `SELECT to_regclass('eventstore.events2') IS NOT NULL AS events2, to_regclass('eventstore.events') IS NOT NULL AS legacy`,
  );
  const { events2, legacy } = t.rows[0];
  if (!events2 && !legacy) return new Map();
  const query = events2
    ? `SELECT event_type, payload->>'name' AS name, created_at, "sequence" FROM eventstore.events2
       WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 AND event_type = ANY($4) ORDER BY "sequence"`
    : `SELECT event_type, event_data->>'name' AS name, creation_date AS created_at, event_sequence AS "sequence" FROM eventstore.events
       WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 AND event_type = ANY($4) ORDER BY event_sequence`;
  const r = await db.query<{ event_type: string; name: string | null; created_at: Date; sequence: string }>(query, [
    SYSTEM_AGGREGATE.instanceId, SYSTEM_AGGREGATE.type, SYSTEM_AGGREGATE.id, Object.values(MIGRATION_EVENTS),
  ]);
  const out = new Map<string, RecordedMigration>();
  for (const row of r.rows) {
    if (row.name === null) continue;
    out.set(row.name, { name: row.name, state: STATE_OF[row.event_type], at: new Date(row.created_at).toISOString(), sequence: Number(row.sequence) });
  }
  return out;
}

/** A ZITADEL step to record as done. */
export interface MigrationRecord {
  readonly name: string;
  /**
   * Write only the `done` event. ZITADEL's step 14 on an upgrade from a legacy event store cannot store
   * its `started` event (events2 does not exist yet when it is pushed), so only `done` lands.
   */
  readonly doneOnly?: boolean;
}

/** Serialises zsetup's own pushes to the system aggregate (projection steps finish side by side). */
const PUSH_LOCK = `hashtext('zsetup'), hashtext('system.migration')`;

/**
 * Records the steps as done, inside the caller's transaction, the way ZITADEL's push writes them
 * (§2.1, §2.2): aggregate ('', system, SYSTEM) at revision 1, creator `system`, the aggregate's existing
 * owner (else `SYSTEM`), sequence = latest + 1, created_at = the transaction's start and position its
 * epoch, in_tx_order 1… in push order, payload `{"name": …}`; `eventstore.unique_constraints` gets the
 * `migration_started` / `migration_done` rows the push adds. A step already done is left alone; one
 * left `started` (its run died) gets only its `done`. Returns the names newly recorded.
 */
export async function recordMigrations(db: Queryable, records: readonly MigrationRecord[]): Promise<string[]> {
  if (records.length === 0) return [];
  const tables = await db.query<{ events2: boolean; constraints: boolean }>(
    `SELECT to_regclass('eventstore.events2') IS NOT NULL AS events2, to_regclass('eventstore.unique_constraints') IS NOT NULL AS constraints`,
  );
  // Without events2 there is no event store to record in (and nothing ZITADEL would read).
  if (!tables.rows[0].events2) return [];
  await db.query(`SELECT pg_advisory_xact_lock(${PUSH_LOCK})`);
  const recorded = await readMigrations(db);
  const pushes: { type: string; name: string }[] = [];
  for (const r of records) {
    const state = recorded.get(r.name)?.state;
    if (state === 'done' || pushes.some((p) => p.name === r.name)) continue;
    if (state !== 'started' && !r.doneOnly) pushes.push({ type: MIGRATION_EVENTS.started, name: r.name });
    pushes.push({ type: MIGRATION_EVENTS.done, name: r.name });
  }
  if (pushes.length === 0) return [];
  await db.query(
    `WITH latest AS (
       SELECT "sequence", owner FROM eventstore.events2
       WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 ORDER BY "sequence" DESC LIMIT 1)
     INSERT INTO eventstore.events2
       (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at, payload, creator, owner, "position", in_tx_order)
     SELECT $1, $2, $3, p.type, COALESCE((SELECT "sequence" FROM latest), 0) + p.n, 1, now(), jsonb_build_object('name', p.name),
            'system', COALESCE((SELECT owner FROM latest), 'SYSTEM'), EXTRACT(EPOCH FROM now()), p.n
     FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS p(type, name, n)
     ORDER BY p.n`,
    [SYSTEM_AGGREGATE.instanceId, SYSTEM_AGGREGATE.type, SYSTEM_AGGREGATE.id, pushes.map((p) => p.type), pushes.map((p) => p.name)],
  );
  // A database that ZITADEL's init did not make may lack the table; the events are the record that counts.
  if (tables.rows[0].constraints) {
    await db.query(
      `INSERT INTO eventstore.unique_constraints (instance_id, unique_type, unique_field)
       SELECT '', CASE WHEN p.type = $1 THEN 'migration_started' ELSE 'migration_done' END, lower(p.name)
       FROM unnest($2::text[], $3::text[]) AS p(type, name)
       ON CONFLICT DO NOTHING`,
      [MIGRATION_EVENTS.started, pushes.map((p) => p.type), pushes.map((p) => p.name)],
    );
  }
  return pushes.filter((p) => p.type === MIGRATION_EVENTS.done).map((p) => p.name);
}
