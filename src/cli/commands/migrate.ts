import { Command, Option } from 'commander';
import { ConfigError } from '../../errors.js';
import { composeSteps } from '../../../steps/index.js';
import type { MoveRequest } from '../../events2/run.js';
import { withProjectionOptions, type ProjectionFlags } from './init-projections.js';
import { runSteps } from '../run-steps.js';
import { withCommonOptions, withRunOptions, withSession, type CommonFlags } from '../session.js';

interface MigrateFlags extends CommonFlags, ProjectionFlags {
  readonly dryRun?: boolean;
  readonly only?: string;
  readonly exact?: boolean;
  readonly initProjections?: boolean;
  readonly offline?: boolean;
  readonly prepare?: boolean;
  readonly format?: 'text' | 'markdown';
  readonly throttle?: 'auto' | 'off';
}

/** `zsetup migrate`: run the pending setup steps, or plan them with --dry-run. */
export function migrateCommand(): Command {
  return withRunOptions(withProjectionOptions(withCommonOptions(new Command('migrate'))))
    .description('run the pending setup steps in order (events2 move, milestone conversion, …)')
    .option('--dry-run', 'plan every pending step read-only and report; writes nothing')
    .option('--exact', 'with --dry-run: count rows exactly instead of estimating')
    .option('--only <step>', 'run (or plan) only this step')
    .option('--init-projections', 'also prefill the projections as the last step; before an online cut-over, prefill them before it too, so only the seconds since are left after it')
    .option('--offline', 'move events2 offline: cut the old version off first (shortest total time; it cannot write until the move ends)')
    .option('--prepare', 'run only the online events2 move up to its cut-over (with --init-projections: and prefill the projections from it) and exit 0, leaving the capture on; a later migrate catches up and cuts over')
    .addOption(new Option('--throttle <mode>', 'the online events2 copy: auto backs off while the old version\'s writes slow down, off copies at full speed (--offline is never throttled)').choices(['auto', 'off']).default('auto'))
    .addOption(new Option('--format <format>', 'with --dry-run: the report as plain text or as a Markdown document for a change review').choices(['text', 'markdown']).default('text'))
    .addHelpText('after', `
Examples:
  $ zsetup migrate --embedded                       # the embedded PostgreSQL in ./.zsetup
  $ zsetup migrate -d postgres://zitadel@db:5432/zitadel --lock-wait 30m
  $ zsetup migrate --dry-run --exact --json > plan.json
  $ zsetup migrate --dry-run --init-projections --format markdown > plan.md
  $ zsetup migrate --only events2 --concurrency 4
  $ zsetup migrate --prepare                        # hours ahead: copy and index online, no cut-over
  $ zsetup migrate                                  # at deploy time: catch up, cut over (about a second)
  $ zsetup migrate --prepare --init-projections     # hours ahead: also prefill the projections
  $ zsetup migrate --init-projections               # at deploy time: cut over, catch the projections up

Exit codes: 0 done or up to date, 1 a step failed, 2 usage/configuration/connection error,
3 lock wait ran out, 4 verification of the copied events failed, 5 refused (unsafe database state or
missing privileges, nothing written), 6 lost the connection to PostgreSQL (rerun resumes),
130 interrupted (rerun resumes).`)
    .action(async (flags: MigrateFlags) => {
      const move = moveRequest(flags);
      if (flags.format === 'markdown' && (!flags.dryRun || flags.json)) throw new ConfigError('--format markdown is the dry-run report: use it with --dry-run and without --json');
      if (flags.exact && !flags.dryRun) throw new ConfigError('--exact counts rows for the dry-run report: use it with --dry-run');
      process.exitCode = await withSession(flags, async (s) => {
        const steps = await composeSteps(s.database.db, {
          move,
          initProjections: flags.initProjections,
          projections: flags.projection,
          projectionsFile: flags.projectionsModule ?? flags.projections,
        });
        return runSteps(s, steps, { dryRun: flags.dryRun, only: flags.only, exact: flags.exact, format: flags.format, throttle: flags.throttle });
      }, process.env, { readOnly: flags.dryRun });
    });
}

/** The events2 move the flags ask for; `--prepare` runs the events2 step alone, or with the projections before the cut-over. */
function moveRequest(flags: MigrateFlags): MoveRequest {
  if (flags.offline && flags.prepare) throw new ConfigError('--offline and --prepare contradict each other: --prepare prepares an online move');
  if (flags.prepare && flags.only && flags.only !== 'events2') {
    throw new ConfigError('--prepare runs only the events2 step (and, with --init-projections, the projections before the cut-over): drop --only (run the others after the cut-over)');
  }
  return flags.offline ? 'offline' : flags.prepare ? 'prepare' : 'online';
}
