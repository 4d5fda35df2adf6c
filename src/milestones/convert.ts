import { sql } from 'kysely';
import type { Tx } from '../db/connection.js';
import { isDatabaseError } from '../errors.js';
import type { RunContext } from '../step.js';
import { conversionCtes, MILESTONE_AGGREGATE, PUSHED_EVENT, REACHED_EVENT, type InstanceRange } from './events-sql.js';

/** What the conversion has done so far; stored as the step's checkpoint after every batch. */
export interface ConversionCheckpoint {
  /** The highest instance id whose events are committed; batches resume after it. */
  readonly lastInstanceId: string;
  readonly instancesConverted: number;
  readonly instancesSkipped: number;
  readonly reachedEvents: number;
  readonly pushedEvents: number;
  readonly eventsAlreadyPresent: number;
}

/** Counts of one batch (and, summed, of the whole conversion). */
export interface ConversionCounts {
  readonly instancesConverted: number;
  /** Instances whose every event already existed (an earlier run or the reference system). */
  readonly instancesSkipped: number;
  readonly reachedEvents: number;
  readonly pushedEvents: number;
  /** Events the old rows call for that the milestone aggregates already held. */
  readonly eventsAlreadyPresent: number;
}

/** Inputs of {@link convertMilestones}. */
export interface ConvertOptions {
  /** Instances per transaction. Default is 500. */
  readonly batchSize?: number;
}

const ZERO: ConversionCounts = { instancesConverted: 0, instancesSkipped: 0, reachedEvents: 0, pushedEvents: 0, eventsAlreadyPresent: 0 };

/** A concurrent writer took a sequence we computed, or a lock cycle: the batch is simply redone. */
const RETRYABLE = new Set(['23505', '40P01', '40001']);
const ATTEMPTS_PER_BATCH = 3;

/**
 * Converts the old milestone rows instance batch by instance batch, in instance-id order. Each batch is
 * one transaction: lock the batch's milestone aggregates, append the missing events with one
 * INSERT … SELECT, store the checkpoint. A crash loses at most the open batch, and a rerun neither
 * repeats nor skips an event, because every batch writes only the events its aggregates still lack.
 */
export async function convertMilestones(
  ctx: RunContext<ConversionCheckpoint>,
  options: ConvertOptions = {},
): Promise<ConversionCounts> {
  const batchSize = options.batchSize ?? 500;
  // add() keeps only the counts of a stored checkpoint.
  let totals = add(ZERO, ctx.checkpoint ?? ZERO);
  let after = ctx.checkpoint?.lastInstanceId ?? null;
  const { total, done: alreadyDone } = await countInstances(ctx, after);
  let done = alreadyDone;
  ctx.progress({ phase: 'convert', done, total, unit: 'instances' });
  for (;;) {
    ctx.throwIfStopped();
    const batch = await withRetry(() =>
      ctx.transaction(async (tx) => {
        const upTo = await batchEnd(tx, after, batchSize);
        if (upTo === null) return null;
        const counts = await convertBatch(tx, { after, upTo });
        await ctx.saveCheckpoint(tx, { lastInstanceId: upTo, ...add(totals, counts) });
        return { upTo, counts };
      }),
    );
    if (batch === null) break;
    after = batch.upTo;
    totals = add(totals, batch.counts);
    done += batch.counts.instancesConverted + batch.counts.instancesSkipped;
    ctx.progress({ phase: 'convert', done, total, unit: 'instances' });
  }
  return totals;
}

async function countInstances(ctx: RunContext<ConversionCheckpoint>, after: string | null): Promise<{ total: number; done: number }> {
  const r = await sql<{ total: number; done: number }>`
    SELECT count(DISTINCT instance_id)::int AS total,
           count(DISTINCT instance_id) FILTER (WHERE ${after}::text IS NOT NULL AND instance_id <= ${after}::text)::int AS done
    FROM projections.milestones WHERE reached_date IS NOT NULL`.execute(ctx.db);
  return r.rows[0];
}

