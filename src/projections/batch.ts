import type pg from 'pg';
import { isDatabaseError } from '../errors.js';
import type { StatesShape } from './bookkeeping.js';
import { BatchFold, type FoldedWrites } from './fold.js';
import { reduceEvent, type Op, type ProjectionModel } from './model.js';
import { failuresStatement, OffsetCounter, recordFailures, statesStatement, writeStates, type FailedEvent, type StateUpdate } from './state.js';
import type { ProjectionEvent } from './types.js';
import { bulkStatements, copyRows, runScript, writeOp, type BatchStatement } from './write.js';

/** What writing one batch did. */
export interface BatchOutcome {
  readonly failed: number;
  /** True when the bulk write failed and the batch was replayed event by event. */
  readonly replayed: boolean;
}

/** A batch reduced and folded in memory, ready to be written in one transaction. */
export interface FoldedBatch {
  readonly events: readonly ProjectionEvent[];
  /** Segments of writes, each written after the one before (see BatchFold). */
  readonly writes: FoldedWrites;
  readonly failures: readonly FailedEvent[];
  /** The new position of every instance the batch touched. */
  readonly states: readonly StateUpdate[];
}

/** Runs the reducers over a batch; events whose reducer throws become failures. */
export function reduceBatch(model: ProjectionModel, events: readonly ProjectionEvent[]) {
  const reduced: { event: ProjectionEvent; ops: Op[] }[] = [];
  const failures: FailedEvent[] = [];
  for (const event of events) {
    try {
      reduced.push({ event, ops: reduceEvent(model, event) });
    } catch (err) {
      failures.push({ event, error: errorText(err) });
    }
  }
  return { reduced, failures };
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Reduces a batch (events of any instances, in stream order) and folds it into one net change per row.
 * Each event is folded as soon as it is reduced, so only the fold is kept, not every event's ops.
 * `offsets` (one counter per instance, created on first use) advance past the batch.
 */
export function foldBatch(model: ProjectionModel, events: readonly ProjectionEvent[], offsets: Map<string, OffsetCounter>): FoldedBatch {
  const steps = foldSteps(model, events, offsets, Infinity);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * {@link foldBatch}, giving the event loop a turn after every `slice` events. A prefill folds in the
 * same thread that sends and receives its other connections' data: folded in one piece, a batch of
 * 20,000 events holds back for a few hundred milliseconds the COPY being written, the next batch being
 * read and the DDL the writes wait for.
 */
export async function foldBatchInSlices(model: ProjectionModel, events: readonly ProjectionEvent[], offsets: Map<string, OffsetCounter>, slice = 1000): Promise<FoldedBatch> {
  const steps = foldSteps(model, events, offsets, slice);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** The fold of foldBatch, pausing (a `yield`) after every `slice` events. */
function* foldSteps(model: ProjectionModel, events: readonly ProjectionEvent[], offsets: Map<string, OffsetCounter>, slice: number): Generator<void, FoldedBatch> {
  const fold = new BatchFold(model);
  const failures: FailedEvent[] = [];
  const last = new Map<string, ProjectionEvent>();
  for (let i = 0; i < events.length; i++) {
    const event = events[i];
    try {
      fold.apply(reduceEvent(model, event));
    } catch (err) {
      failures.push({ event, error: errorText(err) });
    }
    let offset = offsets.get(event.instanceId);
    if (!offset) offsets.set(event.instanceId, (offset = new OffsetCounter(null, 0)));
    offset.add(event);
    last.set(event.instanceId, event);
    if ((i + 1) % slice === 0 && i + 1 < events.length) yield;
  }
  const states = [...last.values()].map((e) => ({ last: e, filterOffset: offsets.get(e.instanceId)!.value }));
  return { events, writes: fold.writes(), failures, states };
}

/** Runs `fn` between BEGIN and COMMIT on `client`; rolls back and rethrows if it fails. */
export async function inTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** A value error in the data (class 22) or a violated constraint (class 23): one event's fault, not the database's. */
function isDataError(err: unknown): err is Error & { code: string } {
  return isDatabaseError(err) && (err.code.startsWith('22') || err.code.startsWith('23'));
}

/**
 * How a prefill sends the new rows of its batches: with COPY (see copyRows) until a COPY meets a row
 * already stored; from then on, for the rest of the prefill, as upserts. Shared by a projection's streams.
 */
export interface RowTransfer {
  copy: boolean;
}

const UNIQUE_VIOLATION = '23505';

/**
 * Writes a folded batch and the new position of every instance it touched in ONE transaction, so a
 * crash leaves each instance's projection either before or after the whole batch. If PostgreSQL
 * rejects a value, the batch is rolled back and replayed event by event inside savepoints, so the
 * failing event is recorded and the rest still applies. A COPY that meets a stored key is rolled back
 * and the batch written again as upserts.
 */
export async function writeBatch(
  client: pg.ClientBase,
  model: ProjectionModel,
  batch: FoldedBatch,
  transfer: RowTransfer = { copy: false },
  shape: StatesShape = { inTxOrder: false, filterOffset: true },
): Promise<BatchOutcome> {
  const copy = transfer.copy;
  const plans = batch.writes.map((segment) => bulkStatements(segment, copy));
  try {
    // Per segment: deletions (and upserts), a COPY per table with new rows, then the updates, sent in
    // one round trip with what follows up to the next COPY; failures and positions go with the COMMIT.
    let script: BatchStatement[] = [{ text: 'BEGIN', values: [] }];
    for (const plan of plans) {
      script.push(...plan.before);
      if (plan.copies.length) {
        await runScript(client, script);
        script = [];
        for (const rows of plan.copies) await copyRows(client, rows);
      }
      script.push(...plan.after);
    }
    if (batch.failures.length) script.push(failuresStatement(model.name, batch.failures));
    await runScript(client, [...script, statesStatement(model.name, batch.states, shape), { text: 'COMMIT', values: [] }]);
    return { failed: batch.failures.length, replayed: false };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    if (!isDataError(err)) throw err;
    if (copy && plans.some((p) => p.copies.length) && err.code === UNIQUE_VIOLATION) {
      transfer.copy = false;
      return writeBatch(client, model, batch, transfer, shape);
    }
  }
  // The fold took over the ops' rows; reducers are pure, so reducing again gives the original ops.
  const { reduced, failures } = reduceBatch(model, batch.events);
  await inTransaction(client, async () => {
    await applyEventByEvent(client, reduced, failures);
    await recordFailures(client, model.name, failures);
    await writeStates(client, model.name, batch.states, shape);
  });
  return { failed: failures.length, replayed: true };
}

/**
 * Applies events one at a time, each inside its own savepoint; an event whose statements fail is
 * rolled back to its savepoint and added to `failures`. The reference system's way, kept for isolating
 * a bad event and for the benchmark's comparison.
 */
export async function applyEventByEvent(
  client: pg.ClientBase,
  reduced: readonly { event: ProjectionEvent; ops: readonly Op[] }[],
  failures: FailedEvent[],
): Promise<void> {
  for (const { event, ops } of reduced) {
    await client.query('SAVEPOINT exec_stmt');
    try {
      for (const op of ops) await writeOp(client, op);
      await client.query('RELEASE SAVEPOINT exec_stmt');
    } catch (err) {
      if (!isDatabaseError(err)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT exec_stmt');
      failures.push({ event, error: err.message });
    }
  }
}
