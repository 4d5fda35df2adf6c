/**
 * SQL that stages a seed inside the database, in the scratch schema `zsetup_seed`: helper functions,
 * the scene sequence of every instance and the ids each scene refers to. Every value is derived from
 * the seed through hash functions of row numbers, so a rerun produces the same rows.
 */
import { ACTIVITY_KINDS, ORG_REMOVAL_SCENE, SETUP_EVENTS } from './scenes.js';

/** The scratch schema; dropped when the seed ends. */
export const STAGE = 'zsetup_seed';

/**
 * Helper functions. `h(x, salt)` is a non-negative 63-bit hash of `x` under the seed (hashint8extended
 * is stable across PostgreSQL versions: hash partitioning depends on it). The name functions pick from
 * small lists, so payloads carry realistic text, unicode included.
 */
export function helperFunctionsSql(seed: number): string {
  if (!Number.isSafeInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
  const arr = (xs: readonly string[]) => `ARRAY[${xs.map((x) => `'${x.replace(/'/g, "''")}'`).join(',')}]`;
  const fn = (name: string, args: string, returns: string, body: string, volatility = 'IMMUTABLE') =>
    `CREATE FUNCTION ${STAGE}.${name}(${args}) RETURNS ${returns} LANGUAGE sql ${volatility} PARALLEL SAFE AS $f$ SELECT ${body} $f$;`;
  return [
    `CREATE SCHEMA ${STAGE};`,
    fn('h', 'x bigint, salt int', 'bigint', `hashint8extended(x, ${seed}::bigint * 1000 + salt) & 9223372036854775807`),
    fn('pick', 'a text[], x bigint', 'text', `a[1 + x % cardinality(a)]`),
    fn('org_name', 'id bigint', 'text', `${STAGE}.pick(${arr(ORG_NAMES)}, ${STAGE}.h(id, 40)) || ' ' || ${STAGE}.pick(${arr(ORG_SUFFIXES)}, ${STAGE}.h(id, 41))`),
    fn('org_slug', 'id bigint', 'text', `${STAGE}.pick(${arr(ORG_SLUGS)}, ${STAGE}.h(id, 40)) || '-' || (id % 1000)`),
    fn('project_name', 'id bigint', 'text', `${STAGE}.pick(${arr(PROJECT_NAMES)}, ${STAGE}.h(id, 42))`),
    fn('project_slug', 'id bigint', 'text', `${STAGE}.pick(${arr(PROJECT_SLUGS)}, ${STAGE}.h(id, 42))`),
    fn('first_name', 'id bigint', 'text', `${STAGE}.pick(${arr(FIRST_NAMES)}, ${STAGE}.h(id, 43))`),
    fn('last_name', 'id bigint', 'text', `${STAGE}.pick(${arr(LAST_NAMES)}, ${STAGE}.h(id, 44))`),
    fn('user_name', 'id bigint', 'text', `lower(${STAGE}.first_name(id) COLLATE "C") || '.' || lower(${STAGE}.last_name(id) COLLATE "C") || (id % 1000)`),
    fn('client_id', 'app bigint, project bigint, base bigint', 'text',
      `app::text || '@' || CASE WHEN project = base + 3 THEN 'zitadel' ELSE ${STAGE}.project_slug(project) END`),
    fn('bcrypt', 'x bigint', 'text', `'$2a$14$' || left(md5(x::text) || md5((x + 1)::text), 53)`),
    fn('rfc3339', 't timestamptz', 'text', `to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`, 'STABLE'),
  ].join('\n');
}

