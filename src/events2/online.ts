import { sql } from 'kysely';
import { isDatabaseError, StepFailedError, VerifyMismatchError } from '../errors.js';
import type { RunContext, StepSummary } from '../step.js';
import { buildEvents2 } from './build.js';
import { backlog, captureTablesDdl, captureTriggersDdl, checkLegacyKey, dropCaptureTables } from './capture.js';
import { CatchUpMeter, catchUp } from './catch-up.js';
import { copyChunks, createChunks, finishCopy, ONLINE_SOURCE } from './copy.js';
import { CUT_OVER_LOCK_TIMEOUT_MS, cutOver, DRAIN_TARGET, type CutOverRecord } from './cut-over.js';
import { checkColumns, checkPrivileges, countAndValidate } from './preflight.js';
import type { Events2Checkpoint } from './situation.js';
import { createEvents2Table, DIGESTS_TABLE, EVENTS2_TABLE, LEGACY_TABLE } from './sql.js';
import { CopyThrottle, DEFAULT_THROTTLE, dropProbeTable, probeTableDdl, type ThrottleReport } from './throttle.js';
import { phaseTimer } from './timing.js';
import { compareDigests, describeMismatches, recordedDigests, sideDigests, verifyWithDigests } from './verify.js';

/** How the online move ends: with the cut-over, or (`--prepare`) caught up with the capture left on. */
export type OnlineEnd = 'cut-over' | 'prepare';

const CAPTURE_ATTEMPTS = 40;

/**
 * The online move: the old version keeps writing eventstore.events until the cut-over.
 *   capture  validate every row (as the offline cut-off does), then in one short transaction create
 *            the queue, the capture triggers, events2, the chunk list and the checkpoint
 *   copy     the chunks, each skipping the rows the capture queued
 *   build    the indexes and the primary key on events2 (plain CREATE INDEX: nobody else writes it), ANALYZE
 *   catch-up apply the queue in short transactions; verify events2 against the digests once
 *   cut-over one short transaction under ACCESS EXCLUSIVE (see cut-over.ts), retried
 *   verify   events_old, now frozen, against the digests of everything copied and applied
 * Resumes from `checkpoint` at any stage.
 */
export async function runOnline(ctx: RunContext<Events2Checkpoint>, start: Events2Checkpoint | null, end: OnlineEnd): Promise<StepSummary> {
  const { timings, timed } = phaseTimer();
  let cp: Events2Checkpoint = start ?? { mode: 'online', stage: 'copy', total: await timed('captureMs', () => startCapture(ctx)) };
  const total = cp.total;
  let throttled: ThrottleReport | undefined;
  if (cp.stage === 'copy') {
    throttled = await timed('copyMs', () => throttledCopy(ctx, total));
    cp = { mode: 'online', stage: 'build', total };
    await finishCopy(ctx, total, cp);
  }
  const meter = new CatchUpMeter();
  if (cp.stage === 'build') {
    ctx.throwIfStopped();
    await timed('indexMs', () => buildEvents2(ctx));
    cp = { mode: 'online', stage: 'catch-up', total };
    await ctx.transaction((tx) => ctx.saveCheckpoint(tx, cp));
  }
  if (cp.stage === 'catch-up') {
    await timed('catchUpMs', () => catchUp(ctx, meter, DRAIN_TARGET));
    if (!cp.events2Verified) {
      await timed('verifyMs', () => verifyCopy(ctx));
      cp = { ...cp, events2Verified: true };
      await ctx.transaction((tx) => ctx.saveCheckpoint(tx, cp));
    }
    if (end === 'prepare') return prepared(ctx, meter, timings, throttled);
    const record = await timed('cutOverMs', () => cutOver(ctx, meter, total));
    cp = { mode: 'online', stage: 'verify', total, cutOver: record };
  }
  const verified = await timed('verifyOldMs', () => verifySource(ctx));
  await ctx.transaction(async (tx) => {
    await dropCaptureTables(tx);
    await dropProbeTable(tx);
    await sql.raw(`DROP TABLE IF EXISTS ${DIGESTS_TABLE}`).execute(tx);
  });
  return summary(verified, cp.cutOver, meter, timings, throttled);
}

/**
 * The bulk copy of the live table; unless `--throttle off`, gated by the throttle (throttle.ts), whose
 * state shows in the progress note and whose report goes to the summary.
 */
