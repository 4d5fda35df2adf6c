import type { StepOptions, StepPlan } from '../step.js';
import { existingTables } from './ddl.js';
import { captureEndPoint, type Queryable } from './events.js';
import type { ProjectionModel } from './model.js';
import { projectionBacklog } from './prefill.js';

/**
 * The dry-run of one projection prefill. With eventstore.events2 in place it counts the real backlog
 * up to an end point; before the move (a legacy database, or a move still copying) it estimates the
 * events from the legacy table, whose rows carry the same aggregate and event types. Reads only.
 */
export async function planProjection(db: Queryable, model: ProjectionModel, options: StepOptions, eventsPerSecond: number): Promise<StepPlan> {
  const source = await eventSource(db);
  if (source === 'eventstore.events2') return planFromEvents2(db, model, eventsPerSecond);
  const tables = await existingTables(db, model);
  const tablesDetail = describeTables(model, tables);
  if (source === null) {
    return { action: `nothing to do yet: no events (the events2 step creates eventstore.events2)`, willChange: tables.length < model.tables.length, details: { eventsToProcess: 0, tables: tablesDetail } };
  }
  const counts = await legacyCounts(db, source, options);
  const events = countFor(counts, model);
  const shown = counts.exact ? events : roundEstimate(events);
  const where = `counted in ${source}: eventstore.events2 is not complete yet`;
  return {
    action: shown === 0
      ? `no events of its types yet (${where}); events earlier steps write are prefilled then`
      : `apply ${counts.exact ? '' : 'about '}${shown.toLocaleString('en-US')} events to ${model.name} (${where})`,
    willChange: true,
    details: {
      eventsToProcess: shown,
      eventsCounted: counts.exact ? 'exact' : 'estimate',
      countedIn: source,
      currentPosition: 'none (never prefilled)',
      tables: tablesDetail,
    },
    estimatedSeconds: Math.ceil(events / eventsPerSecond),
    notes: [
      'events that earlier steps of this run write (milestones-v2) are not in this count',
      ...(counts.exact ? [] : [`estimated from a sample of ${counts.sampledRows.toLocaleString('en-US')} rows; --exact counts them`]),
    ],
  };
}

async function planFromEvents2(db: Queryable, model: ProjectionModel, eventsPerSecond: number): Promise<StepPlan> {
  const bound = await captureEndPoint(db, 0);
  const tables = await existingTables(db, model);
  const { states, backlog, events } = await projectionBacklog(db, model, bound.position);
  const positions = [...states.values()].map((s) => s.key.position).sort((a, b) => Number(a) - Number(b));
  return {
    action: events === 0 ? `nothing to do: ${model.name} is at the head` : `apply ${events.toLocaleString('en-US')} events to ${model.name}`,
    willChange: events > 0 || tables.length < model.tables.length,
    details: {
      eventsToProcess: events,
      instancesWithEvents: backlog.length,
      instancesRecorded: states.size,
      currentPosition: positions.length ? `${positions[0]}${positions.length > 1 ? ` … ${positions[positions.length - 1]}` : ''}` : 'none (never prefilled)',
      tables: describeTables(model, tables),
      endPoint: bound.position,
    },
    estimatedSeconds: Math.ceil(events / eventsPerSecond),
    notes: bound.openTransactions > 0 ? [`${bound.openTransactions} open transaction(s) hold the end point back`] : undefined,
  };
}

function describeTables(model: ProjectionModel, existing: readonly string[]): string {
  return model.tables.map((t) => `${t.name} (${existing.includes(t.name) ? 'exists' : 'will be created'})`).join(', ');
}

/** Where the events are now: events2 once the move is complete, else the legacy table. Null: no events anywhere. */
async function eventSource(db: Queryable): Promise<string | null> {
  const r = await db.query<{ legacy: boolean; old: boolean; events2: boolean; copying: boolean }>(`
    SELECT to_regclass('eventstore.events') IS NOT NULL AS legacy, to_regclass('eventstore.events_old') IS NOT NULL AS old,
           to_regclass('eventstore.events2') IS NOT NULL AS events2, to_regclass('zsetup.events2_chunks') IS NOT NULL AS copying`);
  const t = r.rows[0];
  // An old version that still writes eventstore.events, or a copy in progress: the legacy table is complete, events2 is not.
  if (t.legacy) return 'eventstore.events';
  if (t.old && (!t.events2 || t.copying)) return 'eventstore.events_old';
  return t.events2 ? 'eventstore.events2' : null;
}

