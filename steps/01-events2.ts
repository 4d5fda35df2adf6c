import { planEvents2 } from '../src/events2/plan.js';
import { missingMovePrivileges } from '../src/events2/preflight.js';
import { runEvents2 } from '../src/events2/run.js';
import type { Events2Checkpoint } from '../src/events2/situation.js';
import { missingTablePrivileges, relationExists } from '../src/privileges.js';
import type { Step } from '../src/step.js';
import { RECORDED_BY } from '../src/zitadel/setup-steps.js';

/**
 * Moves the legacy event store `eventstore.events` to `eventstore.events2` (the reference system's
 * `14_events_push`): cut-off by rename, parallel chunked copy, keys and indexes, verification.
 */
export const events2Step: Step<Events2Checkpoint> = {
  id: 'events2',
  title: 'move events to eventstore.events2',
  plan: planEvents2,
  run: runEvents2,
  async preflight(tx) {
    // events2 present: complete, or half-done — the step's own inspection decides what it needs.
    if (await relationExists(tx, 'eventstore.events2')) return [];
    if (!(await relationExists(tx, 'eventstore.events'))) return missingTablePrivileges(tx, 'eventstore.events2', []);
    return (await missingMovePrivileges(tx, 'eventstore.events', true)).missing;
  },
  async zitadelSteps(db) {
    // After a move from the legacy table ZITADEL's own step 14 stores only its `done` event: its
    // `started` push fails, events2 not existing yet (spec zitadel-eventstore.md §2 item 4).
    const r = await db.query<{ moved: boolean }>(`SELECT to_regclass('eventstore.events_old') IS NOT NULL AS moved`);
    return [{ name: RECORDED_BY.events2, doneOnly: r.rows[0].moved }];
  },
};
