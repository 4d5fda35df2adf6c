import { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { verifyMovedEvents, type MovedMismatch, type MovedVerifyResult } from '../../events2/verify.js';
import { formatCount, formatDuration, plural } from '../format.js';
import { withCommonOptions, withSession, type CommonFlags } from '../session.js';

/** `zsetup verify`: compare every moved event of eventstore.events_old with its row in eventstore.events2. Read-only. */
export function verifyCommand(): Command {
  return withCommonOptions(new Command('verify'))
    .description('check that every event moved from eventstore.events_old is in eventstore.events2 unchanged; events appended since are counted, not compared; read-only')
    .addHelpText('after', `
Examples:
  $ zsetup verify -d "$DATABASE_URL"
  $ zsetup verify --json | jq '.mismatches'

Each event of events_old (mapped) is compared with the events2 row of its key (instance, aggregate type,
aggregate id, sequence). Events in events2 without a counterpart (milestones-v2's, the application's)
are reported as appended.
Exit codes: 0 equal (or nothing to verify), 2 usage/connection error, 4 a moved event is missing or changed,
5 the role may not read the tables (hint says what to grant), 6 lost the connection.`)
    .action(async (flags: CommonFlags) => {
      process.exitCode = await withSession(flags, async (s) => {
        const result = await verifyMovedEvents(s.database);
        const exitCode = result.status === 'mismatch' ? EXIT.verifyMismatch : EXIT.ok;
        s.output({ database: s.database.displayUrl, exitCode, ...result }, () => renderVerify(result));
        return exitCode;
      }, process.env, { readOnly: true });
    });
}

/** The hint of a mismatch: what is known, and what can be done, nothing more. */
export const MISMATCH_HINT =
  'events_old still holds every event as it was before the move (zsetup never writes to it), and events are never ' +
  'changed once written: events2 was altered after the move, or the copy is damaged. Before the new version has ' +
  'written to events2, copy again (README "Rollback and a new copy"); after that, restore the listed events from events_old.';

/** Human text of a verification. */
export function renderVerify(r: MovedVerifyResult): string {
  if (r.status === 'nothing-to-verify') return `nothing to verify: ${r.reason}`;
  const compared = `${formatCount(r.events)} moved ${plural(r.events, 'event')} of ${formatCount(r.instances)} ${plural(r.instances, 'instance')} compared in ${formatDuration(r.durationMs)}`;
  const lines = r.status === 'equal'
    ? [`equal: every event of eventstore.events_old is in eventstore.events2 unchanged (${compared})`]
    : [`MISMATCH: ${formatCount(r.mismatches.length)} ${plural(r.mismatches.length, 'instance')} with moved events that are not in events2 as they were moved (${compared})`,
       ...r.mismatches.map((m) => `  ${describeMovedMismatch(m)}`)];
  lines.push(r.appended.events === 0
    ? 'appended after the move: none'
    : `appended after the move: ${formatCount(r.appended.events)} ${plural(r.appended.events, 'event')} in ${formatCount(r.appended.instances)} ${plural(r.appended.instances, 'instance')} ` +
      '(written since, e.g. by milestones-v2 or the application; information only, not compared)');
  if (r.status === 'mismatch') lines.push(`hint: ${MISMATCH_HINT}`);
  return lines.join('\n');
}

/** `instance 'x': 1 of 100 moved events missing from events2, 1 changed; e.g. user/u1 #17 missing` */
export function describeMovedMismatch(m: MovedMismatch): string {
  const what = [
    m.missing > 0 && `${formatCount(m.missing)} missing from events2`,
    m.differing > 0 && `${formatCount(m.differing)} changed`,
  ].filter(Boolean).join(', ');
  const examples = m.examples.map((e) => `${e.aggregateType}/${e.aggregateId} sequence ${e.sequence} ${e.problem === 'missing' ? 'missing' : 'changed'}`);
  return `instance '${m.instanceId}': of ${formatCount(m.movedEvents)} moved ${plural(m.movedEvents, 'event')}, ${what}` +
    (examples.length ? `; e.g. ${examples.join(', ')}` : '');
}
