/**
 * The reference side of the projection benchmark: ZITADEL's projection handler as `setup --init-projections`
 * runs it (zitadel-handoff.md §2.6, §4.2; zitadel-eventstore.md §4), re-created from the fact sheets with its
 * own SQL (bench/reference-statements.ts), not zsetup's engine:
 * - projections one after another; per projection the instance list (added minus removed) is spread over
 *   `workers` parallel workers (ZITADEL: 10, or the pool's MaxOpenConnections / 4; at least 1, at most one
 *   per instance), each instance triggered until its state reaches the maximum position, retried after
 *   RetryFailedAfter (100 ms) when a batch stopped on a failure;
 * - per batch one transaction: the state row read `FOR UPDATE NOWAIT` (a placeholder row inserted when
 *   there is none), up to BulkLimit (1,000) events at or after the stored position (OFFSET filter_offset)
 *   in (position, in_tx_order) order with the "await open transactions" filter, one statement per event,
 *   each inside `SAVEPOINT exec_stmt` (never released; a failure rolls back to it and is counted in
 *   failed_events2, skipped from MaxFailureCount (2) on), then the state upserted once, COMMIT;
 * - every parameterised statement prepared once per connection, as pgx's statement cache does.
 */
import pg from 'pg';
import { REFERENCE_DDL } from './reference-ddl.js';
import type { Exec, RefEvent, RefProjection } from './reference-sql.js';
import { REFERENCE_PROJECTIONS } from './reference-statements.js';

const BULK_LIMIT = 1000;
const MAX_FAILURE_COUNT = 2;
const RETRY_FAILED_AFTER_MS = 100;
/** Go's zero time, which ZITADEL writes as event_date of a state that never saw an event. */
const ZERO_TIME = '0001-01-01 00:00:00+00';

/** What the reference did. */
export interface ReferenceResult {
  readonly events: number;
  readonly failures: number;
}

interface State {
  position: string;
  offset: number;
  aggregateId: string;
  aggregateType: string;
  sequence: string;
  eventDate: string;
}

interface Statement {
  readonly event: RefEvent;
  readonly execs: Exec[] | null;
  readonly offset: number;
}

/** Prefills the six projections in the database at `url` the way ZITADEL's handler does, with `workers` workers per projection. */
export async function referencePrefill(url: string, workers: number): Promise<ReferenceResult> {
  const pool = new pg.Pool({ connectionString: url, max: workers + 1, types: { getTypeParser: textTimestamps } as pg.CustomTypesConfig });
  const totals = { events: 0, failures: 0 };
  try {
    await pool.query(REFERENCE_DDL.join(';\n'));
    const max = (await pool.query(`SELECT max("position")::text AS p FROM eventstore.events2`)).rows[0].p as string;
    for (const projection of REFERENCE_PROJECTIONS) await executeProjection(pool, projection, max, workers, totals);
  } finally {
    await pool.end();
  }
  return totals;
}

/** Timestamps stay in PostgreSQL's text form (microseconds intact); everything else parses as pg does. */
function textTimestamps(oid: number, format?: string): (v: string) => unknown {
  if (oid === 1184 || oid === 1114) return (v) => v;
  return pg.types.getTypeParser(oid, format as 'text');
}

async function executeProjection(pool: pg.Pool, projection: RefProjection, max: string, workers: number, totals: { events: number; failures: number }) {
  const instances = await existingInstances(pool);
  const queue = [...instances];
  const count = Math.min(Math.max(1, workers), instances.length);
  await Promise.all(Array.from({ length: count }, async () => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) await triggerUntilDone(pool, projection, id, max, totals);
  }));
}

/** The instance list of a prefill: `instance.added` minus `instance.removed`, in first-added order (§4.4). */
async function existingInstances(pool: pg.Pool): Promise<string[]> {
  const r = await pool.query(`SELECT instance_id, event_type FROM eventstore.events2
    WHERE aggregate_type = 'instance' AND event_type IN ('instance.added', 'instance.removed') ORDER BY "position", in_tx_order`);
  let list: string[] = [];
  for (const row of r.rows) {
    if (row.event_type === 'instance.added') list.push(row.instance_id);
    else list = list.filter((i) => i !== row.instance_id);
  }
  return list;
}

async function triggerUntilDone(pool: pg.Pool, projection: RefProjection, instance: string, max: string, totals: { events: number; failures: number }) {
  for (;;) {
    let again = true;
    let failed = false;
    while (again && !failed) ({ again, failed } = await processEvents(pool, projection, instance, max, totals));
    if (!failed) return;
    await new Promise((resolve) => setTimeout(resolve, RETRY_FAILED_AFTER_MS));
  }
}

