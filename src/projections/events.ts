import type pg from 'pg';
import type { ProjectionModel } from './model.js';
import { addToPosition, comparePositions, minPosition, positionSpan } from './position.js';
import type { ProjectionEvent } from './types.js';

/** Anything that runs a query: a pool, a client, or an adapter over a kysely transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = any>(text: string | pg.QueryConfig | pg.QueryArrayConfig, values?: unknown[]): Promise<{ rows: R[] }>;
}

/** Where a projection stands in one instance's stream: the last event it processed. */
export interface StreamKey {
  readonly position: string;
  readonly inTxOrder: number;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly sequence: number;
}

/**
 * The end point of a prefill: an exclusive upper bound on `position` below which no event can still
 * appear. Transactions still open may commit events whose position (their start, or the insert time)
 * lies before events already visible, so the bound is the start of the oldest open transaction in this
 * database, or the current time when none is open. Waits up to `waitMs` for open transactions to end
 * so the bound is not held back by a short write. Autovacuum workers do not count: they never write
 * events, and an autovacuum of the freshly moved events2 would otherwise hold the bound back behind the
 * events the same run's milestones step just wrote.
 */
export async function captureEndPoint(db: Queryable, waitMs = 2000): Promise<{ position: string; openTransactions: number }> {
  const started = Date.now();
  for (;;) {
    const r = await db.query<{ bound: string; open: string }>(`
      WITH open AS (
        SELECT xact_start FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle' AND xact_start IS NOT NULL
          AND backend_type <> 'autovacuum worker')
      SELECT EXTRACT(EPOCH FROM LEAST(statement_timestamp(), (SELECT min(xact_start) FROM open)))::numeric::text AS bound,
             (SELECT count(*) FROM open)::text AS open`);
    const { bound, open } = r.rows[0];
    if (Number(open) === 0 || Date.now() - started >= waitMs) return { position: bound, openTransactions: Number(open) };
    await new Promise((res) => setTimeout(res, 100));
  }
}

/**
 * The instances a prefill covers: ids present in `eventstore.events2` (a skip scan over the index led
 * by instance_id), without those whose latest `instance.added` / `instance.removed` event is a removal.
 * ZITADEL's own prefill takes the added-minus-removed list (spec zitadel-handoff.md §4.4) and never
 * touches a removed instance, so none of its rows nor positions are written. Ids without any instance
 * event (not written by ZITADEL) are kept.
 */
export async function listInstances(db: Queryable): Promise<string[]> {
  const r = await db.query<{ instance_id: string }>(`
    WITH RECURSIVE i(instance_id) AS (
      (SELECT instance_id FROM eventstore.events2 ORDER BY instance_id LIMIT 1)
      UNION ALL
      SELECT (SELECT e.instance_id FROM eventstore.events2 e WHERE e.instance_id > i.instance_id ORDER BY e.instance_id LIMIT 1)
      FROM i WHERE i.instance_id IS NOT NULL)
    SELECT instance_id FROM i
    WHERE instance_id IS NOT NULL
      AND (SELECT e.event_type FROM eventstore.events2 e
           WHERE e.instance_id = i.instance_id AND e.aggregate_type = 'instance' AND e.event_type IN ('instance.added', 'instance.removed')
           ORDER BY e."position" DESC, e.in_tx_order DESC LIMIT 1) IS DISTINCT FROM 'instance.removed'`);
  return r.rows.map((x) => x.instance_id);
}

/** Events a projection still has to process in one instance, and where they start. */
export interface Backlog {
  readonly instanceId: string;
  readonly events: number;
  readonly firstPosition: string | null;
}

/**
 * Counts, per instance, the projection's events after `from` and before the end point. One round trip.
 * Events after the recorded position are counted from the index alone (an index-only scan where the
 * visibility map allows); only those at the recorded position itself need the rest of the key.
 */
