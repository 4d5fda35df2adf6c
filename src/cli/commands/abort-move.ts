import { Command } from 'commander';
import { abortMove } from '../../events2/abort.js';
import { describeHolder } from '../../db/lock.js';
import { withCommonOptions, withRunOptions, withSession, type CommonFlags } from '../session.js';

/** `zsetup abort-move`: removes what an online events2 move added before its cut-over. */
export function abortMoveCommand(): Command {
  return withRunOptions(withCommonOptions(new Command('abort-move')))
    .description('remove everything an online events2 move added before its cut-over (capture, queue, events2); eventstore.events stays as it is')
    .addHelpText('after', `
The online move (\`zsetup migrate\`, \`zsetup migrate --prepare\`) never changes eventstore.events before its
cut-over; this removes its capture triggers, its queue, eventstore.events2 and its record, so the old
version runs as if the move had never started. After the cut-over there is nothing to abort (exit 5).

Examples:
  $ zsetup abort-move -d "$DATABASE_URL"
  $ zsetup abort-move -d "$DATABASE_URL" --json

Exit codes: 0 removed, or nothing to abort; 2 usage/configuration/connection error; 3 lock wait ran out
(a migrate is running); 5 refused (the move already cut over, or events2 is not the online move's).`)
    .action(async (flags: CommonFlags) => {
      process.exitCode = await withSession(flags, async (s) => {
        const result = await abortMove(s.database, {
          lockWaitMs: s.config.lockWaitMs,
          signal: s.signal,
          onWait: (holder) => s.reporter.info(`waiting for the runner lock, held by ${holder ? describeHolder(holder) : 'a session that just released it'}`),
        });
        s.output({ database: s.database.displayUrl, ...result }, () => result.status === 'aborted'
          ? `aborted the online move (it was at stage ${result.stage}): removed ${result.removed.join(', ') || 'nothing left'}; eventstore.events is unchanged`
          : `nothing to abort: ${result.reason}`);
        return 0;
      });
    });
}
