import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { compileProjection } from '../src/projections/model.js';
import { prefillProjection } from '../src/projections/prefill.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { EventLog } from './support/events.js';

let tdb: TestDatabase | undefined;
let database: Database;
let log: EventLog;

beforeEach(async () => {
  await tdb?.drop();
  tdb = await createTestDatabase('projred');
  database = await tdb.open();
  log = await EventLog.create(database.pool);
});
afterAll(() => tdb?.drop());

const ctx = { progress: () => {}, log: () => {}, throwIfStopped: () => {} };

async function prefillAll(): Promise<void> {
  for (const def of BUILTIN_PROJECTIONS) {
    await prefillProjection(database, compileProjection(def), { endPoint: '9999999999', concurrency: 2 }, ctx);
  }
}
const q = (text: string) => tdb!.query(text);

const org = (id: string, type: string, payload?: unknown, instance = 'inst1') => ({ instance, aggregateType: 'org', aggregateId: id, type, payload });
const project = (id: string, owner: string, type: string, payload?: unknown, instance = 'inst1') => ({ instance, aggregateType: 'project', aggregateId: id, owner, type, payload });
const user = (id: string, owner: string, type: string, payload?: unknown, instance = 'inst1') => ({ instance, aggregateType: 'user', aggregateId: id, owner, type, payload, revision: 2 });

