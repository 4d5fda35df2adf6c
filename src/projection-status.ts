import type { Database } from './db/connection.js';
import { queryableOf } from './db/queryable.js';
import { captureEndPoint } from './projections/events.js';
import type { ProjectionModel } from './projections/model.js';
import { projectionBacklog } from './projections/prefill.js';
import type { Step } from './step.js';

/**
 * A projection as the database has it, not as zsetup recorded it: what it still has to apply up to
 * now, and for how many instances projections.current_states records a position. A projection whose
 * step succeeded but that has events to apply is behind: the next `migrate --init-projections` applies
 * them.
 */
export interface ProjectionState {
  readonly eventsToApply: number;
  readonly instancesToApply: number;
  readonly instancesRecorded: number;
}

/**
 * Reads the state of every projection step (by step id) in one read-only transaction. Empty before
 * eventstore.events2 exists: there is nothing to measure against yet. Steps in `skip` (running right
 * now in another process) are left out.
 */
export async function projectionStates(database: Database, steps: readonly Step<any>[], skip: ReadonlySet<string> = new Set()): Promise<Map<string, ProjectionState>> {
  const projections = steps.filter((s) => !skip.has(s.id)).flatMap((s) => {
    const model = modelOf(s);
    return model ? [{ id: s.id, model }] : [];
  });
  const states = new Map<string, ProjectionState>();
  if (projections.length === 0) return states;
  return database.db.transaction().setAccessMode('read only').execute(async (tx) => {
    const db = queryableOf(tx);
    const r = await db.query<{ ok: boolean }>(`SELECT to_regclass('eventstore.events2') IS NOT NULL AS ok`);
    if (!r.rows[0].ok) return states;
    // No waiting for open transactions: this is a look, not a prefill's end point.
    const bound = await captureEndPoint(db, 0);
    for (const { id, model } of projections) {
      const b = await projectionBacklog(db, model, bound.position);
      states.set(id, { eventsToApply: b.events, instancesToApply: b.backlog.length, instancesRecorded: b.states.size });
    }
    return states;
  });
}

/** The projection a step prefills, when it is a projection step. */
function modelOf(step: Step<any>): ProjectionModel | undefined {
  return 'model' in step ? (step as { model: ProjectionModel }).model : undefined;
}
