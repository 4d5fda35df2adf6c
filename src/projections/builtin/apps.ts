import { optString, payloadOf } from '../payload.js';
import type { ProjectionDefinition, ProjectionEvent, ProjectionWriter, Reducer } from '../types.js';
import { ACTIVE, big, changed, created, INACTIVE, instanceRemoved, small, text, ts } from './common.js';

const T = 'projections.apps7';

/** The app an event on the project aggregate is about: payload `appId`, required. */
function appKey(e: ProjectionEvent) {
  const id = optString(payloadOf(e), 'appId');
  if (!id) throw new TypeError(`${e.eventType} has no appId`);
  return { instance_id: e.instanceId, id };
}

const state = (s: number): Reducer => (e, w) => w.update(T, appKey(e), { state: s, ...changed(e) });
/** Config events change the config tables; the main row only records the change. */
const bump: Reducer = (e: ProjectionEvent, w: ProjectionWriter) => w.update(T, appKey(e), changed(e));

const CONFIG_EVENTS = [
  'project.application.config.oidc.added',
  'project.application.config.oidc.changed',
  'project.application.config.oidc.secret.changed',
  'project.application.config.oidc.secret.updated',
  'project.application.config.api.added',
  'project.application.config.api.changed',
  'project.application.config.api.secret.changed',
  'project.application.config.api.secret.updated',
  'project.application.config.saml.added',
  'project.application.config.saml.changed',
];

/** `projections.apps7`, main table only (spec zitadel-events.md §4.4). Apps live on the project aggregate. */
export const apps: ProjectionDefinition = {
  name: T,
  tables: [
    {
      name: T,
      columns: [
        text('id'), text('name'), text('project_id'), ts('creation_date'), ts('change_date'),
        text('resource_owner'), text('instance_id'), small('state'), big('sequence'),
      ],
      primaryKey: ['instance_id', 'id'],
      indexes: { apps7_project_id_idx: ['project_id'] },
    },
  ],
  reducers: {
    project: {
      'project.application.added': (e, w) =>
        w.upsert(T, { ...appKey(e), ...created(e), name: optString(payloadOf(e), 'name') ?? '', project_id: e.aggregateId, resource_owner: e.owner, state: ACTIVE }),
      'project.application.changed': (e, w) => {
        const name = optString(payloadOf(e), 'name');
        if (name) w.update(T, appKey(e), { name, ...changed(e) });
      },
      'project.application.deactivated': state(INACTIVE),
      'project.application.reactivated': state(ACTIVE),
      'project.application.removed': (e, w) => w.delete(T, appKey(e)),
      'project.removed': (e, w) => w.deleteWhere(T, { instance_id: e.instanceId, project_id: e.aggregateId }),
      ...Object.fromEntries(CONFIG_EVENTS.map((t) => [t, bump])),
    },
    org: { 'org.removed': (e, w) => w.deleteWhere(T, { instance_id: e.instanceId, resource_owner: e.aggregateId }) },
    instance: { 'instance.removed': instanceRemoved(T) },
  },
};
