import type { Database } from '../src/db/connection.js';
import { queryableOf } from '../src/db/queryable.js';
import { completeBookkeeping, legacyMaintained, oldVersionLive } from '../src/projections/bookkeeping.js';
import { queuedEndPoint } from '../src/events2/capture.js';
import type { ReadableDb } from '../src/events2/catalog.js';
import { captureEndPoint, type Queryable } from '../src/projections/events.js';
import { minPosition } from '../src/projections/position.js';
import { ensureTables, existingTables, type EnsuredTables } from '../src/projections/ddl.js';
import { selectProjections, type ProjectionSelection } from '../src/projections/load.js';
import type { ProjectionModel } from '../src/projections/model.js';
import { planProjection } from '../src/projections/plan.js';
import { prefillProjection, projectionBacklog } from '../src/projections/prefill.js';
import { missingPrivileges, relationExists } from '../src/privileges.js';
import type { Tx } from '../src/db/connection.js';
import type { Step, StepOptions, StepPlan } from '../src/step.js';

/** Rough prefill rate for dry-run estimates (events per second; see BENCHMARKS-projections.md). */
const ESTIMATED_EVENTS_PER_SECOND = 15_000;

/** Where a prefill stops, and what held it back. */
export interface EndPoint {
  readonly position: string;
  readonly openTransactions: number;
  /** Before an online cut-over: the end point was lowered to the earliest event still in the capture queue. */
  readonly heldByQueue: boolean;
}

/**
 * The end point of a prefill: {@link captureEndPoint} (no open transaction may still add an event
 * before it), and before an online move's cut-over also no further than the earliest event waiting in
 * the capture queue (committed to eventstore.events, not in events2 yet). The queue is read second, in
 * a later snapshot, so a writer committing between the two reads is seen by one of them.
 */
export async function projectionEndPoint(pool: Queryable, db: ReadableDb, waitMs?: number): Promise<EndPoint> {
  const open = await captureEndPoint(pool, waitMs);
  const queued = await queuedEndPoint(db);
  const position = queued === null ? open.position : minPosition(open.position, queued);
  return { ...open, position, heldByQueue: position !== open.position };
}

/**
 * The end point shared by the projection steps of one pass: captured once, when the first of them
 * starts, so every projection stops at the same place in the stream.
 */
export class SharedEndPoint {
  private captured: Promise<EndPoint> | undefined;

  get(database: Database): Promise<EndPoint> {
    this.captured ??= projectionEndPoint(database.pool, database.db);
    return this.captured;
  }
}

/**
 * The tables of all projection steps of one run, created together (one catalog query, one DDL
 * transaction) when the first of them starts: projections prefilled side by side then do not queue
 * behind each other's DDL. Made after the end point is captured: the end point waits for open
 * transactions, and the DDL's is one, while the prefills read and fold their first batches before the
 * tables are ready (see prefillProjection). A failure fails every step that waits on it.
 */
class SharedTables {
  private created: Promise<EnsuredTables> | undefined;

  constructor(private readonly models: readonly ProjectionModel[], private readonly endPoint: SharedEndPoint, private readonly skipped?: SharedMaintained) {}

  ensure(database: Database): Promise<EnsuredTables> {
    this.created ??= (async () => {
      await this.endPoint.get(database);
      // Before the cut-over, never the tables of a projection the old version maintains (see SharedMaintained).
      const skip = this.skipped ? await this.skipped.get(database) : new Set<string>();
      const client = await database.pool.connect();
      try {
        return await ensureTables(client, ...this.models.filter((m) => !skip.has(m.name)));
      } finally {
        client.release();
      }
    })();
    return this.created;
  }
}

/**
 * The projections of a pass before the cut-over that the old version maintains (a legacy handler state
 * under their name), read once when the first of them starts. Its handlers write their tables and
 * advance their legacy positions until the cut-over, so the pass leaves them alone; the pass after the
 * cut-over copies the legacy position then (step 15's copy) and applies the events since.
 */
