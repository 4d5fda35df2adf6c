/**
 * The statement that turns staged scenes into rows of the legacy `eventstore.events`: one row per
 * template event of a scene, envelope and payload per ../shared/spec/zitadel-events.md §1–§2, and the
 * old per-instance chaining columns computed with window functions.
 */
import { STAGE } from './stage-sql.js';

const S = STAGE;
const obj = (...pairs: string[]) => `jsonb_build_object(${pairs.join(', ')})`;
const stripped = (...pairs: string[]) => `jsonb_strip_nulls(${obj(...pairs)})`;
const hv = (salt: number) => `${S}.h(e.k, ${salt})`;
const SCOPES = `'["openid", "profile", "email", "offline_access"]'::jsonb`;
const client = `${S}.client_id(e.app, e.project_id, e.base)`;

/** Payload of each event type; types not listed store SQL NULL (their Payload() is nil). */
const PAYLOADS: Readonly<Record<string, string>> = {
  'instance.added': obj(`'name'`, 'e.iname'),
  'instance.changed': obj(`'name'`, `e.iname || ' ' || ${S}.pick(ARRAY['Production', 'EU', 'US', 'Staging'], ${hv(60)})`),
  'instance.domain.added': `CASE WHEN e.kind = 'setup' THEN ${obj(`'domain'`, 'e.domain', `'generated'`, 'true')}
    ELSE ${obj(`'domain'`, `'login' || (${hv(61)} % 100) || '.' || ${S}.org_slug(e.base) || '.example.com'`)} END`,
  'instance.domain.primary.set': obj(`'domain'`, 'e.domain'),
  'instance.default.org.set': obj(`'orgId'`, '(e.base + 1)::text'),
  'instance.iam.project.set': obj(`'iamProjectId'`, '(e.base + 3)::text'),
  'instance.iam.console.set': obj(`'appId'`, '(e.base + 7)::text', `'clientId'`, `${S}.client_id(e.base + 7, e.base + 3, e.base)`),
  'instance.default.language.set': `'{"language": "en"}'::jsonb`,
  'org.added': obj(`'name'`, `CASE WHEN e.kind = 'setup' THEN 'ZITADEL' ELSE ${S}.org_name(e.org_id) END`),
  'org.changed': obj(`'name'`, `${S}.org_name(e.org_id) || ' (' || ${S}.pick(ARRAY['EMEA', 'Americas', 'APAC'], ${hv(62)}) || ')'`),
  'org.deactivated': `'{}'::jsonb`,
  'org.reactivated': `'{}'::jsonb`,
  'org.domain.added': 'e.org_domain',
  'org.domain.verified': 'e.org_domain',
  'org.domain.primary.set': 'e.org_domain',
  'user.human.added': `CASE WHEN e.kind = 'setup' THEN ${obj(
    `'userName'`, `'zitadel-admin@zitadel.' || e.domain`, `'firstName'`, `'ZITADEL'`, `'lastName'`, `'Admin'`,
    `'displayName'`, `'ZITADEL Admin'`, `'email'`, `'zitadel-admin@zitadel.' || e.domain`, `'preferredLanguage'`, `'en'`,
    `'encodedHash'`, `${S}.bcrypt(e.user_id)`)}
    ELSE ${stripped(
      `'userName'`, `${S}.user_name(e.user_id)`, `'firstName'`, `${S}.first_name(e.user_id)`, `'lastName'`, `${S}.last_name(e.user_id)`,
      `'displayName'`, `${S}.first_name(e.user_id) || ' ' || ${S}.last_name(e.user_id)`,
      `'email'`, `${S}.user_name(e.user_id) || '@' || ${S}.pick(ARRAY['example.com', 'mail.example.org', 'example.net'], ${S}.h(e.user_id, 63))`,
      `'preferredLanguage'`, `${S}.pick(ARRAY['en', 'de', 'fr', 'it', 'ja', 'und'], ${S}.h(e.user_id, 64))`,
      `'gender'`, `CASE WHEN ${S}.h(e.user_id, 65) % 4 = 0 THEN 1 + ${S}.h(e.user_id, 66) % 3 END`,
      `'encodedHash'`, `CASE WHEN ${S}.h(e.user_id, 67) % 3 <> 0 THEN ${S}.bcrypt(e.user_id) END`,
      `'changeRequired'`, `CASE WHEN ${S}.h(e.user_id, 68) % 5 = 0 THEN true END`)} END`,
  'user.machine.added': `CASE WHEN e.kind = 'setup' THEN '{"userName": "login-client", "name": "Automatically Initialized IAM_LOGIN_CLIENT"}'::jsonb
    ELSE ${stripped(`'userName'`, `'svc-' || ${S}.project_slug(e.user_id) || '-' || (e.user_id % 1000)`,
      `'name'`, `${S}.project_name(e.user_id) || ' service account'`,
      `'description'`, `CASE WHEN ${hv(69)} % 2 = 0 THEN 'used by the CI pipeline' END`,
      `'accessTokenType'`, `CASE WHEN ${hv(70)} % 3 = 0 THEN 1 END`)} END`,
  'user.human.profile.changed': stripped(`'firstName'`, `${S}.first_name(e.k)`, `'lastName'`, `${S}.last_name(e.user_id)`,
    `'displayName'`, `${S}.first_name(e.k) || ' ' || ${S}.last_name(e.user_id)`, `'nickName'`, `CASE WHEN ${hv(71)} % 3 = 0 THEN ${S}.first_name(e.k) END`),
  'user.human.email.changed': obj(`'email'`, `${S}.user_name(e.user_id) || '@' || ${S}.org_slug(e.org_id) || '.example.com'`),
  'user.human.password.changed': stripped(`'encodedHash'`, `${S}.bcrypt(e.k)`, `'changeRequired'`, 'false',
    `'triggerOrigin'`, `CASE WHEN ${hv(72)} % 2 = 0 THEN 'https://' || e.domain END`),
  'user.username.changed': obj(`'userName'`, `${S}.user_name(e.user_id) || '.' || (${hv(73)} % 100)`),
  'user.human.password.check.succeeded': `'{}'::jsonb`,
  'project.added': `CASE WHEN e.kind = 'setup' THEN '{"name": "ZITADEL"}'::jsonb ELSE ${stripped(
    `'name'`, `${S}.project_name(e.project_id)`, `'projectRoleAssertion'`, `CASE WHEN ${hv(74)} % 4 = 0 THEN true END`,
    `'projectRoleCheck'`, `CASE WHEN ${hv(75)} % 7 = 0 THEN true END`, `'hasProjectCheck'`, `CASE WHEN ${hv(76)} % 11 = 0 THEN true END`,
    `'privateLabelingSetting'`, `CASE WHEN ${hv(77)} % 5 = 0 THEN 1 END`)} END`,
  'project.changed': obj(`'name'`, `${S}.project_name(e.project_id) || ' ' || (2 + ${hv(78)} % 3)`),
  'project.application.added': obj(`'appId'`, 'e.app::text', `'name'`, 'e.app_name'),
  'project.application.changed': obj(`'appId'`, 'e.app::text', `'name'`, `e.app_name || '-' || (${hv(79)} % 10)`),
  'project.application.removed': obj(`'appId'`, 'e.app::text'),
  'project.application.config.oidc.added': `CASE WHEN e.kind = 'setup' THEN ${obj(
    `'appId'`, 'e.app::text', `'clientId'`, client, `'redirectUris'`, `jsonb_build_array('https://' || e.domain || '/ui/console/auth/callback')`,
    `'responseTypes'`, `'[0]'::jsonb`, `'grantTypes'`, `'[0]'::jsonb`, `'applicationType'`, '1', `'authMethodType'`, '2',
    `'postLogoutRedirectUris'`, `jsonb_build_array('https://' || e.domain || '/ui/console/signedout')`, `'devMode'`, 'true')}
    ELSE ${stripped(
      `'appId'`, 'e.app::text', `'clientId'`, client,
      `'redirectUris'`, `jsonb_build_array('https://' || ${S}.project_slug(e.project_id) || '.example.com/auth/callback')`,
      `'responseTypes'`, `'[0]'::jsonb`, `'grantTypes'`, `CASE WHEN ${hv(80)} % 3 = 0 THEN '[0]'::jsonb ELSE '[0, 2]'::jsonb END`,
      `'applicationType'`, `CASE ${hv(80)} % 3 WHEN 1 THEN 1 WHEN 2 THEN 2 END`,
      `'authMethodType'`, `CASE WHEN ${hv(80)} % 3 <> 0 THEN 2 END`,
      `'hashedSecret'`, `CASE WHEN ${hv(80)} % 3 = 0 THEN ${S}.bcrypt(e.app) END`,
      `'postLogoutRedirectUris'`, `jsonb_build_array('https://' || ${S}.project_slug(e.project_id) || '.example.com/logout')`,
      `'accessTokenType'`, `CASE WHEN ${hv(81)} % 4 = 0 THEN 1 END`,
      `'idTokenUserinfoAssertion'`, `CASE WHEN ${hv(82)} % 3 = 0 THEN true END`,
      `'clockSkew'`, `CASE WHEN ${hv(83)} % 5 = 0 THEN 1000000000 END`)} END`,
  'project.application.config.api.added': `CASE WHEN e.kind = 'setup' THEN ${obj(`'appId'`, 'e.app::text', `'clientId'`, client, `'authMethodType'`, '1')}
    ELSE ${stripped(`'appId'`, 'e.app::text', `'clientId'`, client,
      `'hashedSecret'`, `CASE WHEN ${hv(84)} % 2 = 0 THEN ${S}.bcrypt(e.app) END`, `'authMethodType'`, `CASE WHEN ${hv(84)} % 2 = 1 THEN 1 END`)} END`,
  'session.added': obj(`'user_agent'`, obj(
    `'fingerprint_id'`, `(e.base + 16 * (e.k & 4294967295) + 11)::text`, `'ip'`, `'203.0.113.' || (1 + ${hv(85)} % 254)`,
    `'description'`, `${S}.pick(ARRAY['Chrome, Mac OS', 'Firefox, Windows', 'Safari, iOS', 'Edge, Windows', 'Chrome, Android'], ${hv(86)})`,
    `'header'`, obj(`'user-agent'`, `jsonb_build_array(${S}.pick(ARRAY['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Safari/537.36', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:117.0) Gecko/20100101 Firefox/117.0', 'Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1'], ${hv(86)}))`))),
  'session.user.checked': stripped(`'userID'`, 'e.user_id::text', `'userResourceOwner'`, 'e.org_id::text', `'checkedAt'`, `${S}.rfc3339(e.cd)`,
    `'preferredLanguage'`, `CASE WHEN ${hv(87)} % 2 = 0 THEN 'en' END`),
  'session.password.checked': obj(`'checkedAt'`, `${S}.rfc3339(e.cd)`),
  'session.token.set': obj(`'tokenID'`, `(e.base + 16 * (e.k & 4294967295) + 10)::text`),
  'auth_request.added': stripped(`'login_client'`, '(e.base + 8)::text', `'client_id'`, client,
    `'redirect_uri'`, `CASE WHEN e.project_id = e.base + 3 THEN 'https://' || e.domain || '/ui/console/auth/callback' ELSE 'https://' || ${S}.project_slug(e.project_id) || '.example.com/auth/callback' END`,
    `'state'`, `substr(md5(e.k::text), 1, 16)`, `'nonce'`, `CASE WHEN ${hv(88)} % 2 = 0 THEN substr(md5((e.k + 1)::text), 1, 22) END`,
    `'scope'`, SCOPES, `'audience'`, 'jsonb_build_array(e.project_id::text)',
    `'code_challenge'`, `CASE WHEN ${hv(89)} % 3 <> 0 THEN ${obj(`'challenge'`, `substr(md5((e.k + 2)::text) || md5((e.k + 3)::text), 1, 43)`, `'method'`, '1')} END`),
  'auth_request.session.linked': obj(`'session_id'`, 'e.session_id::text', `'user_id'`, 'e.user_id::text', `'auth_time'`, `${S}.rfc3339(e.cd)`, `'auth_methods'`, `'[4]'::jsonb`),
  'auth_request.code.added': `'{}'::jsonb`,
  'oidc_session.added': stripped(`'userID'`, 'e.user_id::text', `'userResourceOwner'`, 'e.org_id::text', `'sessionID'`, 'e.session_id::text',
    `'clientID'`, client, `'audience'`, `jsonb_build_array(e.project_id::text, ${client})`, `'scope'`, SCOPES, `'authMethods'`, `'[4]'::jsonb`,
    `'authTime'`, `${S}.rfc3339(e.cd)`, `'nonce'`, `CASE WHEN ${hv(88)} % 2 = 0 THEN substr(md5((e.k + 1)::text), 1, 22) END`),
  'oidc_session.access_token.added': obj(`'id'`, `'at_' || (e.base + 16 * (e.k & 4294967295) + 8)`, `'scope'`, SCOPES,
    `'lifetime'`, '43200000000000', `'reason'`, `CASE WHEN e.kind = 'refresh' THEN 'refresh' ELSE 'auth_request' END`),
  'oidc_session.refresh_token.added': obj(`'id'`, `'rt_' || (e.base + 16 * (e.k & 4294967295) + 9)`, `'lifetime'`, '7776000000000000', `'idleLifetime'`, '2592000000000000'),
};

