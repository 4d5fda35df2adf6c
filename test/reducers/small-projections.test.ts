import { describe, expect, it } from 'vitest';
import { instances } from '../../src/projections/builtin/instances.js';
import { milestones } from '../../src/projections/builtin/milestones.js';
import { orgs } from '../../src/projections/builtin/orgs.js';
import { projects } from '../../src/projections/builtin/projects.js';
import { AT, BUMP, checkCases, event, subscriptions } from './support.js';

// Expected changes written by hand from zitadel-handoff.md §3.3, §3.4 and §3.7, one case per event type.

describe('projections.instances (§3.3)', () => {
  const i = (type: string, payload?: unknown) => event('instance', 'i1', type, payload);
  const T = 'projections.instances';
  const key = { id: 'i1' };

  it('subscribes to exactly the listed events', () => {
    expect(subscriptions(instances)).toEqual([
      'instance/instance.added', 'instance/instance.changed', 'instance/instance.default.language.set',
      'instance/instance.default.org.set', 'instance/instance.iam.console.set', 'instance/instance.iam.project.set',
      'instance/instance.removed',
    ]);
  });

  it('reduces every event as the spec says', () => {
    checkCases(instances, [
      { event: i('instance.added', { name: 'ZITADEL' }), ops: [{ upsert: T, row: {
        id: 'i1', name: 'ZITADEL', change_date: AT, creation_date: AT, default_org_id: '', iam_project_id: '',
        console_client_id: '', console_app_id: '', sequence: 7, default_language: '' } }] },
      // No empty check: an absent name is written as ''.
      { event: i('instance.changed', {}), ops: [{ update: T, key, set: { name: '', ...BUMP } }] },
      { event: i('instance.default.org.set', { orgId: 'o9' }), ops: [{ update: T, key, set: { default_org_id: 'o9', ...BUMP } }] },
      { event: i('instance.iam.project.set', { iamProjectId: 'p9' }), ops: [{ update: T, key, set: { iam_project_id: 'p9', ...BUMP } }] },
      { event: i('instance.iam.console.set', { clientId: 'c9', appId: 'a9' }), ops: [{ update: T, key, set: { console_client_id: 'c9', console_app_id: 'a9', ...BUMP } }] },
      { event: i('instance.default.language.set', { language: 'de-CH' }), ops: [{ update: T, key, set: { default_language: 'de-CH', ...BUMP } }] },
      { event: i('instance.removed'), ops: [{ delete: T, key }] },
    ]);
  });
});

describe('projections.orgs1 (§3.4)', () => {
  const o = (type: string, payload?: unknown) => event('org', 'o1', type, payload);
  const T = 'projections.orgs1';
  const key = { instance_id: 'i1', id: 'o1' };

  it('subscribes to exactly the listed events', () => {
    expect(subscriptions(orgs)).toEqual([
      'instance/instance.removed', 'org/org.added', 'org/org.changed', 'org/org.deactivated', 'org/org.domain.primary.set',
      'org/org.reactivated', 'org/org.removed',
    ]);
  });

  it('reduces every event as the spec says', () => {
    checkCases(orgs, [
      { event: o('org.added', { name: 'acme' }), ops: [{ upsert: T, row: {
        id: 'o1', creation_date: AT, change_date: AT, resource_owner: 'o1', instance_id: 'i1', org_state: 1, sequence: 7, name: 'acme', primary_domain: '' } }] },
      { event: o('org.changed', { name: 'ACME' }), ops: [{ update: T, key, set: { name: 'ACME', ...BUMP } }] },
      { name: 'org.changed with an empty name is a no-op', event: o('org.changed', { name: '' }), ops: [] },
      { name: 'org.changed without a name is a no-op', event: o('org.changed', {}), ops: [] },
      { event: o('org.deactivated'), ops: [{ update: T, key, set: { org_state: 2, ...BUMP } }] },
      { event: o('org.reactivated'), ops: [{ update: T, key, set: { org_state: 1, ...BUMP } }] },
      { event: o('org.domain.primary.set', { domain: 'acme.test' }), ops: [{ update: T, key, set: { primary_domain: 'acme.test', ...BUMP } }] },
      { event: o('org.removed'), ops: [{ delete: T, key }] },
      { event: event('instance', 'i1', 'instance.removed'), ops: [{ deleteWhere: T, match: { instance_id: 'i1' } }] },
    ]);
  });

  it('has the reference index names', () => {
    expect(orgs.tables[0].indexes).toEqual({ orgs1_domain_idx: ['primary_domain'], orgs1_name_idx: ['name'] });
  });
});