export async function countBacklog(
  db: Queryable,
  model: ProjectionModel,
  instances: readonly string[],
  from: ReadonlyMap<string, StreamKey>,
  endPoint: string,
): Promise<Backlog[]> {
  const keys = instances.map((i) => from.get(i));
  const r = await db.query<{ instance_id: string; n: string; first: string | null }>(
    `SELECT s.instance_id, (later.n + same.n)::text AS n, LEAST(later.first, same.first)::text AS first
     FROM unnest($1::text[], $2::numeric[], $3::int[], $4::text[], $5::text[], $6::bigint[])
          AS s(instance_id, p, o, t, a, q),
     LATERAL (SELECT count(*) AS n, min(e."position") AS first FROM eventstore.events2 e
              WHERE e.instance_id = s.instance_id AND e.aggregate_type = ANY($7) AND e.event_type = ANY($8)
                AND e."position" < $9::numeric AND (s.p IS NULL OR e."position" > s.p)) AS later,
     LATERAL (SELECT count(*) AS n, min(e."position") AS first FROM eventstore.events2 e
              WHERE s.p IS NOT NULL AND e.instance_id = s.instance_id AND e.aggregate_type = ANY($7) AND e.event_type = ANY($8)
                AND e."position" = s.p AND e."position" < $9::numeric
                AND (e.in_tx_order, e.aggregate_type, e.aggregate_id, e."sequence") > (s.o, s.t, s.a, s.q)) AS same`,
    [
      instances,
      keys.map((k) => k?.position ?? null),
      keys.map((k) => k?.inTxOrder ?? null),
      keys.map((k) => k?.aggregateType ?? null),
      keys.map((k) => k?.aggregateId ?? null),
      keys.map((k) => k?.sequence ?? null),
      model.aggregateTypes,
      model.eventTypes,
      endPoint,
    ],
  );
  return r.rows.map((x) => ({ instanceId: x.instance_id, events: Number(x.n), firstPosition: x.first }));
}

// Every column as text: exact positions and microsecond timestamps, and one JSON.parse per payload.
const RAW: pg.CustomTypesConfig = { getTypeParser: () => (v: string) => v } as pg.CustomTypesConfig;

/** Where one instance's part of a projection's stream starts. */
export interface StreamStart {
  readonly instanceId: string;
  /** The last event processed (from current_states), or null when the projection never ran there. */
  readonly from: StreamKey | null;
  /** The instance's first event to process (from countBacklog). */
  readonly firstPosition: string | null;
}

/** The order of a stream across instances; for one instance it is the order of that instance's stream. */
const STREAM_ORDER = `e."position", e.in_tx_order, e.instance_id, e.aggregate_type, e.aggregate_id, e."sequence"`;

/** The narrowest window: one microsecond, the resolution of positions written by PostgreSQL. */
const MIN_DELTA = 0.000001;

/**
 * Sorts a window's events by (position, in_tx_order) in place, keyed by `Number(position)`: rounding to
 * the nearest double never inverts two positions, so the order is exact unless two different positions
 * round to the same double, which shows as neighbours with equal keys and different text. Returns false
 * then, for a position that is not a finite number, and when the order is not total (two events share
 * position and in_tx_order, so the remaining key columns decide, in the database's collation); the
 * caller then lets PostgreSQL sort.
 */
function sortWindow(events: ProjectionEvent[]): boolean {
  const keyed: { readonly at: number; readonly order: number; readonly event: ProjectionEvent }[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const event = events[i];
    const at = Number(event.position);
    if (!Number.isFinite(at)) return false;
    keyed[i] = { at, order: event.inTxOrder, event };
  }
  keyed.sort((a, b) => a.at - b.at || a.order - b.order);
  for (let i = 1; i < keyed.length; i++) {
    const a = keyed[i - 1];
    const b = keyed[i];
    if (a.at === b.at && (a.order === b.order || a.event.position !== b.event.position)) return false;
  }
  for (let i = 0; i < keyed.length; i++) events[i] = keyed[i].event;
  return true;
}

/** Default of StreamReader's `maxBytes`: 16 MiB of event text per batch. */
export const DEFAULT_BATCH_BYTES = 16 * 1024 * 1024;

/** Events read, with the size of each as read (see StreamReader's `maxBytes`) and their sum. */
interface EventsRead {
  readonly events: ProjectionEvent[];
  readonly sizes: number[];
  readonly bytes: number;
  /** The payloads reached the read's `budget`: rows after them may have been left out (see StreamReader.query). */
  readonly capped: boolean;
}

/**
 * How a window is read: every row unsorted (Node sorts), or sorted by PostgreSQL after a key and limited;
 * either way with at most about `budget` bytes of payload text (one payload more at most).
 */
type WindowRead =
  | { readonly sorted: false; readonly cap: number; readonly budget: number }
  | { readonly sorted: true; readonly limit: number; readonly after: ProjectionEvent | null; readonly budget: number };