/** One iteration of ZITADEL's processEvents: one transaction, one batch. */
async function processEvents(pool: pg.Pool, projection: RefProjection, instance: string, max: string, totals: { events: number; failures: number }) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const state = await currentState(client, projection.name, instance);
    if (state === 'locked' || Number(state.position) >= Number(max)) {
      await client.query('ROLLBACK');
      return { again: false, failed: false };
    }
    const events = await eventsAfter(client, projection, instance, state);
    totals.events += events.length;
    const all = await toStatements(client, projection, events, state, totals);
    const statements = skipPreviouslyReduced(all, state);
    if (statements.length === 0) {
      // Nothing new (or all already reduced): the state is still rewritten, advanced to the last event.
      await setState(client, projection.name, instance, all.length ? stateOf(all[all.length - 1]) : state);
      await client.query('COMMIT');
      return { again: false, failed: false };
    }
    let last = -1;
    let failed = false;
    while (!failed && last + 1 < statements.length) {
      failed = !(await executeStatement(client, projection.name, statements[last + 1], totals));
      if (!failed) last++;
    }
    // A failure keeps what ran before it (and the failure count): committed, retried after RetryFailedAfter.
    if (last >= 0) await setState(client, projection.name, instance, stateOf(statements[last]));
    await client.query('COMMIT');
    return { again: last >= 0 && (events.length === BULK_LIMIT || statements.length < events.length), failed };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** The state row, locked without waiting; a placeholder row is inserted (and so locked) when there is none. */
async function currentState(client: pg.PoolClient, name: string, instance: string): Promise<State | 'locked'> {
  try {
    const r = await prepared(client, `SELECT aggregate_id, aggregate_type, "sequence"::text, event_date, "position"::text, filter_offset
      FROM projections.current_states WHERE instance_id = $1 AND projection_name = $2 FOR UPDATE NOWAIT`, [instance, name]);
    if (r.rows.length) {
      const s = r.rows[0];
      return { aggregateId: s.aggregate_id ?? '', aggregateType: s.aggregate_type ?? '', sequence: s.sequence ?? '0', eventDate: s.event_date ?? ZERO_TIME, position: s.position ?? '0', offset: s.filter_offset ?? 0 };
    }
    const ins = await prepared(client, `INSERT INTO projections.current_states (projection_name, instance_id, last_updated) VALUES ($1, $2, now()) ON CONFLICT DO NOTHING`, [name, instance]);
    if (ins.rowCount === 0) throw new Error('projection already locked');
    return { aggregateId: '', aggregateType: '', sequence: '0', eventDate: ZERO_TIME, position: '0', offset: 0 };
  } catch (err) {
    if ((err as { code?: string }).code === '55P03') return 'locked';
    throw err;
  }
}

/** The projection's events of this instance at or after the stored position, the ones already counted in filter_offset skipped. */
async function eventsAfter(client: pg.PoolClient, projection: RefProjection, instance: string, state: State): Promise<RefEvent[]> {
  const values: unknown[] = [instance, [`zitadel_es_pusher_${instance}`]];
  const filters = Object.entries(projection.reducers).map(([aggregateType, reducers]) => {
    values.push(aggregateType, Object.keys(reducers));
    return `(aggregate_type = $${values.length - 1} AND event_type = ANY($${values.length}))`;
  });
  const from = Number(state.position) > 0;
  if (from) values.push(state.position);
  const offset = from && state.offset > 0;
  if (offset) values.push(state.offset);
  const r = await prepared(client, `SELECT created_at, event_type, "sequence"::text, "position"::text, payload, creator, "owner", instance_id, aggregate_type, aggregate_id, revision
    FROM eventstore.events2
    WHERE instance_id = $1 AND (${filters.join(' OR ')})${from ? ` AND "position" >= $${values.length - (offset ? 1 : 0)}` : ''}
      AND "position" < (SELECT COALESCE(EXTRACT(EPOCH FROM min(xact_start)), EXTRACT(EPOCH FROM now())) FROM pg_stat_activity
                        WHERE datname = current_database() AND application_name = ANY($2) AND state <> 'idle')
    ORDER BY "position", in_tx_order LIMIT ${BULK_LIMIT}${offset ? ` OFFSET $${values.length}` : ''}`, values);
  return r.rows.map((row) => ({
    instanceId: row.instance_id, aggregateType: row.aggregate_type, aggregateId: row.aggregate_id, eventType: row.event_type,
    sequence: row.sequence, createdAt: row.created_at, position: row.position, owner: row.owner, payload: row.payload,
  }));
}

