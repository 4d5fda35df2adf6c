import { sql } from 'kysely';
import { RefusedError, VerifyMismatchError } from '../errors.js';
import type { RunContext, StepSummary } from '../step.js';
import { EVENTS2_PRIMARY_KEY } from '../schema.js';
import { buildEvents2 } from './build.js';
import { copyChunks, cutOff, finishCopy } from './copy.js';
import { runOnline } from './online.js';
import { phaseTimer } from './timing.js';
import { describeSituation, detectSituation, type Events2Checkpoint, type Situation } from './situation.js';
import { createEvents2Table, createIndex, DIGESTS_TABLE, EVENTS2_INDEX_SPECS } from './sql.js';
import { describeMismatches, verifyEvents2, verifyWithDigests } from './verify.js';

/**
 * What `migrate` asked of the move: `online` (the default), `offline` (`--offline`: cut the old version
 * off first), or `prepare` (`--prepare`: online, everything but the cut-over).
 */
export type MoveRequest = 'online' | 'offline' | 'prepare';

/**
 * Runs the events2 step from whatever state the database is in (see {@link detectSituation}). The
 * request only decides how a legacy database starts: a move under way continues the way it began.
 */
export async function runEvents2(ctx: RunContext<Events2Checkpoint>, request: MoveRequest = 'online'): Promise<StepSummary> {
  const situation = await detectSituation(ctx.db, ctx.checkpoint);
  const online = request !== 'offline';
  if ((situation.kind !== 'resume' && situation.kind !== 'online') || ctx.attempt === 1) ctx.log(describeSituation(situation, online ? 'online' : 'offline'));
  const end = request === 'prepare' ? 'prepare' : 'cut-over';
  if (situation.kind === 'online') return runOnline(ctx, situation.checkpoint, end);
  if (situation.kind === 'legacy' && online) return runOnline(ctx, null, end);
  // Old writers are already cut off in these: there is nothing to prepare ahead of a cut-over.
  if (request === 'prepare' && ['resume', 'renamed', 'adopt-empty', 'foreign-copy'].includes(situation.kind)) {
    throw new RefusedError(
      `--prepare prepares an online move of the legacy eventstore.events, but here: ${describeSituation(situation)}; nothing was changed`,
      'run `zsetup migrate` without --prepare',
    );
  }
  switch (situation.kind) {
    case 'done':
      return { message: `${describeSituation(situation)}; nothing was changed`, alreadyDone: true };
    case 'fresh':
      await createFresh(ctx);
      return { message: 'created eventstore.events2 with its primary key and indexes (fresh database, nothing to copy)', events: 0 };
    case 'finish-empty': {
      const built = await buildEvents2(ctx);
      return { message: `completed the empty eventstore.events2 (built ${built.join(', ') || 'nothing'})`, events: 0 };
    }
    case 'foreign-copy':
      return adoptForeignCopy(ctx);
    default:
      return move(ctx, situation);
  }
}

async function createFresh(ctx: RunContext<Events2Checkpoint>): Promise<void> {
  await ctx.transaction(async (tx) => {
    await sql`CREATE SCHEMA IF NOT EXISTS eventstore`.execute(tx);
    await sql.raw(createEvents2Table()).execute(tx);
    await sql.raw(EVENTS2_PRIMARY_KEY).execute(tx);
    for (const spec of EVENTS2_INDEX_SPECS.filter((s) => s.name !== 'events2_pkey')) await sql.raw(createIndex(spec)).execute(tx);
  });
}