/** The payload expression over the row `e` of {@link insertEventsSql}; `samlMetadataBytes` adds the SAML config's. */
function payloadSql(samlMetadataBytes?: number): string {
  // CASE tests its arms in order: the frequent login-flow types go first, the NULL ones included.
  const hot = Object.keys(PAYLOADS).filter((t) => /^(auth_request|oidc_session|session)\./.test(t));
  const arms = [
    ...hot.map((t) => [t, PAYLOADS[t]]),
    ['auth_request.code.exchanged', 'NULL'],
    ['auth_request.succeeded', 'NULL'],
    ...Object.entries(PAYLOADS).filter(([t]) => !hot.includes(t)),
    ...(samlMetadataBytes !== undefined ? [[SAML_CONFIG_ADDED, samlPayloadSql(samlMetadataBytes)]] : []),
  ];
  return `CASE e.event_type ${arms.map(([type, expr]) => `WHEN '${type}' THEN ${expr}`).join('\n  ')} END`;
}

/** The event type of a SAML app's configuration (written only with `samlMetadataBytes`, see scenes.ts samlApps). */
export const SAML_CONFIG_ADDED = 'project.application.config.saml.added';
/** Longest `--saml-metadata-bytes`. */
export const MAX_SAML_METADATA_BYTES = 4 * 1024 * 1024;
/** Distinct staged metadata texts (see samlPadTableSql). */
const SAML_TEXTS = 16;

