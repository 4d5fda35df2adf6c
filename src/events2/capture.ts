import { sql } from 'kysely';
import type { Tx } from '../db/connection.js';
import { RefusedError } from '../errors.js';
import type { ReadableDb } from './catalog.js';
import { LEGACY_TABLE, LOG_TABLE, UNSUPPORTED_TABLE } from './sql.js';

/**
 * The capture of the online move: triggers on `eventstore.events` that record, in the writer's own
 * transaction, the key of every row the old version inserts (so a rolled-back insert leaves no key
 * and a committed one always does), and every UPDATE, DELETE or TRUNCATE (which the move refuses).
 *
 * Statement-level triggers with a transition table: one extra INSERT per statement, not per row.
 * SECURITY DEFINER, so the old version's role needs no privilege on schema zsetup.
 */

/** Trigger names on eventstore.events; the insert trigger's presence marks a move in progress. */
export const CAPTURE_TRIGGERS = {
  insert: 'zsetup_events2_capture',
  update: 'zsetup_events2_refuse_update',
  delete: 'zsetup_events2_refuse_delete',
  truncate: 'zsetup_events2_refuse_truncate',
} as const;

const FUNCTIONS = ['zsetup.events2_capture()', 'zsetup.events2_refuse()', 'zsetup.events2_refuse_truncate()'];

/** The DDL of the queue, the refusal record and the trigger functions (no lock on eventstore.events). */
export function captureTablesDdl(): string[] {
  return [
    // LOGGED: crash recovery would empty an unlogged queue and lose the keys it held. Autovacuum off:
    // the move vacuums it itself between catch-up rounds, and an autovacuum holding it would make the
    // cut-over wait.
    `CREATE TABLE ${LOG_TABLE} (
      instance_id    text NOT NULL,
      event_sequence bigint NOT NULL,
      PRIMARY KEY (instance_id, event_sequence)
    ) WITH (autovacuum_enabled = off)`,
    `CREATE TABLE ${UNSUPPORTED_TABLE} (
      op          text NOT NULL,
      rows        bigint,
      at          timestamptz NOT NULL,
      by_user     text NOT NULL,
      application text NOT NULL
    )`,
    `CREATE FUNCTION zsetup.events2_capture() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
      SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
      INSERT INTO ${LOG_TABLE} (instance_id, event_sequence) SELECT instance_id, event_sequence FROM zsetup_inserted;
      RETURN NULL;
    END $fn$`,
    `CREATE FUNCTION zsetup.events2_refuse() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
      SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE n bigint;
    BEGIN
      SELECT count(*) INTO n FROM zsetup_changed;
      IF n > 0 THEN
        INSERT INTO ${UNSUPPORTED_TABLE} VALUES (TG_OP, n, clock_timestamp(), session_user, current_setting('application_name'));
      END IF;
      RETURN NULL;
    END $fn$`,
    `CREATE FUNCTION zsetup.events2_refuse_truncate() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
      SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
      INSERT INTO ${UNSUPPORTED_TABLE} VALUES (TG_OP, NULL, clock_timestamp(), session_user, current_setting('application_name'));
      RETURN NULL;
    END $fn$`,
  ];
}

/** The triggers; the first statement takes SHARE ROW EXCLUSIVE on eventstore.events (waits for open writers). */
export function captureTriggersDdl(table = LEGACY_TABLE): string[] {
  const t = CAPTURE_TRIGGERS;
  return [
    `CREATE TRIGGER ${t.insert} AFTER INSERT ON ${table} REFERENCING NEW TABLE AS zsetup_inserted
      FOR EACH STATEMENT EXECUTE FUNCTION zsetup.events2_capture()`,
    `CREATE TRIGGER ${t.update} AFTER UPDATE ON ${table} REFERENCING OLD TABLE AS zsetup_changed
      FOR EACH STATEMENT EXECUTE FUNCTION zsetup.events2_refuse()`,
    `CREATE TRIGGER ${t.delete} AFTER DELETE ON ${table} REFERENCING OLD TABLE AS zsetup_changed
      FOR EACH STATEMENT EXECUTE FUNCTION zsetup.events2_refuse()`,
    `CREATE TRIGGER ${t.truncate} AFTER TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION zsetup.events2_refuse_truncate()`,
  ];
}

/** Drops the triggers (on whichever table has them) and the functions. */
export async function dropCaptureTriggers(tx: Tx, table: string): Promise<void> {
  for (const name of Object.values(CAPTURE_TRIGGERS)) await sql.raw(`DROP TRIGGER IF EXISTS ${name} ON ${table}`).execute(tx);
  for (const fn of FUNCTIONS) await sql.raw(`DROP FUNCTION IF EXISTS ${fn}`).execute(tx);
}