describe('built-in reducers', () => {
  it('instances: added, changed, settings, removed', async () => {
    await log.append(
      { instance: 'i1', aggregateType: 'instance', aggregateId: 'i1', type: 'instance.added', payload: { name: 'ZITADEL' } },
      { instance: 'i1', aggregateType: 'instance', aggregateId: 'i1', type: 'instance.changed', payload: { name: 'Z2' } },
      { instance: 'i1', aggregateType: 'instance', aggregateId: 'i1', type: 'instance.default.org.set', payload: { orgId: 'o1' } },
      { instance: 'i1', aggregateType: 'instance', aggregateId: 'i1', type: 'instance.iam.project.set', payload: { iamProjectId: 'p1' } },
      { instance: 'i1', aggregateType: 'instance', aggregateId: 'i1', type: 'instance.iam.console.set', payload: { appId: 'a1', clientId: 'c1' } },
      { instance: 'i1', aggregateType: 'instance', aggregateId: 'i1', type: 'instance.default.language.set', payload: { language: 'de' } },
      { instance: 'i2', aggregateType: 'instance', aggregateId: 'i2', type: 'instance.added', payload: { name: 'other' } },
      { instance: 'i2', aggregateType: 'instance', aggregateId: 'i2', type: 'instance.removed' },
    );
    await prefillAll();
    expect(await q('SELECT id, name, default_org_id, iam_project_id, console_client_id, console_app_id, default_language, sequence FROM projections.instances')).toEqual([
      { id: 'i1', name: 'Z2', default_org_id: 'o1', iam_project_id: 'p1', console_client_id: 'c1', console_app_id: 'a1', default_language: 'de', sequence: 6 },
    ]);
  });

  it('orgs, projects, apps: added, changed, states, removal; org.removed cascades', async () => {
    await log.append(
      org('o1', 'org.added', { name: 'acme' }),
      org('o1', 'org.changed', { name: 'ACME' }),
      org('o1', 'org.changed', {}),
      org('o1', 'org.domain.primary.set', { domain: 'acme.test' }),
      org('o1', 'org.deactivated', {}),
      org('o2', 'org.added', { name: 'doomed' }),
      project('p1', 'o1', 'project.added', { name: 'web', projectRoleCheck: true }),
      project('p1', 'o1', 'project.changed', { hasProjectCheck: true, privateLabelingSetting: 2 }),
      project('p1', 'o1', 'project.deactivated'),
      project('p1', 'o1', 'project.application.added', { appId: 'a1', name: 'spa' }),
      project('p1', 'o1', 'project.application.changed', { appId: 'a1', name: 'spa2' }),
      project('p1', 'o1', 'project.application.config.oidc.added', { appId: 'a1', clientId: 'x', grantTypes: [0] }),
      project('p1', 'o1', 'project.application.added', { appId: 'a2', name: 'api' }),
      project('p1', 'o1', 'project.application.deactivated', { appId: 'a2' }),
      project('p1', 'o1', 'project.application.added', { appId: 'a3', name: 'gone' }),
      project('p1', 'o1', 'project.application.removed', { appId: 'a3' }),
      project('p2', 'o1', 'project.added', { name: 'removed' }),
      project('p2', 'o1', 'project.application.added', { appId: 'a4', name: 'with project' }),
      project('p2', 'o1', 'project.removed'),
      project('p3', 'o2', 'project.added', { name: 'in o2' }),
      project('p3', 'o2', 'project.application.added', { appId: 'a5', name: 'in o2' }),
      user('u1', 'o2', 'user.human.added', { userName: 'in-o2', firstName: 'A', lastName: 'B', email: 'a@b' }),
      user('u2', 'o1', 'user.machine.added', { userName: 'bot' }),
      org('o2', 'org.removed'),
    );
    await prefillAll();
    expect(await q('SELECT id, name, org_state, primary_domain, resource_owner, sequence FROM projections.orgs1')).toEqual([
      { id: 'o1', name: 'ACME', org_state: 2, primary_domain: 'acme.test', resource_owner: 'o1', sequence: 5 },
    ]);
    expect(await q('SELECT id, name, state, project_role_assertion, project_role_check, has_project_check, private_labeling_setting, resource_owner FROM projections.projects4')).toEqual([
      { id: 'p1', name: 'web', state: 2, project_role_assertion: false, project_role_check: true, has_project_check: true, private_labeling_setting: 2, resource_owner: 'o1' },
    ]);
    expect(await q('SELECT id, name, state, project_id, sequence FROM projections.apps7 ORDER BY id')).toEqual([
      { id: 'a1', name: 'spa2', state: 1, project_id: 'p1', sequence: 6 },
      { id: 'a2', name: 'api', state: 2, project_id: 'p1', sequence: 8 },
    ]);
    expect(await q('SELECT id, type, username FROM projections.users14')).toEqual([{ id: 'u2', type: 2, username: 'bot' }]);
    expect(await q('SELECT count(*)::int AS n FROM projections.users14_humans')).toEqual([{ n: 0 }]);
  });

  it('users14 and users14_humans: added, profile, email, phone, password, states, removal', async () => {
    await log.append(
      user('u1', 'o1', 'user.human.added', { userName: 'ada', firstName: 'Ada', lastName: 'L', email: 'ada@x', preferredLanguage: 'und', gender: -1, phone: '+41', encodedHash: '$2a$' }),
      user('u1', 'o1', 'user.human.profile.changed', { firstName: 'Ada2', nickName: 'al', gender: 1 }),
      user('u1', 'o1', 'user.human.email.verified'),
      user('u1', 'o1', 'user.human.phone.verified'),
      user('u1', 'o1', 'user.human.password.changed', { changeRequired: true }),
      user('u1', 'o1', 'user.locked'),
      user('u1', 'o1', 'user.username.changed', { userName: 'ada.l' }),
      user('u1', 'o1', 'user.human.initialization.code.added', {}),
      user('u2', 'o1', 'user.added', { userName: 'old', email: 'old@x' }),
      user('u2', 'o1', 'user.email.changed', { email: 'new@x' }),
      user('u2', 'o1', 'user.phone.changed', { phone: '+1' }),
      user('u2', 'o1', 'user.human.phone.removed'),
      user('u3', 'o1', 'user.human.selfregistered', { userName: 'gone', email: 'g@x' }),
      user('u3', 'o1', 'user.removed'),
    );
    await prefillAll();
    expect(await q('SELECT id, state, type, username, sequence, resource_owner FROM projections.users14 ORDER BY id')).toEqual([
      { id: 'u1', state: 6, type: 1, username: 'ada.l', sequence: 7, resource_owner: 'o1' },
      { id: 'u2', state: 1, type: 1, username: 'old', sequence: 4, resource_owner: 'o1' },
    ]);
    const humans = await q(`SELECT user_id, first_name, last_name, nick_name, preferred_language, gender, email, is_email_verified, phone,
      is_phone_verified, password_change_required, password_changed IS NOT NULL AS pw FROM projections.users14_humans ORDER BY user_id`);
    expect(humans).toEqual([
      { user_id: 'u1', first_name: 'Ada2', last_name: 'L', nick_name: 'al', preferred_language: null, gender: 1, email: 'ada@x', is_email_verified: true, phone: '+41', is_phone_verified: true, password_change_required: true, pw: true },
      { user_id: 'u2', first_name: '', last_name: '', nick_name: null, preferred_language: null, gender: null, email: 'new@x', is_email_verified: false, phone: null, is_phone_verified: null, password_change_required: false, pw: false },
    ]);
  });

  it('instance.removed clears the instance in every projection, other instances untouched', async () => {
    for (const i of ['i1', 'i2']) {
      await log.append(
        { instance: i, aggregateType: 'instance', aggregateId: i, type: 'instance.added', payload: { name: i } },
        org('o1', 'org.added', { name: 'acme' }, i),
        project('p1', 'o1', 'project.added', { name: 'web' }, i),
        project('p1', 'o1', 'project.application.added', { appId: 'a1', name: 'spa' }, i),
        user('u1', 'o1', 'user.human.added', { userName: 'ada' }, i),
        { instance: i, aggregateType: 'milestone', aggregateId: i, type: 'milestone.v2.reached', payload: { type: 'InstanceCreated' }, revision: 2 },
      );
    }
    await log.append({ instance: 'i2', aggregateType: 'instance', aggregateId: 'i2', type: 'instance.removed' });
    await prefillAll();
    for (const t of ['orgs1', 'projects4', 'apps7', 'users14', 'users14_humans', 'milestones3']) {
      expect(await q(`SELECT instance_id, count(*)::int AS n FROM projections.${t} GROUP BY 1`), t).toEqual([{ instance_id: 'i1', n: 1 }]);
    }
    expect(await q('SELECT id FROM projections.instances')).toEqual([{ id: 'i1' }]);
  });

  it('child rows of a missing parent: inserts fail on the foreign key and are recorded, updates match nothing', async () => {
    await log.append(
      project('p1', 'o1', 'project.added', { name: 'web' }),
      project('p1', 'o1', 'project.application.config.saml.added', { appId: 'nope', entityId: 'e', metadata: Buffer.from('<m/>').toString('base64') }),
      project('p1', 'o1', 'project.application.config.api.secret.changed', { appId: 'nope', hashedSecret: 'h' }),
      user('u9', 'o1', 'user.machine.secret.set', { hashedSecret: 'h' }),
      user('u9', 'o1', 'user.human.email.changed', { email: 'x@y' }),
    );
    await prefillAll();
    expect(await q(`SELECT projection_name, aggregate_id, failed_sequence::int AS s, error ~ 'fk_saml_configs_ref_apps7' AS fk
      FROM projections.failed_events2`)).toEqual([{ projection_name: 'projections.apps7', aggregate_id: 'p1', s: 2, fk: true }]);
    for (const t of ['apps7', 'apps7_saml_configs', 'apps7_api_configs', 'users14', 'users14_machines', 'users14_notifications']) {
      expect(await q(`SELECT count(*)::int AS n FROM projections.${t}`), t).toEqual([{ n: 0 }]);
    }
  });

  it('milestones3: reached (payload date or event time), pushed, InstanceDeleted pushed deletes the instance', async () => {
    const m = (instance: string, type: string, payload: unknown, createdAt?: string) =>
      ({ instance, aggregateType: 'milestone', aggregateId: instance, type, payload, revision: 2, createdAt });
    await log.append(
      m('i1', 'milestone.v2.reached', { type: 'InstanceCreated', reachedDate: '2024-01-02T03:04:05.123456Z' }),
      m('i1', 'milestone.v2.reached', { type: 'projectCreated' }, '2024-02-01T00:00:00Z'),
      m('i1', 'milestone.v2.pushed', { type: 'InstanceCreated', pushedDate: '2024-03-01T00:00:00Z', endpoints: null }),
      m('i2', 'milestone.v2.reached', { type: 'InstanceCreated' }),
      m('i2', 'milestone.v2.reached', { type: 'InstanceDeleted' }),
      m('i2', 'milestone.v2.pushed', { type: 'InstanceDeleted' }),
    );
    await prefillAll();
    const rows = await q(`SELECT instance_id, type, to_char(reached_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS r,
      to_char(last_pushed_date AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS p FROM projections.milestones3 ORDER BY 1, 2`);
    expect(rows).toEqual([
      { instance_id: 'i1', type: 1, r: '2024-01-02T03:04:05.123456', p: '2024-03-01' },
      { instance_id: 'i1', type: 3, r: '2024-02-01T00:00:00.000000', p: null },
    ]);
  });
});
