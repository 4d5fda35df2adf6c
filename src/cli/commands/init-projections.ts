import { Command, Option } from 'commander';
import { loadProjectionSteps } from '../../../steps/03-projections.js';
import { runSteps } from '../run-steps.js';
import { withCommonOptions, withRunOptions, withSession, type CommonFlags } from '../session.js';

/** Flags that choose projections; shared by `init-projections` and `migrate --init-projections`. */
export interface ProjectionFlags {
  readonly projection?: string[];
  readonly projectionsModule?: string;
  /** The old spelling of projectionsModule. */
  readonly projections?: string;
}

/**
 * Adds `--projection <name>` (repeatable) and `--projections-module <file.js>`. The module flag's
 * old spelling `--projections`, one letter from `--projection`, is still read but not shown.
 */
export function withProjectionOptions(cmd: Command): Command {
  return cmd
    .option('--projection <name>', 'prefill only this projection, e.g. projections.orgs1 or orgs1 (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--projections-module <file.js>', 'also prefill the custom projections this ES module exports (`projections` or default export)')
    .addOption(new Option('--projections <file.js>').hideHelp());
}

interface InitProjectionsFlags extends CommonFlags, ProjectionFlags {
  readonly dryRun?: boolean;
}

/** `zsetup init-projections`: prefill the projections from eventstore.events2 up to now. */
export function initProjectionsCommand(): Command {
  return withRunOptions(withProjectionOptions(withCommonOptions(new Command('init-projections'))))
    .description('prefill the projections (read models) from eventstore.events2, recording positions in projections.current_states')
    .option('--dry-run', 'per projection: events to process, current position, whether the table exists, estimated time; writes nothing')
    .addHelpText('after', `
Built-in projections: projections.instances, projections.orgs1, projections.projects4, projections.apps7,
projections.users14 (+ users14_humans), projections.milestones3. Tables are created if missing.
A rerun processes only the events that arrived since; projections at the head are skipped.
Events a reducer cannot apply are recorded in projections.failed_events2 and skipped.

Examples:
  $ zsetup init-projections -d "$DATABASE_URL"
  $ zsetup init-projections --projection orgs1 --projection users14 --dry-run
  $ zsetup init-projections --projections-module ./my-projections.js

Exit codes: 0 done or up to date, 1 a step failed, 2 usage/configuration/connection error,
3 lock wait ran out, 5 refused (e.g. eventstore.events2 missing: run zsetup migrate first), 6 lost the
connection to PostgreSQL (rerun resumes), 130 interrupted.`)
    .action(async (flags: InitProjectionsFlags) => {
      process.exitCode = await withSession(flags, async (s) => {
        const steps = await loadProjectionSteps({ names: flags.projection, file: flags.projectionsModule ?? flags.projections });
        return runSteps(s, steps, { dryRun: flags.dryRun, exact: true });
      }, process.env, { readOnly: flags.dryRun });
    });
}
