import { optBool, optInt, optString, payloadOf } from '../payload.js';
import type { ProjectionDefinition, Row } from '../types.js';
import { ACTIVE, big, bool, changed, created, INACTIVE, instanceRemoved, setState, small, text, ts } from './common.js';

const T = 'projections.projects4';
const key = (e: { instanceId: string; aggregateId: string }) => ({ instance_id: e.instanceId, id: e.aggregateId });

/** The project settings present in a payload, as columns. */
function settings(p: Readonly<Record<string, unknown>>): Row {
  return {
    name: optString(p, 'name'),
    project_role_assertion: optBool(p, 'projectRoleAssertion'),
    project_role_check: optBool(p, 'projectRoleCheck'),
    has_project_check: optBool(p, 'hasProjectCheck'),
    private_labeling_setting: optInt(p, 'privateLabelingSetting'),
  };
}

/** `projections.projects4` (spec zitadel-events.md §4.3). */
export const projects: ProjectionDefinition = {
  name: T,
  tables: [
    {
      name: T,
      columns: [
        text('id'), ts('creation_date'), ts('change_date'), big('sequence'), small('state'), text('resource_owner'),
        text('instance_id'), text('name', { default: '' }), bool('project_role_assertion', { default: false }),
        bool('project_role_check', { default: false }), bool('has_project_check', { default: false }),
        small('private_labeling_setting', { default: 0 }),
      ],
      primaryKey: ['instance_id', 'id'],
      indexes: { projects4_resource_owner_idx: ['resource_owner'] },
    },
  ],
  reducers: {
    project: {
      'project.added': (e, w) => w.upsert(T, { ...key(e), ...created(e), state: ACTIVE, resource_owner: e.owner, ...settings(payloadOf(e)) }),
      'project.changed': (e, w) => {
        const set = Object.fromEntries(Object.entries(settings(payloadOf(e))).filter(([, v]) => v !== undefined));
        if (Object.keys(set).length) w.update(T, key(e), { ...set, ...changed(e) });
      },
      'project.deactivated': setState(T, INACTIVE),
      'project.reactivated': setState(T, ACTIVE),
      'project.removed': (e, w) => w.delete(T, key(e)),
    },
    org: { 'org.removed': (e, w) => w.deleteWhere(T, { instance_id: e.instanceId, resource_owner: e.aggregateId }) },
    instance: { 'instance.removed': instanceRemoved(T) },
  },
};