class SharedMaintained {
  private read: Promise<Set<string>> | undefined;

  constructor(private readonly models: readonly ProjectionModel[]) {}

  get(database: Database): Promise<Set<string>> {
    this.read ??= legacyMaintained(database.pool, this.models.map((m) => m.name));
    return this.read;
  }
}

/** What a pass before the cut-over says of a projection the old version maintains. */
function maintainedMessage(name: string): string {
  return `${name} is maintained by the old version until the cut-over; the pass after it continues from the old version's position`;
}

/** A step that prefills one projection. Its id is `projection:<name>`. */
export interface ProjectionStep extends Step<null> {
  readonly model: ProjectionModel;
}

const onTx = queryableOf;

/**
 * Which pass of an online move the projection steps are (see steps/index.ts): `before-cut-over`
 * prefills from events2 while the old version still writes, `after-cut-over` catches up the seconds
 * since. Absent: the ordinary prefill, after the move.
 */
export type ProjectionPass = 'before-cut-over' | 'after-cut-over';

/** Inputs of {@link projectionSteps}. */
export interface ProjectionStepsOptions {
  readonly batchSize?: number;
  readonly endPoint?: SharedEndPoint;
  readonly pass?: ProjectionPass;
}

/** One prefill step per projection, all stopping at one shared end point. */
export function projectionSteps(models: readonly ProjectionModel[], options: ProjectionStepsOptions = {}): ProjectionStep[] {
  const endPoint = options.endPoint ?? new SharedEndPoint();
  const before = options.pass === 'before-cut-over';
  const maintained = before ? new SharedMaintained(models) : undefined;
  const tables = new SharedTables(models, endPoint, maintained);
  const suffix = options.pass ? ` (${options.pass === 'before-cut-over' ? 'before' : 'after'} the cut-over)` : '';
  return models.map((model) => {
    return {
      id: `projection:${model.name}`,
      title: `prefill ${model.name}${suffix}`,
      model,
      schedule: {
        group: 'projections',
        // Events left to apply. A projection falls behind again when events arrive after it; its run is
        // also what completes and records ZITADEL's bookkeeping steps 15 and 17, and what rebuilds a
        // projection that lacks a table (an older zsetup's partial one): both count as work left.
        async remaining(tx) {
          const db = onTx(tx);
          if (before && (await legacyMaintained(db, [model.name])).size > 0) return 0;
          const bound = await projectionEndPoint(db, tx, 0);
          const events = (await projectionBacklog(db, model, bound.position)).events;
          if (events > 0) return events;
          const incomplete = (await completeBookkeeping(db)) === null || (await existingTables(db, model)).length < model.tables.length;
          return incomplete ? 1 : 0;
        },
      },
      async plan(ctx): Promise<StepPlan> {
        if (options.pass === 'after-cut-over') return CATCH_UP_PLAN;
        if (before && (await legacyMaintained(onTx(ctx.tx), [model.name])).size > 0) {
          return { action: maintainedMessage(model.name), willChange: false, details: { pass: 'before-cut-over', maintainedByOldVersion: true } };
        }
        const warm = before ? await planBeforeCutOver(ctx.tx, model, ctx.options) : null;
        return warm ?? planProjection(onTx(ctx.tx), model, ctx.options, ESTIMATED_EVENTS_PER_SECOND);
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
        if (maintained && (await maintained.get(ctx.database)).has(model.name)) {
          return { message: maintainedMessage(model.name), projection: model.name, maintainedByOldVersion: true, events: 0 };
        }
        const bound = await endPoint.get(ctx.database);
        // Said as soon as it is known, before anything of the projection is written.
        const ensured = tables.ensure(ctx.database).then((e) => {
          if (e.rebuilt.includes(model.name)) ctx.log(`${model.name} lacked some of its tables: it is prefilled again from the start`);
          return e;
        });
        if (bound.heldByQueue) ctx.log(`end point ${bound.position} held back by the online move's capture queue; the pass after the cut-over takes what follows`);
        else if (bound.openTransactions > 0) ctx.log(`end point ${bound.position} held back by ${bound.openTransactions} open transaction(s); later events are left for the application`);
        const r = await prefillProjection(ctx.database, model, { endPoint: bound.position, concurrency: ctx.options.concurrency, batchSize: options.batchSize, tables: ensured }, ctx);
        const message = r.atHead
          ? `${model.name} already at the head (end point ${r.endPoint})`
          : `${model.name}: ${r.events} events from ${r.instances} instance(s) in ${r.batches} batch(es)` +
            (r.failedEvents ? `, ${r.failedEvents} failed (see projections.failed_events2)` : '');
        return { message, ...r };
      },
      // The projection is whole (every table, each instance's position): ZITADEL's --init-projections
      // skips it under its name and its handler continues from current_states. Not while the old version
      // still writes eventstore.events (a pass before the cut-over): the record would go into events2
      // ahead of the catch-up, and the projection is whole only after the pass that follows the cut-over.
      zitadelSteps: async (db) => ((await oldVersionLive(db)) ? [] : [{ name: model.name }]),
    };
  });
}

