import type pg from 'pg';
import type { Database } from '../db/connection.js';
import { RefusedError } from '../errors.js';
import type { ProgressUpdate } from '../step.js';
import { foldBatchInSlices, writeBatch, type FoldedBatch, type RowTransfer } from './batch.js';
import { BATCHES_IN_FLIGHT, batchShare, ByteBudget, mapEach, PREFILL_MEMORY_BYTES, readAhead } from './pipeline.js';
import { statesShape, type StatesShape } from './bookkeeping.js';
import { ensureTables, type EnsuredTables } from './ddl.js';
import { countBacklog, DEFAULT_BATCH_BYTES, listInstances, StreamReader, type Backlog, type Queryable, type StreamKey } from './events.js';
import type { ProjectionModel } from './model.js';
import { OffsetCounter, readStates, sameStates, type CurrentState } from './state.js';
import type { ProjectionEvent } from './types.js';

/** Inputs of {@link prefillProjection}. */
export interface PrefillOptions {
  /** Exclusive upper bound on `position` (see captureEndPoint). */
  readonly endPoint: string;
  /** Parallel streams, each over its own group of instances with two connections (reading, writing). */
  readonly concurrency: number;
  /** Events read, folded and written per transaction. Default is 20,000. */
  readonly batchSize?: number;
  /**
   * The projection's tables and bookkeeping being made (ensureTables, shared by the projections of a
   * run). Default: made by this call. Either way the prefill reads and folds while they are made, and
   * writes once they are ready (see prefillProjection).
   */
  readonly tables?: Promise<EnsuredTables>;
}

/** How the prefill reports and is stopped; a step's RunContext fits. */
export interface PrefillContext {
  progress(update: ProgressUpdate): void;
  log(message: string): void;
  /** Called between batches; throws to stop. */
  throwIfStopped(): void;
}

/** What a prefill did. */
export interface PrefillResult {
  readonly projection: string;
  readonly endPoint: string;
  /** Instances that had events to process. */
  readonly instances: number;
  readonly events: number;
  readonly failedEvents: number;
  readonly batches: number;
  /** Batches written event by event after a bulk write was rejected. */
  readonly replayedBatches: number;
  /** True when nothing was left to do. */
  readonly atHead: boolean;
}

/** The counters of a PrefillResult, updated while the streams run. */
type PrefillCounts = { -readonly [K in Exclude<keyof PrefillResult, 'atHead'>]: PrefillResult[K] };

/** Where the projection stands and what it still has to do, read without writing. */
export interface ProjectionBacklog {
  readonly states: ReadonlyMap<string, CurrentState>;
  readonly backlog: readonly Backlog[];
  readonly events: number;
}

/** Reads the recorded positions and counts the events left before the end point, per instance. */
export async function projectionBacklog(db: Queryable, model: ProjectionModel, endPoint: string): Promise<ProjectionBacklog> {
  const exists = await db.query<{ events: boolean; states: boolean }>(
    `SELECT to_regclass('eventstore.events2') IS NOT NULL AS events, to_regclass('projections.current_states') IS NOT NULL AS states`,
  );
  if (!exists.rows[0].events) {
    throw new RefusedError('eventstore.events2 does not exist', 'run `zsetup migrate` first: projections are prefilled from eventstore.events2');
  }
  const states = exists.rows[0].states ? await readStates(db, model.name, await statesShape(db)) : new Map<string, CurrentState>();
  const instances = await listInstances(db);
  const keys = new Map<string, StreamKey>([...states].map(([i, s]) => [i, s.key]));
  const backlog = (await countBacklog(db, model, instances, keys, endPoint)).filter((b) => b.events > 0);
  return { states, backlog, events: backlog.reduce((n, b) => n + b.events, 0) };
}

/**
 * Streams (each holds two pooled connections: reading and writing) that may run at once on a database,
 * shared by the projections prefilled side by side. Two connections of the pool stay free for the runner
 * (its lock, the steps table) and for a projection's catalog queries before it takes its streams.
 */
