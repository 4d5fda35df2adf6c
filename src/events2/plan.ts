import { sql } from 'kysely';
import type { PlanContext, StepPlan } from '../step.js';
import { blocksOf, rowCount, type ReadableDb } from './catalog.js';
import { CUT_OVER_LOCK_TIMEOUT_MS, DRAIN_TARGET } from './cut-over.js';
import type { MoveRequest } from './run.js';
import { describeSituation, detectSituation, type Events2Checkpoint, type Situation } from './situation.js';
import { LEGACY_TABLE, LOG_TABLE, MAPPED_ROW, OLD_TABLE } from './sql.js';
import { chooseStrategy, readServerResources } from './strategy.js';

/**
 * Measured on the benchmark machine: a whole move (copy, four index builds, ANALYZE, verify) takes
 * about this many times as long as one read of the mapped rows, as timed on a sample.
 */
const RUN_TO_SAMPLE_READ = 6;
/** Blocks read for the timing sample (8 kB each). */
const SAMPLE_BLOCKS = 1_000;
/** B-tree entry overhead (index tuple header, line pointer, alignment) and leaf fill factor. */
const INDEX_ENTRY_OVERHEAD = 16;
const BTREE_FILL = 0.9;

/** The dry-run of the events2 step: what it would do and what it would cost. Reads only. */
export async function planEvents2(ctx: PlanContext, request: MoveRequest = 'online'): Promise<StepPlan> {
  const checkpoint = (ctx.state?.checkpoint ?? null) as Events2Checkpoint | null;
  const situation = await detectSituation(ctx.tx, checkpoint);
  const online = situation.kind === 'online' || (situation.kind === 'legacy' && request !== 'offline');
  const action = describeSituation(situation, online ? 'online' : 'offline') + (request === 'prepare' && online ? '; --prepare: stops before the cut-over' : '');
  if (situation.kind === 'done') return { action, willChange: false, details: {} };
  if (situation.kind === 'fresh' || situation.kind === 'finish-empty') return { action, willChange: true, details: { events: 0 } };
  const source = situation.kind === 'legacy' || (situation.kind === 'online' && situation.checkpoint.stage !== 'verify') ? LEGACY_TABLE : OLD_TABLE;
  const sample = await timeSample(ctx.tx, source);
  const counted = await rowCount(ctx.tx, source, ctx.options.exact);
  // A table never analysed has no estimate: scale the sample up instead.
  const count = { rows: counted ?? Math.round(sample.rows * (100 / sample.percent)), exact: ctx.options.exact };
  const sizes = await sourceSizes(ctx.tx, source);
  const heap = Math.round(count.rows * (sample.rowBytes + 28) / 0.97);
  const indexes = Math.round(count.rows * (sample.keyBytes + 4 * INDEX_ENTRY_OVERHEAD) / BTREE_FILL);
  const copied = (situation.kind === 'resume' && situation.stage === 'build') || (situation.kind === 'online' && situation.checkpoint.stage !== 'copy');
  const notes = [
    `disk: about ${formatMb(heap + indexes)} for events2 and its indexes, plus write-ahead log of similar size until the next checkpoint (max_wal_size ${sizes.maxWalSize})`,
    'eventstore.events_old is kept as the rollback path; drop it yourself once the new version runs well',
  ];
  if (!count.exact) notes.push('event count is PostgreSQL\'s estimate; --exact counts them');
  // Sized by the source; the build sizes the memory by events2's main fork, which is about as large.
  const server = await readServerResources(ctx.tx, source);
  const strategy = chooseStrategy(server, ctx.options.concurrency);
  const onlineDetails = online ? await planOnline(ctx, situation, sample, notes, server.serverVersionNum) : {};
  return {
    action,
    willChange: true,
    details: {
      ...onlineDetails,
      source,
      events: count.rows,
      eventsCounted: count.exact ? 'exact' : 'estimate',
      sourceTableBytes: sizes.table,
      sourceIndexBytes: sizes.indexes,
      events2TableBytesEstimate: heap,
      events2IndexBytesEstimate: indexes,
      diskNeededBytesEstimate: copied ? indexes : heap + indexes,
      sampleRows: sample.rows,
      sampleMs: Math.round(sample.ms),
      concurrency: ctx.options.concurrency,
      strategy: strategy.reason,
    },
    estimatedSeconds: Math.round(estimateSeconds(count.rows, sample, ctx.options.concurrency)),
    notes,
  };
}

interface Sample {
  readonly rows: number;
  /** Percentage of the table's blocks read. */
  readonly percent: number;
  readonly ms: number;
  /** Average size of a mapped row and of the four index keys together. */
  readonly rowBytes: number;
  readonly keyBytes: number;
}

/** Reads and maps a TABLESAMPLE of the source, timing it. */
async function timeSample(tx: ReadableDb, source: string): Promise<Sample> {
  const b = await sql<{ blocks: number }>`SELECT ${sql.raw(blocksOf(`'${source}'::regclass`))} AS blocks`.execute(tx);
  const percent = Math.min(100, (SAMPLE_BLOCKS / Math.max(1, b.rows[0].blocks)) * 100);
  const started = performance.now();
  const r = await sql<{ n: number; row_bytes: number | null; key_bytes: number | null }>`
    SELECT count(*)::bigint AS n,
           avg(pg_column_size(${sql.raw(MAPPED_ROW)}))::float8 AS row_bytes,
           avg(pg_column_size(ROW(instance_id, aggregate_type, aggregate_id, event_sequence))
             + pg_column_size(ROW(creation_date, instance_id))
             + pg_column_size(ROW(aggregate_id, instance_id, aggregate_type, event_type))
             + pg_column_size(ROW(instance_id, aggregate_type, event_type, EXTRACT(EPOCH FROM creation_date))))::float8 AS key_bytes,
           sum(hashtextextended(${sql.raw(MAPPED_ROW)}::text, 0)) AS h
    FROM ${sql.raw(source)} TABLESAMPLE SYSTEM (${sql.raw(percent.toFixed(6))})`.execute(tx);
  const ms = performance.now() - started;
  const s = r.rows[0];
  return { rows: s.n, percent, ms, rowBytes: s.row_bytes ?? 0, keyBytes: s.key_bytes ?? 0 };
}

