import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { compileProjection } from '../src/projections/model.js';
import { prefillProjection } from '../src/projections/prefill.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { EventLog, type TestEvent } from './support/events.js';

// An independent oracle: a realistic stream for two instances, prefilled by all six built-in
// projections, and every table compared with expected rows worked out by hand from
// zitadel-handoff.md §3 (not from zsetup's code). Event k is created at t(k); sequences are per aggregate
// and noted as "s<n>". Instance i2 is removed: the reference's prefill skips removed instances (§4.4),
// so it must leave no rows and no current_states rows at all.

const t = (k: number) => new Date(Date.UTC(2024, 2, 1, 10, 0, 0) + k * 1000).toISOString();
/** t(k) as PostgreSQL's to_jsonb renders a timestamptz in UTC. */
const T = (k: number) => t(k).replace('.000Z', '+00:00');
const b64 = (s: string) => Buffer.from(s).toString('base64');
const legacy = (crypted: string) => ({ CryptoType: 1, Algorithm: 'bcrypt', KeyID: 'k1', Crypted: b64(crypted) });

let k = 0;
const at = () => t(++k);
const ev = (instance: string, aggregateType: string, aggregateId: string, type: string, payload?: unknown, owner?: string): TestEvent =>
  ({ instance, aggregateType, aggregateId, type, payload, owner, createdAt: at(), revision: aggregateType === 'milestone' ? 2 : 1 });
const app = 'project.application';
const cfg = 'project.application.config';

