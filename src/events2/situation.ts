import { sql } from 'kysely';
import { RefusedError } from '../errors.js';
import { captureState } from './capture.js';
import { eventTables, events2Shape, isComplete, referenceStepDone, type Events2Shape, type ReadableDb } from './catalog.js';
import type { CutOverRecord } from './cut-over.js';

/** How a legacy database is moved: online (the default) or offline (`--offline`: cut the old version off first). */
export type MoveMode = 'online' | 'offline';

/** The step's checkpoint in `zsetup.steps`; the copy's done set lives in `zsetup.events2_chunks`. */
export interface Events2Checkpoint {
  /**
   * `copy`: chunks are being copied; `build`: the copy is complete. Online only: `catch-up`: indexes
   * built, the queue is being applied and the cut-over tried; `verify`: cut over, events_old to verify.
   */
  readonly stage: 'copy' | 'build' | 'catch-up' | 'verify';
  /** Legacy events counted at the cut-off (online: by the validating scan before the capture). */
  readonly total: number;
  /** Absent for the offline move. */
  readonly mode?: 'online';
  /** Online: events2 matched the digests once before the cut-over. */
  readonly events2Verified?: boolean;
  readonly cutOver?: CutOverRecord;
}

/** What the database looks like to the events2 step, and so what running it does. */
export type Situation =
  /** No event table at all: create events2 complete. */
  | { readonly kind: 'fresh' }
  /** `eventstore.events` and no events2: the full move. */
  | { readonly kind: 'legacy' }
  /** `events_old` and no events2 nor events: someone renamed the table (the reference step died before its copy). */
  | { readonly kind: 'renamed' }
  /** `events_old` and an empty events2 of the right columns that zsetup did not create: copy into it. */
  | { readonly kind: 'adopt-empty'; readonly shape: Events2Shape }
  /** An empty, incomplete events2 and no legacy table: add what it lacks. */
  | { readonly kind: 'finish-empty'; readonly shape: Events2Shape }
  /** `events_old` and a filled events2 zsetup did not create: complete it if it verifies equal, else refuse. */
  | { readonly kind: 'foreign-copy'; readonly shape: Events2Shape }
  /** zsetup's own run, interrupted. */
  | { readonly kind: 'resume'; readonly stage: Events2Checkpoint['stage']; readonly total: number }
  /** zsetup's online move, interrupted or prepared: the old version may still be writing. */
  | { readonly kind: 'online'; readonly checkpoint: Events2Checkpoint }
  /** Nothing to do. */
  | { readonly kind: 'done'; readonly reason: string };

/** One line describing a situation, for the dry-run and logs. */
export function describeSituation(s: Situation, mode: MoveMode = 'offline'): string {
  switch (s.kind) {
    case 'fresh': return 'fresh database: create eventstore.events2 with its primary key and indexes';
    case 'legacy': return mode === 'online'
      ? 'legacy database, online move: capture new events of the old version, copy every event to eventstore.events2, build keys and indexes, catch up, then cut over in one short transaction (rename eventstore.events to events_old), verify'
      : 'legacy database: rename eventstore.events to events_old, copy every event to eventstore.events2, build keys and indexes, verify';
    case 'online': return describeOnline(s.checkpoint);
    case 'renamed': return 'eventstore.events was already renamed to events_old (an earlier attempt stopped before copying): copy from events_old, build keys and indexes, verify';
    case 'adopt-empty': return 'an empty eventstore.events2 exists next to events_old: copy into it, build keys and indexes, verify';
    case 'finish-empty': return 'an empty, incomplete eventstore.events2 exists: add its missing keys and indexes';
    case 'foreign-copy': return 'a filled eventstore.events2 exists next to events_old without zsetup records: verify it against events_old, then add its missing keys and indexes';
    case 'resume': return s.stage === 'copy' ? 'resume the interrupted copy from its last committed chunk' : 'resume after the copy: build keys and indexes, verify';
    case 'done': return `already done: ${s.reason}`;
  }
}

/**
 * Reads the catalog (and the step's checkpoint) and decides what the step does. Throws RefusedError
 * for states it cannot resume safely, saying what it found and what to do.
 */
export async function detectSituation(db: ReadableDb, checkpoint: Events2Checkpoint | null): Promise<Situation> {
  const t = await eventTables(db);
  if (checkpoint?.mode === 'online' && t.events2) return checkOnline(db, checkpoint, t);
  if (checkpoint && t.events2) {
    if (checkpoint.stage === 'copy' && !(t.old && t.chunks)) {
      throw new RefusedError(
        `zsetup's copy into eventstore.events2 was interrupted, but ${t.old ? 'its chunk list zsetup.events2_chunks' : 'its source eventstore.events_old'} is gone`,
        'restore eventstore.events_old (or rename eventstore.events back to events_old), or drop eventstore.events2 to start over from eventstore.events',
      );
    }
    return { kind: 'resume', stage: checkpoint.stage, total: checkpoint.total };
  }
  if (!t.events2) {
    const situation = withoutEvents2(t);
    if (situation.kind === 'fresh') await refuseForeignDatabase(db);
    return situation;
  }
  if (await hasReferenceColumns(db) && await referenceStepDone(db)) {
    return { kind: 'done', reason: "the reference system's setup recorded 14_events_push as done" };
  }
  const shape = await events2Shape(db);
  if (t.legacy) {
    const capture = await captureState(db);
    throw new RefusedError(
      `both eventstore.events and eventstore.events2 exist and no finished move is recorded${capture.capturing ? " (zsetup's capture is on, but its record in zsetup.steps is gone)" : ''}`,
      capture.capturing
        ? '`zsetup abort-move` removes what the online move added; then `zsetup migrate` starts over'
        : 'an old version may still be writing to eventstore.events: stop it, then either drop the unused table or rename eventstore.events to events_old and rerun',
    );
  }
  const empty = await isEmpty(db);
  if (isComplete(shape) && !t.old) return { kind: 'done', reason: 'eventstore.events2 is complete and no legacy table is left' };
  if (shape.wrongColumns.some((c) => !c.startsWith('in_tx_order: bigint'))) {
    throw new RefusedError(
      `eventstore.events2 exists with columns zsetup does not expect (${shape.wrongColumns.join('; ')})`,
      'it was not created by zsetup or the reference setup; inspect it, and drop or rename it if it is a leftover',
    );
  }
  if (t.old) return empty ? { kind: 'adopt-empty', shape } : { kind: 'foreign-copy', shape };
  if (empty) return { kind: 'finish-empty', shape };
  throw new RefusedError(
    `eventstore.events2 has rows but lacks ${describeMissing(shape)}, and there is no eventstore.events_old to verify it against`,
    'restore eventstore.events_old from a backup so zsetup can verify and complete the copy, or add the missing keys and indexes yourself if you know the copy is complete',
  );
}

