/**
 * The hand-off proof (issue 13 item 5): after `zsetup migrate --init-projections`, ZITADEL's own setup
 * (emulated from the spec in support/zitadel-setup.ts) must complete with every step skipped or
 * succeeding, the six projections' tables must equal ZITADEL's DDL, and the handler's catch-up must
 * continue exactly from the positions zsetup recorded: events pushed afterwards the way ZITADEL pushes
 * are returned, nothing older and nothing missing.
 */
import { execFileSync } from 'node:child_process';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ensureBuilt, runCli, type CliRun } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import {
  SIX_PROJECTIONS, catchUp, createInitObjects, createLegacyHandlerTables, isSubscribed, missingProjectionTables, prefillInstances,
  projectionTablesDiff, push, runSetup, type Command, type ProjectionName, type PushedEvent, type SetupRun, type StepOutcome,
} from './support/zitadel-setup.js';

ensureBuilt();
const seedHelp = execFileSync(process.execPath, [BIN, 'seed', '--help'], { encoding: 'utf8' });
const presets = seedHelp.includes('--zitadel-version');

const SEED = ['--events', '5000', '--instances', '4', '--seed', '13'];
const TIMEOUT = 600_000;

const databases: TestDatabase[] = [];
afterAll(() => Promise.all(databases.map((d) => d.drop())));

async function database(): Promise<{ db: TestDatabase; c: pg.Client }> {
  const db = await createTestDatabase('handoff');
  databases.push(db);
  return { db, c: await db.client() };
}

function cli(args: string[]): Promise<CliRun> {
  return runCli(args, {}, { timeoutMs: 300_000 });
}

async function seed(db: TestDatabase, extra: string[] = []): Promise<void> {
  const r = await cli(['seed', ...SEED, ...extra, '-d', db.url]);
  expect(r.code, r.stderr).toBe(0);
}

async function zsetupMigrate(db: TestDatabase): Promise<CliRun> {
  return cli(['migrate', '--init-projections', '--concurrency', '2', '-d', db.url]);
}

/** The steps that did not end skipped or succeeded, as readable lines. */
function notOk(run: SetupRun): string[] {
  return run.outcomes.filter((o) => o.result !== 'skipped' && o.result !== 'succeeded').map(line);
}

function line(o: StepOutcome): string {
  return `${o.list} ${o.name}: ${o.result}${o.sqlstate ? ` [${o.sqlstate}]` : ''}${o.reason ? ` — ${o.reason}` : ''}`;
}

/** (projection, instance) rows of current_states for the six projections. */
async function sixStates(c: pg.Client): Promise<{ projection: ProjectionName; instance: string }[]> {
  const r = await c.query(
    `SELECT projection_name, instance_id FROM projections.current_states WHERE projection_name = ANY($1) ORDER BY 1, 2`, [[...SIX_PROJECTIONS]]);
  return r.rows.map((x) => ({ projection: x.projection_name, instance: x.instance_id }));
}

// ------------------------------------------------------------------------------------------------
// New events of every subscribed kind, pushed like ZITADEL