/** Instances (filled from the plan), the template table and the scratch scene table. */
export const STAGE_TABLES_SQL = `
CREATE UNLOGGED TABLE ${STAGE}.inst (
  inst int PRIMARY KEY, instance_id text NOT NULL, base bigint NOT NULL, name text NOT NULL, domain text,
  budget bigint NOT NULL, activity bigint NOT NULL, removed boolean NOT NULL, start_at timestamptz NOT NULL,
  span_us bigint NOT NULL, generated int NOT NULL DEFAULT 0, covered bigint NOT NULL DEFAULT 0,
  gap_us bigint, step_us bigint, pool bigint);
CREATE UNLOGGED TABLE ${STAGE}.tpl (kind text, ord int, push int, agg text, event_type text, editor text, service text, arg text,
  PRIMARY KEY (kind, ord));
CREATE UNLOGGED TABLE ${STAGE}.scene_raw (inst int, s int, kind text);`;

/** Fills `inst` from the plan arrays ($1…$9) and derives each instance's generated domain. */
export const FILL_INSTANCES_SQL = `
INSERT INTO ${STAGE}.inst (inst, instance_id, base, name, budget, activity, removed, start_at, span_us, domain)
SELECT p.inst, p.instance_id, p.base, p.name, p.budget, p.activity, p.removed, p.start_at, p.span_us,
       lower(regexp_replace(p.name, '[^A-Za-z0-9]+', '-', 'g') COLLATE "C") || '-' || substr(md5(p.base::text), 1, 6) || '.zitadel.cloud'
FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::boolean[], $8::timestamptz[], $9::bigint[])
  AS p(inst, instance_id, base, name, budget, activity, removed, start_at, span_us)`;

/** Fills the template table from arrays ($1…$8). */
export const FILL_TEMPLATES_SQL = `
INSERT INTO ${STAGE}.tpl SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])`;

/** `CASE` choosing an activity scene kind from a number in 0…999, by the kinds' weights. */
function weightedKindSql(r: string): string {
  let upTo = 0;
  const arms = ACTIVITY_KINDS.map((k) => {
    upTo += k.weight;
    return `WHEN ${r} < ${upTo} THEN '${k.kind}'`;
  });
  return `CASE ${arms.join(' ')} ELSE '${ACTIVITY_KINDS[0].kind}' END`;
}

/**
 * Appends raw scenes to every instance whose scenes do not yet cover its activity budget, about 30 %
 * more than the mean scene length says it needs; then records how far each instance got.
 * Rerun until it inserts nothing. The org removal is placed at a fixed scene number.
 */
export function generateScenesSql(meanSceneEvents: number): string {
  return `
INSERT INTO ${STAGE}.scene_raw (inst, s, kind)
SELECT i.inst, g.s, CASE WHEN g.s = ${ORG_REMOVAL_SCENE} THEN 'org_removed' ELSE ${weightedKindSql(`${STAGE}.h((i.inst::bigint << 32) | g.s, 1) % 1000`)} END
FROM ${STAGE}.inst i
CROSS JOIN LATERAL generate_series(i.generated + 1, i.generated + 40 + ceil((i.activity - i.covered) / ${meanSceneEvents} * 1.3)::int) AS g(s)
WHERE i.covered < i.activity;
UPDATE ${STAGE}.inst i SET generated = m.generated, covered = m.covered
FROM (SELECT r.inst, max(r.s) AS generated, sum(l.len) AS covered
      FROM ${STAGE}.scene_raw r JOIN (SELECT kind, count(*) AS len FROM ${STAGE}.tpl GROUP BY kind) l USING (kind)
      GROUP BY r.inst) m
WHERE m.inst = i.inst;`;
}

/** How many instances still need scenes. */
export const SHORT_INSTANCES_SQL = `SELECT count(*)::int AS n FROM ${STAGE}.inst WHERE covered < activity`;

/**
 * The final scenes: a login-dependent scene before the instance's first login becomes a login, an
 * app/project change before the first project becomes a project; offsets are cumulative event counts
 * and the scene that crosses the budget is cut. Adds the creation scene (0) and, for a removed
 * instance, the removal after its last scene. Then spaces the scenes evenly over each instance's span.
 */