function withoutEvents2(t: { legacy: boolean; old: boolean }): Situation {
  if (t.legacy && t.old) {
    throw new RefusedError(
      'both eventstore.events and eventstore.events_old exist and there is no eventstore.events2',
      'decide which one holds the events: drop or rename the other one (keep a backup), then rerun',
    );
  }
  if (t.legacy) return { kind: 'legacy' };
  if (t.old) return { kind: 'renamed' };
  return { kind: 'fresh' };
}

/**
 * A fresh install gets events2 only in a database that holds nothing else: tables of other schemas and
 * no event store mean the URL points at some other application's database.
 */
export async function refuseForeignDatabase(db: ReadableDb): Promise<void> {
  const r = await sql<{ name: string; total: number }>`
    SELECT n.nspname || '.' || c.relname AS name, count(*) OVER ()::int AS total
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'zsetup', 'eventstore', 'projections', 'system')
      AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1 LIMIT 5`.execute(db);
  if (r.rows.length === 0) return;
  const names = r.rows.map((x) => x.name).join(', ') + (r.rows[0].total > r.rows.length ? `, … (${r.rows[0].total} tables)` : '');
  throw new RefusedError(
    `this database is not an event store: it has no eventstore.events, events_old or events2, but holds other tables (${names}); nothing was created`,
    'check --database: point it at the ZITADEL database to migrate, or at an empty database for a fresh install',
  );
}

/** What an incomplete events2 lacks, in words. */
export function describeMissing(shape: Events2Shape): string {
  const parts: string[] = [];
  if (!shape.hasPrimaryKey) parts.push('its primary key');
  if (shape.missingNotNulls.length) parts.push(`NOT NULL on ${shape.missingNotNulls.join(', ')}`);
  const idx = shape.missingIndexes.filter((i) => i.name !== 'events2_pkey').map((i) => i.name);
  if (idx.length) parts.push(`the indexes ${idx.join(', ')}`);
  return parts.join(', ') || 'nothing';
}

async function isEmpty(db: ReadableDb): Promise<boolean> {
  const r = await sql<{ any: boolean }>`SELECT EXISTS (SELECT 1 FROM eventstore.events2) AS any`.execute(db);
  return !r.rows[0].any;
}

async function hasReferenceColumns(db: ReadableDb): Promise<boolean> {
  const r = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'eventstore.events2'::regclass AND NOT attisdropped
      AND attname IN ('instance_id', 'aggregate_type', 'aggregate_id', 'event_type', 'payload')`.execute(db);
  return r.rows[0].n === 5;
}

function describeOnline(cp: Events2Checkpoint): string {
  switch (cp.stage) {
    case 'copy': return 'online move: resume the interrupted copy from its last committed chunk (the capture is on), then build, catch up and cut over';
    case 'build': return 'online move: resume after the copy: build keys and indexes, catch up, cut over, verify';
    case 'catch-up': return cp.events2Verified
      ? 'online move, prepared: catch up the events the old version wrote since, then cut over in one short transaction, verify'
      : 'online move: resume the catch-up, verify events2, cut over, verify';
    case 'verify': return 'online move, cut over: verify events_old against what was copied';
  }
}

/** An online move's checkpoint against the catalog: the capture must be intact before the cut-over, events_old after it. */
async function checkOnline(db: ReadableDb, checkpoint: Events2Checkpoint, t: { legacy: boolean; old: boolean; chunks: boolean }): Promise<Situation> {
  if (checkpoint.stage === 'verify') {
    if (!t.old) {
      throw new RefusedError(
        'the online move cut over, but eventstore.events_old, which it must verify, is gone',
        'restore eventstore.events_old from a backup, or run `zsetup verify` once it is back',
      );
    }
    return { kind: 'online', checkpoint };
  }
  const capture = await captureState(db);
  const missing = [
    !t.legacy && 'eventstore.events',
    !capture.capturing && "the capture trigger on eventstore.events",
    !capture.log && 'the capture queue zsetup.events2_log',
    checkpoint.stage === 'copy' && !t.chunks && 'the chunk list zsetup.events2_chunks',
  ].filter((m): m is string => Boolean(m));
  if (missing.length) {
    throw new RefusedError(
      `zsetup's online move was interrupted before its cut-over, but ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} gone: events the old version wrote since may not have been captured`,
      '`zsetup abort-move` removes what the move added (eventstore.events is never changed before the cut-over); then `zsetup migrate` starts over',
    );
  }
  return { kind: 'online', checkpoint };
}
