import { Command, CommanderError } from 'commander';
import { describeError, EXIT, ZsetupError } from '../errors.js';
import { abortMoveCommand } from './commands/abort-move.js';
import { demoCommand } from './commands/demo.js';
import { initProjectionsCommand } from './commands/init-projections.js';
import { migrateCommand } from './commands/migrate.js';
import { seedCommand } from './commands/seed.js';
import { statusCommand } from './commands/status.js';
import { verifyCommand } from './commands/verify.js';
import { renderError } from './render.js';
import { VERSION } from './session.js';

const program = new Command('zsetup')
  .description('Database setup for ZITADEL-style event stores on PostgreSQL: moves events to eventstore.events2,\nconverts milestones to v2 events, prefills projections; resumable, safe with concurrent runners.')
  .version(VERSION, '-V, --version')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  .addHelpText('after', `
Examples:
  $ zsetup migrate --dry-run          # what would happen, writes nothing
  $ zsetup migrate                    # run pending steps (embedded PostgreSQL in ./.zsetup unless configured)
  $ zsetup status --json              # every step, as JSON

Database: --database <url> > $ZSETUP_DATABASE_URL > $DATABASE_URL > embedded PostgreSQL.
Exit codes: 0 ok/up to date, 1 step failed, 2 usage/config/connection, 3 lock wait ran out,
            4 verification mismatch, 5 refused (unsafe state, nothing written), 130 interrupted.`);

for (const cmd of [migrateCommand(), initProjectionsCommand(), statusCommand(), verifyCommand(), seedCommand(), demoCommand(), abortMoveCommand()]) program.addCommand(cmd.exitOverride());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
}

function report(err: unknown): number {
  if (err instanceof CommanderError) {
    // --help and --version end up here too, with exit code 0.
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  const e = describeError(err);
  for (const line of renderError(e)) process.stderr.write(`zsetup: ${line}\n`);
  if (!(err instanceof ZsetupError) && process.env.ZSETUP_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return e.exitCode;
}