export const SCENES_SQL = `
CREATE UNLOGGED TABLE ${STAGE}.scene AS
WITH adj AS (
  SELECT r.inst, r.s,
    CASE WHEN r.kind IN ('sso', 'refresh') AND count(*) FILTER (WHERE r.kind = 'login') OVER w = 0 THEN 'login'
         WHEN r.kind IN ('app_api', 'app_changed', 'project_changed', 'project_deact')
              AND count(*) FILTER (WHERE r.kind = 'project') OVER w = 0 THEN 'project'
         ELSE r.kind END AS kind
  FROM ${STAGE}.scene_raw r WINDOW w AS (PARTITION BY r.inst ORDER BY r.s)
), lens AS (
  SELECT a.inst, a.s, a.kind, l.len, sum(l.len) OVER (PARTITION BY a.inst ORDER BY a.s) - l.len AS off
  FROM adj a JOIN (SELECT kind, count(*) AS len FROM ${STAGE}.tpl GROUP BY kind) l USING (kind)
)
SELECT l.inst, l.s, l.kind, least(l.len, i.activity - l.off)::int AS len, (l.off + ${SETUP_EVENTS})::bigint AS off
FROM lens l JOIN ${STAGE}.inst i USING (inst) WHERE l.off < i.activity
UNION ALL
SELECT inst, 0, 'setup', ${SETUP_EVENTS}, 0 FROM ${STAGE}.inst;
INSERT INTO ${STAGE}.scene
SELECT s.inst, max(s.s) + 1, 'instance_removed', 1, i.budget - 1
FROM ${STAGE}.scene s JOIN ${STAGE}.inst i USING (inst) WHERE i.removed GROUP BY s.inst, i.budget;
UPDATE ${STAGE}.inst i SET gap_us = i.span_us / (m.n + 1), step_us = least(1700000, i.span_us / (m.n + 1) / 16)
FROM (SELECT inst, max(s) AS n FROM ${STAGE}.scene GROUP BY inst) m WHERE m.inst = i.inst;`;

/**
 * What each scene refers to. Ids inside an instance are `base + 16 * scene + role` (roles: 0 the thing
 * the scene creates, 1 its app, 2 session, 3 OIDC session, 4 auth request, 5/6 user/project of an org
 * removal, 8–10 token ids; scene 0: 1 default org, 2 admin, 3 IAM project, 4–7 setup apps, 8 login client).
 * Existing orgs, human users and projects are numbered in creation order; a scene picks one by hash among
 * those created before it. SSO and refresh scenes continue the instance's latest login.
 */
