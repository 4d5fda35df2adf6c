import { sql } from 'kysely';
import type { Tx } from '../db/connection.js';
import type { StepPlan } from '../step.js';
import { ALL_INSTANCES, conversionCtes, PUSHED_EVENT, REACHED_EVENT } from './events-sql.js';
import { findRejectedRows, inspectSource, referenceStepsDone } from './source.js';

/** The dry-run figures of the conversion. */
export interface ConversionForecast {
  readonly instances: number;
  readonly instancesToConvert: number;
  readonly instancesSkipped: number;
  readonly reachedEvents: number;
  readonly pushedEvents: number;
  readonly eventsAlreadyPresent: number;
  /** Old rows with neither a reached nor a pushed date: nothing to convert. */
  readonly rowsNotReached: number;
}

/**
 * Plans the conversion read-only: the same CTEs the batches use, over every instance at once, so the
 * figures are exactly what a run would write now. Works before events2 exists (nothing converted yet).
 */
export async function planMilestones(tx: Tx): Promise<StepPlan> {
  const source = await inspectSource(tx);
  if (!source.oldTable) {
    return { action: 'nothing to do: projections.milestones does not exist', willChange: false, details: { oldTable: false } };
  }
  const rejected = await findRejectedRows(tx);
  const forecast = await forecastConversion(tx, source.events2);
  const referenceDone = source.events2 ? await referenceStepsDone(tx) : [];
  const notes: string[] = [];
  if (!source.events2) notes.push('eventstore.events2 does not exist yet: the events2 step creates it first; nothing is converted yet');
  if (referenceDone.length > 0) notes.push(`the reference system recorded ${referenceDone.join(', ')} as done; its events are kept and not written again`);
  for (const r of rejected.rows) notes.push(`rejected: instance ${JSON.stringify(r.instanceId)} type ${r.type}: ${r.reason}`);
  if (rejected.count > rejected.rows.length) notes.push(`rejected: … and ${rejected.count - rejected.rows.length} more`);
  const events = forecast.reachedEvents + forecast.pushedEvents;
  const action = rejected.count > 0
    ? `refuse: ${rejected.count} milestone row(s) cannot be converted (nothing would be written)`
    : events > 0
      ? `write ${forecast.reachedEvents} reached and ${forecast.pushedEvents} pushed milestone event(s) for ${forecast.instancesToConvert} instance(s)`
      : `nothing to convert (${forecast.instancesSkipped} instance(s) already converted)`;
  return {
    action,
    willChange: rejected.count > 0 || events > 0,
    details: { oldTable: true, events2: source.events2, ...forecast, rejectedRows: rejected.count, referenceStepsDone: referenceDone },
    notes,
  };
}

async function forecastConversion(tx: Tx, events2Exists: boolean): Promise<ConversionForecast> {
  const r = await sql<ConversionForecast>`
    WITH ${conversionCtes(ALL_INSTANCES, events2Exists)}
    SELECT (SELECT count(*) FROM batch)::int AS instances,
           (SELECT count(DISTINCT instance_id) FROM todo)::int AS "instancesToConvert",
           (SELECT count(*) FROM batch)::int - (SELECT count(DISTINCT instance_id) FROM todo)::int AS "instancesSkipped",
           (SELECT count(*) FROM todo WHERE event_type = ${REACHED_EVENT})::int AS "reachedEvents",
           (SELECT count(*) FROM todo WHERE event_type = ${PUSHED_EVENT})::int AS "pushedEvents",
           ((SELECT count(*) FROM wanted) - (SELECT count(*) FROM todo))::int AS "eventsAlreadyPresent",
           (SELECT count(*) FROM projections.milestones WHERE reached_date IS NULL AND last_pushed_date IS NULL)::int AS "rowsNotReached"`.execute(tx);
  return r.rows[0];
}