/** One statement per event, each with its filter_offset; a reducer error counts as a failed event. */
async function toStatements(client: pg.PoolClient, projection: RefProjection, events: RefEvent[], state: State, totals: { failures: number }): Promise<Statement[]> {
  const out: Statement[] = [];
  let offset = state.offset;
  let previous = state.position;
  for (const event of events) {
    let execs: Exec[] | null;
    try {
      execs = projection.reducers[event.aggregateType][event.eventType](event);
    } catch (err) {
      if (await recordFailure(client, projection.name, event, String((err as Error).message), totals)) continue;
      break;
    }
    offset = samePosition(previous, event.position) ? offset + 1 : 1;
    previous = event.position;
    out.push({ event, execs, offset });
  }
  return out;
}

/** Drops the statements up to and including the one the state names (already reduced), if it is there. */
function skipPreviouslyReduced(statements: Statement[], state: State): Statement[] {
  const i = statements.findIndex(({ event: e }) => samePosition(e.position, state.position) && e.aggregateId === state.aggregateId
    && e.aggregateType === state.aggregateType && e.sequence === state.sequence);
  return statements.slice(i + 1);
}

const samePosition = (a: string, b: string) => a === b || Number(a) === Number(b);

/** Runs one statement inside its savepoint; false when it failed and the batch has to stop. */
async function executeStatement(client: pg.PoolClient, name: string, s: Statement, totals: { failures: number }): Promise<boolean> {
  if (s.execs === null) return true;
  await client.query('SAVEPOINT exec_stmt');
  try {
    for (const x of s.execs) {
      if ('error' in x) throw new Error(x.error);
      await prepared(client, x.text, x.values);
    }
    return true;
  } catch (err) {
    await client.query('ROLLBACK TO SAVEPOINT exec_stmt');
    const e = err as { message: string; code?: string };
    return recordFailure(client, name, s.event, e.code ? `ERROR: ${e.message} (SQLSTATE ${e.code})` : e.message, totals);
  }
}

/** Counts a failure in failed_events2; true when the event has now failed often enough to be skipped. */
async function recordFailure(client: pg.PoolClient, name: string, e: RefEvent, error: string, totals: { failures: number }): Promise<boolean> {
  totals.failures++;
  const key = [name, e.instanceId, e.aggregateType, e.aggregateId, e.sequence];
  const r = await prepared(client, `SELECT failure_count FROM projections.failed_events2
    WHERE projection_name = $1 AND instance_id = $2 AND aggregate_type = $3 AND aggregate_id = $4 AND failed_sequence = $5`, key);
  const count = Number(r.rows[0]?.failure_count ?? 0) + 1;
  await prepared(client, `INSERT INTO projections.failed_events2
      (projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence, event_creation_date, failure_count, error, last_failed)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, statement_timestamp())
    ON CONFLICT (projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence)
    DO UPDATE SET failure_count = EXCLUDED.failure_count, error = EXCLUDED.error, last_failed = EXCLUDED.last_failed`, [...key, e.createdAt, count, error]);
  return count >= MAX_FAILURE_COUNT;
}

const stateOf = (s: Statement): State => ({
  position: s.event.position, offset: s.offset, aggregateId: s.event.aggregateId, aggregateType: s.event.aggregateType,
  sequence: s.event.sequence, eventDate: s.event.createdAt,
});

async function setState(client: pg.PoolClient, name: string, instance: string, s: State): Promise<void> {
  await prepared(client, `INSERT INTO projections.current_states
      (projection_name, instance_id, aggregate_id, aggregate_type, "sequence", event_date, "position", last_updated, filter_offset)
    VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8)
    ON CONFLICT (projection_name, instance_id) DO UPDATE SET aggregate_id = EXCLUDED.aggregate_id, aggregate_type = EXCLUDED.aggregate_type,
      "sequence" = EXCLUDED."sequence", event_date = EXCLUDED.event_date, "position" = EXCLUDED."position",
      last_updated = statement_timestamp(), filter_offset = EXCLUDED.filter_offset`,
  [name, instance, s.aggregateId, s.aggregateType, s.sequence, s.eventDate, s.position, s.offset]);
}

const names = new Map<string, string>();
/** Runs `text` as a named prepared statement: parsed once per connection, then only bound and executed. */
function prepared(client: pg.PoolClient, text: string, values: readonly unknown[]) {
  let name = names.get(text);
  if (!name) names.set(text, (name = `ref_${names.size}`));
  return client.query({ name, text, values: values as unknown[] });
}