/** Instance i1: k = 1 … 47, in this order (the numbers in the comments are k). */
function instance1(): TestEvent[] {
  const i = 'i1';
  const p1 = (type: string, payload?: unknown) => ev(i, 'project', 'p1', type, payload, 'o1');
  const p2 = (type: string, payload?: unknown) => ev(i, 'project', 'p2', type, payload, 'o2');
  const u = (id: string, owner: string) => (type: string, payload?: unknown) => ev(i, 'user', id, type, payload, owner);
  const [u1, u2, u3, u4, u5] = [u('u1', 'o1'), u('u2', 'o1'), u('u3', 'o1'), u('u4', 'o2'), u('u5', 'o1')];
  return [
    ev(i, 'instance', i, 'instance.added', { name: 'Acme Cloud' }), // 1 s1
    ev(i, 'org', 'o1', 'org.added', { name: 'Acme' }), // 2 s1
    ev(i, 'org', 'o1', 'org.domain.primary.set', { domain: 'acme.test' }), // 3 s2
    ev(i, 'org', 'o2', 'org.added', { name: 'Doomed' }), // 4 s1
    ev(i, 'instance', i, 'instance.default.org.set', { orgId: 'o1' }), // 5 s2
    p1('project.added', { name: 'Portal', projectRoleAssertion: true }), // 6 s1
    p1(`${app}.added`, { appId: 'a1', name: 'web' }), // 7 s2
    p1(`${cfg}.oidc.added`, { // 8 s3
      appId: 'a1', clientId: 'a1@portal', hashedSecret: '$2a$10$oidc', redirectUris: ['https://acme.test/cb'], responseTypes: [0], grantTypes: [0, 2],
      postLogoutRedirectUris: ['https://acme.test/'], accessTokenType: 1, idTokenRoleAssertion: true, clockSkew: 2_000_000_000, additionalOrigins: [] }),
    p1(`${cfg}.oidc.changed`, { appId: 'a1', devMode: true, redirectUris: ['https://acme.test/cb', 'http://localhost/cb'] }), // 9 s4
    p1(`${app}.added`, { appId: 'a2', name: 'api' }), // 10 s5
    p1(`${cfg}.api.added`, { appId: 'a2', clientId: 'a2@portal', clientSecret: legacy('$2a$10$legacyapi') }), // 11 s6
    p1(`${cfg}.api.secret.changed`, { appId: 'a2', hashedSecret: '$2a$10$newapi' }), // 12 s7
    p1(`${app}.added`, { appId: 'a3', name: 'saml' }), // 13 s8
    p1(`${cfg}.saml.added`, { appId: 'a3', entityId: 'https://sp.acme.test', metadata: b64('<md/>') }), // 14 s9
    p1(`${cfg}.saml.changed`, { appId: 'a3', metadata_url: 'https://sp.acme.test/md' }), // 15 s10
    p1(`${app}.added`, { appId: 'a4', name: 'gone' }), // 16 s11
    p1(`${cfg}.api.added`, { appId: 'a4', clientId: 'a4@portal', hashedSecret: 'h4' }), // 17 s12
    p1(`${app}.removed`, { appId: 'a4' }), // 18 s13: a4 and its API config go
    p1(`${app}.deactivated`, { appId: 'a2' }), // 19 s14
    p2('project.added', { name: 'Doomed project' }), // 20 s1
    p2(`${app}.added`, { appId: 'a5', name: 'doomed app' }), // 21 s2
    p2(`${cfg}.oidc.added`, { appId: 'a5', clientId: 'a5@doomed' }), // 22 s3
    u1('user.human.added', { // 23 s1
      userName: 'ada', firstName: 'Ada', lastName: 'Lovelace', email: 'ada@acme.test', phone: '+41 79 000 00 00', preferredLanguage: 'en', gender: 1,
      encodedHash: '$argon2id$ada' }),
    u1('user.human.email.changed', { email: 'ada.l@acme.test' }), // 24 s2
    u1('user.human.email.verified'), // 25 s3
    u1('user.human.mfa.init.skipped'), // 26 s4 (no bump)
    u1('user.human.password.changed', { encodedHash: '$argon2id$ada2', changeRequired: false }), // 27 s5 (no bump)
    u2('user.machine.added', { userName: 'ci-bot', name: 'CI', description: 'builds', accessTokenType: 1 }), // 28 s1
    u2('user.machine.secret.set', { clientSecret: legacy('$2a$10$legacybot') }), // 29 s2
    u2('user.machine.secret.updated', { hashedSecret: '$argon2id$bot' }), // 30 s3
    u2('user.machine.changed', { description: '' }), // 31 s4
    u3('user.machine.added', { userName: 'old-bot', name: 'Old' }), // 32 s1
    u3('user.machine.secret.set', { hashedSecret: 'h3' }), // 33 s2
    u3('user.machine.secret.removed'), // 34 s3
    u4('user.human.added', { userName: 'doomed', email: 'd@doomed.test' }), // 35 s1
    u5('user.added', { userName: 'legacy', firstName: 'Leg', lastName: 'Acy', email: 'leg@acme.test', secret: legacy('$2a$10$v1') }), // 36 s1
    u5('user.phone.changed', { phone: '+1 555' }), // 37 s2
    u5('user.phone.removed'), // 38 s3
    u5('user.human.initialization.code.added'), // 39 s4 (no bump)
    u5('user.password.changed', { changeRequired: true }), // 40 s5: v1, not subscribed
    ev(i, 'org', 'o2', 'org.removed'), // 41 s2: o2, p2, a5 (+ OIDC config), u4 (+ children) go
    p1(`${cfg}.api.added`, { appId: 'ghost', clientId: 'ghost@portal' }), // 42 s15: no such app ⇒ fails on the foreign key
    ev(i, 'milestone', i, 'milestone.v2.reached', { type: 'InstanceCreated', reachedDate: '2023-12-01T00:00:00Z' }), // 43 s1
    ev(i, 'milestone', i, 'milestone.v2.reached', { type: 'ProjectCreated' }), // 44 s2
    ev(i, 'milestone', i, 'milestone.v2.pushed', { type: 'InstanceCreated', pushedDate: '2023-12-02T00:00:00Z' }), // 45 s3
    ev(i, 'instance', i, 'instance.iam.console.set', { clientId: 'console@zitadel', appId: 'a1' }), // 46 s3
    u1('user.human.profile.changed', { nickName: 'Countess', displayName: 'Ada L.' }), // 47 s6
  ];
}