/** Drops the queue and the refusal record. */
export async function dropCaptureTables(tx: Tx): Promise<void> {
  await sql.raw(`DROP TABLE IF EXISTS ${LOG_TABLE}, ${UNSUPPORTED_TABLE}`).execute(tx);
}

/** What of the capture exists. */
export interface CaptureState {
  /** The insert trigger is on eventstore.events (so writes are being captured). */
  readonly capturing: boolean;
  readonly log: boolean;
}

/** Reads whether the capture is on. Read-only. */
export async function captureState(db: ReadableDb): Promise<CaptureState> {
  const r = await sql<CaptureState>`
    SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = ${CAPTURE_TRIGGERS.insert}
                     AND tgrelid = to_regclass(${LEGACY_TABLE}) AND tgenabled <> 'D') AS capturing,
           to_regclass(${LOG_TABLE}) IS NOT NULL AS log`.execute(db);
  return r.rows[0];
}

/** Keys waiting in the queue (exact; the queue is small once caught up). */
export async function backlog(db: ReadableDb): Promise<number> {
  const r = await sql<{ n: string }>`SELECT count(*) AS n FROM zsetup.events2_log`.execute(db);
  return Number(r.rows[0].n);
}

/**
 * Refuses (exit 5) once the old version changed existing events: the copy cannot follow an UPDATE,
 * DELETE or TRUNCATE. Says what was seen, when and by whom.
 */
export async function refuseUnsupportedWrites(db: ReadableDb): Promise<void> {
  const r = await sql<{ op: string; rows: string | null; at: Date; by_user: string; application: string }>`
    SELECT op, rows::text, at, by_user, application FROM zsetup.events2_unsupported_writes ORDER BY at LIMIT 5`.execute(db);
  if (r.rows.length === 0) return;
  const seen = r.rows.map((w) =>
    `${w.op}${w.rows !== null ? ` of ${w.rows} row(s)` : ''} at ${new Date(w.at).toISOString()} by ${w.by_user}${w.application ? ` (${w.application})` : ''}`);
  throw new RefusedError(
    `eventstore.events was changed in place during the online move (${seen.join('; ')}); events2 cannot follow changes to copied events, so the cut-over is refused and eventstore.events is untouched`,
    'find and stop what changes existing events, then `zsetup abort-move` and `zsetup migrate` again (or `zsetup migrate --offline`, which cuts the old version off first)',
  );
}

/**
 * Refuses an online move of a table without the legacy primary key (event_sequence, instance_id):
 * the queue's key would not identify one row, and the old version's inserts could fail on it.
 */
export async function checkLegacyKey(db: ReadableDb): Promise<void> {
  const r = await sql<{ ok: boolean }>`
    SELECT EXISTS (
      SELECT 1 FROM pg_index i
      WHERE i.indrelid = ${LEGACY_TABLE}::regclass AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indnkeyatts = 2
        AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
             WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = ARRAY['event_sequence', 'instance_id']) AS ok`.execute(db);
  if (r.rows[0].ok) return;
  throw new RefusedError(
    'eventstore.events has no unique key on (event_sequence, instance_id), which the online move needs to identify the rows the old version writes during the move; nothing was changed',
    'run `zsetup migrate --offline` (cuts the old version off first), or restore the legacy primary key',
  );
}

/**
 * The earliest position, as events2 will store it (`EXTRACT(EPOCH FROM creation_date)`, see sql.ts), of
 * an event whose key waits in the capture queue: committed to eventstore.events, not in events2 yet.
 * Null without a queue (no online move before its cut-over) or with an empty one. A projection end point
 * taken before the cut-over must not pass it: the catch-up would later add the event behind it.
 *
 * Read after the end point's look at open transactions, in a later snapshot: a writer that commits in
 * between then shows here instead of there. One primary key lookup per queued key.
 */
export async function queuedEndPoint(db: ReadableDb): Promise<string | null> {
  const t = await sql<{ ready: boolean }>`
    SELECT to_regclass(${LOG_TABLE}) IS NOT NULL AND to_regclass(${LEGACY_TABLE}) IS NOT NULL AS ready`.execute(db);
  if (!t.rows[0].ready) return null;
  // The scalar subquery keeps the plan a lookup per key: a join could hash the whole legacy table.
  const r = await sql<{ bound: string | null }>`
    SELECT min((SELECT EXTRACT(EPOCH FROM e.creation_date) FROM ${sql.raw(LEGACY_TABLE)} e
                WHERE e.instance_id = l.instance_id AND e.event_sequence = l.event_sequence LIMIT 1))::numeric::text AS bound
    FROM ${sql.raw(LOG_TABLE)} l`.execute(db);
  return r.rows[0].bound;
}