describe('projections.projects4 (§3.4)', () => {
  const p = (type: string, payload?: unknown) => event('project', 'p1', type, payload);
  const T = 'projections.projects4';
  const key = { instance_id: 'i1', id: 'p1' };
  const base = { id: 'p1', creation_date: AT, change_date: AT, sequence: 7, state: 1, resource_owner: 'o1', instance_id: 'i1' };

  it('subscribes to exactly the listed events', () => {
    expect(subscriptions(projects)).toEqual([
      'instance/instance.removed', 'org/org.removed', 'project/project.added', 'project/project.changed',
      'project/project.deactivated', 'project/project.reactivated', 'project/project.removed',
    ]);
  });

  it('reduces every event as the spec says', () => {
    checkCases(projects, [
      { event: p('project.added', { name: 'web', projectRoleCheck: true, privateLabelingSetting: 1 }), ops: [{ upsert: T, row: {
        ...base, name: 'web', project_role_assertion: false, project_role_check: true, has_project_check: false, private_labeling_setting: 1 } }] },
      { name: 'project.added without settings writes false / 0', event: p('project.added', {}), ops: [{ upsert: T, row: {
        ...base, name: '', project_role_assertion: false, project_role_check: false, has_project_check: false, private_labeling_setting: 0 } }] },
      { event: p('project.changed', { hasProjectCheck: true, privateLabelingSetting: 2 }), ops: [{ update: T, key, set: { has_project_check: true, private_labeling_setting: 2, ...BUMP } }] },
      { name: 'project.changed with none of the five keys is a no-op', event: p('project.changed', { other: 1 }), ops: [] },
      { event: p('project.deactivated'), ops: [{ update: T, key, set: { state: 2, ...BUMP } }] },
      { event: p('project.reactivated'), ops: [{ update: T, key, set: { state: 1, ...BUMP } }] },
      { event: p('project.removed'), ops: [{ delete: T, key }] },
      { event: event('org', 'o1', 'org.removed'), ops: [{ deleteWhere: T, match: { instance_id: 'i1', resource_owner: 'o1' } }] },
      { event: event('instance', 'i1', 'instance.removed'), ops: [{ deleteWhere: T, match: { instance_id: 'i1' } }] },
    ]);
  });

  it('declares no column defaults', () => {
    expect(projects.tables[0].columns.filter((c) => c.default !== undefined)).toEqual([]);
  });
});

describe('projections.milestones3 (§3.7)', () => {
  const m = (type: string, payload: unknown) => event('milestone', 'i1', type, payload, { revision: 2 });
  const T = 'projections.milestones3';

  it('subscribes to the two v2 milestone events only (no instance.removed)', () => {
    expect(subscriptions(milestones)).toEqual(['milestone/milestone.v2.pushed', 'milestone/milestone.v2.reached']);
  });

  it('reduces every event as the spec says', () => {
    checkCases(milestones, [
      { event: m('milestone.v2.reached', { type: 'InstanceCreated', reachedDate: '2024-01-02T03:04:05.123456Z' }),
        ops: [{ upsert: T, row: { instance_id: 'i1', type: 1, reached_date: '2024-01-02T03:04:05.123456Z', last_pushed_date: null } }] },
      { name: 'reached without a date takes the event time', event: m('milestone.v2.reached', { type: 'ProjectCreated' }),
        ops: [{ upsert: T, row: { instance_id: 'i1', type: 3, reached_date: AT, last_pushed_date: null } }] },
      { event: m('milestone.v2.pushed', { type: 'ApplicationCreated', pushedDate: '2024-03-01T00:00:00Z' }),
        ops: [{ update: T, key: { instance_id: 'i1', type: 4 }, set: { last_pushed_date: '2024-03-01T00:00:00Z' } }] },
      { name: 'pushed without a date takes the event time', event: m('milestone.v2.pushed', { type: 'AuthenticationSucceededOnInstance' }),
        ops: [{ update: T, key: { instance_id: 'i1', type: 2 }, set: { last_pushed_date: AT } }] },
      { name: 'pushed InstanceDeleted deletes the instance', event: m('milestone.v2.pushed', { type: 'InstanceDeleted' }),
        ops: [{ deleteWhere: T, match: { instance_id: 'i1' } }] },
      { name: 'an unknown type fails', event: m('milestone.v2.reached', { type: 'Nope' }), fails: /unknown milestone type/ },
    ]);
  });
});