/** The move itself: cut-off (unless resuming), chunked copy, build, verify. */
async function move(ctx: RunContext<Events2Checkpoint>, situation: Situation): Promise<StepSummary> {
  const { timings, timed } = phaseTimer();
  let stage: Events2Checkpoint['stage'] = 'copy';
  let total: number;
  if (situation.kind === 'resume') {
    stage = situation.stage;
    total = situation.total;
  } else {
    total = await timed('cutOffMs', () => cutOff(ctx, { rename: situation.kind === 'legacy', create: situation.kind !== 'adopt-empty' }));
  }
  if (stage === 'copy') {
    await timed('copyMs', () => copyChunks(ctx, total));
    await finishCopy(ctx, total);
  }
  ctx.throwIfStopped();
  const verified = await buildBesideVerify(
    () => timed('indexMs', () => buildEvents2(ctx)),
    // The check reads only events2's rows, which the builds do not change. On one connection it fills
    // the stretches where a build runs in one process (its final merge and index write).
    () => timed('verifyMs', () => verifyOrFail(ctx, total, 1)),
  );
  return {
    message: `moved ${total.toLocaleString('en-US')} events of ${verified.instances} instance(s) to eventstore.events2 and verified them; eventstore.events_old is kept as the rollback path`,
    events: total,
    instances: verified.instances,
    verified: true,
    ...timings,
  };
}

/**
 * Runs the builds and the verification side by side and waits for both, so no statement is left
 * running when the step ends; a mismatch is reported before a build's failure.
 */
async function buildBesideVerify<T>(build: () => Promise<unknown>, verify: () => Promise<T>): Promise<T> {
  const [built, verified] = await Promise.allSettled([build(), verify()]);
  if (verified.status === 'rejected') throw verified.reason;
  if (built.status === 'rejected') throw built.reason;
  return verified.value;
}

/** A filled events2 no zsetup run made: complete it only when it provably equals events_old. */
async function adoptForeignCopy(ctx: RunContext<Events2Checkpoint>): Promise<StepSummary> {
  ctx.progress({ phase: 'verify existing copy', done: 0, total: 1, unit: 'checks' });
  const check = await verifyEvents2(ctx.database);
  if (check.status !== 'equal') {
    throw new RefusedError(
      `eventstore.events2 already has rows that zsetup did not copy, and they differ from events_old: ${check.status === 'nothing-to-verify' ? check.reason : describeMismatches(check.mismatches)}`,
      'if events_old holds the true events: DROP TABLE eventstore.events2 and rerun (zsetup copies from events_old); otherwise restore from a backup',
    );
  }
  await ctx.transaction((tx) => ctx.saveCheckpoint(tx, { stage: 'build', total: check.events }));
  ctx.log(`the existing events2 equals events_old (${check.events} events); completing its keys and indexes`);
  return move(ctx, { kind: 'resume', stage: 'build', total: check.events });
}

/**
 * Verifies events2 against the digests the copy stored (events2 read once), or, when there are none
 * (a copy zsetup did not make), against events_old read in full. Drops the digests once they match.
 */
async function verifyOrFail(ctx: RunContext<Events2Checkpoint>, total: number, connections = ctx.options.concurrency): Promise<{ instances: number }> {
  ctx.throwIfStopped();
  ctx.progress({ phase: 'verify', done: 0, total: 1, unit: 'checks' });
  const withDigests = await verifyWithDigests(ctx.database, connections);
  const result = withDigests ?? await verifyEvents2(ctx.database);
  if (result.status === 'nothing-to-verify') throw new Error(`cannot verify: ${result.reason}`);
  if (result.status === 'mismatch') {
    throw new VerifyMismatchError(
      `events2 differs from events_old for ${result.mismatches.length} instance(s): ${describeMismatches(result.mismatches)}`,
      'run `zsetup verify` for the full list; events_old is untouched, so dropping eventstore.events2 and the step row lets zsetup copy again',
    );
  }
  if (withDigests && result.events !== total) {
    throw new VerifyMismatchError(
      `the copy read ${result.events} event(s) from events_old, but ${total} were counted at the cut-off`,
      'run `zsetup verify` to compare the tables as they are now; dropping eventstore.events2 and the step row lets zsetup copy again',
    );
  }
  if (withDigests) await ctx.transaction((tx) => sql.raw(`DROP TABLE IF EXISTS ${DIGESTS_TABLE}`).execute(tx));
  ctx.progress({ phase: 'verify', done: 1, total: 1, unit: 'checks' });
  return { instances: result.instances };
}