async function throttledCopy(ctx: RunContext<Events2Checkpoint>, total: number): Promise<ThrottleReport | undefined> {
  if (ctx.options.throttle === 'off') {
    await copyChunks(ctx, total, ONLINE_SOURCE);
    return undefined;
  }
  const tuned = typeof ctx.options.throttle === 'object' ? ctx.options.throttle : {};
  const throttle = await CopyThrottle.start(ctx, ctx.options.concurrency, { ...DEFAULT_THROTTLE, ...tuned });
  const stopProbe = async () => {
    const report = await throttle.stop();
    if (report.throttledMs > 0) {
      ctx.log(`copy throttled ${formatSeconds(report.throttledMs)} (all of it paused ${formatSeconds(report.pausedMs)}) while the old version's commits were slow: probe ${report.probeP50Ms} ms median, ${report.probeP99Ms} ms p99, against ${report.probeBaselineMs} ms before the copy`);
    }
    return report;
  };
  try {
    await copyChunks(ctx, total, ONLINE_SOURCE, throttle);
  } catch (err) {
    await stopProbe();
    throw err;
  }
  return stopProbe();
}

/** The throttle's report and its two times, for a step summary; nothing when it was off. */
function throttleSummary(r: ThrottleReport | undefined): Record<string, unknown> {
  return r ? { copyThrottle: r, copyThrottledMs: r.throttledMs, copyPausedMs: r.pausedMs } : {};
}

