import type { Step } from '../src/step.js';
import { events2Step } from './01-events2.js';
import { milestonesStep } from './02-milestones.js';
import { loadProjectionSteps } from './03-projections.js';

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
  const projections = selection.initProjections
    ? await loadProjectionSteps({ names: selection.projections, file: selection.projectionsFile })
    : [];
  return [events2Step, milestonesStep, ...projections];
}
