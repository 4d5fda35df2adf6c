import type pg from 'pg';
import { isDatabaseError } from '../errors.js';
import { BatchFold } from './fold.js';
import { reduceEvent, type Op, type ProjectionModel } from './model.js';
import { OffsetCounter, recordFailures, writeState, type FailedEvent } from './state.js';
import type { ProjectionEvent } from './types.js';
import { writeBulk, writeOp } from './write.js';

/** What writing one batch did. */
export interface BatchOutcome {
  readonly failed: number;
  /** True when the bulk write failed and the batch was replayed event by event. */
  readonly replayed: boolean;
}

/** Runs the reducers over a batch; events whose reducer throws become failures. */
export function reduceBatch(model: ProjectionModel, events: readonly ProjectionEvent[]) {
  const reduced: { event: ProjectionEvent; ops: Op[] }[] = [];
  const failures: FailedEvent[] = [];
  for (const event of events) {
    try {
      reduced.push({ event, ops: reduceEvent(model, event) });
    } catch (err) {
      failures.push({ event, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return { reduced, failures };
}

async function inTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
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
function isDataError(err: unknown): boolean {
  return isDatabaseError(err) && (err.code.startsWith('22') || err.code.startsWith('23'));
}

/**
 * Writes one batch of one instance's stream and the projection's new position in ONE transaction, so a
 * crash leaves the projection either before or after the whole batch. The batch is folded in memory
 * and written in bulk; if PostgreSQL rejects a value, the batch is rolled back and replayed event by
 * event inside savepoints, so the failing event is recorded and the rest still applies.
 */
export async function writeBatch(
  client: pg.ClientBase,
  model: ProjectionModel,
  events: readonly ProjectionEvent[],
  offset: OffsetCounter,
): Promise<BatchOutcome> {
  const { reduced, failures } = reduceBatch(model, events);
  for (const e of events) offset.add(e);
  const last = events[events.length - 1];
  const instanceId = last.instanceId;
  try {
    await inTransaction(client, async () => {
      const fold = new BatchFold(model);
      for (const r of reduced) fold.apply(r.ops);
      await writeBulk(client, fold.writes());
      await recordFailures(client, model.name, instanceId, failures);
      await writeState(client, model.name, last, offset.value);
    });
    return { failed: failures.length, replayed: false };
  } catch (err) {
    if (!isDataError(err)) throw err;
  }
  const all = [...failures];
  await inTransaction(client, async () => {
    await applyEventByEvent(client, reduced, all);
    await recordFailures(client, model.name, instanceId, all);
    await writeState(client, model.name, last, offset.value);
  });
  return { failed: all.length, replayed: true };
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