/** Pushes, per instance, one push per aggregate with every event type some projection subscribes to, and noise. */
function pushesFor(instance: string, tag: string): Command[][] {
  const org = `${tag}-org`;
  const project = `${tag}-project`;
  const app = `${tag}-app`;
  const human = `${tag}-human`;
  const machine = `${tag}-machine`;
  const on = (aggregateType: string, aggregateId: string, owner: string) => (type: string, payload: Record<string, unknown> = {}): Command =>
    ({ instanceId: instance, aggregateType, aggregateId, type, payload, owner, creator: `${tag}-admin` });
  const i = on('instance', instance, instance);
  const o = on('org', org, org);
  const p = on('project', project, org);
  const h = on('user', human, org);
  const m = on('user', machine, org);
  const ms = on('milestone', instance, instance);
  const a = (type: string, payload: Record<string, unknown> = {}) => p(`project.application.${type}`, { appId: app, ...payload });
  return [
    [i('instance.changed', { name: `${tag} instance` }), i('instance.default.org.set', { orgId: org }), i('instance.iam.project.set', { iamProjectId: project }),
      i('instance.iam.console.set', { clientId: `${app}@c`, appId: app }), i('instance.default.language.set', { language: 'de' }),
      i('instance.domain.added', { domain: `${tag}.example.com` })],
    [o('org.added', { name: `${tag} org` }), o('org.changed', { name: `${tag} org 2` }), o('org.domain.primary.set', { domain: `${tag}.example.com` }),
      o('org.deactivated'), o('org.reactivated')],
    [p('project.added', { name: `${tag} project` }), p('project.changed', { name: `${tag} project 2` }), p('project.deactivated'), p('project.reactivated'),
      p('project.role.added', { key: 'r' })],
    [a('added', { name: 'app' }), a('changed', { name: 'app 2' }), a('deactivated'), a('reactivated'),
      a('config.api.added', { clientId: `${app}@api`, authMethodType: 0 }), a('config.api.changed', { authMethodType: 1 }),
      a('config.api.secret.changed', { hashedSecret: 'h1' }), a('config.api.secret.updated', { hashedSecret: 'h2' })],
    [a('config.oidc.added', { clientId: `${app}@oidc`, redirectUris: ['https://x'] }), a('config.oidc.changed', { devMode: true }),
      a('config.oidc.secret.changed', { hashedSecret: 'h3' }), a('config.oidc.secret.updated', { hashedSecret: 'h4' }),
      a('config.saml.added', { entityId: 'e', metadata: 'bWQ=' }), a('config.saml.changed', { metadata_url: 'https://m' })],
    [h('user.human.added', { userName: `${tag}.h`, firstName: 'A', lastName: 'B', email: 'a@b' }),
      h('user.human.initialization.code.added'), h('user.initialization.code.added'), h('user.human.initialization.check.succeeded'),
      h('user.initialization.check.succeeded'), h('user.human.password.check.succeeded'), h('user.token.added'),
      h('user.locked'), h('user.unlocked'), h('user.deactivated'), h('user.reactivated'),
      h('user.username.changed', { userName: `${tag}.h2` }), h('user.domain.claimed', { userName: `${tag}.h3` }),
      h('user.human.profile.changed', { firstName: 'C' }), h('user.profile.changed', { lastName: 'D' }),
      h('user.human.email.changed', { email: 'c@d' }), h('user.email.changed', { email: 'e@f' }), h('user.human.email.verified'), h('user.email.verified'),
      h('user.human.phone.changed', { phone: '+41' }), h('user.phone.changed', { phone: '+42' }), h('user.human.phone.verified'), h('user.phone.verified'),
      h('user.human.phone.removed'), h('user.phone.removed'), h('user.human.avatar.added', { storeKey: 'k' }), h('user.human.avatar.removed'),
      h('user.human.password.changed', { changeRequired: false }), h('user.password.changed', { changeRequired: false }),
      h('user.human.mfa.init.skipped'), h('user.mfa.otp.init.skipped'), h('user.human.mfa.otp.verified'), h('user.mfa.otp.verified'),
      h('user.human.mfa.otp.sms.added'), h('user.human.mfa.otp.email.added'), h('user.human.mfa.u2f.token.verified'),
      h('user.human.passwordless.token.verified'), h('user.human.mfa.otp.added')],
    [h('user.added', { userName: `${tag}.v1` }), h('user.human.selfregistered', { userName: `${tag}.s` }), h('user.selfregistered', { userName: `${tag}.s1` })],
    [m('user.machine.added', { userName: `${tag}.m`, name: 'm' }), m('user.machine.changed', { description: 'd' }),
      m('user.machine.secret.set', { hashedSecret: 's' }), m('user.machine.secret.updated', { hashedSecret: 's2' }), m('user.machine.secret.removed'),
      m('user.machine.secret.check.succeeded')],
    [ms('milestone.v2.reached', { type: 'ProjectCreated' }), ms('milestone.v2.pushed', { type: 'ProjectCreated', endpoints: null })],
    // Several aggregates in one push: one position, in_tx_order 1…4.
    [h('user.removed'), a('removed'), p('project.removed'), o('org.removed')],
  ];
}

