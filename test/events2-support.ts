import { migrate, type MigrateResult } from '../src/migrate.js';
import type { Database } from '../src/db/connection.js';
import { LEGACY_EVENTS_TABLE } from '../src/schema.js';
import type { RunContext, Step } from '../src/step.js';
import { events2Step, events2StepFor } from '../steps/01-events2.js';
import type { TestDatabase } from './support/db.js';

/**
 * Legacy events with awkward rows: three instances (one with a unicode id) plus system events with
 * instance id '', null payloads, unicode text, large incompressible payloads, runs of equal creation
 * dates, several revisions (v1, v2, v3, v10, v32767), microsecond timestamps.
 */
export async function seedAwkwardLegacy(tdb: TestDatabase, perInstance = 600): Promise<number> {
  await tdb.query(LEGACY_EVENTS_TABLE);
  await tdb.query(`
    INSERT INTO eventstore.events (event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence,
      previous_aggregate_sequence, creation_date, event_data, editor_user, editor_service, resource_owner, instance_id)
    SELECT CASE g % 3 WHEN 0 THEN 'user.human.added' WHEN 1 THEN 'org.added' ELSE 'project.application.added' END,
           CASE g % 3 WHEN 0 THEN 'user' WHEN 1 THEN 'org' ELSE 'project' END,
           'agg-' || (g % 40),
           'v' || (1 + g % 3),
           g,
           NULLIF(g - 1, 0),
           timestamptz '2023-03-01 10:00:00.000001+00' + (g / 4) * interval '1.234567 second',
           CASE WHEN g % 7 = 0 THEN NULL
                WHEN g % 50 = 0 THEN jsonb_build_object('blob', (SELECT string_agg(md5(i.id || g || k), '') FROM generate_series(1, 400) k))
                WHEN g % 5 = 0 THEN jsonb_build_object('name', 'Zoë Ångström 日本語 ☃ ' || g, 'emoji', '🙂', 'quote', 'a"b\\c')
                ELSE jsonb_build_object('n', g, 'nested', jsonb_build_object('ok', true, 'list', jsonb_build_array(1, 2.5, 'x'))) END,
           CASE WHEN g % 9 = 0 THEN 'LOGIN' ELSE 'user-' || (g % 13) END,
           'zitadel',
           CASE WHEN g % 4 = 0 THEN i.id ELSE 'org-' || (g % 6) END,
           i.id
    FROM generate_series(1, ${perInstance}) g, (VALUES ('inst-a'), ('inst-b'), ('ïnst ☃ ü')) AS i(id);
    INSERT INTO eventstore.events (event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence,
      creation_date, event_data, editor_user, editor_service, resource_owner, instance_id)
    VALUES
      ('system.migration.started', 'system', 'SYSTEM', 'v1', 1, '2023-01-01 00:00:00+00', '{"name": "01_tables"}', 'system', 'system', 'SYSTEM', ''),
      ('system.migration.done', 'system', 'SYSTEM', 'v1', 2, '2023-01-01 00:00:00+00', '{"name": "01_tables"}', 'system', 'system', 'SYSTEM', ''),
      ('system.migration.done', 'system', 'SYSTEM', 'v10', 3, '2023-01-01 00:00:00.5+00', NULL, 'system', 'system', 'SYSTEM', ''),
      ('instance.added', 'instance', 'inst-a', 'v32767', ${perInstance + 1}, '1999-12-31 23:59:59.999999+00', '{}', 'system', 'zitadel', 'inst-a', 'inst-a');
  `);
  return perInstance * 3 + 4;
}

/**
 * events2 without ZITADEL's bookkeeping that the runner records when the step succeeds (the
 * `system.migration.*` events of `14_events_push`): what the move itself put there.
 */
export const MOVED_EVENTS2 = `SELECT * FROM eventstore.events2
  WHERE NOT (instance_id = '' AND aggregate_type = 'system' AND event_type LIKE 'system.migration.%' AND coalesce(payload->>'name' = '14_events_push', false))`;

/** Rows of events_old (mapped) missing from events2 plus rows of events2 not in the mapping: 0 when equal. */
export const DIFFERENCE_SQL = `
  SELECT (SELECT count(*) FROM (
            SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence, substr(aggregate_version, 2)::smallint,
                   creation_date, event_data, editor_user, resource_owner, EXTRACT(EPOCH FROM creation_date), event_sequence::integer
            FROM eventstore.events_old
            EXCEPT ALL ${MOVED_EVENTS2}) d)::int AS missing,
         (SELECT count(*) FROM (
            ${MOVED_EVENTS2} EXCEPT ALL
            SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence, substr(aggregate_version, 2)::smallint,
                   creation_date, event_data, editor_user, resource_owner, EXTRACT(EPOCH FROM creation_date), event_sequence::integer
            FROM eventstore.events_old) d)::int AS extra`;

/** Where a simulated kill happens. */
export interface CrashPoint {
  /** Crash inside the n-th transaction (1-based) of this phase, after its work, before its commit. */
  readonly phase: string;
  readonly inTransaction?: number;
  /** Or crash as soon as the step reports this phase (between units of work). */
  readonly onPhase?: boolean;
}

/** The events2 step as `migrate --offline` runs it (cut the old version off first). */
export const offlineStep: Step<any> = events2StepFor('offline');

/** The events2 step with a simulated kill at one point: the run ends with an error, nothing after it commits. */
export function crashingStep(point: CrashPoint, base: Step<any> = events2Step): Step<any> {
  return {
    ...base,
    run(ctx: RunContext<any>) {
      let phase = '';
      let n = 0;
      const crash = () => { throw new Error(`simulated crash at ${point.phase}`); };
      return base.run({
        ...ctx,
        progress(update) {
          if (update.phase !== phase) {
            phase = update.phase;
            n = 0;
            if (point.onPhase && phase.startsWith(point.phase)) crash();
          }
          ctx.progress(update);
        },
        transaction: (fn) => ctx.transaction(async (tx) => {
          const result = await fn(tx);
          if (point.inTransaction !== undefined && phase.startsWith(point.phase) && ++n === point.inTransaction) crash();
          return result;
        }),
      });
    },
  };
}

/** Runs migrate with the given steps (default: the events2 step). */
export function run(database: Database, steps: Step<any>[] = [events2Step], concurrency = 2): Promise<MigrateResult> {
  return migrate(database, { steps, lockWaitMs: 10_000, stepOptions: { concurrency, exact: false }, version: 'test' });
}