/**
 * A SAML config's payload: `appId`, `entityId` and `metadata`, an XML entity descriptor of `bytes` bytes
 * (a staged hex text inside the XML), base64-encoded without line breaks as Go's encoding/json writes a
 * []byte (spec zitadel-handoff.md §3.5).
 */
function samlPayloadSql(bytes: number): string {
  const entity = `'https://' || ${S}.project_slug(e.project_id) || '.example.com/saml/' || e.app`;
  const xml = `'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="' || ${entity} || '"><!--'
    || substr((SELECT sp.t FROM ${S}.saml_pad sp WHERE sp.v = ${hv(97)} % ${SAML_TEXTS}), 1, greatest(0, ${bytes} - 120 - octet_length(${entity})))
    || '--></md:EntityDescriptor>'`;
  return obj(`'appId'`, 'e.app::text', `'entityId'`, entity, `'metadata'`, `translate(encode(convert_to(${xml}, 'UTF8'), 'base64'), E'\n', '')`);
}

/** The staged SAML metadata texts: {@link SAML_TEXTS} hex strings of `bytes` characters, derived from the seed. */
export function samlPadTableSql(seed: number, bytes: number): string {
  return `CREATE UNLOGGED TABLE ${S}.saml_pad AS
SELECT v, (SELECT string_agg(md5('${seed}/saml/' || v || '/' || g), '' ORDER BY g) FROM generate_series(1, ${Math.ceil(bytes / 32)}) g) AS t
FROM generate_series(0, ${SAML_TEXTS - 1}) v;
ALTER TABLE ${S}.saml_pad ADD PRIMARY KEY (v)`;
}