/** `; the copy was throttled 12.0 s of it (paused 3.1 s) for the old version's writers`, or nothing. */
function throttleClause(r: ThrottleReport | undefined): string {
  if (!r || r.throttledMs === 0) return '';
  return `; the copy was throttled ${formatSeconds(r.throttledMs)} of it (paused ${formatSeconds(r.pausedMs)}) for the old version's writers`;
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Refuses what the offline move refuses (privileges, columns, unmappable rows) before anything is
 * written, then switches the capture on. Returns the events counted by the validating scan.
 */
async function startCapture(ctx: RunContext<Events2Checkpoint>): Promise<number> {
  ctx.progress({ phase: 'capture', done: 0, total: 1, unit: 'steps' });
  const counted = await ctx.transaction(async (tx) => {
    await sql`SET LOCAL statement_timeout = 0`.execute(tx);
    await checkPrivileges(tx, LEGACY_TABLE, true);
    await checkColumns(tx, LEGACY_TABLE);
    await checkLegacyKey(tx);
    return countAndValidate(tx, LEGACY_TABLE);
  });
  for (let attempt = 1; ; attempt++) {
    try {
      await installCapture(ctx, counted);
      break;
    } catch (err) {
      if (!(isDatabaseError(err) && err.code === '55P03')) throw err;
      if (attempt >= CAPTURE_ATTEMPTS) {
        throw new StepFailedError(
          `could not switch the capture on: the lock on eventstore.events was not granted in ${attempt} attempts of ${CUT_OVER_LOCK_TIMEOUT_MS} ms; nothing was changed`,
          'a long transaction that wrote eventstore.events holds it; let it finish and rerun `zsetup migrate`',
        );
      }
      await new Promise((r) => setTimeout(r, Math.min(5000, 100 * attempt) * (0.5 + Math.random() / 2)));
    }
  }
  ctx.progress({ phase: 'capture', done: 1, total: 1, unit: 'steps' });
  ctx.log('capture on: the old version keeps writing eventstore.events; its new events are queued for the catch-up');
  return counted;
}

/**
 * One transaction. CREATE TRIGGER waits until every transaction that wrote eventstore.events has
 * ended, and every insert after the commit fires the trigger: a row is either committed before the
 * capture (the bulk copy takes it) or its key is queued in the same transaction as the row.
 */
async function installCapture(ctx: RunContext<Events2Checkpoint>, total: number): Promise<void> {
  await ctx.transaction(async (tx) => {
    await sql`SET LOCAL statement_timeout = 0`.execute(tx);
    for (const ddl of captureTablesDdl()) await sql.raw(ddl).execute(tx);
    for (const ddl of probeTableDdl()) await sql.raw(ddl).execute(tx);
    await sql.raw(createEvents2Table()).execute(tx);
    await sql.raw(`ALTER TABLE ${EVENTS2_TABLE} SET (autovacuum_enabled = off)`).execute(tx);
    await createChunks(tx, ctx.options.concurrency, ctx.database.serverVersionNum, LEGACY_TABLE);
    // The lock is taken last and held only for the few statements left: writers queue behind it for
    // at most the lock_timeout.
    await sql.raw(`SET LOCAL lock_timeout = '${CUT_OVER_LOCK_TIMEOUT_MS}ms'`).execute(tx);
    for (const ddl of captureTriggersDdl()) await sql.raw(ddl).execute(tx);
    await ctx.saveCheckpoint(tx, { mode: 'online', stage: 'copy', total });
    // Inside the transaction on purpose: the fault suite kills the process here, lock held.
    ctx.progress({ phase: 'capture locked', done: 0, total: 1, unit: 'steps' });
  });
}

/** events2 against the digests the copy and the catch-up stored (events2 read once); the catch-up pauses meanwhile. */
async function verifyCopy(ctx: RunContext<Events2Checkpoint>): Promise<void> {
  ctx.throwIfStopped();
  ctx.progress({ phase: 'verify', done: 0, total: 1, unit: 'checks' });
  const result = await verifyWithDigests(ctx.database, ctx.options.concurrency);
  if (!result || result.status === 'nothing-to-verify') throw new Error('cannot verify events2: its digest table is gone');
  if (result.status === 'mismatch') {
    throw new VerifyMismatchError(
      `events2 differs from what the online move copied for ${result.mismatches.length} instance(s): ${describeMismatches(result.mismatches, 10, 'copied or applied')}`,
      'eventstore.events is untouched and the old version still writes it: `zsetup abort-move` removes events2 and the capture, then `zsetup migrate` starts over',
    );
  }
  ctx.progress({ phase: 'verify', done: 1, total: 1, unit: 'checks' });
}

/**
 * After the cut-over events_old no longer changes: its mapped rows, per instance, must equal what the
 * bulk copy and the catch-up recorded, count and hash. That proves every event was copied exactly
 * once, without reading events2 (which the new version may already be writing).
 */
async function verifySource(ctx: RunContext<Events2Checkpoint>): Promise<{ events: number; instances: number }> {
  ctx.throwIfStopped();
  ctx.progress({ phase: 'verify events_old', done: 0, total: 1, unit: 'checks' });
  const started = Date.now();
  const [old, recorded] = await Promise.all([sideDigests(ctx.database, 'old', ctx.options.concurrency), recordedDigests(ctx.database)]);
  const result = compareDigests(old, recorded, started);
  if (result.status === 'mismatch') {
    throw new VerifyMismatchError(
      `the events copied to events2 differ from events_old for ${result.mismatches.length} instance(s): ${describeMismatches(result.mismatches)}`,
      'run `zsetup verify` for the events concerned; events_old is kept unchanged as the rollback path',
    );
  }
  ctx.progress({ phase: 'verify events_old', done: 1, total: 1, unit: 'checks' });
  return { events: result.events, instances: result.instances };
}

async function prepared(ctx: RunContext<Events2Checkpoint>, meter: CatchUpMeter, timings: Record<string, number>, throttled: ThrottleReport | undefined): Promise<StepSummary> {
  const waiting = await backlog(ctx.db);
  return {
    message: `prepared the online move: eventstore.events2 is copied, indexed and verified, the capture stays on (${waiting.toLocaleString('en-US')} event(s) waiting); \`zsetup migrate\` catches up and cuts over, \`zsetup abort-move\` removes it all${throttleClause(throttled)}`,
    prepared: true,
    appliedFromCapture: meter.applied,
    oldVersionWritesPerSecond: Math.round(meter.writeRate),
    backlog: waiting,
    ...timings,
    ...throttleSummary(throttled),
  };
}

function summary(verified: { events: number; instances: number }, cut: CutOverRecord | undefined, meter: CatchUpMeter, timings: Record<string, number>, throttled: ThrottleReport | undefined): StepSummary {
  const how = cut ? `; cut over on attempt ${cut.attempts} with the lock held ${cut.lockHeldMs} ms` : '';
  return {
    message: `moved ${verified.events.toLocaleString('en-US')} events of ${verified.instances} instance(s) to eventstore.events2 online and verified them${how}; eventstore.events_old is kept as the rollback path${throttleClause(throttled)}`,
    events: verified.events,
    instances: verified.instances,
    verified: true,
    online: true,
    // The catch-up's batches and the drain under the lock (events the old version wrote during the move).
    appliedFromCapture: meter.applied + (cut?.drained ?? 0),
    oldVersionWritesPerSecond: Math.round(meter.writeRate),
    ...(cut ? { cutOver: cut } : {}),
    ...timings,
    ...throttleSummary(throttled),
  };
}
