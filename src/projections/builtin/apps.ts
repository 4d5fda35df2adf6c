import { optBool, optBytes, optInt, optIntArray, optString, optStringArray, payloadOf, secretOrEncodedHash } from '../payload.js';
import type { ProjectionDefinition, ProjectionEvent, ProjectionWriter, Reducer, Row } from '../types.js';
import {
  ACTIVE, arrayOrNull, big, bool, bytes, changed, childOf, created, INACTIVE, instanceRemoved, small, smallArray, text, textArray, ts,
} from './common.js';

const T = 'projections.apps7';
const API = 'projections.apps7_api_configs';
const OIDC = 'projections.apps7_oidc_configs';
const SAML = 'projections.apps7_saml_configs';
type Payload = Readonly<Record<string, unknown>>;

/**
 * The app an event on the project aggregate is about: payload `appId`. The reference reads it into a
 * plain string, so an absent id is '' (its statements then match nothing, or insert under '').
 */
const appId = (e: ProjectionEvent) => optString(payloadOf(e), 'appId') ?? '';
const appKey = (e: ProjectionEvent) => ({ instance_id: e.instanceId, id: appId(e) });
const configKey = (e: ProjectionEvent) => ({ instance_id: e.instanceId, app_id: appId(e) });

const state = (s: number): Reducer => (e, w) => w.update(T, appKey(e), { state: s, ...changed(e) });

/** A config change: the config row's columns, and the app row records the change. */
function configChange(table: string, e: ProjectionEvent, w: ProjectionWriter, set: Row): void {
  w.update(table, configKey(e), set);
  w.update(T, appKey(e), changed(e));
}

/** A config insert together with the app row's change (one statement in the reference: both or neither). */
function configAdded(table: string, e: ProjectionEvent, w: ProjectionWriter, row: Row): void {
  w.upsert(table, { ...configKey(e), ...row });
  w.update(T, appKey(e), changed(e));
}

/** Only the keys present (non-null) in the payload; none ⇒ the reference's no-op statement. */
const present = (row: Row): Row => Object.fromEntries(Object.entries(row).filter(([, v]) => v !== undefined));
const changeIfAny = (table: string, set: (p: Payload) => Row): Reducer => (e, w) => {
  const values = present(set(payloadOf(e)));
  if (Object.keys(values).length) configChange(table, e, w, values);
};

/** The OIDC settings an oidc.changed event may carry, undefined where absent. */
function oidcSettings(p: Payload): Row {
  const array = <T>(v: readonly T[] | undefined) => (v === undefined ? undefined : arrayOrNull(v));
  return {
    version: optInt(p, 'oidcVersion'),
    redirect_uris: array(optStringArray(p, 'redirectUris')),
    response_types: array(optIntArray(p, 'responseTypes')),
    grant_types: array(optIntArray(p, 'grantTypes')),
    application_type: optInt(p, 'applicationType'),
    auth_method_type: optInt(p, 'authMethodType'),
    post_logout_redirect_uris: array(optStringArray(p, 'postLogoutRedirectUris')),
    is_dev_mode: optBool(p, 'devMode'),
    access_token_type: optInt(p, 'accessTokenType'),
    access_token_role_assertion: optBool(p, 'accessTokenRoleAssertion'),
    id_token_role_assertion: optBool(p, 'idTokenRoleAssertion'),
    id_token_userinfo_assertion: optBool(p, 'idTokenUserinfoAssertion'),
    clock_skew: optInt(p, 'clockSkew'),
    additional_origins: array(optStringArray(p, 'additionalOrigins')),
    skip_native_app_success_page: optBool(p, 'skipNativeAppSuccessPage'),
    back_channel_logout_uri: optString(p, 'backChannelLogoutURI'),
    login_version: optInt(p, 'loginVersion'),
    login_base_uri: optString(p, 'loginBaseURI'),
  };
}

/** What oidc.added writes for an absent key: its fields are plain Go values (0 / false / ''), arrays NULL. */
const OIDC_ZERO: Readonly<Record<string, number | boolean | string | null>> = {
  version: 0, redirect_uris: null, response_types: null, grant_types: null, application_type: 0, auth_method_type: 0,
  post_logout_redirect_uris: null, is_dev_mode: false, access_token_type: 0, access_token_role_assertion: false,
  id_token_role_assertion: false, id_token_userinfo_assertion: false, clock_skew: 0, additional_origins: null,
  skip_native_app_success_page: false, back_channel_logout_uri: '', login_version: 0, login_base_uri: '',
};

function oidcAdded(p: Payload): Row {
  const s = oidcSettings(p);
  const row: Record<string, Row[string]> = { client_id: optString(p, 'clientId') ?? '', client_secret: secretOrEncodedHash(p, 'clientSecret', 'hashedSecret') };
  for (const [k, zero] of Object.entries(OIDC_ZERO)) row[k] = s[k] ?? zero;
  return row;
}

