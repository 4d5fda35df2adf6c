import { planEvents2 } from '../src/events2/plan.js';
import { runEvents2 } from '../src/events2/run.js';
import type { Events2Checkpoint } from '../src/events2/situation.js';
import type { Step } from '../src/step.js';

/**
 * Moves the legacy event store `eventstore.events` to `eventstore.events2` (the reference system's
 * `14_events_push`): cut-off by rename, parallel chunked copy, keys and indexes, verification.
 */
export const events2Step: Step<Events2Checkpoint> = {
  id: 'events2',
  title: 'move events to eventstore.events2',
  plan: planEvents2,
  run: runEvents2,
};
