import { Command } from 'commander';
import { getStatus } from '../../status.js';
import { loadSteps } from '../../../steps/index.js';
import { renderStatus } from '../render.js';
import { withCommonOptions, withSession, type CommonFlags } from '../session.js';

/** `zsetup status`: every step's state, timing, progress and last error. Read-only. */
export function statusCommand(): Command {
  return withCommonOptions(new Command('status'))
    .description('show every step with its state, timing, progress and last error (live while a step runs)')
    .option('--init-projections', "also read each projection's true state from the database: events still to apply (behind, when its step succeeded) and recorded positions")
    .addHelpText('after', `
Examples:
  $ zsetup status
  $ zsetup status -d "$DATABASE_URL" --json | jq '.steps[] | {id, status}'
  $ watch -n 2 zsetup status -d "$DATABASE_URL"      # follow a run from another shell`)
    .action(async (flags: CommonFlags & { initProjections?: boolean }) => {
      process.exitCode = await withSession(flags, async (s) => {
        const result = await getStatus(s.database, await loadSteps({ initProjections: true }), { projections: flags.initProjections });
        s.output({ database: s.database.displayUrl, ...result }, () => renderStatus(result));
        return 0;
      }, process.env, { readOnly: true });
    });
}
