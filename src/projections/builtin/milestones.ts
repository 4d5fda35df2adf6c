import { MILESTONE_TYPES } from '../../schema.js';
import { optTime, payloadOf } from '../payload.js';
import type { ProjectionDefinition, ProjectionEvent } from '../types.js';
import { small, text, ts } from './common.js';

const T = 'projections.milestones3';
const INSTANCE_DELETED = 6;
const BY_NAME = new Map(Object.entries(MILESTONE_TYPES).map(([n, name]) => [name.toLowerCase(), Number(n)]));

/** The milestone type of a v2 event: its JSON name (parsed case-insensitively), or the number. */
function milestoneType(e: ProjectionEvent): number {
  const v = payloadOf(e).type;
  const n = typeof v === 'string' ? BY_NAME.get(v.toLowerCase()) : typeof v === 'number' && MILESTONE_TYPES[v] ? v : undefined;
  if (n === undefined) throw new TypeError(`${e.eventType}: unknown milestone type ${JSON.stringify(v)}`);
  return n;
}

/**
 * `projections.milestones3`, fed by the v2 milestone events only (spec zitadel-handoff.md §3.7): no
 * `instance.removed` reducer; a removed instance's rows go with its `InstanceDeleted` push.
 */
export const milestones: ProjectionDefinition = {
  name: T,
  tables: [
    {
      name: T,
      columns: [text('instance_id'), small('type'), ts('reached_date', { nullable: true }), ts('last_pushed_date', { nullable: true })],
      primaryKey: ['instance_id', 'type'],
    },
  ],
  reducers: {
    milestone: {
      'milestone.v2.reached': (e, w) =>
        w.upsert(T, { instance_id: e.instanceId, type: milestoneType(e), reached_date: optTime(payloadOf(e), 'reachedDate') ?? e.createdAt }),
      'milestone.v2.pushed': (e, w) => {
        const type = milestoneType(e);
        const pushed = optTime(payloadOf(e), 'pushedDate') ?? e.createdAt;
        if (type === INSTANCE_DELETED) w.deleteWhere(T, { instance_id: e.instanceId });
        else w.update(T, { instance_id: e.instanceId, type }, { last_pushed_date: pushed });
      },
    },
  },
};