function estimateSeconds(rows: number, sample: Sample, concurrency: number): number {
  if (sample.rows === 0) return 0;
  const readSeconds = (rows / sample.rows) * (sample.ms / 1000);
  return (readSeconds * RUN_TO_SAMPLE_READ) / Math.max(1, Math.min(concurrency, 2));
}

async function sourceSizes(tx: ReadableDb, source: string): Promise<{ table: number; indexes: number; maxWalSize: string }> {
  const r = await sql<{ table: number; indexes: number; max_wal_size: string }>`
    SELECT pg_table_size(${source}::regclass)::bigint AS table, pg_indexes_size(${source}::regclass)::bigint AS indexes,
           current_setting('max_wal_size') AS max_wal_size`.execute(tx);
  return { table: r.rows[0].table, indexes: r.rows[0].indexes, maxWalSize: r.rows[0].max_wal_size };
}

function formatMb(bytes: number): string {
  return `${Math.ceil(bytes / 1024 / 1024).toLocaleString('en-US')} MB`;
}

/**
 * The dry-run's note while the index builds are ahead: what writing the new indexes costs the old
 * version's commits. PostgreSQL builds an index outside its buffers; up to 16 it syncs the whole file
 * before the build ends, from 17 on it hands the sync to the next checkpoint unless one started during
 * the build (storage/smgr/bulk_write.c). Figures: BENCHMARKS.md, online move, tenth and eleventh sessions.
 */
export function indexSyncNote(serverVersionNum: number): string {
  const when = serverVersionNum >= 170000
    ? 'PostgreSQL 17+ leaves the sync of each new index to the next checkpoint (unless one started during the build), so the kernel writes the indexes out later, in bursts the old version\'s commits can wait behind (0.15-0.26 s measured on PostgreSQL 18 at 2M events, during the builds or the wait after them)'
    : 'at the end of each index build PostgreSQL syncs the new index to disk, and the old version\'s commits can wait behind it (0.1-0.4 s measured on PostgreSQL 15 at 2-5M events)';
  return `online: ${when}; on Linux, vm.dirty_background_bytes on the database host (64 MB measured on PostgreSQL 15) makes the kernel write dirty pages out as they come (README, "The online events2 move")`;
}

/** Time the cut-over's drain takes per event under the lock, as a multiple of reading one sample row. */
const DRAIN_TO_SAMPLE_ROW = 20;

/**
 * The online move's figures: how fast the old version writes now (inserts counted by PostgreSQL over
 * one second), what waits in the capture queue, and the expected downtime: the wait for the lock
 * (at most its timeout) plus draining at most {@link DRAIN_TARGET} events by primary key under it.
 */
async function planOnline(ctx: PlanContext, situation: Situation, sample: Sample, notes: string[], serverVersionNum: number): Promise<Record<string, unknown>> {
  const inserts = async () => {
    await sql`SELECT pg_stat_clear_snapshot()`.execute(ctx.tx);
    const r = await sql<{ n: string | null }>`SELECT n_tup_ins::text AS n FROM pg_stat_user_tables WHERE relid = to_regclass(${LEGACY_TABLE})`.execute(ctx.tx);
    return Number(r.rows[0]?.n ?? 0);
  };
  // A legacy database is planned from its start: the capture.
  const stage = situation.kind === 'online' ? situation.checkpoint.stage : 'capture';
  const capturing = situation.kind === 'online' && stage !== 'verify';
  let writeRate: number | null = null;
  if (situation.kind === 'legacy' || capturing) {
    const before = await inserts();
    await new Promise((r) => setTimeout(r, 1000));
    writeRate = Math.max(0, (await inserts()) - before);
  }
  const queued = capturing ? Number((await sql<{ n: string }>`SELECT count(*)::text AS n FROM ${sql.raw(LOG_TABLE)}`.execute(ctx.tx)).rows[0].n) : null;
  const perRowMs = sample.rows > 0 ? sample.ms / sample.rows : 0.01;
  const downtimeMs = stage === 'verify'
    ? 0
    : CUT_OVER_LOCK_TIMEOUT_MS + Math.min(DRAIN_TARGET, Math.max(1, writeRate ?? 0)) * perRowMs * DRAIN_TO_SAMPLE_ROW;
  notes.push(`online: the old version keeps writing until the cut-over; writers are blocked only during it (expected ${(downtimeMs / 1000).toFixed(2)} s per attempt), then fail with 42P01 until the new version runs`);
  if (stage === 'capture' || stage === 'copy' || stage === 'build') notes.push(indexSyncNote(serverVersionNum));
  return {
    online: true,
    stage,
    oldVersionInsertsPerSecond: writeRate,
    captureBacklog: queued,
    expectedDowntimeSeconds: Number((downtimeMs / 1000).toFixed(2)),
    cutOverLockTimeoutMs: CUT_OVER_LOCK_TIMEOUT_MS,
  };
}