class StreamSlots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(total: number) {
    this.free = Math.max(1, total);
  }

  /** Takes up to `wanted` slots, waiting until at least one is free. */
  async take(wanted: number): Promise<number> {
    while (this.free === 0) await new Promise<void>((resolve) => this.waiting.push(resolve));
    const n = Math.min(wanted, this.free);
    this.free -= n;
    return n;
  }

  give(n: number): void {
    this.free += n;
    for (const wake of this.waiting.splice(0)) wake();
  }
}

const slotsOf = new WeakMap<Database, StreamSlots>();

/** The event text all prefill streams of this process hold at once (see PREFILL_MEMORY_BYTES). */
const memory = new ByteBudget(PREFILL_MEMORY_BYTES);
/** What a stream asks for per batch: a full pipeline's share of the budget, at most a reader's default. */
const BATCH_SHARE = Math.min(DEFAULT_BATCH_BYTES, Math.floor(PREFILL_MEMORY_BYTES / BATCHES_IN_FLIGHT));
/** Less than this free, a stream waits for others to write rather than read a smaller batch. */
const LEAST_SHARE = Math.floor(BATCH_SHARE / 8);

function streamSlots(database: Database): StreamSlots {
  let slots = slotsOf.get(database);
  if (!slots) {
    const poolMax = (database.pool as unknown as { options?: { max?: number } }).options?.max ?? 10;
    slotsOf.set(database, (slots = new StreamSlots(Math.floor((poolMax - 2) / 2))));
  }
  return slots;
}

/**
 * Splits the instances into `n` groups with about the same number of events (largest first, each into
 * the lightest group), so parallel streams finish at about the same time.
 */
function splitInstances(backlog: readonly Backlog[], n: number): Backlog[][] {
  const groups = Array.from({ length: n }, () => ({ events: 0, members: [] as Backlog[] }));
  for (const b of [...backlog].sort((x, y) => y.events - x.events)) {
    const lightest = groups.reduce((min, g) => (g.events < min.events ? g : min));
    lightest.members.push(b);
    lightest.events += b.events;
  }
  return groups.map((g) => g.members).filter((m) => m.length > 0);
}

/**
 * Splits a stream's instances into chunks of up to `size` events (a batch) that the stream reads one after
 * another, each as its own ordered stream; an instance is never split (a larger one is a chunk of its
 * own). Projection rows belong to one instance, so a chunk's batch never changes rows that an earlier
 * batch wrote, as consecutive batches of one stream across all the group's instances do: a row created
 * in one batch and changed in the next costs an UPDATE instead of being folded into its insert
 * (BENCHMARKS-projections.md, sixth pass).
 */
function chunkInstances(group: readonly Backlog[], size: number): Backlog[][] {
  const chunks: { events: number; members: Backlog[] }[] = [];
  for (const b of [...group].sort((x, y) => y.events - x.events)) {
    const open = chunks.find((c) => c.events + b.events <= size);
    if (open) {
      open.members.push(b);
      open.events += b.events;
    } else chunks.push({ events: b.events, members: [b] });
  }
  return chunks.map((c) => c.members);
}

/**
 * Session settings of the prefill's connections: short statements (JIT costs more than it saves),
 * in-memory sorts of a batch, and commits that do not wait for the WAL flush. The last is safe here: a
 * batch and its positions commit atomically either way, a server crash can only lose the last batches
 * (the rerun redoes them), and the runner's synchronous commit of the step's result flushes them first.
 */
async function withPrefillSession<T>(database: Database, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await database.pool.connect();
  try {
    await client.query(`SET jit = off; SET work_mem = '64MB'; SET synchronous_commit = off`);
    return await fn(client);
  } finally {
    await client.query('RESET jit; RESET work_mem; RESET synchronous_commit').catch(() => {});
    client.release();
  }
}