/**
 * Reads a projection's events of several instances as one stream, ordered by position, in batches.
 * Each instance's events start after its recorded key (compared in SQL, so text order is the
 * database's collation). The stream is read in windows of positions sized to hold about one batch,
 * so a query reads only the index entries it returns (the index orders by event type before
 * position). A window is read whole and unsorted, then sorted in Node by (position, in_tx_order):
 * sorting in PostgreSQL cost several times the rest of the read. PostgreSQL still sorts where that
 * is not enough:
 * - a window holding more than twice a batch is narrowed (up to three times); one that stays too
 *   full (one large transaction shares a position) is read sorted, a batch at a time, each read
 *   continuing after the last event returned;
 * - a window where two events share (position, in_tx_order) is read sorted, so the remaining key
 *   columns order as in the database (events of one transaction never do).
 * A batch holds at most twice `batchSize` events, and at most `maxBytes` of event text (the payload's
 * JSON and the other columns as read, counted in characters) unless a single event is larger: batch
 * sizes count events, and large payloads (SAML metadata, for instance) would otherwise leave memory
 * unbounded. The byte budget caps how many rows a read may return, by the size of the events read
 * last; a window over budget is narrowed, and a sorted read keeps only what fits.
 */
export class StreamReader {
  /** The last event returned when a window was left part read; the next read continues after it. */
  private after: ProjectionEvent | null = null;
  /** Times the current window was narrowed because it held too many events. */
  private shrinks = 0;
  private scanFrom: string;
  private delta: number;
  private finished = false;
  /** Average size of the events of the last read, to cap a read by the byte budget. */
  private eventSize = 256;
  /** Event text of the batch `next` returned last (see `maxBytes`): what a prefill's memory budget accounts. */
  lastBytes = 0;
  /** Instances by the position their stream starts at, earliest first. */
  private readonly starts: readonly (StreamStart & { readonly start: string })[];

  constructor(
    private readonly db: Queryable,
    private readonly model: ProjectionModel,
    starts: readonly StreamStart[],
    private readonly endPoint: string,
    private readonly batchSize: number,
    events: number,
    private readonly maxBytes: number = DEFAULT_BATCH_BYTES,
  ) {
    this.starts = starts
      .map((s) => ({ ...s, start: s.from?.position ?? s.firstPosition ?? endPoint }))
      .sort((a, b) => comparePositions(a.start, b.start));
    this.scanFrom = this.starts[0]?.start ?? endPoint;
    const span = Math.max(positionSpan(this.scanFrom, endPoint), 0);
    this.delta = Math.max(MIN_DELTA, (span * batchSize) / Math.max(events, 1));
  }

  /**
   * The next batch in order (up to twice `batchSize` events and `maxBytes` of event text), or null when
   * the end point is reached. `maxBytes` of this batch alone overrides the reader's (a share of a budget).
   */
  async next(maxBytes = this.maxBytes): Promise<ProjectionEvent[] | null> {
    const batch: ProjectionEvent[] = [];
    let bytes = 0;
    this.lastBytes = 0;
    while (!this.finished && batch.length < this.batchSize / 2 && bytes < maxBytes / 2) {
      const windowEnd = minPosition(addToPosition(this.scanFrom, this.delta), this.endPoint);
      // The events the byte budget still takes, at the size of the events read last.
      const byBytes = Math.max(1, Math.floor((maxBytes - bytes) / this.eventSize));
      if (!this.after) {
        const cap = Math.min(2 * this.batchSize - batch.length, byBytes);
        const read = await this.read(windowEnd, { sorted: false, cap, budget: maxBytes - bytes });
        const fits = !read.capped && read.events.length <= cap && bytes + read.bytes <= maxBytes;
        if (!fits && this.shrinks < 3 && this.delta > MIN_DELTA) {
          // More than the batch can take: try a narrower window.
          this.shrinks++;
          this.delta = Math.max(MIN_DELTA, this.delta / 8);
          continue;
        }
        if (fits && sortWindow(read.events)) {
          for (const e of read.events) batch.push(e);
          bytes += read.bytes;
          this.windowDone(windowEnd, read.events.length);
          continue;
        }
      }
      // PostgreSQL sorts: a batch's worth, after the last event returned from this window so far.
      const limit = Math.min(this.batchSize - batch.length, byBytes);
      const read = await this.read(windowEnd, { sorted: true, limit, after: this.after, budget: maxBytes - bytes });
      // What the byte budget takes; a batch takes its first event whatever its size, so it advances.
      let kept = 0;
      for (; kept < read.events.length; kept++) {
        if (batch.length > 0 && bytes + read.sizes[kept] > maxBytes) break;
        batch.push(read.events[kept]);
        bytes += read.sizes[kept];
      }
      if (kept === read.events.length && kept < limit && !read.capped) {
        this.windowDone(windowEnd, kept);
        continue;
      }
      // Nothing fitted: the batch is full, and the next one reads these events again.
      if (kept === 0) break;
      // The window holds more: go on after the last event kept, with a window the returned rows' density calls for.
      const last = batch[batch.length - 1];
      const covered = positionSpan(this.scanFrom, last.position);
      this.after = last;
      this.scanFrom = last.position;
      this.delta = Math.max(MIN_DELTA, Math.min(this.delta / 2, (covered * this.batchSize) / kept));
      break;
    }
    this.lastBytes = bytes;
    return batch.length ? batch : null;
  }

