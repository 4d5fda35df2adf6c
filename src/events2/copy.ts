import { sql } from 'kysely';
import type { Tx } from '../db/connection.js';
import type { RunContext } from '../step.js';
import { blocksOf } from './catalog.js';
import { checkColumns, checkPrivileges, countAndValidate } from './preflight.js';
import type { Events2Checkpoint } from './situation.js';
import { blockRange, CHUNKS_TABLE, createEvents2Table, DIGESTS_TABLE, EVENTS2_TABLE, LEGACY_TABLE, LOG_TABLE, MAPPED_COLUMNS, OLD_TABLE, rowHash } from './sql.js';

/** Where the bulk copy reads. */
export interface CopySource {
  readonly table: string;
  /**
   * Skip the rows whose keys are in the capture queue (the online move): within one statement's
   * snapshot a captured row and its key become visible together, so every row is copied here or
   * applied from the queue later, never both and never neither, in whatever order writers commit.
   */
  readonly excludeCaptured: boolean;
  /**
   * Read each chunk's rows back right after its commit when the server logs hint bits (see
   * {@link hintsNeedPageImages}): the online move, whose old version commits while the indexes are built.
   */
  readonly readBack: boolean;
}

/** The offline move copies the renamed, frozen table. */
export const OFFLINE_SOURCE: CopySource = { table: OLD_TABLE, excludeCaptured: false, readBack: false };
/** The online move copies the live legacy table, minus what the capture queued. */
export const ONLINE_SOURCE: CopySource = { table: LEGACY_TABLE, excludeCaptured: true, readBack: true };

/** How the cut-off starts from the current state. */
export interface CutOffOptions {
  /** Rename `eventstore.events` to `events_old` (false when that already happened). */
  readonly rename: boolean;
  /** Create events2 (false when an empty one is adopted). */
  readonly create: boolean;
}

/** Chunks are whole block ranges of the frozen source: about 16 per connection, at most 64 MB each. */
export function chunkBlocks(totalBlocks: number, concurrency: number): number {
  return Math.min(8192, Math.max(1, Math.ceil(totalBlocks / (Math.max(1, concurrency) * 16))));
}

/**
 * The cut-off, in one transaction: rename the legacy table (old writers now fail instead of writing
 * events the copy would miss), count and validate every row, create events2, record the chunk list,
 * an empty digest table and the checkpoint. A refusal or a crash rolls all of it back.
 */
export async function cutOff(ctx: RunContext<Events2Checkpoint>, options: CutOffOptions): Promise<number> {
  return ctx.transaction(async (tx) => {
    await sql`SET LOCAL statement_timeout = 0`.execute(tx);
    await checkPrivileges(tx, options.rename ? 'eventstore.events' : OLD_TABLE, options.rename);
    await checkColumns(tx, options.rename ? 'eventstore.events' : OLD_TABLE);
    if (options.rename) await sql`ALTER TABLE eventstore.events RENAME TO events_old`.execute(tx);
    const total = await countAndValidate(tx, OLD_TABLE);
    if (options.create) {
      await sql.raw(createEvents2Table()).execute(tx);
      // Autovacuum would pick the filling table up and hold the index builds behind its lock until the
      // deadlock check cancels it; the build stage switches it back on after its own ANALYZE.
      await sql.raw(`ALTER TABLE ${EVENTS2_TABLE} SET (autovacuum_enabled = off)`).execute(tx);
    }
    await createChunks(tx, ctx.options.concurrency, ctx.database.serverVersionNum, OLD_TABLE);
    await ctx.saveCheckpoint(tx, { stage: 'copy', total });
    return total;
  });
}

/** Creates the digest table and the chunk list over the blocks of `source` (the last chunk open-ended). */
export async function createChunks(tx: Tx, concurrency: number, serverVersionNum: number, source: string): Promise<void> {
  // A digest table can only be left over from a move whose tables were dropped by hand since.
  await sql.raw(`DROP TABLE IF EXISTS ${DIGESTS_TABLE}`).execute(tx);
  await sql.raw(`CREATE TABLE ${DIGESTS_TABLE} (
    chunk       integer NOT NULL,
    instance_id text NOT NULL,
    events      bigint NOT NULL,
    hash        numeric NOT NULL,
    PRIMARY KEY (chunk, instance_id)
  )`).execute(tx);
  await sql.raw(`CREATE TABLE ${CHUNKS_TABLE} (
    chunk       integer PRIMARY KEY,
    first_block bigint NOT NULL,
    end_block   bigint,
    events      bigint,
    copied_at   timestamptz
  )`).execute(tx);
  const r = await sql<{ blocks: number }>`SELECT ${sql.raw(blocksOf(`'${source}'::regclass`))} AS blocks`.execute(tx);
  const blocks = r.rows[0].blocks;
  // Before PostgreSQL 14 a ctid range is a full scan per chunk, not a TID Range Scan: use one chunk.
  const size = serverVersionNum >= 140000 ? chunkBlocks(blocks, concurrency) : Math.max(1, blocks);
  const count = Math.max(1, Math.ceil(blocks / size));
  // The last chunk is open-ended, so no block can fall outside the list.
  await sql`
    INSERT INTO zsetup.events2_chunks (chunk, first_block, end_block)
    SELECT n, n * ${size}::bigint, CASE WHEN n < ${count - 1} THEN (n + 1) * ${size}::bigint END
    FROM generate_series(0, ${count - 1}) AS n`.execute(tx);
}