/** The ids of the login-flow aggregates of a scene row `r` (sessions, OIDC sessions, auth requests). */
interface LoginIds {
  readonly session: string;
  readonly oidc: string;
  readonly authreq: string;
}

const NATURAL_LOGIN_IDS: LoginIds = { session: 'r.session_id', oidc: 'r.oidc_id', authreq: 'i.base + 16 * r.s + 4' };

/**
 * With `--aggregates`, the login-flow ids are folded onto `i.pool` scene slots per instance: an id
 * `base + 16 * m + role` becomes `base + 16 * (1 + m % pool) + role`, so many logins reuse a few
 * aggregates (the ids of other roles and kinds stay apart: the role is kept).
 */
function foldedLoginIds(): LoginIds {
  const fold = (x: string) => `CASE WHEN i.pool IS NULL THEN ${x}
    ELSE i.base + 16 * (1 + ((${x}) - i.base) / 16 % i.pool) + ((${x}) - i.base) % 16 END`;
  return { session: fold(NATURAL_LOGIN_IDS.session), oidc: fold(NATURAL_LOGIN_IDS.oidc), authreq: fold(NATURAL_LOGIN_IDS.authreq) };
}

/**
 * Aggregate of a template role as numbers (type code, numeric id), so the window sorts compare integers;
 * the outer query turns them into the text columns. Owner per spec §1.
 */
