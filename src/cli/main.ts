import { Command, CommanderError } from 'commander';
import { describeError, EXIT, ZsetupError, type ErrorReport } from '../errors.js';
import { abortMoveCommand } from './commands/abort-move.js';
import { demoCommand } from './commands/demo.js';
import { initProjectionsCommand } from './commands/init-projections.js';
import { migrateCommand } from './commands/migrate.js';
import { seedCommand } from './commands/seed.js';
import { statusCommand } from './commands/status.js';
import { verifyCommand } from './commands/verify.js';
import { renderError } from './render.js';
import { hidePasswords } from './secrets.js';
import { VERSION, wasDocumentWritten } from './session.js';

const program = new Command('zsetup')
  .description('Database setup for ZITADEL-style event stores on PostgreSQL: moves events to eventstore.events2,\nconverts milestones to v2 events, prefills projections; resumable, safe with concurrent runners.')
  .version(VERSION, '-V, --version')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  .addHelpText('after', `
Examples:
  $ zsetup migrate --dry-run          # what would happen, writes nothing
  $ zsetup migrate -d "$DATABASE_URL" # run the pending steps
  $ zsetup status --json              # every step, as JSON

Database: --database <url> > $ZSETUP_DATABASE_URL > $DATABASE_URL; the embedded PostgreSQL only with
          --embedded / ZSETUP_EMBEDDED=1, and for seed and demo.
Exit codes: 0 ok/up to date, 1 step failed, 2 usage/config/connection, 3 lock wait ran out,
            4 verification mismatch, 5 refused (unsafe state or missing privileges, nothing written),
            6 lost the connection to PostgreSQL mid-run (rerun resumes), 130 interrupted (rerun resumes).`);

for (const cmd of [migrateCommand(), initProjectionsCommand(), statusCommand(), verifyCommand(), seedCommand(), demoCommand(), abortMoveCommand()]) program.addCommand(cmd.exitOverride());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
}

function report(err: unknown): number {
  const json = process.argv.slice(2).includes('--json');
  if (err instanceof CommanderError) {
    // --help and --version end up here too, with exit code 0; commander printed its own message.
    if (err.exitCode === 0) return EXIT.ok;
    if (json) printJson({ kind: 'UsageError', code: 'usage', message: err.message.replace(/^error: /, ''), exitCode: EXIT.usage });
    return EXIT.usage;
  }
  const e = describeError(err);
  const clean = (text: string) => hidePasswords(text, process.argv, process.env);
  for (const line of renderError(e)) process.stderr.write(`zsetup: ${clean(line)}\n`);
  if (!(err instanceof ZsetupError) && process.env.ZSETUP_DEBUG && err instanceof Error) process.stderr.write(`${clean(String(err.stack))}\n`);
  if (json) printJson(e);
  return e.exitCode;
}

/** The one JSON document of a failed command, unless the command printed its result document already. */
function printJson(e: ErrorReport): void {
  if (wasDocumentWritten()) return;
  const { exitCode, ...error } = e;
  const text = JSON.stringify({ ok: false, exitCode, error }, null, 2);
  process.stdout.write(hidePasswords(text, process.argv, process.env) + '\n');
}
