import type { Database } from '../db/connection.js';
import { RefusedError } from '../errors.js';
import type { ProgressUpdate } from '../step.js';
import { writeBatch } from './batch.js';
import { ensureTables } from './ddl.js';
import { countBacklog, EventReader, listInstances, type Backlog, type Queryable, type StreamKey } from './events.js';
import type { ProjectionModel } from './model.js';
import { OffsetCounter, readStates, type CurrentState } from './state.js';
import type { ProjectionEvent } from './types.js';

/** Inputs of {@link prefillProjection}. */
export interface PrefillOptions {
  /** Exclusive upper bound on `position` (see captureEndPoint). */
  readonly endPoint: string;
  /** Instances processed in parallel, each with its own connection. */
  readonly concurrency: number;
  /** Events read, folded and written per transaction. Default is 20,000. */
  readonly batchSize?: number;
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

/** Where the projection stands and what it still has to do, read without writing. */
export interface ProjectionBacklog {
  readonly states: ReadonlyMap<string, CurrentState>;
  readonly backlog: readonly Backlog[];
  readonly events: number;
}

/** Reads the recorded positions and counts the events left before the end point, per instance. */
export async function projectionBacklog(db: Queryable, model: ProjectionModel, endPoint: string): Promise<ProjectionBacklog> {
  const exists = await db.query<{ t: string | null }>(`SELECT to_regclass('eventstore.events2')::text AS t`);
  if (!exists.rows[0].t) {
    throw new RefusedError('eventstore.events2 does not exist', 'run `zsetup migrate` first: projections are prefilled from eventstore.events2');
  }
  const states = (await db.query<{ t: string | null }>(`SELECT to_regclass('projections.current_states')::text AS t`)).rows[0].t
    ? await readStates(db, model.name)
    : new Map<string, CurrentState>();
  const instances = await listInstances(db);
  const keys = new Map<string, StreamKey>([...states].map(([i, s]) => [i, s.key]));
  const backlog = (await countBacklog(db, model, instances, keys, endPoint)).filter((b) => b.events > 0);
  return { states, backlog, events: backlog.reduce((n, b) => n + b.events, 0) };
}

/**
 * Prefills one projection up to the end point: creates its tables if missing, then processes every
 * instance with events left, several in parallel. Each instance's stream is read in ordered batches,
 * folded in memory and written in bulk together with the new position (see writeBatch). Memory is
 * bounded by two batches per worker (the one being written and the one read ahead).
 */
export async function prefillProjection(
  database: Database,
  model: ProjectionModel,
  options: PrefillOptions,
  ctx: PrefillContext,
): Promise<PrefillResult> {
  const batchSize = options.batchSize ?? 20_000;
  const setup = await database.pool.connect();
  try {
    await ensureTables(setup, model);
  } finally {
    setup.release();
  }
  const { states, backlog, events: total } = await projectionBacklog(database.pool, model, options.endPoint);
  const result = { projection: model.name, endPoint: options.endPoint, instances: backlog.length, events: 0, failedEvents: 0, batches: 0, replayedBatches: 0 };
  if (total === 0) return { ...result, atHead: true };
  ctx.progress({ phase: model.name, done: 0, total, unit: 'events' });
  // Biggest instances first, so the last worker does not start a long stream alone.
  const queue = [...backlog].sort((a, b) => b.events - a.events);
  const poolMax = (database.pool as unknown as { options?: { max?: number } }).options?.max ?? 10;
  const workers = Math.max(1, Math.min(options.concurrency, queue.length, Math.floor(poolMax / 2)));
  let stopped: unknown;
  const work = async () => {
    const client = await database.pool.connect();
    try {
      // Batch statements are short; JIT compiling them costs more than it saves.
      await client.query('SET jit = off');
      for (let b = queue.shift(); b && stopped === undefined; b = queue.shift()) {
        const state = states.get(b.instanceId);
        const reader = new EventReader(database.pool, model, b.instanceId, state?.key ?? null, b, options.endPoint, batchSize);
        const offset = new OffsetCounter(state?.key.position ?? null, state?.filterOffset ?? 0);
        let pending: Promise<ProjectionEvent[] | null> = reader.next();
        for (;;) {
          const events = await pending;
          if (!events) break;
          // Read the next batch while this one is folded and written.
          pending = reader.next();
          pending.catch(() => {});
          const outcome = await writeBatch(client, model, events, offset);
          result.events += events.length;
          result.failedEvents += outcome.failed;
          result.batches++;
          if (outcome.replayed) result.replayedBatches++;
          ctx.progress({ phase: model.name, done: result.events, total, unit: 'events' });
          if (stopped !== undefined) return;
          ctx.throwIfStopped();
        }
      }
    } catch (err) {
      stopped ??= err;
    } finally {
      await client.query('RESET jit').catch(() => {});
      client.release();
    }
  };
  await Promise.all(Array.from({ length: workers }, work));
  if (stopped !== undefined) throw stopped;
  if (result.failedEvents > 0) ctx.log(`${model.name}: ${result.failedEvents} event(s) could not be applied; see projections.failed_events2`);
  return { ...result, atHead: false };
}
