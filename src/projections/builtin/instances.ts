import { optString, payloadOf } from '../payload.js';
import type { ProjectionDefinition, ProjectionEvent, ProjectionWriter, Row } from '../types.js';
import { big, changed, created, text, ts } from './common.js';

const T = 'projections.instances';

// The row is the event's instance (its instance_id); only instance.removed matches the aggregate id.
const set = (fields: (p: Readonly<Record<string, unknown>>) => Row) => (e: ProjectionEvent, w: ProjectionWriter) =>
  w.update(T, { id: e.instanceId }, { ...fields(payloadOf(e)), ...changed(e) });

/** `projections.instances`: one row per instance (spec zitadel-handoff.md §3.1, §3.3). */
export const instances: ProjectionDefinition = {
  name: T,
  tables: [
    {
      name: T,
      columns: [
        text('id'), text('name', { default: '' }), ts('change_date'), ts('creation_date'),
        text('default_org_id', { default: '' }), text('iam_project_id', { default: '' }),
        text('console_client_id', { default: '' }), text('console_app_id', { default: '' }),
        big('sequence'), text('default_language', { default: '' }),
      ],
      primaryKey: ['id'],
    },
  ],
  reducers: {
    instance: {
      'instance.added': (e, w) => w.upsert(T, { id: e.instanceId, name: optString(payloadOf(e), 'name') ?? '', ...created(e) }),
      'instance.changed': set((p) => ({ name: optString(p, 'name') ?? '' })),
      'instance.default.org.set': set((p) => ({ default_org_id: optString(p, 'orgId') ?? '' })),
      'instance.iam.project.set': set((p) => ({ iam_project_id: optString(p, 'iamProjectId') ?? '' })),
      'instance.iam.console.set': set((p) => ({ console_client_id: optString(p, 'clientId') ?? '', console_app_id: optString(p, 'appId') ?? '' })),
      'instance.default.language.set': set((p) => ({ default_language: optString(p, 'language') ?? '' })),
      'instance.removed': (e, w) => w.delete(T, { id: e.aggregateId }),
    },
  },
};
