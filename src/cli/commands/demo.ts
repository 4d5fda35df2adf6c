import { Command } from 'commander';
import { dropSeedTargets, existingEventStore } from '../../seed/index.js';
import { getStatus } from '../../status.js';
import { loadSteps } from '../../../steps/index.js';
import { renderStatus } from '../render.js';
import { runSteps } from '../run-steps.js';
import { withSession } from '../session.js';
import { positiveInt, seedWithProgress } from './seed.js';

interface DemoFlags {
  readonly dataDir?: string;
  readonly events: number;
  readonly instances: number;
  readonly fresh?: boolean;
  readonly json?: boolean;
}

/**
 * `zsetup demo`: the whole job on the embedded PostgreSQL, as a newcomer's first run (`npm start`).
 * It never touches a configured database: DATABASE_URL and ZSETUP_DATABASE_URL are ignored.
 */
export function demoCommand(): Command {
  return new Command('demo')
    .description('seed a sample legacy database on the embedded PostgreSQL, migrate it, prefill the projections, show the status')
    .option('--data-dir <dir>', 'data directory of the embedded PostgreSQL (default: ./.zsetup)')
    .option('--events <n>', 'events in the sample database', positiveInt, 200_000)
    .option('--instances <n>', 'instances in the sample database', positiveInt, 20)
    .option('--fresh', 'drop the sample database and seed it again')
    .option('--json', 'print the migrate result as one JSON document on stdout; logs go to stderr')
    .addHelpText('after', `
Always uses the embedded PostgreSQL (never $DATABASE_URL / $ZSETUP_DATABASE_URL). Run it again to see
"up to date"; run it with --fresh to start over. Afterwards: zsetup status, zsetup verify.

Examples:
  $ zsetup demo
  $ zsetup demo --fresh --events 1000000 --instances 50`)
    .action(async (flags: DemoFlags) => {
      const env = { ...process.env, DATABASE_URL: '', ZSETUP_DATABASE_URL: '' };
      process.exitCode = await withSession({ dataDir: flags.dataDir, json: flags.json, embedded: true }, async (s) => {
        const found = (await existingEventStore(s.database.pool)).length > 0;
        if (found && flags.fresh) {
          s.reporter.warn(`--fresh: dropped ${(await dropSeedTargets(s.database)).join(', ')}`);
        }
        if (!found || flags.fresh) {
          await seedWithProgress(s, { events: flags.events, instances: flags.instances, seed: 1 });
        } else {
          s.reporter.info('the sample database is already there (use --fresh to seed it again)');
        }
        const steps = await loadSteps({ initProjections: true });
        const exitCode = await runSteps(s, steps, {});
        if (!flags.json) {
          const status = await getStatus(s.database, steps);
          s.output(status, () => `\n${renderStatus(status, { summaries: false })}`);
        }
        return exitCode;
      }, env);
    });
}
