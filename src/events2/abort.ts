import { sql } from 'kysely';
import type { Database, Tx } from '../db/connection.js';
import { withAdvisoryLock } from '../db/lock.js';
import { isDatabaseError, RefusedError, StepFailedError } from '../errors.js';
import type { LockHolder } from '../step.js';
import { readSteps } from '../steps-table.js';
import { captureState, dropCaptureTables, dropCaptureTriggers } from './capture.js';
import { eventTables } from './catalog.js';
import { CUT_OVER_LOCK_TIMEOUT_MS } from './cut-over.js';
import type { Events2Checkpoint } from './situation.js';
import { CHUNKS_TABLE, DIGESTS_TABLE, EVENTS2_TABLE, LEGACY_TABLE } from './sql.js';
import { dropProbeTable, PROBE_TABLE } from './throttle.js';

/** Inputs of {@link abortMove}. */
export interface AbortMoveOptions {
  readonly lockWaitMs: number;
  readonly onWait?: (holder: LockHolder | null, waitedMs: number) => void;
  readonly signal?: AbortSignal;
}

/** What `abort-move` did. */
export type AbortMoveResult =
  | { readonly status: 'aborted'; readonly removed: readonly string[]; readonly stage: string }
  | { readonly status: 'nothing-to-abort'; readonly reason: string };

const ATTEMPTS = 40;

/**
 * Removes everything an online move added before its cut-over: the capture triggers and functions,
 * the queue, eventstore.events2, the chunk list and digests, and the step's record (so `status` shows
 * it pending and a later `migrate` starts over). eventstore.events is never changed by the move before
 * its cut-over, so nothing of it needs restoring. Under the runner lock, so no migrate runs meanwhile.
 * Refuses (exit 5) after the cut-over, and when events2 is not the online move's.
 */
export async function abortMove(database: Database, options: AbortMoveOptions): Promise<AbortMoveResult> {
  return withAdvisoryLock(database, { waitMs: options.lockWaitMs, onWait: options.onWait, signal: options.signal }, async () => {
    const t = await eventTables(database.db);
    const capture = await captureState(database.db);
    const row = (await readSteps(database.db)).get('events2');
    const checkpoint = (row?.checkpoint ?? null) as Events2Checkpoint | null;
    const online = checkpoint?.mode === 'online';
    if (!t.legacy || (online && checkpoint.stage === 'verify')) {
      if (online || t.old) {
        throw new RefusedError(
          'the move already cut over: eventstore.events is now eventstore.events_old and eventstore.events2 is the event store; nothing was changed',
          'there is no move to abort; to go back to the old version, restore from a backup (or rename events_old back to events and drop events2, losing every event written since)',
        );
      }
      return { status: 'nothing-to-abort', reason: 'no events2 move is under way (there is no eventstore.events)' };
    }
    if (!capture.capturing && !capture.log && !online) {
      if (t.events2) {
        throw new RefusedError(
          'eventstore.events2 exists next to eventstore.events, but no online move of zsetup made it; nothing was changed',
          'inspect eventstore.events2 yourself: abort-move only removes what zsetup\'s online move added',
        );
      }
      return { status: 'nothing-to-abort', reason: 'no online move is under way (no capture on eventstore.events)' };
    }
    const removed = await removeWithRetry(database);
    return { status: 'aborted', removed, stage: checkpoint?.stage ?? 'unknown' };
  });
}

/** DROP TRIGGER needs ACCESS EXCLUSIVE on eventstore.events: short lock waits, retried, as the cut-over does. */
async function removeWithRetry(database: Database): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await database.db.transaction().execute((tx) => remove(tx));
    } catch (err) {
      if (!(isDatabaseError(err) && err.code === '55P03')) throw err;
      if (attempt >= ATTEMPTS) {
        throw new StepFailedError(
          `could not remove the capture: the lock on eventstore.events was not granted in ${attempt} attempts of ${CUT_OVER_LOCK_TIMEOUT_MS} ms; nothing was changed`,
          'a long transaction on eventstore.events holds it; let it finish and run `zsetup abort-move` again',
        );
      }
      await new Promise((r) => setTimeout(r, Math.min(5000, 100 * attempt) * (0.5 + Math.random() / 2)));
    }
  }
}

async function remove(tx: Tx): Promise<string[]> {
  const exists = async (name: string) => (await sql<{ e: boolean }>`SELECT to_regclass(${name}) IS NOT NULL AS e`.execute(tx)).rows[0].e;
  const removed: string[] = [];
  await sql.raw(`SET LOCAL lock_timeout = '${CUT_OVER_LOCK_TIMEOUT_MS}ms'`).execute(tx);
  // Triggers first: from then on the old version writes as if zsetup had never been there.
  if ((await captureState(tx)).capturing) removed.push('the capture triggers on eventstore.events');
  await dropCaptureTriggers(tx, LEGACY_TABLE);
  await sql`RESET lock_timeout`.execute(tx);
  for (const [name, what] of [['zsetup.events2_log', 'the capture queue'], [EVENTS2_TABLE, EVENTS2_TABLE], [CHUNKS_TABLE, 'the chunk list'], [DIGESTS_TABLE, 'the digests'], [PROBE_TABLE, 'the throttle\'s probe table']] as const) {
    if (await exists(name)) removed.push(what);
  }
  await dropCaptureTables(tx);
  await dropProbeTable(tx);
  await sql.raw(`DROP TABLE IF EXISTS ${EVENTS2_TABLE}, ${CHUNKS_TABLE}, ${DIGESTS_TABLE}`).execute(tx);
  if (await exists('zsetup.steps')) await sql`DELETE FROM zsetup.steps WHERE id = 'events2'`.execute(tx);
  return removed;
}
