import { optString, payloadOf } from '../payload.js';
import type { ProjectionDefinition } from '../types.js';
import { ACTIVE, big, changed, created, INACTIVE, instanceRemoved, small, text, ts } from './common.js';

const T = 'projections.orgs1';
const key = (e: { instanceId: string; aggregateId: string }) => ({ instance_id: e.instanceId, id: e.aggregateId });

/** `projections.orgs1` (spec zitadel-handoff.md §3.1, §3.4). A removed org is deleted, not marked. */
export const orgs: ProjectionDefinition = {
  name: T,
  tables: [
    {
      name: T,
      columns: [
        text('id'), ts('creation_date'), ts('change_date'), text('resource_owner'), text('instance_id'),
        small('org_state'), big('sequence'), text('name'), text('primary_domain', { default: '' }),
      ],
      primaryKey: ['instance_id', 'id'],
      indexes: { orgs1_domain_idx: ['primary_domain'], orgs1_name_idx: ['name'] },
    },
  ],
  reducers: {
    org: {
      'org.added': (e, w) =>
        w.upsert(T, { ...key(e), ...created(e), resource_owner: e.owner, org_state: ACTIVE, name: optString(payloadOf(e), 'name') ?? '' }),
      'org.changed': (e, w) => {
        const name = optString(payloadOf(e), 'name');
        if (name) w.update(T, key(e), { name, ...changed(e) });
      },
      'org.deactivated': (e, w) => w.update(T, key(e), { org_state: INACTIVE, ...changed(e) }),
      'org.reactivated': (e, w) => w.update(T, key(e), { org_state: ACTIVE, ...changed(e) }),
      'org.domain.primary.set': (e, w) => w.update(T, key(e), { primary_domain: optString(payloadOf(e), 'domain') ?? '', ...changed(e) }),
      'org.removed': (e, w) => w.delete(T, key(e)),
    },
    instance: { 'instance.removed': instanceRemoved(T) },
  },
};
