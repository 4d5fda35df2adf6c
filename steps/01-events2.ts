import { planEvents2 } from '../src/events2/plan.js';
import { missingMovePrivileges } from '../src/events2/preflight.js';
import { captureState } from '../src/events2/capture.js';
import { runEvents2, type MoveRequest } from '../src/events2/run.js';
import { refuseForeignDatabase, type Events2Checkpoint } from '../src/events2/situation.js';
import { missingTablePrivileges, relationExists } from '../src/privileges.js';
import type { Step } from '../src/step.js';
import { RECORDED_BY } from '../src/zitadel/setup-steps.js';

/**
 * Moves the legacy event store `eventstore.events` to `eventstore.events2` (the reference system's
 * `14_events_push`), online: the old version keeps writing until a cut-over of about a second (capture,
 * parallel chunked copy, keys and indexes, catch-up, cut-over by rename, verification).
 */
export const events2Step: Step<Events2Checkpoint> = {
  id: 'events2',
  title: 'move events to eventstore.events2',
  plan: planEvents2,
  run: (ctx) => runEvents2(ctx, 'online'),
  schedule: {
    // Succeeded with --prepare: the capture is still on, and the cut-over is what is left to do.
    remaining: async (tx) => ((await captureState(tx)).capturing ? 1 : 0),
  },
  async preflight(tx) {
    // events2 present: complete, or half-done — the step's own inspection decides what it needs.
    if (await relationExists(tx, 'eventstore.events2')) return [];
    if (!(await relationExists(tx, 'eventstore.events'))) {
      // A fresh install into some other application's database is refused here, before zsetup creates anything.
      if (!(await relationExists(tx, 'eventstore.events_old'))) await refuseForeignDatabase(tx);
      return missingTablePrivileges(tx, 'eventstore.events2', []);
    }
    return (await missingMovePrivileges(tx, 'eventstore.events', true)).missing;
  },
  async zitadelSteps(db) {
    // After a move from the legacy table ZITADEL's own step 14 stores only its `done` event: its
    // `started` push fails, events2 not existing yet (spec zitadel-eventstore.md §2 item 4).
    const r = await db.query<{ moved: boolean; prepared: boolean }>(
      `SELECT to_regclass('eventstore.events_old') IS NOT NULL AS moved, to_regclass('eventstore.events') IS NOT NULL AS prepared`);
    // Prepared (--prepare) is not moved: the old version still writes eventstore.events.
    if (r.rows[0].prepared) return [];
    return [{ name: RECORDED_BY.events2, doneOnly: r.rows[0].moved }];
  },
};

/** The events2 step for one `migrate` request: online (as {@link events2Step}), `--offline` or `--prepare`. */
export function events2StepFor(request: MoveRequest): Step<Events2Checkpoint> {
  return { ...events2Step, plan: (ctx) => planEvents2(ctx, request), run: (ctx) => runEvents2(ctx, request) };
}