export const RESOLVE_SQL = `
CREATE UNLOGGED TABLE ${STAGE}.scene_c AS
SELECT sc.inst, sc.s, sc.kind, sc.len, sc.off, (sc.inst::bigint << 32) | sc.s AS k,
  count(*) FILTER (WHERE sc.kind = 'org') OVER w AS orgs,
  count(*) FILTER (WHERE sc.kind = 'user_human') OVER w AS users,
  count(*) FILTER (WHERE sc.kind = 'project') OVER w AS projects,
  max(sc.s) FILTER (WHERE sc.kind = 'login') OVER w AS last_login
FROM ${STAGE}.scene sc WINDOW w AS (PARTITION BY sc.inst ORDER BY sc.s);

CREATE UNLOGGED TABLE ${STAGE}.org_reg AS
SELECT inst, 0::bigint AS ord, base + 1 AS org_id FROM ${STAGE}.inst
UNION ALL
SELECT c.inst, c.orgs, i.base + 16 * c.s FROM ${STAGE}.scene_c c JOIN ${STAGE}.inst i USING (inst) WHERE c.kind = 'org';

CREATE UNLOGGED TABLE ${STAGE}.user_reg AS
SELECT inst, 0::bigint AS ord, base + 2 AS user_id, base + 1 AS org_id FROM ${STAGE}.inst
UNION ALL
SELECT c.inst, c.users, i.base + 16 * c.s, o.org_id
FROM ${STAGE}.scene_c c JOIN ${STAGE}.inst i USING (inst)
JOIN ${STAGE}.org_reg o ON o.inst = c.inst AND o.ord = ${STAGE}.h(c.k, 2) % (c.orgs + 1)
WHERE c.kind = 'user_human';

CREATE UNLOGGED TABLE ${STAGE}.proj_reg AS
SELECT c.inst, c.projects AS ord, i.base + 16 * c.s AS project_id, o.org_id
FROM ${STAGE}.scene_c c JOIN ${STAGE}.inst i USING (inst)
JOIN ${STAGE}.org_reg o ON o.inst = c.inst AND o.ord = ${STAGE}.h(c.k, 2) % (c.orgs + 1)
WHERE c.kind = 'project';

CREATE UNLOGGED TABLE ${STAGE}.scene_r AS
SELECT c.inst, c.s, c.kind, c.len, c.off, c.k,
  CASE WHEN c.kind IN ('org', 'org_removed') THEN i.base + 16 * c.s
       WHEN c.kind IN ('org_changed', 'org_deact', 'user_human', 'user_machine', 'user_removed', 'project', 'project_removed') THEN o.org_id
       WHEN c.kind IN ('app_api', 'app_changed', 'project_changed', 'project_deact') THEN p.org_id
       WHEN c.kind IN ('setup', 'instance_changed', 'instance_domain', 'instance_removed') THEN i.base + 1
       ELSE u.org_id END AS org_id,
  CASE WHEN c.kind IN ('user_human', 'user_machine', 'user_removed') THEN i.base + 16 * c.s
       WHEN c.kind = 'org_removed' THEN i.base + 16 * c.s + 5
       WHEN c.kind = 'setup' THEN i.base + 2
       ELSE u.user_id END AS user_id,
  CASE WHEN c.kind IN ('project', 'project_removed') THEN i.base + 16 * c.s
       WHEN c.kind = 'org_removed' THEN i.base + 16 * c.s + 6
       WHEN c.kind = 'setup' OR (c.kind IN ('login', 'sso') AND NOT x.use_app) THEN i.base + 3
       ELSE p.project_id END AS project_id,
  CASE WHEN c.kind IN ('project', 'project_removed', 'app_api') THEN i.base + 16 * c.s + 1
       WHEN c.kind = 'app_changed' OR (c.kind IN ('login', 'sso') AND x.use_app) THEN p.project_id + 1
       WHEN c.kind IN ('login', 'sso') THEN i.base + 7 END AS app_id,
  CASE c.kind WHEN 'login' THEN i.base + 16 * c.s + 2 WHEN 'sso' THEN i.base + 16 * lg.s + 2 END AS session_id,
  CASE WHEN c.kind IN ('login', 'sso') THEN i.base + 16 * c.s + 3 WHEN c.kind = 'refresh' THEN i.base + 16 * lg.s + 3 END AS oidc_id,
  i.start_at + (c.s * i.gap_us + CASE WHEN c.s > 0 THEN ${STAGE}.h(c.k, 8) % greatest(i.gap_us / 2, 1) ELSE 0 END) * interval '1 microsecond' AS scene_at
FROM ${STAGE}.scene_c c
JOIN ${STAGE}.inst i USING (inst)
LEFT JOIN ${STAGE}.scene_c lg ON c.kind IN ('sso', 'refresh') AND lg.inst = c.inst AND lg.s = c.last_login
CROSS JOIN LATERAL (SELECT coalesce(lg.k, c.k) AS k, coalesce(lg.users, c.users) AS users, coalesce(lg.projects, c.projects) AS projects) src
CROSS JOIN LATERAL (SELECT src.projects > 0 AND ${STAGE}.h(src.k, 5) % 3 = 0 AS use_app) x
LEFT JOIN ${STAGE}.org_reg o ON o.inst = c.inst AND o.ord = ${STAGE}.h(c.k, 2) % (c.orgs + 1)
LEFT JOIN ${STAGE}.user_reg u ON u.inst = c.inst AND u.ord = ${STAGE}.h(src.k, 3) % (src.users + 1)
LEFT JOIN ${STAGE}.proj_reg p ON p.inst = c.inst AND p.ord = 1 + ${STAGE}.h(src.k, 4) % greatest(src.projects, 1);
CREATE INDEX ON ${STAGE}.scene_r (inst);`;

