import { Command } from 'commander';
import { VerifyMismatchError } from '../../errors.js';
import { describeMismatches, verifyEvents2, type VerifyResult } from '../../events2/verify.js';
import { formatCount, formatDuration } from '../format.js';
import { withCommonOptions, withSession, type CommonFlags } from '../session.js';

/** `zsetup verify`: compare eventstore.events_old with eventstore.events2, per instance. Read-only. */
export function verifyCommand(): Command {
  return withCommonOptions(new Command('verify'))
    .description('check that eventstore.events2 holds exactly the mapped events of eventstore.events_old (per instance: count and hash); read-only')
    .addHelpText('after', `
Examples:
  $ zsetup verify -d "$DATABASE_URL"
  $ zsetup verify --json | jq '.mismatches'

Exit codes: 0 equal (or nothing to verify), 2 usage/connection error, 4 mismatch.`)
    .action(async (flags: CommonFlags) => {
      process.exitCode = await withSession(flags, async (s) => {
        const result = await verifyEvents2(s.database);
        s.output({ database: s.database.displayUrl, ...result }, () => renderVerify(result));
        if (result.status === 'mismatch') {
          throw new VerifyMismatchError(
            `events2 differs from events_old for ${result.mismatches.length} instance(s): ${describeMismatches(result.mismatches, 3)}`,
            'events_old is the rollback path and is never changed by zsetup; the listed instances need a new copy',
          );
        }
        return 0;
      });
    });
}

function renderVerify(r: VerifyResult): string {
  if (r.status === 'nothing-to-verify') return `nothing to verify: ${r.reason}`;
  const head = `${r.status === 'equal' ? 'equal' : 'MISMATCH'}: ${formatCount(r.events)} events of ${r.instances} instance(s) in events_old compared with events2 in ${formatDuration(r.durationMs)}`;
  return [head, ...r.mismatches.map((m) =>
    `  instance '${m.instanceId}': events_old ${formatCount(m.oldEvents)}, events2 ${formatCount(m.events2Events)}${m.oldEvents === m.events2Events ? ' (same count, contents differ)' : ''}`)].join('\n');
}
