import { RefusedError } from '../src/errors.js';
import { convertMilestones, type ConversionCheckpoint, type ConvertOptions } from '../src/milestones/convert.js';
import { planMilestones } from '../src/milestones/plan.js';
import { findRejectedRows, inspectSource, referenceStepsDone, rejectedRowsError } from '../src/milestones/source.js';
import { missingPrivileges, relationExists } from '../src/privileges.js';
import type { Step } from '../src/step.js';
import { RECORDED_BY } from '../src/zitadel/setup-steps.js';

/**
 * Builds the milestone conversion step: every reached row of the old `projections.milestones` becomes a
 * `milestone.v2.reached` event, every pushed one also a `milestone.v2.pushed` event, with the original
 * dates in the payload, exactly once. The old table is only read (it stays the rollback path).
 */
export function createMilestonesStep(options: ConvertOptions = {}): Step<ConversionCheckpoint> {
  return {
    id: 'milestones-v2',
    title: 'convert projections.milestones into v2 milestone events',
    plan: (ctx) => planMilestones(ctx.tx),
    async preflight(tx) {
      if (!(await relationExists(tx, 'projections.milestones'))) return [];
      // A missing events2 is created by the events2 step, owned by this role.
      const events2 = (await relationExists(tx, 'eventstore.events2')) ? [['eventstore.events2', ['SELECT', 'INSERT', 'UPDATE']] as const] : [];
      return missingPrivileges(tx, [['projections.milestones', ['SELECT']], ...events2]);
    },
    async run(ctx) {
      const source = await inspectSource(ctx.db);
      if (!source.oldTable) return { message: 'projections.milestones does not exist: nothing to convert', oldTable: false };
      if (!source.events2) {
        throw new RefusedError(
          'eventstore.events2 does not exist: milestone events cannot be written',
          'the events2 step creates it; run `zsetup migrate` without --only, or `--only events2` first',
        );
      }
      // Checked on every attempt, before the first write of this attempt.
      const rejected = await findRejectedRows(ctx.db);
      if (rejected.count > 0) throw rejectedRowsError(rejected);
      const referenceDone = await referenceStepsDone(ctx.db);
      if (referenceDone.length > 0) {
        ctx.log(`the reference system recorded ${referenceDone.join(', ')} as done: instances holding its events are skipped`);
      }
      const counts = await convertMilestones(ctx, options);
      return {
        message: `wrote ${counts.reachedEvents} reached and ${counts.pushedEvents} pushed milestone event(s) for ` +
          `${counts.instancesConverted} instance(s); ${counts.instancesSkipped} instance(s) already converted`,
        ...counts,
        referenceStepsDone: referenceDone,
      };
    },
    // ZITADEL's step 36 converts the same rows into the same events, skipping converted instances.
    zitadelSteps: async () => [{ name: RECORDED_BY.milestones }],
  };
}

/** The milestone conversion with default batching (500 instances per transaction). */
export const milestonesStep = createMilestonesStep();
