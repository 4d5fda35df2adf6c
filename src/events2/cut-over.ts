import { sql } from 'kysely';
import { isDatabaseError, StepFailedError } from '../errors.js';
import type { RunContext } from '../step.js';
import { backlog, dropCaptureTriggers, refuseUnsupportedWrites } from './capture.js';
import { applyQueued, catchUp, vacuumQueue, type CatchUpMeter } from './catch-up.js';
import type { Events2Checkpoint } from './situation.js';
import { LEGACY_TABLE, OLD_TABLE } from './sql.js';

/** How long one attempt waits for the ACCESS EXCLUSIVE lock: writers queue behind it for at most this long. */
export const CUT_OVER_LOCK_TIMEOUT_MS = 100;
/** Keys left in the queue when an attempt starts; more found under the lock rolls the attempt back. */
export const DRAIN_TARGET = 1_000;
export const DRAIN_LIMIT = 5_000;
/** Bound on every statement under the lock: a slower one is cancelled and the attempt rolled back. */
const UNDER_LOCK_STATEMENT_TIMEOUT_MS = 1_000;
const MAX_ATTEMPTS = 40;
const BACKOFF_BASE_MS = 200;
const BACKOFF_MAX_MS = 5_000;

/** What the successful cut-over did, recorded in the checkpoint and the summary. */
export interface CutOverRecord {
  readonly attempts: number;
  /** Keys drained under the lock. */
  readonly drained: number;
  /** From the lock granted to the commit returned, as this process measured it. */
  readonly lockHeldMs: number;
  /** From the LOCK statement sent to it being granted. */
  readonly lockWaitMs: number;
  readonly at: string;
}

/** An attempt that found more to drain than its budget: rolled back, retried after a catch-up. */
class DrainTooLarge extends Error {}

/**
 * The cut-over, retried: catch up to a small backlog, vacuum the queue, then in one transaction take
 * ACCESS EXCLUSIVE on eventstore.events with a short lock_timeout, drain the rest of the queue, check
 * it is empty and every key found its row, rename the table to events_old (inserts queued behind the
 * lock then fail with 42P01, as nothing takes the old name), drop the capture triggers and record the
 * checkpoint. A lock timeout or a too-large drain rolls back (nothing lost) and retries after a jittered
 * backoff; other sessions are never cancelled.
 */
