import type { Db } from '../src/db/connection.js';
import { detectSituation, type Events2Checkpoint } from '../src/events2/situation.js';
import type { MoveRequest } from '../src/events2/run.js';
import type { Step } from '../src/step.js';
import { readSteps } from '../src/steps-table.js';
import { events2Step, events2StepFor } from './01-events2.js';
import { milestonesStep } from './02-milestones.js';
import { loadProjectionModels, projectionSteps } from './03-projections.js';

/** What to load. */
export interface StepSelection {
  /** Append the projection prefill steps (`migrate --init-projections`). */
  readonly initProjections?: boolean;
  /** With initProjections: prefill only these projections (`projections.orgs1` or `orgs1`). */
  readonly projections?: readonly string[];
  /** With initProjections: a module exporting custom projection definitions. */
  readonly projectionsFile?: string;
}

/**
 * The step provider: the built-in steps in file-number order. Tests hand their own steps to the
 * engine instead.
 */
export async function loadSteps(selection: StepSelection = {}): Promise<Step<any>[]> {
  const models = selection.initProjections ? await loadProjectionModels({ names: selection.projections, file: selection.projectionsFile }) : [];
  return [events2Step, milestonesStep, ...projectionSteps(models)];
}

/** Inputs of {@link composeSteps}: the selection, how to move events2, and the database to look at. */
export interface Composition extends StepSelection {
  /** The CLI's `--offline` / `--prepare`. Default is online. */
  readonly move?: MoveRequest;
}

/**
 * The steps of one `migrate` as the flags ask. With `--init-projections`, on a database whose online
 * move is still ahead of its cut-over, the projections are prefilled twice, so the new version starts
 * warm and the cut-over stays seconds long:
 *   events2 up to the cut-over → projections (before the cut-over) → events2 (catch-up and cut-over)
 *   → milestones → projections (after the cut-over: the seconds since)
 * With `--prepare` the run stops after the first pass. The second occurrence of a step id runs only when
 * it has work left then (see migrate.ts). Any other database (already moved, fresh, an offline move
 * under way) gets the ordinary list: `--prepare` then runs the events2 step alone, as before.
 */
export async function composeSteps(db: Db, composition: Composition = {}): Promise<Step<any>[]> {
  const move = composition.move ?? 'online';
  const events2 = move === 'online' ? events2Step : events2StepFor(move);
  const models = composition.initProjections ? await loadProjectionModels({ names: composition.projections, file: composition.projectionsFile }) : [];
  const warm = models.length > 0 && move !== 'offline' && (await aheadOfCutOver(db));
  if (!warm) return move === 'prepare' ? [events2] : [events2, milestonesStep, ...projectionSteps(models)];
  const before = [upToTheCutOver(), ...projectionSteps(models, { pass: 'before-cut-over' })];
  if (move === 'prepare') return before;
  return [...before, cutOverAfterWarm(), milestonesStep, ...projectionSteps(models, { pass: 'after-cut-over' })];
}

/**
 * A legacy database the online move has not cut over yet (not started, copying, or prepared). Read
 * before the runner lock: a runner that finishes the move meanwhile leaves only skipped steps behind.
 * A state the step refuses, or a role that cannot read it, gets the ordinary list, so the runner and
 * the events2 step say why (with their exit codes).
 */
async function aheadOfCutOver(db: Db): Promise<boolean> {
  try {
    const checkpoint = ((await readSteps(db)).get(events2Step.id)?.checkpoint ?? null) as Events2Checkpoint | null;
    const situation = await detectSituation(db, checkpoint);
    return situation.kind === 'legacy' || (situation.kind === 'online' && situation.checkpoint.stage !== 'verify');
  } catch {
    return false;
  }
}

/** The first events2 occurrence: the online move as `--prepare` runs it (capture on, caught up, verified). */
function upToTheCutOver(): Step<Events2Checkpoint> {
  const prepare = events2StepFor('prepare');
  return {
    ...prepare,
    title: `${events2Step.title}, up to the cut-over`,
    async plan(ctx) {
      const p = await prepare.plan(ctx);
      const action = p.action.replace('--prepare: stops before the cut-over', 'stops before the cut-over, to prefill the projections first');
      return { ...p, action, details: { ...p.details, beforeCutOver: true } };
    },
  };
}

/** The second events2 occurrence: catch up with what the old version wrote meanwhile, and cut over. */
function cutOverAfterWarm(): Step<Events2Checkpoint> {
  return {
    ...events2Step,
    title: `${events2Step.title}: catch up and cut over`,
    async plan(ctx) {
      const p = await events2Step.plan(ctx);
      if (!p.willChange) return p;
      // The copy, the indexes and their disk are the first occurrence's; this one catches up and cuts over.
      const downtime = typeof p.details.expectedDowntimeSeconds === 'number' ? p.details.expectedDowntimeSeconds : 1;
      return {
        ...p,
        action: 'after the projections before the cut-over: catch up with what the old version wrote meanwhile, cut over, verify events_old',
        details: { ...p.details, diskNeededBytesEstimate: 0 },
        estimatedSeconds: Math.max(1, Math.round(downtime)),
      };
    },
  };
}