function aggregateSql(ids: LoginIds): string {
  return `
  CASE t.agg WHEN 'instance' THEN 1 WHEN 'org' THEN 2 WHEN 'project' THEN 3 WHEN 'session' THEN 4
    WHEN 'oidc' THEN 5 WHEN 'authreq' THEN 6 ELSE 7 END AS agg_code,
  CASE t.agg WHEN 'instance' THEN i.base WHEN 'org' THEN r.org_id WHEN 'user' THEN r.user_id WHEN 'login_client' THEN i.base + 8
    WHEN 'project' THEN r.project_id WHEN 'session' THEN ${ids.session} WHEN 'oidc' THEN ${ids.oidc} ELSE ${ids.authreq} END AS agg_num,
  CASE WHEN t.agg IN ('instance', 'session', 'authreq') THEN i.instance_id WHEN t.agg = 'login_client' THEN (i.base + 1)::text
    ELSE r.org_id::text END AS owner`;
}

/** Aggregate type names of the codes above. */
const AGGREGATE_TYPE = `(ARRAY['instance', 'org', 'project', 'session', 'oidc_session', 'auth_request', 'user'])[e.agg_code]`;

/** Dataset-shape options of the event rows; each one unset leaves the rows exactly as without it. */
export interface EventShape {
  /** Fold the login-flow aggregates onto `zsetup_seed.inst.pool` slots per instance. */
  readonly foldAggregates?: boolean;
  /** Pad every non-NULL payload with a `padding` text to about this many bytes of JSON text. */
  readonly payloadBytes?: number;
  /** Events of an instance share one creation_date in consecutive groups of this many. */
  readonly eventsPerTx?: number;
  /** The SAML configs' metadata is about this many bytes (before base64); their payloads are not padded further. */
  readonly samlMetadataBytes?: number;
}