/** Instance i2, with a bit of everything, removed at the end. */
function instance2(): TestEvent[] {
  const i = 'i2';
  return [
    ev(i, 'instance', i, 'instance.added', { name: 'Trial' }),
    ev(i, 'org', 'o1', 'org.added', { name: 'Trial Org' }),
    ev(i, 'project', 'p1', 'project.added', { name: 'Trial project' }, 'o1'),
    ev(i, 'project', 'p1', `${app}.added`, { appId: 'a1', name: 'trial app' }, 'o1'),
    ev(i, 'project', 'p1', `${cfg}.api.added`, { appId: 'a1', clientId: 'a1@trial', hashedSecret: 'x' }, 'o1'),
    ev(i, 'user', 'u1', 'user.machine.added', { userName: 'trial-bot', name: 'Bot' }, 'o1'),
    ev(i, 'user', 'u1', 'user.machine.secret.set', { hashedSecret: 'y' }, 'o1'),
    ev(i, 'user', 'u1', 'user.human.added', { userName: 'trial-human', email: 'h@trial' }, 'o1'),
    ev(i, 'milestone', i, 'milestone.v2.reached', { type: 'InstanceCreated' }),
    ev(i, 'instance', i, 'instance.removed'),
  ];
}

const TABLES: Record<string, string> = {
  'projections.instances': 'id', 'projections.orgs1': 'instance_id, id', 'projections.projects4': 'instance_id, id',
  'projections.apps7': 'instance_id, id', 'projections.apps7_api_configs': 'instance_id, app_id', 'projections.apps7_oidc_configs': 'instance_id, app_id',
  'projections.apps7_saml_configs': 'instance_id, app_id', 'projections.users14': 'instance_id, id', 'projections.users14_humans': 'instance_id, user_id',
  'projections.users14_machines': 'instance_id, user_id', 'projections.users14_notifications': 'instance_id, user_id',
  'projections.milestones3': 'instance_id, type',
};

const user = (id: string, created: number, changed: number, sequence: number, state: number, username: string, type: number) =>
  ({ id, creation_date: T(created), change_date: T(changed), sequence, state, resource_owner: 'o1', instance_id: 'i1', username, type });
const appRow = (id: string, name: string, created: number, changed: number, state: number, sequence: number) =>
  ({ id, name, project_id: 'p1', creation_date: T(created), change_date: T(changed), resource_owner: 'o1', instance_id: 'i1', state, sequence });