/** What the copy asks between chunks (the online move's throttle, see throttle.ts). */
export interface CopyGate {
  /** Resolves when worker `index` may take its next chunk, or once `more` says there is none left. */
  admit(index: number, more: () => boolean): Promise<void>;
  chunkDone(index: number, ms: number): void;
  workerDone(): void;
  /** A progress note such as `throttled 40%`, or undefined at full speed. */
  note(): string | undefined;
  /** Calls `listener` with the new note whenever the throttle changes its level. */
  watch(listener: (note: string | undefined) => void): void;
}

interface Chunk {
  readonly chunk: number;
  readonly firstBlock: number;
  readonly endBlock: number | null;
}

/**
 * Copies every chunk not yet copied, on `concurrency` connections. Each chunk's INSERT … SELECT, its
 * digest rows and its mark in the chunk list commit in one transaction: a crash loses only the chunks
 * in flight, together with their digests.
 */
export async function copyChunks(ctx: RunContext<Events2Checkpoint>, total: number, source: CopySource = OFFLINE_SOURCE, throttle?: CopyGate): Promise<number> {
  const r = await sql<{ chunk: number; first_block: number; end_block: number | null; events: number | null; copied_at: Date | null }>`
    SELECT chunk, first_block, end_block, events, copied_at FROM zsetup.events2_chunks ORDER BY chunk`.execute(ctx.db);
  const queue: Chunk[] = r.rows.filter((c) => !c.copied_at).map((c) => ({ chunk: c.chunk, firstBlock: c.first_block, endBlock: c.end_block }));
  const readBack = source.readBack && (await hintsNeedPageImages(ctx));
  let done = r.rows.reduce((n, c) => n + (c.events ?? 0), 0);
  if (done > 0) ctx.log(`resuming the copy: ${r.rows.length - queue.length} of ${r.rows.length} chunks already copied`);
  ctx.progress({ phase: 'copy', done, total, unit: 'events' });
  throttle?.watch((note) => ctx.progress({ phase: 'copy', done, total, unit: 'events', note }));
  let failure: unknown;
  const worker = async (index: number) => {
    try {
      // The throttle gates each chunk before it is taken, so a held-back worker leaves it to the others.
      const more = () => queue.length > 0 && failure === undefined;
      for (await throttle?.admit(index, more); more(); await throttle?.admit(index, more)) {
        ctx.throwIfStopped();
        const next = queue.shift()!;
        const started = Date.now();
        // Not `done += await …`: that reads `done` before the await and loses the other workers' chunks.
        const copied = await copyChunk(ctx, next, source, readBack);
        throttle?.chunkDone(index, Date.now() - started);
        done += copied;
        ctx.progress({ phase: 'copy', done, total, unit: 'events', note: throttle?.note() });
      }
    } finally {
      throttle?.workerDone();
    }
  };
  const workers = Array.from({ length: Math.max(1, ctx.options.concurrency) }, (_, i) =>
    worker(i).catch((err) => { failure ??= err; }));
  await Promise.all(workers);
  if (failure !== undefined) throw failure;
  return done;
}

/**
 * One statement per chunk: the chunk's mapped rows are read once into `src`, inserted into events2,
 * and summed per instance (count and row hash) into the digest table.
 */