/**
 * Inserts the events of instances $1…$2 (inclusive). Events of one push share their creation date;
 * after the step `11_event_created_at` ($3) `created_at` trails it by a few microseconds, as
 * clock_timestamp() did. `id` is a uuid derived from the seed, instance and sequence.
 */
export function insertEventsSql(seed: number, shape: EventShape = {}): string {
  const ids = shape.foldAggregates ? foldedLoginIds() : NATURAL_LOGIN_IDS;
  const grouped = shape.eventsPerTx !== undefined;
  // A group's events take its first event's date (dates stay monotonic: groups follow the sequence).
  const cd = grouped ? 'e.gcd' : 'e.cd';
  const txOrd = grouped ? `(e.seq - 1) % ${shape.eventsPerTx}` : 'e.ord';
  const payload = shape.payloadBytes !== undefined ? 'pl.p' : payloadSql(shape.samlMetadataBytes);
  const inner = `
  SELECT r.inst, r.off + t.ord + 1 AS seq, t.ord, t.event_type, r.kind, r.k, i.base, i.instance_id, i.name AS iname, i.domain,
    r.org_id, r.user_id, r.project_id, ${ids.session} AS session_id,
    CASE WHEN t.arg IS NOT NULL THEN i.base + split_part(t.arg, ':', 1)::int ELSE r.app_id END AS app,
    CASE WHEN t.arg IS NOT NULL THEN split_part(t.arg, ':', 2) ELSE ${S}.pick(ARRAY['web', 'backend', 'mobile', 'admin-ui', 'cli', 'worker'], ${S}.h(r.app_id, 90)) END AS app_name,
    CASE WHEN t.event_type LIKE 'org.domain.%'
      THEN jsonb_build_object('domain', CASE WHEN r.kind = 'setup' THEN 'zitadel.' || i.domain ELSE ${S}.org_slug(r.org_id) || '.' || i.domain END) END AS org_domain,
    ${aggregateSql(ids)},
    CASE t.editor WHEN 'admin' THEN (i.base + 2)::text WHEN 'self' THEN r.user_id::text WHEN 'login' THEN (i.base + 8)::text ELSE t.editor END AS editor,
    t.service,
    CASE WHEN t.agg IN ('user', 'login_client') THEN 'v2' ELSE 'v1' END AS version,
    r.scene_at + (t.push * i.step_us + CASE WHEN t.push > 0 THEN ${S}.h(r.k * 8 + t.push, 9) % 997 ELSE 0 END) * interval '1 microsecond' AS cd
  FROM ${S}.scene_r r
  JOIN ${S}.tpl t ON t.kind = r.kind AND t.ord < r.len
  JOIN ${S}.inst i ON i.inst = r.inst
  WHERE r.inst BETWEEN $1 AND $2`;
  // Groups that begin inside one push (an instance's creation is 23 events at one date) get dates a
  // microsecond apart, so every group is a transaction of its own.
  const source = grouped
    ? `(SELECT y.*, y.fcd + (y.g - min(y.g) OVER (PARTITION BY y.inst, y.fcd)) * interval '1 microsecond' AS gcd
  FROM (SELECT x.*, (x.seq - 1) / ${shape.eventsPerTx} AS g,
    first_value(x.cd) OVER (PARTITION BY x.inst, (x.seq - 1) / ${shape.eventsPerTx} ORDER BY x.seq) AS fcd FROM (${inner}) x) y) e`
    : `(${inner}
) e`;
  return `
INSERT INTO eventstore.events (id, event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence,
  previous_aggregate_sequence, previous_aggregate_type_sequence, creation_date, created_at, event_data,
  editor_user, editor_service, resource_owner, instance_id)
SELECT md5('${seed}/' || e.instance_id || '/' || e.seq)::uuid, e.event_type, ${AGGREGATE_TYPE},
  CASE WHEN e.agg_code IN (5, 6) THEN 'V2_' || e.agg_num ELSE e.agg_num::text END, e.version, e.seq,
  lag(e.seq) OVER (PARTITION BY e.inst, e.agg_code, e.agg_num ORDER BY e.seq),
  lag(e.seq) OVER (PARTITION BY e.inst, e.agg_code ORDER BY e.seq),
  ${cd}, CASE WHEN ${cd} >= $3::timestamptz THEN ${cd} + (1 + ${txOrd}) * interval '1 microsecond' ELSE ${cd} END,
  ${payload},
  e.editor, e.service, e.owner, e.instance_id
FROM ${source}${shape.payloadBytes !== undefined ? paddedPayloadJoin(shape.payloadBytes, shape.samlMetadataBytes) : ''}`;
}

