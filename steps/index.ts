import type { Step } from '../src/step.js';
import { events2Step } from './01-events2.js';
import { milestonesStep } from './02-milestones.js';

/** What to load. */
export interface StepSelection {
  /** Append the projection prefill steps (`migrate --init-projections`). */
  readonly initProjections?: boolean;
}

/**
 * The step provider: the built-in steps in file-number order. Tests hand their own steps to the
 * engine instead.
 */
export async function loadSteps(_selection: StepSelection = {}): Promise<Step<any>[]> {
  return [events2Step, milestonesStep];
}
