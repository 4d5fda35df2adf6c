import type { StatesShape } from './bookkeeping.js';
import type { Queryable, StreamKey } from './events.js';
import type { ProjectionEvent } from './types.js';
import type { BatchStatement } from './write.js';

/** A projection's recorded position in one instance (`projections.current_states`). */
export interface CurrentState {
  readonly key: StreamKey;
  /** Events processed so far at exactly `key.position` (the reference's `filter_offset`). */
  readonly filterOffset: number;
}

/** An event a reducer could not apply. */
export interface FailedEvent {
  readonly event: ProjectionEvent;
  readonly error: string;
}

/** The shape of a database whose `current_states` lacks `in_tx_order` (every v2-era ZITADEL). */
const V2_SHAPE: StatesShape = { inTxOrder: false, filterOffset: true };

/**
 * Reads the projection's recorded positions per instance. Without an `in_tx_order` column, or in rows
 * that lack it, it is looked up from the event the row names, so the stream continues exactly after it.
 */
export async function readStates(db: Queryable, projection: string, shape: StatesShape = V2_SHAPE): Promise<Map<string, CurrentState>> {
  const inTxOrder = shape.inTxOrder ? 's.in_tx_order' : 'NULL::integer';
  const filterOffset = shape.filterOffset ? 's.filter_offset' : 'NULL::integer';
  const r = await db.query<{
    instance_id: string; position: string | null; in_tx_order: number | null; aggregate_type: string | null;
    aggregate_id: string | null; sequence: number | null; filter_offset: number | null; event_in_tx_order: number | null;
  }>(
    `SELECT s.instance_id, s."position"::text AS position, ${inTxOrder} AS in_tx_order, s.aggregate_type, s.aggregate_id, s."sequence",
            ${filterOffset} AS filter_offset,
            CASE WHEN ${inTxOrder} IS NULL THEN (
              SELECT e.in_tx_order FROM eventstore.events2 e
              WHERE e.instance_id = s.instance_id AND e.aggregate_type = s.aggregate_type
                AND e.aggregate_id = s.aggregate_id AND e."sequence" = s."sequence") END AS event_in_tx_order
     FROM projections.current_states s
     WHERE s.projection_name = $1 AND s."position" IS NOT NULL`,
    [projection],
  );
  const out = new Map<string, CurrentState>();
  for (const x of r.rows) {
    out.set(x.instance_id, {
      key: {
        position: x.position!,
        inTxOrder: x.in_tx_order ?? x.event_in_tx_order ?? 0,
        aggregateType: x.aggregate_type ?? '',
        aggregateId: x.aggregate_id ?? '',
        sequence: Number(x.sequence ?? 0),
      },
      filterOffset: x.filter_offset ?? 0,
    });
  }
  return out;
}

/** Whether two readings of a projection's positions are the same, instance by instance. */
export function sameStates(a: ReadonlyMap<string, CurrentState>, b: ReadonlyMap<string, CurrentState>): boolean {
  if (a.size !== b.size) return false;
  for (const [instance, x] of a) {
    const y = b.get(instance);
    if (!y || x.filterOffset !== y.filterOffset) return false;
    const [k, l] = [x.key, y.key];
    if (k.position !== l.position || k.inTxOrder !== l.inTxOrder || k.aggregateType !== l.aggregateType || k.aggregateId !== l.aggregateId || k.sequence !== l.sequence) return false;
  }
  return true;
}

/** Upserts the projection's position after `last`, inside the caller's transaction. */
export async function writeState(db: Queryable, projection: string, last: ProjectionEvent, filterOffset: number, shape: StatesShape = V2_SHAPE): Promise<void> {
  await writeStates(db, projection, [{ last, filterOffset }], shape);
}

/** The position an instance's projection reaches with a batch: its last event, and the filter offset there. */
export interface StateUpdate {
  readonly last: ProjectionEvent;
  readonly filterOffset: number;
}

/** Upserts the positions of several instances in one statement, inside the caller's transaction. */
export async function writeStates(db: Queryable, projection: string, updates: readonly StateUpdate[], shape: StatesShape = V2_SHAPE): Promise<void> {
  if (updates.length === 0) return;
  const st = statesStatement(projection, updates, shape);
  await db.query(st.text, [...st.values]);
}