const apiSecret: Reducer = (e, w) => configChange(API, e, w, { client_secret: secretOrEncodedHash(payloadOf(e), 'clientSecret', 'hashedSecret') });
const oidcSecret: Reducer = (e, w) => configChange(OIDC, e, w, { client_secret: secretOrEncodedHash(payloadOf(e), 'clientSecret', 'hashedSecret') });
/** A re-encoded hash carries only `hashedSecret`. */
const hashUpdated = (table: string): Reducer => (e, w) => configChange(table, e, w, { client_secret: optString(payloadOf(e), 'hashedSecret') ?? '' });

/**
 * `projections.apps7` with its config tables `_api_configs`, `_oidc_configs`, `_saml_configs` (spec
 * zitadel-handoff.md §3.1, §3.5). Apps live on the project aggregate; the config tables reference the
 * app row and go with it (ON DELETE CASCADE).
 */
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
    {
      name: API,
      columns: [text('app_id'), text('instance_id'), text('client_id'), text('client_secret', { nullable: true }), small('auth_method')],
      primaryKey: ['instance_id', 'app_id'],
      parent: childOf(T, 'api_configs', 'app_id'),
      indexes: { apps7_api_configs_client_id_idx: ['client_id'] },
    },
    {
      name: OIDC,
      // back_channel_logout_uri, login_version and login_base_uri are part of the table at the reference
      // version (its steps 37 and 40 add them with guarded ALTERs for older tables, so having them is safe).
      columns: [
        text('app_id'), text('instance_id'), small('version'), text('client_id'), text('client_secret', { nullable: true }),
        textArray('redirect_uris', { nullable: true }), smallArray('response_types', { nullable: true }), smallArray('grant_types', { nullable: true }),
        small('application_type'), small('auth_method_type'), textArray('post_logout_redirect_uris', { nullable: true }),
        bool('is_dev_mode'), small('access_token_type'), bool('access_token_role_assertion', { default: false }),
        bool('id_token_role_assertion', { default: false }), bool('id_token_userinfo_assertion', { default: false }),
        big('clock_skew', { default: 0 }), textArray('additional_origins', { nullable: true }),
        bool('skip_native_app_success_page', { default: false }), text('back_channel_logout_uri', { nullable: true }),
        small('login_version', { nullable: true }), text('login_base_uri', { nullable: true }),
      ],
      primaryKey: ['instance_id', 'app_id'],
      parent: childOf(T, 'oidc_configs', 'app_id'),
      indexes: { apps7_oidc_configs_client_id_idx: ['client_id'] },
    },
    {
      name: SAML,
      columns: [text('app_id'), text('instance_id'), text('entity_id'), bytes('metadata'), text('metadata_url')],
      primaryKey: ['instance_id', 'app_id'],
      parent: childOf(T, 'saml_configs', 'app_id'),
      indexes: { apps7_saml_configs_entity_id_idx: ['entity_id'] },
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
      'project.application.config.api.added': (e, w) => {
        const p = payloadOf(e);
        configAdded(API, e, w, {
          client_id: optString(p, 'clientId') ?? '',
          client_secret: secretOrEncodedHash(p, 'clientSecret', 'hashedSecret'),
          auth_method: optInt(p, 'authMethodType') ?? 0,
        });
      },
      'project.application.config.api.changed': changeIfAny(API, (p) => ({ auth_method: optInt(p, 'authMethodType') })),
      'project.application.config.api.secret.changed': apiSecret,
      'project.application.config.api.secret.updated': hashUpdated(API),
      'project.application.config.oidc.added': (e, w) => configAdded(OIDC, e, w, oidcAdded(payloadOf(e))),
      'project.application.config.oidc.changed': changeIfAny(OIDC, oidcSettings),
      'project.application.config.oidc.secret.changed': oidcSecret,
      'project.application.config.oidc.secret.updated': hashUpdated(OIDC),
      'project.application.config.saml.added': (e, w) => {
        const p = payloadOf(e);
        // metadata is NOT NULL: an event without it fails, as the reference's insert does.
        configAdded(SAML, e, w, { entity_id: optString(p, 'entityId') ?? '', metadata: optBytes(p, 'metadata') ?? null, metadata_url: optString(p, 'metadata_url') ?? '' });
      },
      'project.application.config.saml.changed': changeIfAny(SAML, (p) => ({
        metadata: optBytes(p, 'metadata'),
        metadata_url: optString(p, 'metadata_url'),
        entity_id: optString(p, 'entityId') || undefined,
      })),
    },
    org: { 'org.removed': (e, w) => w.deleteWhere(T, { instance_id: e.instanceId, resource_owner: e.aggregateId }) },
    // The config tables are listed too so that config rows of this batch go at once in memory; in the
    // database the foreign keys' cascade removes them with the apps either way.
    instance: { 'instance.removed': instanceRemoved(T, API, OIDC, SAML) },
  },
};