/**
 * Prefills one projection up to the end point: creates its tables if missing (unless `tables` is given),
 * then reads the events of every instance with events left (the instances split into `concurrency`
 * groups, one stream each; a stream reads its group's instances in chunks, see chunkInstances). A stream
 * is a pipeline: while one batch is written (in bulk, with the new positions of the instances it
 * touched, in one transaction), the next is read and folded. Memory is bounded by three batches per
 * stream (being read, being folded, being written), and in bytes by one budget shared by every stream of
 * the process (PREFILL_MEMORY_BYTES).
 *
 * The positions are read and the streams start while the tables are still being made: creating them and
 * the bookkeeping's first copy take a few hundred milliseconds of a cold run, which reading and folding
 * the first batches then fill. Nothing is written before the tables are ready and the positions are
 * read again: the bookkeeping may have moved them (step 15's copy of a legacy position under this name,
 * or a partial projection reset), and then the batches read so far are dropped and the streams start
 * again from the new positions.
 */
export async function prefillProjection(
  database: Database,
  model: ProjectionModel,
  options: PrefillOptions,
  ctx: PrefillContext,
): Promise<PrefillResult> {
  const tables = options.tables ?? withPrefillSession(database, (client) => ensureTables(client, model));
  // Awaited below on every path (settled before this call returns).
  tables.catch(() => {});
  let first: ProjectionBacklog;
  try {
    first = await projectionBacklog(database.pool, model, options.endPoint);
  } catch (err) {
    await tables.catch(() => {});
    throw err;
  }
  const confirmed = confirmPositions(database.pool, model, tables, first.states);
  try {
    return await prefillFrom(database, model, options, ctx, first, confirmed);
  } catch (err) {
    await tables.catch(() => {});
    if (!(err instanceof PositionsMoved)) throw err;
  }
  const { shape } = await tables;
  return prefillFrom(database, model, options, ctx, await projectionBacklog(database.pool, model, options.endPoint), Promise.resolve(shape));
}

/** The tables' bookkeeping moved the positions a prefill started from (see prefillProjection). */
class PositionsMoved extends Error {}

/**
 * Once the tables are ready: their states shape, if the projection's positions are still those read
 * before (else PositionsMoved). Handled by whoever awaits it, or by prefillFrom.
 */
function confirmPositions(db: Queryable, model: ProjectionModel, tables: Promise<EnsuredTables>, before: ReadonlyMap<string, CurrentState>): Promise<StatesShape> {
  const confirmed = (async () => {
    const { shape } = await tables;
    if (!sameStates(await readStates(db, model.name, shape), before)) throw new PositionsMoved('positions moved while the tables were made');
    return shape;
  })();
  confirmed.catch(() => {});
  return confirmed;
}

/** Prefills from the positions of `from`, writing once `ready` gives the states shape. */
async function prefillFrom(
  database: Database, model: ProjectionModel, options: PrefillOptions, ctx: PrefillContext,
  from: ProjectionBacklog, ready: Promise<StatesShape>,
): Promise<PrefillResult> {
  const batchSize = options.batchSize ?? 20_000;
  const { states, backlog, events: total } = from;
  const result: PrefillCounts = { projection: model.name, endPoint: options.endPoint, instances: backlog.length, events: 0, failedEvents: 0, batches: 0, replayedBatches: 0 };
  if (total === 0) {
    await ready;
    return { ...result, atHead: true };
  }
  ctx.progress({ phase: model.name, done: 0, total, unit: 'events' });
  // A stream per group costs a few round trips of its own: no more streams than batches. Projections
  // prefilled side by side share the pool, so each takes what is free of it (at least one stream).
  const slots = streamSlots(database);
  const streams = await slots.take(Math.max(1, Math.min(options.concurrency, Math.ceil(total / batchSize))));
  try {
    return await prefillStreams(database, model, options, ctx, { states, backlog, total, batchSize, streams, result, ready });
  } finally {
    slots.give(streams);
  }
}

/** What prefillProjection hands its streams. */
interface StreamPlan {
  readonly states: ReadonlyMap<string, CurrentState>;
  readonly backlog: readonly Backlog[];
  readonly total: number;
  readonly batchSize: number;
  readonly streams: number;
  readonly result: PrefillCounts;
  /** The states shape, once the tables are ready to be written. */
  readonly ready: Promise<StatesShape>;
}