function copyStatement(chunk: Chunk, serverVersionNum: number, source: CopySource, span: boolean): string {
  const captured = source.excludeCaptured
    ? ` AND NOT EXISTS (SELECT 1 FROM ${LOG_TABLE} l WHERE l.instance_id = e.instance_id AND l.event_sequence = e.event_sequence)`
    : '';
  // The chunk is read twice, not buffered once: the second scan finds its pages in shared buffers and
  // costs less than a materialised copy of the rows (measured on 1M rows, BENCHMARKS.md). Both reads
  // are in one statement, so they see one snapshot: the digests sum exactly the rows inserted.
  const rows = `SELECT ${MAPPED_COLUMNS} FROM ${source.table} e WHERE ${blockRange(chunk.firstBlock, chunk.endBlock)}${captured}`;
  const digests = `
    INSERT INTO ${DIGESTS_TABLE} (chunk, instance_id, events, hash)
    SELECT ${chunk.chunk}, instance_id, count(*), sum(${rowHash('src', serverVersionNum)})
    FROM (${rows}) src GROUP BY instance_id`;
  if (!span) return `WITH copied AS (INSERT INTO ${EVENTS2_TABLE} ${rows}) ${digests}`;
  // Also the first and the last row written: the span of events2 the chunk filled.
  return `
    WITH copied AS (INSERT INTO ${EVENTS2_TABLE} ${rows} RETURNING ctid), digested AS (${digests})
    SELECT min(ctid)::text AS first, max(ctid)::text AS last FROM copied`;
}

/**
 * Whether setting a hint bit writes a full page image to the WAL (data checksums or wal_log_hints on,
 * the default of initdb from PostgreSQL 18). Then the first reader of a page written before the last
 * checkpoint logs the whole page: the first index build after the copy would log most of events2 again
 * (`--prepare` at 2M events, PostgreSQL 18, max_wal_size 1GB: 1,844 MB of WAL, 1,209 MB with the read-back),
 * and the old version's commits queue behind that flood. So each chunk commits synchronously and reads
 * its rows back at once, while their pages are newer than any checkpoint: the hints cost no page image.
 * Needs the min/max of tid and TID range scans (PostgreSQL 14).
 */
async function hintsNeedPageImages(ctx: RunContext<Events2Checkpoint>): Promise<boolean> {
  if (ctx.database.serverVersionNum < 140000) return false;
  const r = await sql<{ logged: boolean }>`
    SELECT current_setting('data_checksums') = 'on' OR current_setting('wal_log_hints') = 'on' AS logged`.execute(ctx.db);
  return r.rows[0].logged;
}

async function copyChunk(ctx: RunContext<Events2Checkpoint>, chunk: Chunk, source: CopySource, readBack: boolean): Promise<number> {
  const { events, span } = await ctx.transaction(async (tx) => {
    await sql`SET LOCAL statement_timeout = 0`.execute(tx);
    // Durability can wait: the chunk's rows, its digests and its mark are one transaction, so a commit
    // lost in a server crash loses all three together and the rerun copies that chunk again. Nothing
    // outside the database acts on a chunk being done (progress output is only informational), and
    // finishCopy commits synchronously, so the checkpoint `build` is never ahead of the chunks.
    // Not when the rows are read back: a row's hint bits can be set only once its commit is on disk.
    if (!readBack) await sql`SET LOCAL synchronous_commit = off`.execute(tx);
    const copied = await sql.raw<{ first: string | null; last: string | null }>(copyStatement(chunk, ctx.database.serverVersionNum, source, readBack)).execute(tx);
    const marked = await sql<{ events: number }>`
      UPDATE zsetup.events2_chunks
      SET events = (SELECT coalesce(sum(events), 0) FROM zsetup.events2_digests WHERE chunk = ${chunk.chunk}), copied_at = clock_timestamp()
      WHERE chunk = ${chunk.chunk} AND copied_at IS NULL
      RETURNING events`.execute(tx);
    if (marked.rows.length !== 1) throw new Error(`chunk ${chunk.chunk} was copied by someone else; rolled back`);
    return { events: Number(marked.rows[0].events), span: copied.rows[0] };
  });
  // Reads only; a crash before it leaves the hints to the index build, as without it.
  if (span?.first && span.last) {
    await sql`SELECT count(*) FROM ${sql.raw(EVENTS2_TABLE)} WHERE ctid >= ${span.first}::tid AND ctid <= ${span.last}::tid`.execute(ctx.db);
  }
  return events;
}

/** Ends the copy: every chunk must be marked; the chunk list goes, the checkpoint moves to `build`. */
export async function finishCopy(ctx: RunContext<Events2Checkpoint>, total: number, next: Events2Checkpoint = { stage: 'build', total }): Promise<void> {
  await ctx.transaction(async (tx) => {
    const r = await sql<{ left: number }>`SELECT count(*)::int AS left FROM zsetup.events2_chunks WHERE copied_at IS NULL`.execute(tx);
    if (r.rows[0].left > 0) throw new Error(`${r.rows[0].left} chunk(s) are not copied yet`);
    await sql.raw(`DROP TABLE ${CHUNKS_TABLE}`).execute(tx);
    await ctx.saveCheckpoint(tx, next);
  });
}
