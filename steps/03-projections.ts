import type { Database } from '../src/db/connection.js';
import { queryableOf } from '../src/db/queryable.js';
import { completeBookkeeping } from '../src/projections/bookkeeping.js';
import { captureEndPoint, type Queryable } from '../src/projections/events.js';
import { ensureTables, existingTables, type EnsuredTables } from '../src/projections/ddl.js';
import { selectProjections, type ProjectionSelection } from '../src/projections/load.js';
import type { ProjectionModel } from '../src/projections/model.js';
import { planProjection } from '../src/projections/plan.js';
import { prefillProjection, projectionBacklog } from '../src/projections/prefill.js';
import { missingPrivileges, relationExists } from '../src/privileges.js';
import type { Step, StepPlan } from '../src/step.js';

/** Rough prefill rate for dry-run estimates (events per second; see BENCHMARKS-projections.md). */
const ESTIMATED_EVENTS_PER_SECOND = 15_000;

/**
 * The end point shared by the projection steps of one run: captured once, when the first of them
 * starts, so every projection stops at the same place in the stream.
 */
export class SharedEndPoint {
  private captured: Promise<{ position: string; openTransactions: number }> | undefined;

  get(db: Queryable): Promise<{ position: string; openTransactions: number }> {
    this.captured ??= captureEndPoint(db);
    return this.captured;
  }
}

/**
 * The tables of all projection steps of one run, created together (one catalog query, one DDL
 * transaction) when the first of them starts: projections prefilled side by side then do not queue
 * behind each other's DDL before their first read. A failure fails every step that waits on it.
 */
class SharedTables {
  private created: Promise<EnsuredTables> | undefined;

  constructor(private readonly models: readonly ProjectionModel[]) {}

  ensure(database: Database): Promise<EnsuredTables> {
    this.created ??= (async () => {
      const client = await database.pool.connect();
      try {
        return await ensureTables(client, ...this.models);
      } finally {
        client.release();
      }
    })();
    return this.created;
  }
}

/** A step that prefills one projection. Its id is `projection:<name>`. */
export interface ProjectionStep extends Step<null> {
  readonly model: ProjectionModel;
}

const onTx = queryableOf;

/** One prefill step per projection, all stopping at one shared end point. */
export function projectionSteps(models: readonly ProjectionModel[], options: { batchSize?: number; endPoint?: SharedEndPoint } = {}): ProjectionStep[] {
  const endPoint = options.endPoint ?? new SharedEndPoint();
  const tables = new SharedTables(models);
  return models.map((model) => {
    return {
      id: `projection:${model.name}`,
      title: `prefill ${model.name}`,
      model,
      schedule: {
        group: 'projections',
        // Events left to apply. A projection falls behind again when events arrive after it; its run is
        // also what completes and records ZITADEL's bookkeeping steps 15 and 17, and what rebuilds a
        // projection that lacks a table (an older zsetup's partial one): both count as work left.
        async remaining(tx) {
          const db = onTx(tx);
          const bound = await captureEndPoint(db, 0);
          const events = (await projectionBacklog(db, model, bound.position)).events;
          const incomplete = (await completeBookkeeping(db)) === null || (await existingTables(db, model)).length < model.tables.length;
          return Math.max(events, incomplete ? 1 : 0);
        },
      },
      async plan(ctx): Promise<StepPlan> {
        return planProjection(onTx(ctx.tx), model, ctx.options, ESTIMATED_EVENTS_PER_SECOND);
      },
      async preflight(tx) {
        const write = ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] as const;
        const events2 = (await relationExists(tx, 'eventstore.events2')) ? [['eventstore.events2', ['SELECT']] as const] : [];
        return missingPrivileges(tx, [
          ...events2,
          ...model.tables.map((t) => [t.name, write] as const),
          ['projections.current_states', write],
          ['projections.failed_events2', write],
        ]);
      },
      async run(ctx) {
        const [bound, ensured] = await Promise.all([endPoint.get(ctx.database.pool), tables.ensure(ctx.database)]);
        if (ensured.rebuilt.includes(model.name)) ctx.log(`${model.name} lacked some of its tables: it is prefilled again from the start`);
        if (bound.openTransactions > 0) ctx.log(`end point ${bound.position} held back by ${bound.openTransactions} open transaction(s); later events are left for the application`);
        const r = await prefillProjection(ctx.database, model, { endPoint: bound.position, concurrency: ctx.options.concurrency, batchSize: options.batchSize }, ctx);
        const message = r.atHead
          ? `${model.name} already at the head (end point ${r.endPoint})`
          : `${model.name}: ${r.events} events from ${r.instances} instance(s) in ${r.batches} batch(es)` +
            (r.failedEvents ? `, ${r.failedEvents} failed (see projections.failed_events2)` : '');
        return { message, ...r };
      },
      // The projection is whole (every table, each instance's position): ZITADEL's --init-projections
      // skips it under its name and its handler continues from current_states.
      zitadelSteps: async () => [{ name: model.name }],
    };
  });
}

/** The projection steps for a selection (built-ins, a custom module, a name filter). */
export async function loadProjectionSteps(selection: ProjectionSelection & { batchSize?: number } = {}): Promise<ProjectionStep[]> {
  return projectionSteps(await selectProjections(selection), { batchSize: selection.batchSize });
}
