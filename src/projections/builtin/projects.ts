import { optBool, optInt, optString, payloadOf } from '../payload.js';
import type { ProjectionDefinition, Row } from '../types.js';
import { ACTIVE, big, bool, changed, created, INACTIVE, instanceRemoved, setState, small, text, ts } from './common.js';

const T = 'projections.projects4';
const key = (e: { instanceId: string; aggregateId: string }) => ({ instance_id: e.instanceId, id: e.aggregateId });

/** The project settings present in a payload, as columns (absent keys stay undefined). */
function settings(p: Readonly<Record<string, unknown>>): Row {
  return {
    name: optString(p, 'name'),
    project_role_assertion: optBool(p, 'projectRoleAssertion'),
    project_role_check: optBool(p, 'projectRoleCheck'),
    has_project_check: optBool(p, 'hasProjectCheck'),
    private_labeling_setting: optInt(p, 'privateLabelingSetting'),
  };
}

/** `projections.projects4` (spec zitadel-handoff.md §3.1, §3.4). The table has no column defaults. */
export const projects: ProjectionDefinition = {
  name: T,
  tables: [
    {
      name: T,
      columns: [
        text('id'), ts('creation_date'), ts('change_date'), big('sequence'), small('state'), text('resource_owner'),
        text('instance_id'), text('name'), bool('project_role_assertion'), bool('project_role_check'),
        bool('has_project_check'), small('private_labeling_setting'),
      ],
      primaryKey: ['instance_id', 'id'],
      indexes: { projects4_resource_owner_idx: ['resource_owner'] },
    },
  ],
  reducers: {
    project: {
      'project.added': (e, w) => {
        const s = settings(payloadOf(e));
        // The added event's fields are plain Go values: an absent key is written as its zero value.
        w.upsert(T, {
          ...key(e), ...created(e), state: ACTIVE, resource_owner: e.owner,
          name: s.name ?? '',
          project_role_assertion: s.project_role_assertion ?? false,
          project_role_check: s.project_role_check ?? false,
          has_project_check: s.has_project_check ?? false,
          private_labeling_setting: s.private_labeling_setting ?? 0,
        });
      },
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