/**
 * Runs one stream per instance group, side by side. Each stream is a pipeline of three stages with a
 * queue of one between them: read (its own connection) → fold (in Node) → write (another connection),
 * so PostgreSQL reads the next batch and writes the previous one while Node folds the current one. A
 * failing stream stops the others after their current batch; its error is rethrown.
 */
async function prefillStreams(database: Database, model: ProjectionModel, options: PrefillOptions, ctx: PrefillContext, plan: StreamPlan): Promise<PrefillResult> {
  const { result, total } = plan;
  const transfer: RowTransfer = { copy: true };
  const failed = new AbortController();
  const outcomes = await Promise.allSettled(splitInstances(plan.backlog, plan.streams).map(async (group) => {
    // The budget's bytes of this stream's batches read and not yet written, oldest first.
    const held: number[] = [];
    try {
      await withPrefillSession(database, (reading) => withPrefillSession(database, async (writer) => {
        const folded = readAhead(mapEach(readAhead(readBatches(reading, model, group, options.endPoint, plan, held)), foldWith(model, group, plan.states)));
        for await (const batch of folded) {
          const outcome = await writeBatch(writer, model, batch, transfer, await plan.ready);
          memory.give(held.shift() ?? 0);
          result.events += batch.events.length;
          result.failedEvents += outcome.failed;
          result.batches++;
          if (outcome.replayed) result.replayedBatches++;
          ctx.progress({ phase: model.name, done: result.events, total, unit: 'events' });
          // Between batches, after a commit: a stop request, or another stream's failure.
          ctx.throwIfStopped();
          if (failed.signal.aborted) break;
        }
      }));
    } catch (err) {
      failed.abort(err);
      throw err;
    } finally {
      memory.give(held.splice(0).reduce((n, b) => n + b, 0));
    }
  }));
  const failure = outcomes.find((o) => o.status === 'rejected');
  if (failure) throw (failure as PromiseRejectedResult).reason;
  if (result.failedEvents > 0) ctx.log(`${model.name}: ${result.failedEvents} event(s) could not be applied; see projections.failed_events2`);
  return { ...result, atHead: false };
}

/**
 * The read stage: a group's batches, its instances in chunks (see chunkInstances), chunk after chunk.
 * Each batch is read within a share of the process's memory budget; its bytes are pushed onto `held`
 * and given back by the write stage once the batch is written.
 */
async function* readBatches(
  reading: pg.ClientBase, model: ProjectionModel, group: readonly Backlog[], endPoint: string, plan: StreamPlan, held: number[],
): AsyncGenerator<ProjectionEvent[]> {
  let share = BATCH_SHARE;
  for (const chunk of chunkInstances(group, plan.batchSize)) {
    const starts = chunk.map((b) => ({ instanceId: b.instanceId, from: plan.states.get(b.instanceId)?.key ?? null, firstPosition: b.firstPosition }));
    const reader = new StreamReader(reading, model, starts, endPoint, plan.batchSize, chunk.reduce((n, b) => n + b.events, 0));
    for (;;) {
      const granted = await memory.take(share, LEAST_SHARE);
      let batch: ProjectionEvent[] | null;
      try {
        batch = await reader.next(granted);
      } finally {
        memory.give(granted);
      }
      if (!batch) break;
      // A batch over its share is a single event larger than it: taken all the same.
      memory.force(reader.lastBytes);
      held.push(reader.lastBytes);
      share = batchShare(BATCH_SHARE, reader.lastBytes, batch.length);
      yield batch;
    }
  }
}

/** The fold stage of a group: each instance's filter offset carries on from its recorded state. */
function foldWith(model: ProjectionModel, group: readonly Backlog[], states: ReadonlyMap<string, CurrentState>): (batch: ProjectionEvent[]) => Promise<FoldedBatch> {
  const offsets = new Map(group.map((b) => {
    const state = states.get(b.instanceId);
    return [b.instanceId, new OffsetCounter(state?.key.position ?? null, state?.filterOffset ?? 0)] as const;
  }));
  return (batch) => foldBatchInSlices(model, batch, offsets);
}