/** Events per aggregate type and event type in a legacy table, counted or scaled up from a sample. */
interface LegacyCounts {
  readonly exact: boolean;
  readonly sampledRows: number;
  /** `aggregate type` → `event type` → events. */
  readonly byType: ReadonlyMap<string, ReadonlyMap<string, number>>;
}

/** Blocks (8 kB each) read for the estimate without --exact. */
const SAMPLE_BLOCKS = 5_000;

/**
 * One count per dry-run, shared by all projections: a dry-run hands the same StepOptions object to
 * every step's plan, so it identifies the run (each plan has its own transaction).
 */
const countsOfRun = new WeakMap<StepOptions, Map<string, Promise<LegacyCounts>>>();

function legacyCounts(db: Queryable, source: string, options: StepOptions): Promise<LegacyCounts> {
  let bySource = countsOfRun.get(options);
  if (!bySource) countsOfRun.set(options, (bySource = new Map()));
  let counts = bySource.get(source);
  if (!counts) {
    counts = countLegacy(db, source, options.exact);
    bySource.set(source, counts);
  }
  return counts;
}

async function countLegacy(db: Queryable, source: string, exact: boolean): Promise<LegacyCounts> {
  const size = await db.query<{ blocks: string; tuples: string }>(
    `SELECT greatest(relpages, pg_relation_size(oid) / current_setting('block_size')::int)::text AS blocks, reltuples::bigint::text AS tuples
     FROM pg_class WHERE oid = $1::regclass`, [source]);
  const blocks = Math.max(1, Number(size.rows[0].blocks));
  const percent = exact ? 100 : Math.min(100, (SAMPLE_BLOCKS / blocks) * 100);
  const sample = percent >= 100 ? '' : ` TABLESAMPLE SYSTEM (${percent.toFixed(6)})`;
  const removed = await removedInstances(db, source);
  const r = await db.query<{ aggregate_type: string; event_type: string; n: string }>(
    `SELECT aggregate_type, event_type, count(*)::text AS n FROM ${source}${sample} WHERE instance_id <> ALL($1::text[]) GROUP BY 1, 2`, [removed]);
  const sampledRows = r.rows.reduce((n, x) => n + Number(x.n), 0);
  // Scale a sample to the table's row estimate (or, never analysed, to its blocks).
  const tuples = Number(size.rows[0].tuples);
  const scale = percent >= 100 || sampledRows === 0 ? 1 : (tuples > 0 ? tuples : sampledRows * (100 / percent)) / sampledRows;
  const byType = new Map<string, Map<string, number>>();
  for (const x of r.rows) {
    if (!byType.has(x.aggregate_type)) byType.set(x.aggregate_type, new Map());
    byType.get(x.aggregate_type)!.set(x.event_type, Number(x.n) * scale);
  }
  return { exact: percent >= 100, sampledRows, byType };
}

/**
 * Instances whose latest instance.added / instance.removed event is a removal: the prefill leaves them
 * out (see listInstances), so their events are not counted. A skip scan over the instance ids, then per
 * instance the index on (instance_id, aggregate_type, event_sequence) read backwards.
 */
async function removedInstances(db: Queryable, source: string): Promise<string[]> {
  const r = await db.query<{ instance_id: string }>(`
    WITH RECURSIVE i(instance_id) AS (
      (SELECT instance_id FROM ${source} ORDER BY instance_id LIMIT 1)
      UNION ALL
      SELECT (SELECT e.instance_id FROM ${source} e WHERE e.instance_id > i.instance_id ORDER BY e.instance_id LIMIT 1)
      FROM i WHERE i.instance_id IS NOT NULL)
    SELECT instance_id FROM i
    WHERE instance_id IS NOT NULL
      AND (SELECT e.event_type FROM ${source} e
           WHERE e.instance_id = i.instance_id AND e.aggregate_type = 'instance' AND e.event_type IN ('instance.added', 'instance.removed')
           ORDER BY e.event_sequence DESC LIMIT 1) = 'instance.removed'`);
  return r.rows.map((x) => x.instance_id);
}

/** The events a prefill reads: of any of its aggregate types and any of its event types, as countBacklog counts them. */
function countFor(counts: LegacyCounts, model: ProjectionModel): number {
  let n = 0;
  for (const aggregate of model.aggregateTypes) {
    const types = counts.byType.get(aggregate);
    for (const eventType of model.eventTypes) n += types?.get(eventType) ?? 0;
  }
  return Math.round(n);
}

/** An estimate to three significant digits: 13,086.4 → 13,100. */
function roundEstimate(n: number): number {
  if (n < 1000) return Math.round(n);
  const step = 10 ** (Math.floor(Math.log10(n)) - 2);
  return Math.round(n / step) * step;
}
