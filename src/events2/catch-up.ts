import { sql } from 'kysely';
import type { Tx } from '../db/connection.js';
import { isDatabaseError, RefusedError } from '../errors.js';
import type { RunContext } from '../step.js';
import { backlog, refuseUnsupportedWrites } from './capture.js';
import type { Events2Checkpoint } from './situation.js';
import { CATCH_UP_CHUNK, DIGESTS_TABLE, EVENTS2_TABLE, LEGACY_TABLE, LOG_TABLE, MAPPED_COLUMNS, rowHash, UNMAPPABLE_ROW } from './sql.js';

/** Keys applied per catch-up transaction: short transactions, a few hundred milliseconds each. */
export const CATCH_UP_BATCH = 20_000;
/** How often the catch-up counts its backlog and reports the write and drain rates. */
const REPORT_MS = 1000;

/** What one apply took from the queue and wrote to events2. */
export interface Applied {
  readonly taken: number;
  readonly applied: number;
}

/**
 * One statement: take up to `limit` keys out of the queue (all of them when null), read their rows
 * from eventstore.events by primary key, insert them into events2 and add their count and row hash
 * to the catch-up digest. The keys deleted are exactly the rows applied, in the same transaction;
 * nothing depends on the order in which writers committed.
 */
function applyStatement(limit: number | null, serverVersionNum: number): string {
  const picked = limit === null
    ? `DELETE FROM ${LOG_TABLE} RETURNING instance_id AS k_instance, event_sequence AS k_sequence`
    : `DELETE FROM ${LOG_TABLE} l USING (SELECT instance_id, event_sequence FROM ${LOG_TABLE} ORDER BY instance_id, event_sequence LIMIT ${limit}) p
       WHERE l.instance_id = p.instance_id AND l.event_sequence = p.event_sequence RETURNING l.instance_id AS k_instance, l.event_sequence AS k_sequence`;
  // A join, not IN: the keys are unique, and the planner then drives the lookups from the small side.
  return `
    WITH taken AS (${picked}),
    src AS MATERIALIZED (
      SELECT ${MAPPED_COLUMNS} FROM taken t JOIN ${LEGACY_TABLE} e ON e.event_sequence = t.k_sequence AND e.instance_id = t.k_instance
    ),
    copied AS (INSERT INTO ${EVENTS2_TABLE} SELECT * FROM src RETURNING 1),
    digested AS (
      INSERT INTO ${DIGESTS_TABLE} (chunk, instance_id, events, hash)
      SELECT ${CATCH_UP_CHUNK}, instance_id, count(*), sum(${rowHash('src', serverVersionNum)}) FROM src GROUP BY instance_id
      ON CONFLICT (chunk, instance_id) DO UPDATE SET events = ${DIGESTS_TABLE}.events + excluded.events, hash = ${DIGESTS_TABLE}.hash + excluded.hash
      RETURNING 1)
    SELECT (SELECT count(*) FROM taken)::int AS taken, (SELECT count(*) FROM copied)::int AS applied, (SELECT count(*) FROM digested)::int AS digested`;
}

/**
 * Applies queued keys inside `tx`. Every key must find its row (the table is insert-only while the
 * capture is on); a row the mapping cannot take is refused naming it.
 */
export async function applyQueued(tx: Tx, limit: number | null, serverVersionNum: number): Promise<Applied> {
  // Only index lookups: a key batch joined by the legacy primary key, never a scan of the table.
  await sql`SET LOCAL enable_hashjoin = off`.execute(tx);
  await sql`SET LOCAL enable_mergejoin = off`.execute(tx);
  try {
    const r = await sql.raw<{ taken: number; applied: number }>(applyStatement(limit, serverVersionNum)).execute(tx);
    const { taken, applied } = r.rows[0];
    if (taken !== applied) {
      throw new Error(`the capture queue held ${taken} key(s) but only ${applied} of their rows are in eventstore.events; rolled back`);
    }
    return { taken, applied };
  } catch (err) {
    // 22P02 / 22003: a revision or sequence the mapping's casts cannot take.
    if (isDatabaseError(err) && (err.code === '22P02' || err.code === '22003')) throw unmappable(err.message);
    throw err;
  }
}

