/**
 * The handler bookkeeping tables `projections.current_states` and `projections.failed_events2`, brought
 * to the shape ZITADEL's steps 15 and 17 leave, with those steps recorded done in the same transaction
 * (spec zitadel-handoff.md §1.2 rows 14 and 16, §4.1). ZITADEL's step 17 adds `filter_offset` without
 * IF NOT EXISTS, so a table that has the column must carry the record of step 17, or ZITADEL's setup
 * stops there for good.
 */
import { RefusedError } from '../errors.js';
import type { Queryable } from './events.js';
import { CURRENT_STATES_TABLE, FAILED_EVENTS_TABLE } from '../schema.js';
import { readMigrations, recordMigrations, type MigrationRecord } from '../zitadel/migrations.js';
import { RECORDED_BY } from '../zitadel/setup-steps.js';

/** Which optional columns `current_states` has, so states are read and written in its own shape. */
export interface StatesShape {
  /** Added by ZITADEL's step 82 (newest versions); absent in v2-era databases. */
  readonly inTxOrder: boolean;
  /** Added by ZITADEL's step 17; absent only before it (and before zsetup's bookkeeping) ran. */
  readonly filterOffset: boolean;
}

/** The legacy handler tables step 15 copies from, with their name, sequence and time columns (eventstore.md §2.1). */
const LEGACY_STATES = [
  { table: 'projections.current_sequences', name: 'projection_name', at: 'timestamp', byAggregateType: true },
  { table: 'adminapi.current_sequences', name: 'view_name', at: 'last_successful_spooler_run', byAggregateType: false },
  { table: 'auth.current_sequences', name: 'view_name', at: 'last_successful_spooler_run', byAggregateType: false },
] as const;
const LEGACY_FAILURES = [
  { table: 'projections.failed_events', name: 'projection_name', error: 'error' },
  { table: 'adminapi.failed_events', name: 'view_name', error: 'err_msg' },
  { table: 'auth.failed_events', name: 'view_name', error: 'err_msg' },
] as const;

/** Columns zsetup reads and writes, as step 15 creates them. */
const STATES_COLUMNS = ['projection_name', 'instance_id', 'last_updated', 'aggregate_id', 'aggregate_type', 'sequence', 'event_date', 'position'];
const FAILURES_COLUMNS = ['projection_name', 'instance_id', 'aggregate_type', 'aggregate_id', 'event_creation_date', 'failed_sequence', 'failure_count', 'error', 'last_failed'];
const OPTIONAL_STATES_COLUMNS = ['filter_offset', 'in_tx_order'];

interface Catalog {
  readonly states: boolean;
  readonly failures: boolean;
  readonly filterOffset: boolean;
  readonly inTxOrder: boolean;
  readonly legacy: ReadonlySet<string>;
}

async function readCatalog(db: Queryable): Promise<Catalog> {
  const legacyTables = [...LEGACY_STATES, ...LEGACY_FAILURES].map((l) => l.table);
  const columnsOf = (t: string, requiredOnly: boolean) => `ARRAY(SELECT attname::text FROM pg_attribute
      WHERE attrelid = to_regclass('${t}') AND attnum > 0 AND NOT attisdropped
        ${requiredOnly ? 'AND attnotnull AND NOT atthasdef AND attgenerated = \'\'' : ''})`;
  const r = await db.query<{ states: boolean; failures: boolean; columns: string[]; required: string[]; fcolumns: string[]; frequired: string[]; legacy: string[] }>(
    `SELECT to_regclass('projections.current_states') IS NOT NULL AS states,
            to_regclass('projections.failed_events2') IS NOT NULL AS failures,
            ${columnsOf('projections.current_states', false)} AS columns, ${columnsOf('projections.current_states', true)} AS required,
            ${columnsOf('projections.failed_events2', false)} AS fcolumns, ${columnsOf('projections.failed_events2', true)} AS frequired,
            ARRAY(SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL) AS legacy`,
    [legacyTables],
  );
  const x = r.rows[0];
  if (x.states) refuseShape('projections.current_states', x.columns, x.required, STATES_COLUMNS, [...STATES_COLUMNS, ...OPTIONAL_STATES_COLUMNS]);
  if (x.failures) refuseShape('projections.failed_events2', x.fcolumns, x.frequired, FAILURES_COLUMNS, FAILURES_COLUMNS);
  return { states: x.states, failures: x.failures, filterOffset: x.columns.includes('filter_offset'), inTxOrder: x.columns.includes('in_tx_order'), legacy: new Set(x.legacy) };
}

/**
 * Refuses a bookkeeping table zsetup cannot write as ZITADEL does: a column it needs is missing, or a
 * NOT NULL column without default that no ZITADEL version has (ZITADEL's own partial inserts would fail
 * on it too).
 */