/** An instance added after the hand-off and later removed: no state anywhere, its handlers start at 0. */
function newInstancePushes(instance: string): Command[][] {
  const i = (type: string, payload: Record<string, unknown> = {}): Command =>
    ({ instanceId: instance, aggregateType: 'instance', aggregateId: instance, type, payload, owner: instance, creator: 'system' });
  return [[i('instance.added', { name: 'new' })], [i('instance.changed', { name: 'new 2' })], [i('instance.removed')]];
}

/** Compares decimal strings (positions) exactly. */
function comparePositions(a: string, b: string): number {
  const scale = (x: string) => {
    const [int, frac = ''] = x.split('.');
    return BigInt(int + frac.padEnd(12, '0').slice(0, 12));
  };
  const d = scale(a) - scale(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

const key = (e: { aggregateType: string; aggregateId: string; sequence: string; type: string }) => `${e.aggregateType}/${e.aggregateId}/${e.sequence}/${e.type}`;

/**
 * Pushes new events to `instances` (plus one new instance), then checks, for every (projection,
 * instance) pair with a state row or an active instance, that the catch-up returns exactly the new
 * subscribed events of that instance, in (position, in_tx_order) order.
 */
async function assertCatchUp(c: pg.Client, instances: readonly string[], statesBefore: { projection: ProjectionName; instance: string }[]): Promise<void> {
  const pushed: PushedEvent[] = [];
  for (const [n, instance] of instances.entries()) for (const commands of pushesFor(instance, `hoff${n}`)) pushed.push(...await push(c, commands));
  for (const commands of newInstancePushes('hoff-new-instance')) pushed.push(...await push(c, commands));
  expect(pushed.filter((e) => e.instanceId === instances[0]).every((e, i, all) => i === 0 || comparePositions(all[i - 1].position, e.position) <= 0)).toBe(true);

  const pairs = new Map<string, { projection: ProjectionName; instance: string }>();
  const add = (projection: ProjectionName, instance: string) => pairs.set(`${projection} ${instance}`, { projection, instance });
  for (const s of statesBefore) add(s.projection, s.instance);
  for (const instance of [...await prefillInstances(c), 'hoff-new-instance']) for (const p of SIX_PROJECTIONS) add(p, instance);
  expect(pairs.size).toBeGreaterThan(SIX_PROJECTIONS.length * instances.length);

  const wrong: string[] = [];
  for (const { projection, instance } of pairs.values()) {
    const expected = pushed
      .filter((e) => e.instanceId === instance && isSubscribed(projection, e.aggregateType, e.type))
      .sort((x, y) => comparePositions(x.position, y.position) || x.inTxOrder - y.inTxOrder)
      .map(key);
    const got = await catchUp(c, projection, instance);
    const actual = got.events.map(key);
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      const older = actual.filter((k) => !expected.includes(k));
      const missing = expected.filter((k) => !actual.includes(k));
      wrong.push(`${projection} ${instance} from ${JSON.stringify(got.from)}: ${older.length} old/unexpected (${older.slice(0, 3).join(', ')}…), ` +
        `${missing.length} missing (${missing.slice(0, 3).join(', ')}…)${older.length + missing.length === 0 ? ', order differs' : ''}`);
    }
  }
  expect.soft(wrong, 'catch-up from every recorded position returns exactly the new events').toEqual([]);
}

/** Everything that must hold once zsetup's output went through ZITADEL's setup. */
async function assertHandedOver(
  db: TestDatabase, c: pg.Client, statesBefore: { projection: ProjectionName; instance: string }[], arrangedLegacyState = false,
): Promise<void> {
  // As zsetup left them, before ZITADEL's guarded DDL could add anything: ZITADEL's tables of REF or of MAIN,
  // with the changes of later steps already recorded done (25, 48), which ZITADEL never makes again.
  const [ref, main] = [await projectionTablesDiff(c, 'ref', { recordedSteps: true }), await projectionTablesDiff(c, 'main', { recordedSteps: true })];
  expect.soft(ref.length === 0 || main.length === 0 ? [] : ref.length <= main.length ? ref : main,
    "zsetup's projection tables equal ZITADEL's DDL (REF or MAIN)").toEqual([]);
  const run = await runSetup(db.url, { initProjections: true, keepGoing: true });
  expect.soft(notOk(run), 'ZITADEL setup (REF, MAIN, IDX, --init-projections): every step skipped or succeeded').toEqual([]);
  expect.soft(await projectionTablesDiff(c, 'final'), "the six projections' tables equal ZITADEL's DDL").toEqual([]);
  const again = await runSetup(db.url, { initProjections: true, keepGoing: true });
  expect.soft(notOk(again), 'a second setup run: every step skipped or succeeded').toEqual([]);
  expect.soft(again.outcomes.filter((o) => o.result === 'succeeded' && /^\d/.test(o.name)).map(line), 'numbered steps run only once').toEqual([]);
  await assertLegacyStateCarriedOver(c, arrangedLegacyState);
  // New events in all active instances but one: that one's catch-up must return nothing.
  const active = await prefillInstances(c);
  expect(active.length).toBeGreaterThanOrEqual(3);
  const instances = active.slice(0, -1);
  await assertCatchUp(c, instances, statesBefore);
}

// ------------------------------------------------------------------------------------------------
// The legacy handler state of a pre-v2.39 database (tables of 01_tables), which step 15 carries over

/**
 * Positions and failures of handlers zsetup does not manage, in the legacy tables step 15 reads
 * (added to whatever the seed already put there).
 */
async function arrangeLegacyHandlerState(c: pg.Client): Promise<void> {
  await createLegacyHandlerTables(c);
  await c.query(`INSERT INTO auth.current_sequences (view_name, current_sequence, instance_id, last_successful_spooler_run)
    SELECT 'auth.handoff_view', max(event_sequence), instance_id, max(creation_date) FROM eventstore.events WHERE instance_id <> '' GROUP BY instance_id`);
  await c.query(`INSERT INTO projections.current_sequences (projection_name, aggregate_type, current_sequence, instance_id, "timestamp")
    SELECT 'projections.handoff_names', 'user', max(event_sequence), instance_id, max(creation_date) FROM eventstore.events
    WHERE instance_id <> '' AND aggregate_type = 'user' GROUP BY instance_id`);
  await c.query(`INSERT INTO projections.failed_events (projection_name, failed_sequence, failure_count, error, instance_id, last_failed)
    SELECT 'projections.handoff_names', min(event_sequence), 3, 'boom', instance_id, now() FROM eventstore.events
    WHERE instance_id <> '' AND aggregate_type = 'user' GROUP BY instance_id`);
}

const LEGACY_STATES = [
  { table: 'projections.current_sequences', name: 'projection_name', join: 'AND e.aggregate_type = s.aggregate_type' },
  { table: 'adminapi.current_sequences', name: 'view_name', join: '' },
  { table: 'auth.current_sequences', name: 'view_name', join: '' },
];
const LEGACY_FAILURES = [
  { table: 'projections.failed_events', name: 'projection_name' },
  { table: 'adminapi.failed_events', name: 'view_name' },
  { table: 'auth.failed_events', name: 'view_name' },
];

/**
 * ZITADEL runs step 15 right after step 14, so its joins see only the moved events (not milestone
 * events appended later, whose small per-aggregate sequences could match a legacy sequence too).
 */
const MIGRATED = `AND EXISTS (SELECT 1 FROM eventstore.events_old o WHERE o.instance_id = e.instance_id AND o.aggregate_type = e.aggregate_type
  AND o.aggregate_id = e.aggregate_id AND o.event_sequence = e."sequence")`;

/**
 * Step 15's effect, whoever produced it (zsetup or ZITADEL): for every handler zsetup does not
 * prefill, the legacy position (max current_sequence joined to events2) is its current_states row,
 * and every legacy failure is in failed_events2. `arranged`: the test added rows, so some must exist.
 */
async function assertLegacyStateCarriedOver(c: pg.Client, arranged: boolean): Promise<void> {
  const exists = async (t: string) => (await c.query(`SELECT to_regclass($1) IS NOT NULL AS t`, [t])).rows[0].t as boolean;
  const states: string[] = [];
  for (const l of LEGACY_STATES) {
    if (!(await exists(l.table))) continue;
    const r = await c.query(`SELECT DISTINCT ON (s.${l.name}, s.instance_id) s.${l.name} AS n, s.instance_id AS i, e."position"::text AS p
      FROM ${l.table} s JOIN eventstore.events2 e ON e.instance_id = s.instance_id AND e."sequence" = s.current_sequence ${l.join} ${MIGRATED}
      WHERE s.${l.name} <> ALL($1) ORDER BY s.${l.name}, s.instance_id, s.current_sequence DESC, e."position" DESC`, [[...SIX_PROJECTIONS]]);
    states.push(...r.rows.map((x) => `${x.n} ${x.i} ${x.p}`));
  }
  const failures: string[] = [];
  for (const l of LEGACY_FAILURES) {
    if (!(await exists(l.table))) continue;
    const r = await c.query(`SELECT DISTINCT f.${l.name} AS n, f.instance_id AS i, e.aggregate_type AS t, e.aggregate_id AS a, f.failed_sequence::text AS s
      FROM ${l.table} f JOIN eventstore.events2 e ON e.instance_id = f.instance_id AND e."sequence" = f.failed_sequence ${MIGRATED}
      WHERE f.${l.name} <> ALL($1)`, [[...SIX_PROJECTIONS]]);
    failures.push(...r.rows.map((x) => `${x.n} ${x.i} ${x.t} ${x.a} ${x.s}`));
  }
  if (arranged) expect(states.length).toBeGreaterThanOrEqual(6);
  const names = [...new Set([...states, ...failures].map((x) => x.split(' ')[0]))];
  const actualStates = (await c.query(`SELECT projection_name AS n, instance_id AS i, "position"::text AS p FROM projections.current_states
    WHERE projection_name = ANY($1)`, [names])).rows.map((x) => `${x.n} ${x.i} ${x.p}`);
  const actualFailures = (await c.query(`SELECT projection_name AS n, instance_id AS i, aggregate_type AS t, aggregate_id AS a, failed_sequence::text AS s
    FROM projections.failed_events2 WHERE projection_name = ANY($1)`, [names])).rows.map((x) => `${x.n} ${x.i} ${x.t} ${x.a} ${x.s}`);
  expect.soft(actualStates.sort(), "step 15's copy of the legacy handler positions").toEqual(states.sort());
  expect.soft(actualFailures.sort(), "step 15's copy of the legacy failed events").toEqual(failures.sort());
}

describe('hand-off to ZITADEL setup', () => {
  for (const legacyTables of [false, true]) {
    const shape = legacyTables ? " with 01_tables' legacy handler tables" : ' as seeded';
    it(`legacy database${shape} → zsetup migrate --init-projections → ZITADEL setup completes and catches up exactly`, { timeout: TIMEOUT }, async () => {
      const { db, c } = await database();
      await seed(db);
      await createInitObjects(c); // a database ZITADEL's init made has eventstore.unique_constraints
      if (legacyTables) await arrangeLegacyHandlerState(c);
      const migrated = await zsetupMigrate(db);
      expect.soft(migrated.code, migrated.stderr).toBe(0);
      expect.soft(await missingProjectionTables(c), 'zsetup created every table of the six projections').toEqual([]);
      const states = await sixStates(c);
      expect(states.length).toBeGreaterThan(0);
      await assertHandedOver(db, c, states, legacyTables);
    });
  }

  it('"real v2" database (ZITADEL ran 14…47) → zsetup migrate --init-projections → the rest of setup completes and catches up exactly', { timeout: TIMEOUT }, async () => {
    const { db, c } = await database();
    await seed(db);
    await createInitObjects(c);
    await arrangeLegacyHandlerState(c);
    const v2 = await runSetup(db.url, { versions: ['ref'], stopAfter: '47_fill_membership_fields' });
    expect(notOk(v2), 'ZITADEL v2 itself runs 14…47 on the legacy database').toEqual([]);
    expect(v2.outcomes.at(-1)?.name).toBe('47_fill_membership_fields');
    const shape = (await c.query(
      `SELECT (SELECT data_type FROM information_schema.columns WHERE table_schema = 'eventstore' AND table_name = 'events2' AND column_name = 'in_tx_order') AS itx,
              (SELECT count(*)::int FROM information_schema.columns WHERE table_schema = 'projections' AND table_name = 'current_states' AND column_name = 'in_tx_order') AS cs_itx,
              (SELECT count(*)::int FROM projections.current_states WHERE projection_name = 'auth.handoff_view') AS copied`)).rows[0];
    expect(shape).toEqual({ itx: 'bigint', cs_itx: 0, copied: 4 }); // step 15 copied the view's position of each of the 4 instances

    const migrated = await zsetupMigrate(db);
    expect.soft(migrated.code, migrated.stderr).toBe(0);
    expect.soft(await missingProjectionTables(c), 'zsetup created every table of the six projections').toEqual([]);
    const states = await sixStates(c);
    expect(states.length).toBeGreaterThan(0);
    await assertHandedOver(db, c, states, true);
  });

  describe.runIf(presets)('zsetup seed --zitadel-version presets', () => {
    for (const version of ['v2.71', 'v4']) {
      it(`${version} preset → zsetup migrate --init-projections → ZITADEL setup completes and catches up exactly`, { timeout: TIMEOUT }, async () => {
        const { db, c } = await database();
        await seed(db, ['--zitadel-version', version]);
        await createInitObjects(c);
        const migrated = await zsetupMigrate(db);
        expect.soft(migrated.code, migrated.stderr).toBe(0);
        expect.soft(await missingProjectionTables(c)).toEqual([]);
        await assertHandedOver(db, c, await sixStates(c));
      });
    }
  });
});

describe('the oracle notices what breaks a hand-off', () => {
  it('a missing bookkeeping event, a reshaped table and a state behind', { timeout: TIMEOUT }, async () => {
    const { db, c } = await database();
    await seed(db);
    await createInitObjects(c);
    const migrated = await zsetupMigrate(db);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(await projectionTablesDiff(c, 'ref').then((d) => d.filter((x) => /orgs1|api_configs/.test(x)))).toEqual([]);

    await c.query(`DROP INDEX projections.orgs1_domain_idx; CREATE INDEX orgs1_primary_domain_idx ON projections.orgs1 (primary_domain);
      ALTER TABLE projections.apps7_api_configs DROP CONSTRAINT fk_api_configs_ref_apps7`);
    const diff = await projectionTablesDiff(c, 'ref');
    expect(diff).toContain('projections.orgs1: index orgs1_domain_idx missing (spec: "CREATE INDEX orgs1_domain_idx ON orgs1 USING btree (primary_domain)")');
    expect(diff).toContain('projections.orgs1: index orgs1_primary_domain_idx not in the spec ("CREATE INDEX orgs1_primary_domain_idx ON orgs1 USING btree (primary_domain)")');
    expect(diff.some((d) => d.startsWith('projections.apps7_api_configs: constraint fk_api_configs_ref_apps7 missing'))).toBe(true);

    const [row] = (await c.query(`SELECT instance_id FROM projections.current_states WHERE projection_name = 'projections.users14' LIMIT 1`)).rows;
    expect((await catchUp(c, 'projections.users14', row.instance_id)).events).toEqual([]);
    // A state behind (at the instance's first user event, as a step-15 copy would leave it): old events come back.
    await c.query(`UPDATE projections.current_states SET aggregate_id = NULL, aggregate_type = NULL, "sequence" = NULL, filter_offset = NULL,
        "position" = (SELECT min("position") FROM eventstore.events2 WHERE instance_id = $1 AND aggregate_type = 'user')
      WHERE projection_name = 'projections.users14' AND instance_id = $1`, [row.instance_id]);
    expect((await catchUp(c, 'projections.users14', row.instance_id)).events.length).toBeGreaterThan(0);

    // Without 17's bookkeeping ZITADEL runs 17 and fails on zsetup's filter_offset (issue 13).
    await c.query(`DELETE FROM eventstore.events2 WHERE aggregate_type = 'system' AND payload->>'name' = '17_add_offset_col_to_current_states'`);
    await c.query(`DELETE FROM eventstore.unique_constraints WHERE unique_field = '17_add_offset_col_to_current_states'`);
    const run = await runSetup(db.url, { versions: ['ref'], keepGoing: true });
    expect(run.failures.map((f) => [f.name, f.sqlstate])).toEqual([['17_add_offset_col_to_current_states', '42701']]);
  });
});

describe('the emulator itself', () => {
  let db: TestDatabase;
  let c: pg.Client;
  beforeAll(async () => ({ db, c } = await database()));

  it('runs ZITADEL setup on a small legacy store, records every step once, and fails the unguarded 17 when it reruns', { timeout: TIMEOUT }, async () => {
    await c.query(`CREATE SCHEMA eventstore; CREATE TABLE eventstore.events (instance_id TEXT NOT NULL, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
      aggregate_version TEXT NOT NULL, event_sequence BIGINT NOT NULL, event_type TEXT NOT NULL, creation_date TIMESTAMPTZ NOT NULL DEFAULT now(),
      event_data JSONB, editor_user TEXT NOT NULL, resource_owner TEXT NOT NULL, PRIMARY KEY (event_sequence, instance_id))`);
    await c.query(`INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, aggregate_version, event_sequence, event_type, event_data, editor_user, resource_owner)
      VALUES ('', 'system', 'SYSTEM', 'v1', 1, 'system.migration.started', '{"name": "03_default_instance"}', 'system', 'SYSTEM'),
             ('', 'system', 'SYSTEM', 'v1', 2, 'system.migration.done', '{"name": "03_default_instance"}', 'system', 'SYSTEM'),
             ('', 'system', 'SYSTEM', 'v1', 3, 'system.migration.done', '{"name": "01_tables"}', 'system', 'SYSTEM'),
             ('i1', 'instance', 'i1', 'v1', 1, 'instance.added', '{"name": "one"}', 'system', 'i1'),
             ('i2', 'instance', 'i2', 'v1', 1, 'instance.added', '{"name": "two"}', 'system', 'i2')`);
    await createInitObjects(c);
    await createLegacyHandlerTables(c);
    const run = await runSetup(db.url, { initProjections: true });
    expect(notOk(run).filter((l) => !l.startsWith('init-projections'))).toEqual([]);
    expect(run.outcomes.find((o) => o.name === '17_add_offset_col_to_current_states')?.result).toBe('succeeded');
    expect(run.outcomes.filter((o) => o.list === 'init-projections').map((o) => o.result)).toEqual(Array(6).fill('would-prefill'));
    // Every step of the first run is recorded: a second run skips all but the repeatables that always run.
    const again = await runSetup(db.url);
    expect(notOk(again)).toEqual([]);
    expect(again.outcomes.filter((o) => o.result === 'succeeded' && /^\d/.test(o.name)).map((o) => o.name)).toEqual([]);
    // ZITADEL's tables, made by projection_tables and steps 25/48: exactly the spec DDL.
    expect(await projectionTablesDiff(c, 'final')).toEqual([]);
    // 17 is unguarded: run again (failed state), it fails with 42701.
    await push(c, [{ instanceId: '', aggregateType: 'system', aggregateId: 'SYSTEM', type: 'system.migration.failed',
      payload: { name: '17_add_offset_col_to_current_states', error: 'test' }, owner: 'SYSTEM' }],
    [{ action: 'remove', type: 'migration_started', field: '17_add_offset_col_to_current_states' }]);
    const rerun17 = await runSetup(db.url, { versions: ['ref'] });
    expect(rerun17.failures.map((f) => [f.name, f.sqlstate])).toEqual([['17_add_offset_col_to_current_states', '42701']]);
    expect((await c.query(`SELECT payload->>'error' AS e FROM eventstore.events2 WHERE event_type = 'system.migration.failed' ORDER BY "sequence" DESC LIMIT 1`)).rows[0].e)
      .toMatch(/^ERROR: column "filter_offset" of relation "current_states" already exists \(SQLSTATE 42701\)$/);
    // Recorded done again, so later runs pass 17.
    await push(c, [{ instanceId: '', aggregateType: 'system', aggregateId: 'SYSTEM', type: 'system.migration.done',
      payload: { name: '17_add_offset_col_to_current_states' }, owner: 'SYSTEM' }]);
  });

  it('catches up from a state in the middle of a push (filter_offset) and from one without offset (skip by identity)', async () => {
    await c.query(`DELETE FROM projections.current_states WHERE instance_id = 'i1'`);
    // Back to REF's push (one position per transaction): step 40 failed ⇒ it runs again and replaces IDX's clock stamping.
    await push(c, [{ instanceId: '', aggregateType: 'system', aggregateId: 'SYSTEM', type: 'system.migration.failed',
      payload: { name: '40_init_push_func_v4', error: 'test' }, owner: 'SYSTEM' }],
    [{ action: 'remove', type: 'migration_started', field: '40_init_push_func_v4' }]);
    // (A step done once keeps its migration_done row, so ZITADEL could not record it done twice: take it away.)
    await c.query(`DELETE FROM eventstore.unique_constraints WHERE unique_type = 'migration_done' AND unique_field = '40_init_push_func_v4'`);
    const ref = await runSetup(db.url, { versions: ['ref'] });
    expect(notOk(ref)).toEqual([]);
    expect(ref.outcomes.find((o) => o.name === '40_init_push_func_v4')?.result).toBe('succeeded');
    const [a1, a2, a3] = await push(c, ['org.added', 'org.changed', 'org.deactivated'].map((type) =>
      ({ instanceId: 'i1', aggregateType: 'org', aggregateId: 'o1', type, payload: { name: 'x' }, owner: 'o1' })));
    const [b1] = await push(c, [{ instanceId: 'i1', aggregateType: 'org', aggregateId: 'o1', type: 'org.reactivated', owner: 'o1' }]);
    expect([a1.inTxOrder, a2.inTxOrder, a3.inTxOrder]).toEqual([1, 2, 3]);
    expect(a1.position).toBe(a3.position);
    expect(a2.sequence).toBe(String(Number(a1.sequence) + 1));
    const from0 = await catchUp(c, 'projections.orgs1', 'i1');
    expect(from0.from).toBeNull();
    expect(from0.events.map((e) => e.type)).toEqual(['org.added', 'org.changed', 'org.deactivated', 'org.reactivated']);
    expect(from0.to).toEqual({ position: b1.position, filterOffset: 1 });
    const state = (p: PushedEvent, offset: number | null) => c.query(
      `INSERT INTO projections.current_states (projection_name, instance_id, aggregate_id, aggregate_type, "sequence", event_date, "position", filter_offset, last_updated)
       VALUES ('projections.orgs1', 'i1', $1, 'org', $2, now(), $3, $4, now())
       ON CONFLICT (projection_name, instance_id) DO UPDATE SET aggregate_id = $1, "sequence" = $2, "position" = $3, filter_offset = $4`,
      [p.aggregateId, p.sequence, p.position, offset]);
    await state(a2, 2);
    expect((await catchUp(c, 'projections.orgs1', 'i1')).events.map((e) => e.type)).toEqual(['org.deactivated', 'org.reactivated']);
    await state(a2, null);
    expect((await catchUp(c, 'projections.orgs1', 'i1')).events.map((e) => e.type)).toEqual(['org.deactivated', 'org.reactivated']);
    await state(b1, 1);
    expect((await catchUp(c, 'projections.orgs1', 'i1')).events).toEqual([]);
    // A stale migration_started row without its events makes the started push fail (§2.2).
    await c.query(`INSERT INTO eventstore.unique_constraints VALUES ('', 'migration_started', 'repeatable_sync_role_permissions')`);
    const blocked = await runSetup(db.url, { versions: ['ref'] });
    expect(blocked.failures.map((f) => [f.name, f.sqlstate])).toEqual([['repeatable_sync_role_permissions', '23505']]);
    expect(blocked.failures[0].reason).toContain('Errors.Step.Started.AlreadyExists');
  });
});