/** Every table's rows, worked out by hand from the stream above and §3. */
const EXPECTED: Record<string, unknown[]> = {
  'projections.instances': [{ id: 'i1', name: 'Acme Cloud', change_date: T(46), creation_date: T(1), default_org_id: 'o1', iam_project_id: '',
    console_client_id: 'console@zitadel', console_app_id: 'a1', sequence: 3, default_language: '' }],
  'projections.orgs1': [{ id: 'o1', creation_date: T(2), change_date: T(3), resource_owner: 'o1', instance_id: 'i1', org_state: 1, sequence: 2,
    name: 'Acme', primary_domain: 'acme.test' }],
  'projections.projects4': [{ id: 'p1', creation_date: T(6), change_date: T(6), sequence: 1, state: 1, resource_owner: 'o1', instance_id: 'i1',
    name: 'Portal', project_role_assertion: true, project_role_check: false, has_project_check: false, private_labeling_setting: 0 }],
  'projections.apps7': [appRow('a1', 'web', 7, 9, 1, 4), appRow('a2', 'api', 10, 19, 2, 14), appRow('a3', 'saml', 13, 15, 1, 10)],
  'projections.apps7_api_configs': [{ app_id: 'a2', instance_id: 'i1', client_id: 'a2@portal', client_secret: '$2a$10$newapi', auth_method: 0 }],
  'projections.apps7_oidc_configs': [{ app_id: 'a1', instance_id: 'i1', version: 0, client_id: 'a1@portal', client_secret: '$2a$10$oidc',
    redirect_uris: ['https://acme.test/cb', 'http://localhost/cb'], response_types: [0], grant_types: [0, 2], application_type: 0, auth_method_type: 0,
    post_logout_redirect_uris: ['https://acme.test/'], is_dev_mode: true, access_token_type: 1, access_token_role_assertion: false,
    id_token_role_assertion: true, id_token_userinfo_assertion: false, clock_skew: 2_000_000_000, additional_origins: null,
    skip_native_app_success_page: false, back_channel_logout_uri: '', login_version: 0, login_base_uri: '' }],
  'projections.apps7_saml_configs': [{ app_id: 'a3', instance_id: 'i1', entity_id: 'https://sp.acme.test', metadata: '\\x3c6d642f3e',
    metadata_url: 'https://sp.acme.test/md' }],
  'projections.users14': [user('u1', 23, 47, 6, 1, 'ada', 1), user('u2', 28, 31, 4, 1, 'ci-bot', 2), user('u3', 32, 34, 3, 1, 'old-bot', 2),
    user('u5', 36, 38, 3, 6, 'legacy', 1)],
  'projections.users14_humans': [
    { user_id: 'u1', instance_id: 'i1', first_name: 'Ada', last_name: 'Lovelace', nick_name: 'Countess', display_name: 'Ada L.', preferred_language: 'en',
      gender: 1, avatar_key: null, email: 'ada.l@acme.test', is_email_verified: true, phone: '+41 79 000 00 00', is_phone_verified: null,
      password_change_required: false, password_changed: T(27), mfa_init_skipped: T(26) },
    { user_id: 'u5', instance_id: 'i1', first_name: 'Leg', last_name: 'Acy', nick_name: null, display_name: null, preferred_language: null,
      gender: null, avatar_key: null, email: 'leg@acme.test', is_email_verified: false, phone: null, is_phone_verified: null,
      password_change_required: false, password_changed: T(36), mfa_init_skipped: null },
  ],
  'projections.users14_machines': [
    { user_id: 'u2', instance_id: 'i1', name: 'CI', description: '', secret: '$argon2id$bot', access_token_type: 1 },
    { user_id: 'u3', instance_id: 'i1', name: 'Old', description: null, secret: null, access_token_type: 0 },
  ],
  'projections.users14_notifications': [
    { user_id: 'u1', instance_id: 'i1', last_email: 'ada.l@acme.test', verified_email: 'ada.l@acme.test', last_phone: '+41 79 000 00 00',
      verified_phone: null, password_set: true },
    { user_id: 'u5', instance_id: 'i1', last_email: 'leg@acme.test', verified_email: null, last_phone: null, verified_phone: null, password_set: true },
  ],
  'projections.milestones3': [
    { instance_id: 'i1', type: 1, reached_date: '2023-12-01T00:00:00+00:00', last_pushed_date: '2023-12-02T00:00:00+00:00' },
    { instance_id: 'i1', type: 3, reached_date: T(44), last_pushed_date: null },
  ],
};

let tdb: TestDatabase;
let database: Database;
let client: pg.Client;
const ctx = { progress: () => {}, log: () => {}, throwIfStopped: () => {} };

beforeAll(async () => {
  tdb = await createTestDatabase('projoracle');
  database = await tdb.open();
  const log = await EventLog.create(database.pool);
  // The instances interleaved, as a real event store has them.
  const [a, b] = [instance1(), instance2()];
  const all: TestEvent[] = [];
  for (let n = 0; n < Math.max(a.length, b.length); n++) all.push(...(a[n] ? [a[n]] : []), ...(b[n] ? [b[n]] : []));
  await log.append(...all);
  for (const def of BUILTIN_PROJECTIONS) {
    await prefillProjection(database, compileProjection(def), { endPoint: '9999999999', concurrency: 2 }, ctx);
  }
  client = await tdb.client();
  await client.query(`SET TIME ZONE 'UTC'`);
});
afterAll(() => tdb?.drop());