export async function cutOver(ctx: RunContext<Events2Checkpoint>, meter: CatchUpMeter, total: number): Promise<CutOverRecord> {
  for (let attempt = 1; ; attempt++) {
    await catchUp(ctx, meter, DRAIN_TARGET);
    await vacuumQueue(ctx);
    ctx.throwIfStopped();
    try {
      return await attemptCutOver(ctx, attempt, total);
    } catch (err) {
      const why = retryReason(err);
      if (!why) throw err;
      if (attempt >= MAX_ATTEMPTS) {
        throw new StepFailedError(
          `the cut-over did not succeed in ${attempt} attempts (last: ${why}); eventstore.events is untouched and the capture stays on`,
          'see which sessions hold locks on eventstore.events (pg_locks, pg_stat_activity) and rerun `zsetup migrate`: it catches up and tries again',
        );
      }
      const holders = isDatabaseError(err) && err.code === '55P03' ? await lockHolders(ctx) : '';
      const wait = backoff(attempt);
      ctx.log(`cut-over attempt ${attempt} rolled back (${why}${holders ? `; held by ${holders}` : ''}); retrying in ${wait} ms`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

async function attemptCutOver(ctx: RunContext<Events2Checkpoint>, attempt: number, total: number): Promise<CutOverRecord> {
  let granted = 0;
  let lockWaitMs = 0;
  let drained = 0;
  await ctx.transaction(async (tx) => {
    ctx.progress({ phase: 'cut-over', done: attempt - 1, total: null, unit: 'attempts' });
    await sql.raw(`SET LOCAL lock_timeout = '${CUT_OVER_LOCK_TIMEOUT_MS}ms'`).execute(tx);
    const asked = performance.now();
    await sql.raw(`LOCK TABLE ${LEGACY_TABLE} IN ACCESS EXCLUSIVE MODE`).execute(tx);
    granted = performance.now();
    lockWaitMs = granted - asked;
    // Its own phase, so it is always emitted: the fault suite kills the process here, lock held.
    ctx.progress({ phase: 'cut-over locked', done: attempt, total: null, unit: 'attempts' });
    await sql.raw(`SET LOCAL statement_timeout = '${UNDER_LOCK_STATEMENT_TIMEOUT_MS}ms'`).execute(tx);
    await refuseUnsupportedWrites(tx);
    const queued = await backlog(tx);
    if (queued > DRAIN_LIMIT) throw new DrainTooLarge(`${queued} events to drain under the lock, more than ${DRAIN_LIMIT}`);
    drained = (await applyQueued(tx, null, ctx.database.serverVersionNum)).applied;
    if ((await backlog(tx)) !== 0) throw new Error('the capture queue is not empty after the drain under the lock; rolled back');
    await sql.raw(`ALTER TABLE ${LEGACY_TABLE} RENAME TO events_old`).execute(tx);
    await dropCaptureTriggers(tx, OLD_TABLE);
    const record: CutOverRecord = { attempts: attempt, drained, lockHeldMs: 0, lockWaitMs: Math.round(lockWaitMs), at: new Date().toISOString() };
    await ctx.saveCheckpoint(tx, { mode: 'online', stage: 'verify', total, cutOver: record });
  });
  const lockHeldMs = Math.round(performance.now() - granted);
  const record: CutOverRecord = { attempts: attempt, drained, lockHeldMs, lockWaitMs: Math.round(lockWaitMs), at: new Date().toISOString() };
  await ctx.transaction((tx) => ctx.saveCheckpoint(tx, { mode: 'online', stage: 'verify', total, cutOver: record }));
  ctx.progress({ phase: 'cut-over', done: attempt, total: attempt, unit: 'attempts' });
  ctx.log(`cut over on attempt ${attempt}: lock held ${lockHeldMs} ms (waited ${record.lockWaitMs} ms), ${drained} event(s) drained under it; eventstore.events is now events_old`);
  return record;
}

/** Why an attempt may be retried, or null when the error is real. */
function retryReason(err: unknown): string | null {
  if (err instanceof DrainTooLarge) return err.message;
  if (isDatabaseError(err) && err.code === '55P03') return `lock not granted within ${CUT_OVER_LOCK_TIMEOUT_MS} ms`;
  if (isDatabaseError(err) && err.code === '57014') return `a statement under the lock ran over ${UNDER_LOCK_STATEMENT_TIMEOUT_MS} ms`;
  // Deadlock with a writer that upgraded its lock: the server already chose us as the victim.
  if (isDatabaseError(err) && err.code === '40P01') return 'deadlock with another session';
  return null;
}

/** Full jitter over an exponential bound. */
function backoff(attempt: number): number {
  const bound = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt - 1, 8));
  return Math.round(bound / 2 + Math.random() * (bound / 2));
}

/** Sessions holding a lock on eventstore.events, for the retry message. */
async function lockHolders(ctx: RunContext<Events2Checkpoint>): Promise<string> {
  const r = await sql<{ pid: number; app: string; state: string; since: string | null; mode: string }>`
    SELECT l.pid, coalesce(a.application_name, '') AS app, coalesce(a.state, '') AS state, l.mode,
           to_char(a.xact_start, 'YYYY-MM-DD"T"HH24:MI:SS') AS since
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'relation' AND l.relation = to_regclass(${LEGACY_TABLE}) AND l.granted AND l.pid <> pg_backend_pid()
    ORDER BY a.xact_start NULLS LAST LIMIT 3`.execute(ctx.db).catch(() => ({ rows: [] }));
  return r.rows.map((h) => `pid ${h.pid}${h.app ? ` (${h.app})` : ''} ${h.mode}${h.state ? `, ${h.state}` : ''}${h.since ? ` since ${h.since}` : ''}`).join('; ');
}
