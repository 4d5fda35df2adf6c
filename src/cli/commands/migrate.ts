import { Command } from 'commander';
import { migrate } from '../../migrate.js';
import { planMigrate } from '../../plan.js';
import { loadSteps } from '../../../steps/index.js';
import { withProjectionOptions, type ProjectionFlags } from './init-projections.js';
import { exitCodeFor } from '../exit-code.js';
import { withTestKill } from '../test-hooks.js';
import { renderMigrate, renderPlan } from '../render.js';
import { VERSION, withCommonOptions, withSession, type CommonFlags } from '../session.js';

interface MigrateFlags extends CommonFlags, ProjectionFlags {
  readonly dryRun?: boolean;
  readonly only?: string;
  readonly exact?: boolean;
  readonly initProjections?: boolean;
}

/** `zsetup migrate`: run the pending setup steps, or plan them with --dry-run. */
export function migrateCommand(): Command {
  return withProjectionOptions(withCommonOptions(new Command('migrate')))
    .description('run the pending setup steps in order (events2 move, milestone conversion, …)')
    .option('--dry-run', 'plan every pending step read-only and report; writes nothing')
    .option('--exact', 'with --dry-run: count rows exactly instead of estimating')
    .option('--only <step>', 'run (or plan) only this step')
    .option('--init-projections', 'also prefill the projections as the last step')
    .option('--lock-wait <duration>', 'how long to wait for another runner (default: 10m)')
    .option('--concurrency <n>', 'parallel connections for data-moving steps (default: number of CPUs, at least 2)')
    .addHelpText('after', `
Examples:
  $ zsetup migrate                                  # embedded PostgreSQL in ./.zsetup
  $ zsetup migrate -d postgres://zitadel@db:5432/zitadel --lock-wait 30m
  $ zsetup migrate --dry-run --exact --json > plan.json
  $ zsetup migrate --only events2 --concurrency 4

Exit codes: 0 done or up to date, 1 a step failed, 2 usage/configuration/connection error,
3 lock wait ran out, 5 refused (unsafe database state, nothing written), 130 interrupted (rerun resumes).`)
    .action(async (flags: MigrateFlags) => {
      process.exitCode = await withSession(flags, async (s) => {
        const steps = await loadSteps({ initProjections: flags.initProjections, projections: flags.projection, projectionsFile: flags.projections });
        const stepOptions = { concurrency: s.config.concurrency, exact: Boolean(flags.exact) };
        if (flags.dryRun) {
          const plan = await planMigrate(s.database, { steps, only: flags.only, stepOptions });
          s.output({ dryRun: true, database: s.database.displayUrl, ...plan }, () => renderPlan(plan));
          return plan.steps.some((p) => p.error) ? 1 : 0;
        }
        const result = await migrate(s.database, {
          steps,
          only: flags.only,
          lockWaitMs: s.config.lockWaitMs,
          stepOptions,
          signal: s.signal,
          onEvent: withTestKill((e) => s.reporter.handle(e)),
          version: VERSION,
        });
        const exitCode = exitCodeFor(result.steps);
        s.output({ database: s.database.displayUrl, exitCode, ...result }, () => renderMigrate(result));
        return exitCode;
      });
    });
}