/**
 * `--aggregates` ($1): sizes each instance's pool of login-flow aggregate slots so that the database
 * has about $1 distinct aggregates. The others (the instance, its orgs, users, projects, the login
 * client; the system aggregate) stay as they are; sessions, OIDC sessions and auth requests, three per
 * slot, share what is left, in proportion to how many each instance would have had. When that many
 * exist anyway, nothing is folded.
 */
export const POOL_SQL = `
WITH per AS (
  SELECT inst,
    sum(CASE kind WHEN 'login' THEN 3 WHEN 'sso' THEN 2 ELSE 0 END) AS login,
    5 + count(*) FILTER (WHERE kind IN ('org', 'user_human', 'user_machine', 'user_removed', 'project', 'project_removed'))
      + 3 * count(*) FILTER (WHERE kind = 'org_removed') AS other
  FROM ${STAGE}.scene GROUP BY inst
), total AS (
  SELECT sum(login) AS login, $1::bigint - 1 - sum(other) AS budget FROM per
)
UPDATE ${STAGE}.inst i SET pool = greatest(1, floor(greatest(t.budget, 0)::numeric * p.login / t.login / 3))::bigint
FROM per p, total t
WHERE p.inst = i.inst AND p.login > 0 AND t.budget < t.login`;

const ORG_NAMES = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Müller & Söhne', 'Wayne', 'Wonka', 'Tyrell', 'Cyberdyne', 'Soylent', 'Vandelay', 'Łódź Logistics', 'Café Olé', '東京 Trading'];
const ORG_SLUGS = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'mueller-soehne', 'wayne', 'wonka', 'tyrell', 'cyberdyne', 'soylent', 'vandelay', 'lodz-logistics', 'cafe-ole', 'tokyo-trading'];
const ORG_SUFFIXES = ['Labs', 'Group', 'AG', 'Inc.', 'GmbH', 'Ltd', 'Studio', 'Systems'];
const PROJECT_NAMES = ['Customer Portal', 'Billing', 'Web Shop', 'CRM', 'Intranet', 'Mobile App', 'Analytics', 'Helpdesk', 'Wiki', 'Payments', 'Data Platform', 'Partner API'];
const PROJECT_SLUGS = ['customer-portal', 'billing', 'web-shop', 'crm', 'intranet', 'mobile-app', 'analytics', 'helpdesk', 'wiki', 'payments', 'data-platform', 'partner-api'];
const FIRST_NAMES = ['Anna', 'Ben', 'Chloé', 'David', 'Emma', 'Felix', 'Greta', 'Hiro', 'Inès', 'Jonas', 'Kai', 'Lena', 'Mateo', 'Nora', 'Oskar', 'Priya', 'Quinn', 'Rosa', 'Søren', 'Tomás', 'Uma', 'Viktor', 'Wei', 'Yara', 'Zoë', 'Łukasz', 'Aiko', 'Björn'];
const LAST_NAMES = ['Müller', 'Smith', 'García', 'Rossi', 'Novák', 'Kowalski', 'Tanaka', 'Dubois', 'Jensen', 'Silva', 'Nguyen', 'Kim', 'Papadopoulos', 'Öztürk', 'Ivanova', 'Hansen', 'Brown', 'Schmidt', 'Martin', 'Costa'];
