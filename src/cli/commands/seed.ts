import { Command, InvalidArgumentError, Option } from 'commander';
import { ProgressMeter } from '../../progress.js';
import {
  MAX_PAYLOAD_BYTES, MAX_SAML_METADATA_BYTES, ZITADEL_VERSIONS, checkSeedOptions, dropSeedTargets, seedLegacy, type SeedOptions, type SeedSummary, type ZitadelVersion, type SeedPhase,
} from '../../seed/index.js';
import { formatCount, formatDuration } from '../format.js';
import { withCommonOptions, withSession, type CommonFlags, type Session } from '../session.js';

interface SeedFlags extends CommonFlags {
  readonly events: number;
  readonly instances: number;
  readonly seed: number;
  readonly zitadelVersion: ZitadelVersion;
  readonly aggregates?: number;
  readonly payloadBytes?: number;
  readonly eventsPerTx?: number;
  readonly samlMetadataBytes?: number;
  readonly reset?: boolean;
}

/** `zsetup seed`: build a realistic database in the shape a ZITADEL version leaves it, to try `migrate` on. */
export function seedCommand(): Command {
  return withCommonOptions(new Command('seed'))
    .description('create a realistic database as a ZITADEL version leaves it: by default legacy (eventstore.events, projections.milestones, the old handler tables)')
    .option('--events <n>', 'events of the legacy history, its system events included (later setup runs add theirs)', positiveInt, 100_000)
    .option('--instances <n>', 'number of instances (with 3 or more, the last one is removed)', positiveInt, 10)
    .option('--seed <n>', 'same seed, same rows', integer, 1)
    .addOption(new Option('--zitadel-version <preset>', 'the ZITADEL version whose setup last ran: v2.38 legacy (before events2); '
      + 'v2.71 set up by v2 (events_old, events2, current_states, failed_events2, milestone.v2 events, its steps recorded); '
      + 'v4 the newest (v2.71, then the newer steps, current_states.in_tx_order)').choices([...ZITADEL_VERSIONS]).default('v2.38'))
    .option('--aggregates <n>', 'about this many distinct aggregates: logins reuse a pool of sessions, OIDC sessions and auth requests (default: one per ~5 events)', positiveInt)
    .option('--payload-bytes <n>', `pad each payload to about n bytes of JSON (1…${MAX_PAYLOAD_BYTES}; default: natural, ~100–400)`, positiveInt)
    .option('--events-per-tx <n>', 'consecutive events of an instance share one creation_date / transaction, n at a time (default: per push, 1–23)', positiveInt)
    .option('--saml-metadata-bytes <n>', `the API apps of app scenes are SAML apps with metadata of about n bytes (1…${MAX_SAML_METADATA_BYTES}; default: no SAML apps)`, positiveInt)
    .option('--reset', 'first drop the schemas adminapi, auth, eventstore, projections and zsetup (everything zsetup and the seed wrote)')
    .addHelpText('after', `
Examples:
  $ zsetup seed                                       # 100,000 events in 10 instances, embedded PostgreSQL
  $ zsetup seed --events 2000000 --instances 50 -d postgres://postgres@localhost/zitadel_test
  $ zsetup seed --events 1000000 --reset && zsetup migrate
  $ zsetup seed --events 5000 --instances 3 --seed 42 --json
  $ zsetup seed --zitadel-version v2.71 --reset        # a database ZITADEL v2 already moved to events2
  $ zsetup seed --zitadel-version v4 --reset           # the newest: current_states.in_tx_order, newer steps recorded
  $ zsetup seed --events 2000000 --instances 24 --aggregates 10000 --payload-bytes 200 --events-per-tx 8 --reset
  $ zsetup seed --events 500000 --payload-bytes 4096 --saml-metadata-bytes 1000000 --reset   # large payloads

The same --seed and options give the same rows. Every shape option left out keeps the rows as without it.
Refuses (exit 5) when the database already has eventstore.events, events_old or events2, or the schemas
adminapi / auth, unless --reset.
Exit codes: 0 seeded, 2 usage/configuration/connection error, 5 refused.`)
    .action(async (flags: SeedFlags) => {
      const options = seedOptions(flags);
      checkSeedOptions(options);
      process.exitCode = await withSession(flags, async (s) => {
        if (flags.reset) {
          const dropped = await dropSeedTargets(s.database);
          s.reporter.warn(dropped.length > 0 ? `--reset: dropped schema(s) ${dropped.join(', ')}` : '--reset: nothing to drop');
        }
        const summary = await seedWithProgress(s, options);
        const message = describeSeed(summary);
        s.output({ database: s.database.displayUrl, ...summary }, () => `seeded ${message} in ${formatDuration(summary.durationMs)}`);
        return 0;
      }, process.env, { embeddedByDefault: true });
    });
}

function seedOptions(flags: SeedFlags): SeedOptions {
  return {
    events: flags.events, instances: flags.instances, seed: flags.seed, zitadelVersion: flags.zitadelVersion,
    aggregates: flags.aggregates, payloadBytes: flags.payloadBytes, eventsPerTx: flags.eventsPerTx,
    samlMetadataBytes: flags.samlMetadataBytes,
  };
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

/** What the seed's phases are called in its progress. */
const SEED_PHASES: Record<SeedPhase, string> = {
  stage: 'stage the rows', load: 'load', indexes: 'build indexes', milestones: 'milestones', analyze: 'analyze', upgrade: 'upgrade to the release',
};

/** Seeds with a spinner / progress lines, as one pseudo-step `seed`. Shared with `demo`. */
export async function seedWithProgress(s: Session, options: SeedOptions): Promise<SeedSummary> {
  const title = `seed ${formatCount(options.events)} events in ${formatCount(options.instances)} instance(s), seed ${options.seed ?? 1}, ZITADEL ${options.zitadelVersion ?? 'v2.38'}`;
  s.reporter.handle({ type: 'step-start', stepId: 'seed', title, attempt: 1, resuming: false });
  const meter = new ProgressMeter();
  let current: SeedPhase | undefined;
  let summary: SeedSummary;
  try {
    summary = await seedLegacy(s.database, {
      ...options,
      onProgress: (done, total) => {
        // Counts belong to the load; one reported before it starts would show during the staging.
        if (current === 'load') s.reporter.handle({ type: 'step-progress', stepId: 'seed', progress: meter.update({ phase: 'load', done, total, unit: 'events' }) });
      },
      // The phases without a count show as one unit of work each, like the steps' own phases.
      onPhase: (phase) => {
        current = phase;
        if (phase !== 'load') s.reporter.handle({ type: 'step-progress', stepId: 'seed', progress: meter.update({ phase: SEED_PHASES[phase], done: 0, total: 1, unit: 'steps' }) });
      },
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
  const shape = summary.zitadelVersion === 'v2.38' ? 'legacy' : `as ZITADEL ${summary.zitadelVersion}'s setup leaves it`;
  return `${formatCount(summary.events)} events, ${summary.instances} instance(s), ${summary.milestones} milestone rows, ${shape}`;
}