/**
 * The payload `pl.p` padded to about `bytes` bytes of JSON text: a `padding` key with the start of
 * one of the staged hex texts (hardly compressible, as encrypted or encoded values are). NULL payloads
 * stay NULL; payloads already that large are kept as they are.
 */
function paddedPayloadJoin(bytes: number, samlMetadataBytes?: number): string {
  // `, "padding": ""` adds 15 characters to the object's text.
  return `
CROSS JOIN LATERAL (SELECT ${payloadSql(samlMetadataBytes)} AS raw) pr
CROSS JOIN LATERAL (SELECT CASE WHEN pr.raw IS NULL OR octet_length(pr.raw::text) + 15 >= ${bytes} THEN pr.raw
  ELSE pr.raw || jsonb_build_object('padding', substr((SELECT pd.t FROM ${S}.pad pd WHERE pd.v = ${S}.h(e.k * 64 + e.ord, 96) % ${PAD_TEXTS}),
    1, ${bytes} - 15 - octet_length(pr.raw::text))) END AS p) pl`;
}

/** Longest `--payload-bytes`. */
export const MAX_PAYLOAD_BYTES = 65_536;
/** Distinct padding texts; each is read from its start, so no row scans a long text to an offset. */
const PAD_TEXTS = 256;

/** The staged padding texts: {@link PAD_TEXTS} hex strings of `bytes` characters, derived from the seed. */
export function padTableSql(seed: number, bytes: number): string {
  return `CREATE UNLOGGED TABLE ${S}.pad AS
SELECT v, (SELECT string_agg(md5('${seed}/pad/' || v || '/' || g), '' ORDER BY g) FROM generate_series(1, ${Math.ceil(bytes / 32)}) g) AS t
FROM generate_series(0, ${PAD_TEXTS - 1}) v;
ALTER TABLE ${S}.pad ADD PRIMARY KEY (v)`;
}

/**
 * The `system.migration.*` events of the older setup runs ($1 types, $2 step names, $3 times), as the
 * legacy eventstore wrote them: aggregate system/SYSTEM v1 in instance '', editor user and service
 * `system` (the migration command's context), owner `SYSTEM`.
 */
export const INSERT_SYSTEM_EVENTS_SQL = `
INSERT INTO eventstore.events (id, event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence,
  previous_aggregate_sequence, previous_aggregate_type_sequence, creation_date, created_at, event_data,
  editor_user, editor_service, resource_owner, instance_id)
SELECT md5($4::text || '/system/' || p.n)::uuid, p.event_type, 'system', 'SYSTEM', 'v1', p.n,
  nullif(p.n - 1, 0), nullif(p.n - 1, 0), p.at, p.at, jsonb_build_object('name', p.step),
  'system', 'system', 'SYSTEM', ''
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS p(event_type, step, at, n)`;
