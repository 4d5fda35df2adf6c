/**
 * The old `projections.milestones` rows, derived from the seeded events the way the old projection
 * reduced them (../shared/spec/zitadel-eventstore.md §6.1): one row per instance and type 1…6, reached
 * at the first triggering event, some already pushed.
 */
import { STAGE } from './stage-sql.js';

/** Editors the old projection treated as "system" (not counted for project / app milestones). */
export const SYSTEM_EDITORS = ['', 'system', 'OIDC', 'LOGIN', 'SYSTEM'] as const;

const systemEditors = SYSTEM_EDITORS.map((e) => `'${e}'`).join(', ');

/**
 * Inserts the milestone rows. Reached dates: 1 InstanceCreated at `instance.added`; 2 AuthenticationSucceededOnInstance
 * at the first `oidc_session.added`; 3 ProjectCreated / 4 ApplicationCreated at the first `project.added` /
 * `project.application.config.oidc.added` by a non-system editor; 5 AuthenticationSucceededOnApplication at the
 * first `oidc_session.added` for a client other than the console; 6 InstanceDeleted at `instance.removed`.
 * Two thirds of the reached rows were pushed a while after being reached. `primary_domain` is the instance's
 * primary domain and `ignore_client_ids` the clients setup created (system editor).
 */
export const INSERT_MILESTONES_SQL = `
WITH reached AS (
  SELECT e.instance_id,
    min(e.creation_date) FILTER (WHERE e.event_type = 'instance.added') AS t1,
    min(e.creation_date) FILTER (WHERE e.event_type = 'oidc_session.added') AS t2,
    min(e.creation_date) FILTER (WHERE e.event_type = 'project.added' AND e.editor_user NOT IN (${systemEditors})) AS t3,
    min(e.creation_date) FILTER (WHERE e.event_type = 'project.application.config.oidc.added' AND e.editor_user NOT IN (${systemEditors})) AS t4,
    min(e.creation_date) FILTER (WHERE e.event_type = 'oidc_session.added' AND e.event_data ->> 'clientID' <> ${STAGE}.client_id(i.base + 7, i.base + 3, i.base)) AS t5,
    min(e.creation_date) FILTER (WHERE e.event_type = 'instance.removed') AS t6
  FROM eventstore.events e JOIN ${STAGE}.inst i ON i.instance_id = e.instance_id
  WHERE e.event_type IN ('instance.added', 'oidc_session.added', 'project.added', 'project.application.config.oidc.added', 'instance.removed')
  GROUP BY e.instance_id
), ignored AS (
  SELECT e.instance_id, array_agg(e.event_data ->> 'clientId' ORDER BY e.event_sequence) AS client_ids
  FROM eventstore.events e
  WHERE e.event_type IN ('project.application.config.oidc.added', 'project.application.config.api.added') AND e.editor_user IN (${systemEditors})
  GROUP BY e.instance_id
), domains AS (
  SELECT DISTINCT ON (e.instance_id) e.instance_id, e.event_data ->> 'domain' AS domain
  FROM eventstore.events e WHERE e.event_type = 'instance.domain.primary.set'
  ORDER BY e.instance_id, e.event_sequence DESC
)
INSERT INTO projections.milestones (instance_id, type, reached_date, last_pushed_date, primary_domain, ignore_client_ids)
SELECT i.instance_id, m.type, m.reached,
  CASE WHEN m.reached IS NOT NULL AND m.type <> 6 AND ${STAGE}.h(i.inst * 8 + m.type, 91) % 3 <> 0
       THEN m.reached + (1 + ${STAGE}.h(i.inst * 8 + m.type, 92) % 3600000000) * interval '1 microsecond' END,
  d.domain, g.client_ids
FROM ${STAGE}.inst i
JOIN reached r ON r.instance_id = i.instance_id
LEFT JOIN ignored g ON g.instance_id = i.instance_id
LEFT JOIN domains d ON d.instance_id = i.instance_id
CROSS JOIN LATERAL (VALUES (1, r.t1), (2, r.t2), (3, r.t3), (4, r.t4), (5, r.t5), (6, r.t6)) AS m(type, reached)`;