const rows = async (table: string, columns = 'to_jsonb(t)') =>
  (await client.query(`SELECT ${columns} AS r FROM ${table} t ORDER BY ${TABLES[table]}`)).rows.map((x) => x.r);

describe('the six built-in projections against hand-written tables', () => {
  it('are exactly these tables', () => {
    expect(BUILTIN_PROJECTIONS.flatMap((d) => d.tables.map((x) => x.name)).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const table of Object.keys(EXPECTED).filter((x) => x !== 'projections.users14_notifications')) {
    it(`${table}: every row and column`, async () => {
      expect(await rows(table)).toEqual(EXPECTED[table]);
    });
  }

  it('projections.users14_notifications: every column except the verified copies', async () => {
    const strip = ({ verified_email: _e, verified_phone: _p, ...rest }: Record<string, unknown>) => rest;
    const actual = (await rows('projections.users14_notifications')) as Record<string, unknown>[];
    expect(actual.map(strip)).toEqual((EXPECTED['projections.users14_notifications'] as Record<string, unknown>[]).map(strip));
  });

  // §3.6: email.verified / phone.verified copy last_email / last_phone into verified_email / verified_phone.
  it('projections.users14_notifications: verified_email := last_email on email.verified, verified_phone := last_phone on phone.verified', async () => {
    expect(await rows('projections.users14_notifications')).toEqual(EXPECTED['projections.users14_notifications']);
  });

  it('records exactly the event that failed (a config for an app that does not exist)', async () => {
    const failed = (await client.query(`SELECT projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence::int AS s, failure_count,
      event_creation_date, error FROM projections.failed_events2 ORDER BY 1`)).rows;
    expect(failed).toEqual([{ projection_name: 'projections.apps7', instance_id: 'i1', aggregate_type: 'project', aggregate_id: 'p1', s: 15,
      failure_count: 1, event_creation_date: new Date(t(42)), error: expect.stringMatching(/fk_api_configs_ref_apps7/) }]);
  });

  it('records each projection at its last subscribed event of instance i1', async () => {
    const states = (await client.query(`SELECT projection_name, instance_id, aggregate_type, aggregate_id, "sequence"::int AS s
      FROM projections.current_states ORDER BY 1, 2`)).rows;
    expect(states).toEqual([
      { projection_name: 'projections.apps7', instance_id: 'i1', aggregate_type: 'project', aggregate_id: 'p1', s: 15 },
      { projection_name: 'projections.instances', instance_id: 'i1', aggregate_type: 'instance', aggregate_id: 'i1', s: 3 },
      { projection_name: 'projections.milestones3', instance_id: 'i1', aggregate_type: 'milestone', aggregate_id: 'i1', s: 3 },
      { projection_name: 'projections.orgs1', instance_id: 'i1', aggregate_type: 'org', aggregate_id: 'o2', s: 2 },
      { projection_name: 'projections.projects4', instance_id: 'i1', aggregate_type: 'org', aggregate_id: 'o2', s: 2 },
      { projection_name: 'projections.users14', instance_id: 'i1', aggregate_type: 'user', aggregate_id: 'u1', s: 6 },
    ]);
  });

  it('leaves nothing of the removed instance i2: no rows, no positions, no failures', async () => {
    for (const table of Object.keys(EXPECTED)) {
      const col = table === 'projections.instances' ? 'id' : 'instance_id';
      expect((await client.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${col} = 'i2'`)).rows, table).toEqual([{ n: 0 }]);
    }
    for (const table of ['projections.current_states', 'projections.failed_events2']) {
      expect((await client.query(`SELECT count(*)::int AS n FROM ${table} WHERE instance_id = 'i2'`)).rows, table).toEqual([{ n: 0 }]);
    }
  });
});