function unmappable(message: string): Error {
  return new RefusedError(
    `the old version wrote event(s) during the online move that do not fit events2 (${message}); eventstore.events is untouched`,
    `inspect them with: SELECT * FROM ${LEGACY_TABLE} e WHERE (instance_id, event_sequence) IN (SELECT instance_id, event_sequence FROM ${LOG_TABLE}) AND ${UNMAPPABLE_ROW.replace(/\s+/g, ' ')}; then \`zsetup abort-move\``,
  );
}

/** Counters of the catch-up, kept across its rounds within one run. */
export class CatchUpMeter {
  applied = 0;
  private lastAt = Date.now();
  private lastBacklog: number | null = null;
  private appliedSince = 0;
  /** Keys per second the old version adds to the queue, and the catch-up takes out, over the last report. */
  writeRate = 0;
  drainRate = 0;

  /** Records applied keys. */
  add(n: number): void {
    this.applied += n;
    this.appliedSince += n;
  }

  /** Updates both rates from a fresh backlog count. */
  observe(queued: number): void {
    const now = Date.now();
    const dt = Math.max(0.001, (now - this.lastAt) / 1000);
    if (this.lastBacklog !== null) {
      this.writeRate = Math.max(0, (queued - this.lastBacklog + this.appliedSince) / dt);
      this.drainRate = this.appliedSince / dt;
    }
    this.lastAt = now;
    this.lastBacklog = queued;
    this.appliedSince = 0;
  }

  due(): boolean {
    return Date.now() - this.lastAt >= REPORT_MS;
  }
}

/**
 * Applies the queue in short transactions until at most `target` keys wait. Reports the backlog as
 * progress (`done` applied, `total` applied + waiting: rate is the drain rate, ETA the time to drain)
 * and the write rate in a line every few seconds. Refuses as soon as an UPDATE/DELETE/TRUNCATE shows.
 */
export async function catchUp(ctx: RunContext<Events2Checkpoint>, meter: CatchUpMeter, target: number): Promise<number> {
  await refuseUnsupportedWrites(ctx.db);
  let queued = await backlog(ctx.db);
  meter.observe(queued);
  let lastLine = 0;
  ctx.progress({ phase: 'catch-up', done: meter.applied, total: meter.applied + queued, unit: 'events' });
  while (queued > target) {
    ctx.throwIfStopped();
    const got = await ctx.transaction(async (tx) => {
      await sql`SET LOCAL statement_timeout = 0`.execute(tx);
      return applyQueued(tx, CATCH_UP_BATCH, ctx.database.serverVersionNum);
    });
    meter.add(got.applied);
    queued = Math.max(0, queued - got.taken);
    if (meter.due() || got.taken < CATCH_UP_BATCH) {
      await refuseUnsupportedWrites(ctx.db);
      queued = await backlog(ctx.db);
      meter.observe(queued);
      if (Date.now() - lastLine >= 10_000) {
        lastLine = Date.now();
        ctx.log(`catch-up: ${queued.toLocaleString('en-US')} event(s) waiting; the old version writes ${Math.round(meter.writeRate).toLocaleString('en-US')}/s, the catch-up applies ${Math.round(meter.drainRate).toLocaleString('en-US')}/s`);
      }
    }
    ctx.progress({ phase: 'catch-up', done: meter.applied, total: meter.applied + queued, unit: 'events' });
  }
  return queued;
}

/** Vacuums and analyses the queue, so the cut-over's statements on it see a small table and fresh statistics. */
export async function vacuumQueue(ctx: RunContext<Events2Checkpoint>): Promise<void> {
  await sql.raw(`VACUUM (ANALYZE) ${LOG_TABLE}`).execute(ctx.db);
}
