import { Command } from 'commander';
import { getStatus } from '../../status.js';
import { loadSteps } from '../../../steps/index.js';
import { renderStatus } from '../render.js';
import { withCommonOptions, withSession, type CommonFlags } from '../session.js';

/** `zsetup status`: every step's state, timing, progress and last error. Read-only. */
export function statusCommand(): Command {
  return withCommonOptions(new Command('status'))
    .description('show every step with its state, timing, progress and last error (live while a step runs)')
    .option('--init-projections', 'include the projection prefill steps')
    .addHelpText('after', `
Examples:
  $ zsetup status
  $ zsetup status -d "$DATABASE_URL" --json | jq '.steps[] | {id, status}'
  $ watch -n 2 zsetup status -d "$DATABASE_URL"      # follow a run from another shell`)
    .action(async (flags: CommonFlags & { initProjections?: boolean }) => {
      process.exitCode = await withSession(flags, async (s) => {
        const result = await getStatus(s.database, await loadSteps({ initProjections: true }));
        s.output({ database: s.database.displayUrl, ...result }, () => renderStatus(result));
        return 0;
      }, process.env, { readOnly: true });
    });
}