function refuseShape(table: string, columns: readonly string[], required: readonly string[], needed: readonly string[], known: readonly string[]): void {
  const missing = needed.filter((c) => !columns.includes(c));
  const foreign = required.filter((c) => !known.includes(c));
  if (missing.length === 0 && foreign.length === 0) return;
  const found = [
    missing.length ? `lacks column(s) ${missing.join(', ')}` : '',
    foreign.length ? `has NOT NULL column(s) without default ${foreign.join(', ')}` : '',
  ].filter(Boolean).join(' and ');
  throw new RefusedError(
    `${table} ${found}: not the shape any ZITADEL version leaves; nothing was written`,
    `compare it with ZITADEL's setup step 15 (zsetup README, "Hand-off to ZITADEL's own setup") and fix or drop it`,
  );
}

/** The shape of `current_states` (read-only; for the dry-run and status). */
export async function statesShape(db: Queryable): Promise<StatesShape> {
  const c = await readCatalog(db);
  return { inTxOrder: c.inTxOrder, filterOffset: c.filterOffset };
}

/**
 * The shape of `current_states` when the bookkeeping is complete and recorded (both tables,
 * `filter_offset`, steps 15 and 17 done), else null. Complete, {@link ensureBookkeeping} has nothing to
 * do and needs no DDL lock.
 */
export async function completeBookkeeping(db: Queryable): Promise<StatesShape | null> {
  const c = await readCatalog(db);
  if (!c.states || !c.failures || !c.filterOffset) return null;
  const recorded = await readMigrations(db);
  const done = recorded.get(RECORDED_BY.currentStates)?.state === 'done' && recorded.get(RECORDED_BY.filterOffset)?.state === 'done';
  return done ? { inTxOrder: c.inTxOrder, filterOffset: true } : null;
}

/**
 * Inside the caller's transaction (holding the projection DDL lock): creates what is missing, adds
 * `filter_offset` where an older table lacks it (step 17's effect), copies the legacy handler states
 * and failures (step 15's effect, "on conflict do nothing" so existing rows win) unless step 15 is
 * recorded, and records 15 and 17. Returns the table's shape.
 *
 * While the old version can still write (`eventstore.events` under its old name: an online move before
 * its cut-over), only the tables are made: its handlers still advance the legacy states, so a copy now
 * would be stale by the cut-over, and nothing is recorded (a record of 15 would make the run after the
 * cut-over skip the copy, and records go into events2 ahead of the catch-up). The first call after the
 * cut-over copies and records, as an ordinary run does: "copy done" is the record of 15, not the table.
 */
export async function ensureBookkeeping(db: Queryable): Promise<StatesShape> {
  const c = await readCatalog(db);
  const recorded = await readMigrations(db);
  if (!c.failures) await db.query(FAILED_EVENTS_TABLE);
  if (!c.states) await db.query(CURRENT_STATES_TABLE);
  else if (!c.filterOffset) await db.query(`ALTER TABLE projections.current_states ADD COLUMN filter_offset INTEGER`);
  if (await oldVersionLive(db)) return { inTxOrder: c.inTxOrder, filterOffset: true };
  const records: MigrationRecord[] = [];
  if (recorded.get(RECORDED_BY.currentStates)?.state !== 'done') {
    await copyLegacyBookkeeping(db, c.legacy);
    records.push({ name: RECORDED_BY.currentStates });
  }
  records.push({ name: RECORDED_BY.filterOffset });
  await recordMigrations(db, records);
  return { inTxOrder: c.inTxOrder, filterOffset: true };
}

/** Whether the old version can still write `eventstore.events` (an online move before its cut-over). */
export async function oldVersionLive(db: Queryable): Promise<boolean> {
  const r = await db.query<{ live: boolean }>(`SELECT to_regclass('eventstore.events') IS NOT NULL AS live`);
  return r.rows[0].live;
}

/**
 * Which of `names` the old version maintains: those with a state row under their name in one of the
 * legacy handler tables step 15 copies from. Until the cut-over its handlers write their tables and
 * advance those states, so a prefill then would be a second writer of the same table.
 */
export async function legacyMaintained(db: Queryable, names: readonly string[]): Promise<Set<string>> {
  if (names.length === 0) return new Set();
  const r = await db.query<{ t: string }>(`SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL`, [LEGACY_STATES.map((l) => l.table)]);
  const present = new Set(r.rows.map((x) => x.t));
  const selects = LEGACY_STATES.filter((l) => present.has(l.table)).map((l) => `SELECT ${l.name}::text AS name FROM ${l.table} WHERE ${l.name} = ANY($1::text[])`);
  if (selects.length === 0) return new Set();
  const found = await db.query<{ name: string }>(`SELECT DISTINCT name FROM (${selects.join(' UNION ALL ')}) AS s`, [names]);
  return new Set(found.rows.map((x) => x.name));
}