/**
 * The statement of {@link writeStates}. `in_tx_order` is written only where the table has it (ZITADEL's
 * step 82, whose triggers clear it on updates that do not set it); `last_updated` is the statement time.
 */
export function statesStatement(projection: string, updates: readonly StateUpdate[], shape: StatesShape = V2_SHAPE): BatchStatement {
  const rows = updates.map(({ last, filterOffset }) => ({
    instance_id: last.instanceId, aggregate_id: last.aggregateId, aggregate_type: last.aggregateType, sequence: last.sequence,
    event_date: last.createdAt, position: last.position, filter_offset: filterOffset, in_tx_order: last.inTxOrder,
  }));
  const extra = shape.inTxOrder ? ', in_tx_order' : '';
  return {
    text: `INSERT INTO projections.current_states
       (projection_name, instance_id, last_updated, aggregate_id, aggregate_type, "sequence", event_date, "position", filter_offset${extra})
     SELECT $1, r.instance_id, statement_timestamp(), r.aggregate_id, r.aggregate_type, r."sequence", r.event_date, r."position", r.filter_offset${extra.replace(', ', ', r.')}
     FROM jsonb_to_recordset($2::jsonb) AS r(instance_id text, aggregate_id text, aggregate_type text, "sequence" bigint,
                                             event_date timestamptz, "position" numeric, filter_offset int, in_tx_order int)
     ON CONFLICT (projection_name, instance_id) DO UPDATE SET
       last_updated = EXCLUDED.last_updated, aggregate_id = EXCLUDED.aggregate_id, aggregate_type = EXCLUDED.aggregate_type,
       "sequence" = EXCLUDED."sequence", event_date = EXCLUDED.event_date, "position" = EXCLUDED."position",
       filter_offset = EXCLUDED.filter_offset${shape.inTxOrder ? ', in_tx_order = EXCLUDED.in_tx_order' : ''}`,
    values: [projection, JSON.stringify(rows)],
  };
}

/** Records failed events (of any instances) in `projections.failed_events2` in one statement, counting repeated failures. */
export async function recordFailures(db: Queryable, projection: string, failures: readonly FailedEvent[]): Promise<void> {
  if (failures.length === 0) return;
  const st = failuresStatement(projection, failures);
  await db.query(st.text, [...st.values]);
}

/** The statement of {@link recordFailures}. */
export function failuresStatement(projection: string, failures: readonly FailedEvent[]): BatchStatement {
  const rows = failures.map((f) => ({
    instance_id: f.event.instanceId,
    aggregate_type: f.event.aggregateType,
    aggregate_id: f.event.aggregateId,
    created_at: f.event.createdAt,
    sequence: f.event.sequence,
    error: f.error,
  }));
  return {
    text: `INSERT INTO projections.failed_events2
       (projection_name, instance_id, aggregate_type, aggregate_id, event_creation_date, failed_sequence, failure_count, error, last_failed)
     SELECT $1, r.instance_id, r.aggregate_type, r.aggregate_id, r.created_at, r."sequence", 1, r.error, statement_timestamp()
     FROM jsonb_to_recordset($2::jsonb) AS r(instance_id text, aggregate_type text, aggregate_id text, created_at timestamptz, "sequence" bigint, error text)
     ON CONFLICT (projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence) DO UPDATE SET
       failure_count = projections.failed_events2.failure_count + 1, error = EXCLUDED.error, last_failed = EXCLUDED.last_failed`,
    values: [projection, JSON.stringify(rows)],
  };
}

/** Tracks `filter_offset`: how many events of the stream share the position of the last one processed. */
export class OffsetCounter {
  constructor(
    private position: string | null,
    private count: number,
  ) {}

  add(event: ProjectionEvent): void {
    if (this.position !== null && samePosition(this.position, event.position)) this.count++;
    else {
      this.position = event.position;
      this.count = 1;
    }
  }

  get value(): number {
    return this.count;
  }
}

function samePosition(a: string, b: string): boolean {
  // Equal values differ in text only by trailing fraction zeros, which changes the length.
  if (a.length === b.length) return a === b;
  const norm = (s: string) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  return norm(a) === norm(b);
}