/** The last instance id of the next batch, or null when no instance is left. */
async function batchEnd(tx: Tx, after: string | null, batchSize: number): Promise<string | null> {
  const r = await sql<{ last: string | null }>`
    SELECT max(instance_id) AS last FROM (
      SELECT DISTINCT instance_id FROM projections.milestones
      WHERE reached_date IS NOT NULL AND (${after}::text IS NULL OR instance_id > ${after}::text)
      ORDER BY instance_id LIMIT ${batchSize}
    ) next_batch`.execute(tx);
  return r.rows[0]?.last ?? null;
}

/**
 * One batch: lock the existing rows of the batch's milestone aggregates (a writer that locks the
 * latest row, as the reference pusher does, waits for us; one that does not collides on the primary
 * key and the batch is retried), then append the missing events numbered after each aggregate's
 * highest sequence. All events of the batch share the transaction's time as `created_at` and
 * `position`; `in_tx_order` numbers them from 1 in instance, date, type order.
 */
async function convertBatch(tx: Tx, range: InstanceRange): Promise<ConversionCounts> {
  await sql`
    SELECT 1 FROM eventstore.events2 e
    WHERE e.aggregate_type = ${MILESTONE_AGGREGATE.type} AND e.aggregate_id = e.instance_id
      AND e.instance_id IN (
        SELECT instance_id FROM projections.milestones
        WHERE reached_date IS NOT NULL AND instance_id > ${range.after ?? ''}::text AND instance_id <= ${range.upTo}::text)
    FOR NO KEY UPDATE OF e`.execute(tx);
  const r = await sql<ConversionCounts & { instances: number }>`
    WITH ${conversionCtes(range, true)},
    current_max AS (
      SELECT b.instance_id, coalesce((
        SELECT max(e."sequence") FROM eventstore.events2 e
        WHERE e.instance_id = b.instance_id AND e.aggregate_type = ${MILESTONE_AGGREGATE.type} AND e.aggregate_id = b.instance_id
      ), 0) AS seq
      FROM batch b
    ),
    numbered AS (
      SELECT t.instance_id, t.event_type, t.payload,
             c.seq + row_number() OVER (PARTITION BY t.instance_id ORDER BY t.sort_date, t.type, t.kind) AS seq,
             row_number() OVER (ORDER BY t.instance_id, t.sort_date, t.type, t.kind) AS in_tx_order
      FROM todo t JOIN current_max c USING (instance_id)
    ),
    written AS (
      INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision,
                                      created_at, payload, creator, owner, "position", in_tx_order)
      SELECT instance_id, ${MILESTONE_AGGREGATE.type}, instance_id, event_type, seq, ${MILESTONE_AGGREGATE.revision},
             now(), payload, ${MILESTONE_AGGREGATE.creator}, instance_id, EXTRACT(EPOCH FROM now()), in_tx_order
      FROM numbered ORDER BY in_tx_order
      RETURNING instance_id, event_type
    )
    SELECT (SELECT count(*) FROM batch)::int AS instances,
           (SELECT count(DISTINCT instance_id) FROM written)::int AS "instancesConverted",
           (SELECT count(*) FROM written WHERE event_type = ${REACHED_EVENT})::int AS "reachedEvents",
           (SELECT count(*) FROM written WHERE event_type = ${PUSHED_EVENT})::int AS "pushedEvents",
           ((SELECT count(*) FROM wanted) - (SELECT count(*) FROM written))::int AS "eventsAlreadyPresent"`.execute(tx);
  const { instances, ...counts } = r.rows[0];
  return { ...counts, instancesSkipped: instances - counts.instancesConverted };
}

function add(a: ConversionCounts, b: ConversionCounts): ConversionCounts {
  return {
    instancesConverted: a.instancesConverted + b.instancesConverted,
    instancesSkipped: a.instancesSkipped + b.instancesSkipped,
    reachedEvents: a.reachedEvents + b.reachedEvents,
    pushedEvents: a.pushedEvents + b.pushedEvents,
    eventsAlreadyPresent: a.eventsAlreadyPresent + b.eventsAlreadyPresent,
  };
}

async function withRetry<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= ATTEMPTS_PER_BATCH || !isDatabaseError(err) || !RETRYABLE.has(err.code)) throw err;
    }
  }
}