  /**
   * Moves past a window read to its end. The next window is sized for about a batch by this one's
   * density, growing at most twofold: event density varies along the stream, and a window that holds
   * more than the cap is read for nothing.
   */
  private windowDone(windowEnd: string, events: number): void {
    this.after = null;
    this.shrinks = 0;
    this.scanFrom = windowEnd;
    if (comparePositions(windowEnd, this.endPoint) >= 0) this.finished = true;
    this.delta = Math.max(MIN_DELTA, Math.min(this.delta * Math.min(2, this.batchSize / Math.max(events, 1)), 1e12));
  }

  /**
   * The events of a window, read packed (see PACKED_COLUMNS), or column by column when a value
   * contains the separator.
   */
  private async read(windowEnd: string, how: WindowRead): Promise<EventsRead> {
    let { rows, width, capped } = await this.query(windowEnd, how, true);
    const events: ProjectionEvent[] = [];
    for (const row of rows) {
      const fields = row[0]!.split(SEPARATOR);
      if (fields.length !== PACKED_FIELDS) {
        ({ rows, width, capped } = await this.query(windowEnd, how, false));
        events.length = 0;
        for (const r of rows) events.push(toEvent(r.slice(0, width)));
        break;
      }
      events.push(packedEvent(fields, row[1]));
    }
    const sizes: number[] = new Array(rows.length);
    let bytes = 0;
    for (let i = 0; i < rows.length; i++) {
      let n = 0;
      for (let c = 0; c < width; c++) n += rows[i][c]?.length ?? 0;
      sizes[i] = n;
      bytes += n;
    }
    if (events.length) this.eventSize = Math.max(1, bytes / events.length);
    return { events, sizes, bytes, capped };
  }