/**
 * Step 15's copies: failures of the legacy handlers joined to their event by (instance, sequence), and
 * per (handler, instance) the state of its highest sequence, joined to that event (projections: also by
 * aggregate type). Tables that do not exist contribute nothing. Where the join finds several events2
 * rows (a sequence reused by a later aggregate), the earliest position is kept.
 *
 * No index of events2 leads with (instance, sequence), so each join on its own scans events2's primary
 * key (a whole instance per legacy row, or all of it): ~0.5 s of a 1M-event prefill, before any
 * projection can start. The events all six joins can meet are found first, in ONE scan (see
 * legacyEventKeys); each copy then joins events2 through their full keys.
 */
async function copyLegacyBookkeeping(db: Queryable, present: ReadonlySet<string>): Promise<void> {
  const failures = LEGACY_FAILURES.filter((l) => present.has(l.table));
  const states = LEGACY_STATES.filter((l) => present.has(l.table));
  if (failures.length === 0 && states.length === 0) return;
  const keys = await legacyEventKeys(db, [
    ...failures.map((f) => `SELECT instance_id, failed_sequence FROM ${f.table}`),
    ...states.map((s) => `SELECT instance_id, current_sequence FROM ${s.table}`),
  ]);
  if (keys.length === 0) return;
  // The events2 rows with an (instance, sequence) the legacy tables name: the rows the plain joins find.
  const events = `(SELECT e.* FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS k(instance_id, aggregate_type, aggregate_id, seq)
                   JOIN eventstore.events2 e ON e.instance_id = k.instance_id AND e.aggregate_type = k.aggregate_type
                    AND e.aggregate_id = k.aggregate_id AND e."sequence" = k.seq)`;
  const values = [keys.map((k) => k.instance_id), keys.map((k) => k.aggregate_type), keys.map((k) => k.aggregate_id), keys.map((k) => k.sequence)];
  for (const f of failures) {
    await db.query(
      `INSERT INTO projections.failed_events2
         (projection_name, instance_id, aggregate_type, aggregate_id, event_creation_date, failed_sequence, failure_count, error, last_failed)
       SELECT fe.${f.name}, fe.instance_id, e.aggregate_type, e.aggregate_id, e.created_at, e."sequence", fe.failure_count, fe.${f.error}, fe.last_failed
       FROM ${f.table} fe JOIN ${events} e ON e.instance_id = fe.instance_id AND e."sequence" = fe.failed_sequence
       ON CONFLICT DO NOTHING`,
      values,
    );
  }
  for (const s of states) {
    const aggregate = s.byAggregateType ? 'AND e.aggregate_type = cs.aggregate_type' : '';
    await db.query(
      `INSERT INTO projections.current_states (projection_name, instance_id, event_date, "position", last_updated)
       SELECT DISTINCT ON (cs.${s.name}, cs.instance_id) cs.${s.name}, cs.instance_id, e.created_at, e."position", cs.${s.at}
       FROM ${s.table} cs JOIN ${events} e ON e.instance_id = cs.instance_id AND e."sequence" = cs.current_sequence ${aggregate}
       WHERE cs.current_sequence = (SELECT max(cs2.current_sequence) FROM ${s.table} cs2
                                    WHERE cs2.${s.name} = cs.${s.name} AND cs2.instance_id = cs.instance_id)
       ORDER BY cs.${s.name}, cs.instance_id, e."position"
       ON CONFLICT DO NOTHING`,
      values,
    );
  }
}

/**
 * The primary keys of the events2 rows whose (instance_id, sequence) one of `pairs` (queries of two
 * columns) returns, found in one pass over events2's primary key index: it holds every column needed,
 * so the scan reads the index only, where the visibility map allows. The planner prefers the table
 * itself (four times the size) for a full pass, hence seqscan off for this query alone (and JIT, which
 * seqscan's disabling cost would set off).
 */
async function legacyEventKeys(db: Queryable, pairs: readonly string[]) {
  const was = await db.query<{ seqscan: string; jit: string }>(
    `SELECT current_setting('enable_seqscan') AS seqscan, current_setting('jit') AS jit,
            set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)`,
  );
  const r = await db.query<{ instance_id: string; aggregate_type: string; aggregate_id: string; sequence: string }>(
    `SELECT e.instance_id, e.aggregate_type, e.aggregate_id, e."sequence"::text AS sequence FROM eventstore.events2 e
     WHERE (e.instance_id, e."sequence") IN (${pairs.join(' UNION ')})`,
  );
  await db.query(`SELECT set_config('enable_seqscan', $1, true), set_config('jit', $2, true)`, [was.rows[0].seqscan, was.rows[0].jit]);
  return r.rows;
}
