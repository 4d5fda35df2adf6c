import { Command, InvalidArgumentError } from 'commander';
import { ProgressMeter } from '../../progress.js';
import { checkSeedOptions, dropSeedTargets, seedLegacy, type SeedOptions, type SeedSummary } from '../../seed/index.js';
import { formatCount, formatDuration } from '../format.js';
import { withCommonOptions, withSession, type CommonFlags, type Session } from '../session.js';

interface SeedFlags extends CommonFlags {
  readonly events: number;
  readonly instances: number;
  readonly seed: number;
  readonly reset?: boolean;
}

/** `zsetup seed`: build a realistic legacy (pre-events2) database to try `migrate` on. */
export function seedCommand(): Command {
  return withCommonOptions(new Command('seed'))
    .description('create a realistic legacy database: eventstore.events (old shape, constraints, indexes) and projections.milestones')
    .option('--events <n>', 'total number of events, system events included', positiveInt, 100_000)
    .option('--instances <n>', 'number of instances (with 3 or more, the last one is removed)', positiveInt, 10)
    .option('--seed <n>', 'same seed, same rows', integer, 1)
    .option('--reset', 'first drop the schemas eventstore, projections and zsetup (everything zsetup and the seed wrote)')
    .addHelpText('after', `
Examples:
  $ zsetup seed                                       # 100,000 events in 10 instances, embedded PostgreSQL
  $ zsetup seed --events 2000000 --instances 50 -d postgres://postgres@localhost/zitadel_test
  $ zsetup seed --events 1000000 --reset && zsetup migrate
  $ zsetup seed --events 5000 --instances 3 --seed 42 --json

Refuses (exit 5) when the database already has eventstore.events, events_old or events2, unless --reset.
Exit codes: 0 seeded, 2 usage/configuration/connection error, 5 refused.`)
    .action(async (flags: SeedFlags) => {
      checkSeedOptions({ events: flags.events, instances: flags.instances, seed: flags.seed });
      process.exitCode = await withSession(flags, async (s) => {
        if (flags.reset) {
          const dropped = await dropSeedTargets(s.database);
          s.reporter.warn(dropped.length > 0 ? `--reset: dropped schema(s) ${dropped.join(', ')}` : '--reset: nothing to drop');
        }
        const summary = await seedWithProgress(s, { events: flags.events, instances: flags.instances, seed: flags.seed });
        const message = describeSeed(summary);
        s.output({ database: s.database.displayUrl, ...summary }, () => `seeded ${message} in ${formatDuration(summary.durationMs)}`);
        return 0;
      }, process.env, { embeddedByDefault: true });
    });
}

function integer(value: string): number {
  const n = Number(value.replace(/_/g, ''));
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected an integer');
  return n;
}

/** Commander parser for a whole number ≥ 1 (underscores allowed). */
export function positiveInt(value: string): number {
  const n = integer(value);
  if (n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** Seeds with a spinner / progress lines, as one pseudo-step `seed`. Shared with `demo`. */
export async function seedWithProgress(s: Session, options: SeedOptions): Promise<SeedSummary> {
  const title = `seed ${formatCount(options.events)} events in ${formatCount(options.instances)} instance(s), seed ${options.seed ?? 1}`;
  s.reporter.handle({ type: 'step-start', stepId: 'seed', title, attempt: 1, resuming: false });
  const meter = new ProgressMeter();
  let summary: SeedSummary;
  try {
    summary = await seedLegacy(s.database, {
      ...options,
      onProgress: (done, total) =>
        s.reporter.handle({ type: 'step-progress', stepId: 'seed', progress: meter.update({ phase: 'load', done, total, unit: 'events' }) }),
    });
  } catch (err) {
    s.reporter.close();
    throw err;
  }
  const message = describeSeed(summary);
  s.reporter.handle({ type: 'step-end', result: { id: 'seed', title, status: 'succeeded', attempt: 1, durationMs: summary.durationMs, summary: { message } } });
  return summary;
}

function describeSeed(summary: SeedSummary): string {
  return `${formatCount(summary.events)} events, ${summary.instances} instance(s), ${summary.milestones} milestone rows`;
}