/** The projection steps for a selection (built-ins, a custom module, a name filter). */
export async function loadProjectionSteps(selection: ProjectionSelection & { batchSize?: number } = {}): Promise<ProjectionStep[]> {
  return projectionSteps(await selectProjections(selection), { batchSize: selection.batchSize });
}

/** The models of a selection, for steps composed per pass (see {@link projectionSteps}). */
export function loadProjectionModels(selection: ProjectionSelection = {}): Promise<ProjectionModel[]> {
  return selectProjections(selection);
}

/** The dry-run of a pass after the cut-over: the events since the pass before it, which the run before it cannot count yet. */
const CATCH_UP_PLAN: StepPlan = {
  action: 'catch up the events since the pass before the cut-over (the catch-up, the cut-over and the milestones add seconds of events)',
  willChange: true,
  details: { pass: 'after-cut-over' },
  estimatedSeconds: 1,
};

/**
 * The dry-run of a pass before the cut-over once the online move has copied events2 (a prepared move):
 * the backlog in events2 up to the end point the pass would take now. Null before that (the legacy
 * table is then what holds the events: see planProjection).
 */
async function planBeforeCutOver(tx: Tx, model: ProjectionModel, options: StepOptions): Promise<StepPlan | null> {
  const db = onTx(tx);
  const r = await db.query<{ copied: boolean }>(`SELECT to_regclass('eventstore.events') IS NOT NULL AND to_regclass('eventstore.events2') IS NOT NULL
    AND to_regclass('zsetup.events2_chunks') IS NULL AS copied`);
  if (!r.rows[0].copied) return null;
  // Once per dry-run (every plan of one gets the same options object): the queue may be long after a --prepare.
  let bound = endPointsOfDryRun.get(options);
  if (!bound) endPointsOfDryRun.set(options, (bound = projectionEndPoint(db, tx, 0)));
  return planFromBound(db, model, await bound);
}

const endPointsOfDryRun = new WeakMap<StepOptions, Promise<EndPoint>>();

/** A pass's plan from the end point it would take. */
async function planFromBound(db: Queryable, model: ProjectionModel, bound: EndPoint): Promise<StepPlan> {
  const { states, events } = await projectionBacklog(db, model, bound.position);
  return {
    action: `apply ${events.toLocaleString('en-US')} events of eventstore.events2 to ${model.name}, plus what the catch-up before it adds`,
    willChange: true,
    details: { eventsToProcess: events, countedIn: 'eventstore.events2', instancesRecorded: states.size, endPoint: bound.position, pass: 'before-cut-over' },
    estimatedSeconds: Math.ceil(events / ESTIMATED_EVENTS_PER_SECOND),
    notes: bound.heldByQueue ? ['the end point is held at the earliest event waiting in the capture queue'] : undefined,
  };
}