  /**
   * A window's rows (at most the read's LIMIT), and whether the payload budget cut them short. The
   * budget is applied in PostgreSQL, so rows past it are never sent: a running sum of the payloads'
   * text in octets (never fewer than the characters Node counts), in the read's order, keeps each row
   * whose predecessors stay within `budget`. A read that reaches the budget is `capped`: the unsorted
   * read then narrows its window, the sorted one continues after its last event kept. The payload is
   * turned into text once per row (the LATERAL … OFFSET 0 keeps the planner from inlining it): its
   * output, length and running sum would otherwise each convert the jsonb again, which cost about as
   * much as the rest of the query.
   */
  private async query(windowEnd: string, how: WindowRead, packed: boolean): Promise<{ rows: (string | null)[][]; width: number; capped: boolean }> {
    // Only instances whose stream starts before the window's end can have events in it.
    const active = this.starts.filter((s) => comparePositions(s.start, windowEnd) < 0);
    if (active.length === 0) return { rows: [], width: 0, capped: false };
    const from = active.map((s) => s.from);
    const values: unknown[] = [
      active.map((s) => s.instanceId),
      from.map((k) => k?.position ?? null),
      from.map((k) => k?.inTxOrder ?? null),
      from.map((k) => k?.aggregateType ?? null),
      from.map((k) => k?.aggregateId ?? null),
      from.map((k) => k?.sequence ?? null),
      this.model.aggregateTypes,
      this.model.eventTypes,
      this.scanFrom,
      windowEnd,
      how.sorted ? how.limit : how.cap + 1,
    ];
    const l = how.sorted ? how.after : null;
    if (l) values.push(l.position, l.inTxOrder, l.instanceId, l.aggregateType, l.aggregateId, l.sequence);
    values.push(how.budget);
    const r = await this.db.query({
      text: `SELECT w.* FROM (
             SELECT ${packed ? PACKED_COLUMNS : COLUMNS}, octet_length(x.payload) AS len, sum(octet_length(x.payload)) OVER w AS run${
               how.sorted ? ', row_number() OVER w AS rn' : ''}
             FROM unnest($1::text[], $2::numeric[], $3::int[], $4::text[], $5::text[], $6::bigint[]) AS s(instance_id, p, o, t, a, q)
             JOIN eventstore.events2 e ON e.instance_id = s.instance_id
             CROSS JOIN LATERAL (SELECT e.payload::text AS payload OFFSET 0) x
             WHERE e.aggregate_type = ANY($7) AND e.event_type = ANY($8)
               AND e."position" >= $9::numeric AND e."position" < $10::numeric
               AND (s.p IS NULL OR (e."position", e.in_tx_order, e.aggregate_type, e.aggregate_id, e."sequence") > (s.p, s.o, s.t, s.a, s.q))${
                 l ? `\n               AND (${STREAM_ORDER}) > ($12::numeric, $13::int, $14::text, $15::text, $16::text, $17::bigint)` : ''}
             WINDOW w AS (${how.sorted ? `ORDER BY ${STREAM_ORDER} ` : ''}ROWS UNBOUNDED PRECEDING)) w
             WHERE coalesce(w.run - w.len, w.run, 0) <= $${values.length}::bigint
             ${how.sorted ? 'ORDER BY w.rn ' : ''}LIMIT $11`,
      values,
      types: RAW,
      // Rows as arrays: pg then builds no keyed object per row.
      rowMode: 'array',
    });
    // The trailing len, run (and rn) columns are the budget's, not the event's: rows keep them (no copy
    // per row), `width` says where the event's columns end.
    const rows = r.rows as unknown as (string | null)[][];
    // Packed: the fields and the payload; column by column: the same fields one each, and the payload.
    const width = packed ? 2 : PACKED_FIELDS + 1;
    let reached = 0;
    for (const row of rows) reached = Math.max(reached, Number(row[width + 1] ?? 0));
    return { rows, width, capped: reached > how.budget };
  }
}

const CREATED_AT = `to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** The stream query's columns, one by one (see toEvent). */
const COLUMNS = `e.instance_id, e.aggregate_type, e.aggregate_id, e.event_type, e."sequence", e.revision, e.creator, e.owner,
               x.payload, e."position", e.in_tx_order, ${CREATED_AT} AS created_at`;

/**
 * The stream query's columns packed into two: every column but the payload joined by a separator,
 * then the payload. Node then decodes two values per row instead of twelve, which costs less Node CPU
 * than it adds in PostgreSQL (BENCHMARKS-projections.md). Events2 columns are NOT NULL
 * (concat_ws would skip a NULL); a value containing the separator shows as a wrong field count, and
 * the window is read again column by column.
 */
const SEPARATOR = '\x1f';
const PACKED_FIELDS = 11;
const PACKED_COLUMNS = `concat_ws(E'\\x1f', e.instance_id, e.aggregate_type, e.aggregate_id, e.event_type, e."sequence", e.revision,
               e.creator, e.owner, e."position", e.in_tx_order, ${CREATED_AT}), x.payload`;

/** An event from a packed row: the fields in PACKED_COLUMNS order, and the payload. */
function packedEvent(f: string[], payload: string | null): ProjectionEvent {
  return {
    instanceId: f[0],
    aggregateType: f[1],
    aggregateId: f[2],
    eventType: f[3],
    sequence: Number(f[4]),
    revision: Number(f[5]),
    creator: f[6],
    owner: f[7],
    payload: payload === null ? null : JSON.parse(payload),
    position: f[8],
    inTxOrder: Number(f[9]),
    createdAt: f[10],
  };
}

/** An event from a row of the stream query read column by column (COLUMNS order). */
function toEvent(row: (string | null)[]): ProjectionEvent {
  const [payload] = row.splice(8, 1);
  return packedEvent(row as string[], payload);
}
