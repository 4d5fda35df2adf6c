/**
 * The reference handler's statements: per projection, per subscribed event type, the plain SQL that event
 * runs, written from the hand-off fact sheet (zitadel-handoff.md §3.2–§3.7) without zsetup's engine,
 * reducers or writer. One event gives one statement: a list of executions that share one savepoint
 * (ZITADEL's multi-statement), or `null` for a no-op statement (it still moves the state).
 * Inserts are plain INSERTs, as ZITADEL's (a re-reduced create fails and lands in failed_events2).
 */

import { arr, bool, bump, created, has, insert, num, ofInstance, own, ownerRemoved, p, remove, secret, str, update, type Reduce, type RefEvent, type RefProjection, type Values } from './reference-sql.js';
import { REFERENCE_PROJECTIONS_2 } from './reference-users.js';

// ---- projections.instances (§3.3) ----
const I = 'projections.instances';
const instanceSet = (cols: (e: RefEvent) => Values): Reduce => (e) => [update(I, { ...cols(e), ...bump(e) }, { id: e.aggregateId })];

const instances: RefProjection = {
  name: I,
  reducers: {
    instance: {
      'instance.added': (e) => [insert(I, { id: e.instanceId, name: str(e, 'name'), ...created(e) })],
      'instance.changed': instanceSet((e) => ({ name: str(e, 'name') })),
      'instance.default.org.set': instanceSet((e) => ({ default_org_id: str(e, 'orgId') })),
      'instance.iam.project.set': instanceSet((e) => ({ iam_project_id: str(e, 'iamProjectId') })),
      'instance.iam.console.set': instanceSet((e) => ({ console_client_id: str(e, 'clientId'), console_app_id: str(e, 'appId') })),
      'instance.default.language.set': instanceSet((e) => ({ default_language: str(e, 'language') })),
      'instance.removed': (e) => [remove(I, { id: e.aggregateId })],
    },
  },
};

// ---- projections.orgs1 (§3.4) ----
const O = 'projections.orgs1';
const orgs: RefProjection = {
  name: O,
  reducers: {
    org: {
      'org.added': (e) => [insert(O, { ...own(e), ...created(e), resource_owner: e.owner, org_state: 1, name: str(e, 'name') })],
      'org.changed': (e) => (str(e, 'name') === '' ? null : [update(O, { name: str(e, 'name'), ...bump(e) }, own(e))]),
      'org.deactivated': (e) => [update(O, { org_state: 2, ...bump(e) }, own(e))],
      'org.reactivated': (e) => [update(O, { org_state: 1, ...bump(e) }, own(e))],
      'org.domain.primary.set': (e) => [update(O, { primary_domain: str(e, 'domain'), ...bump(e) }, own(e))],
      'org.removed': (e) => [remove(O, own(e))],
    },
    instance: { 'instance.removed': ofInstance(O) },
  },
};

// ---- projections.projects4 (§3.4) ----
const P = 'projections.projects4';
const PROJECT_KEYS: Record<string, string> = {
  name: 'name', projectRoleAssertion: 'project_role_assertion', projectRoleCheck: 'project_role_check',
  hasProjectCheck: 'has_project_check', privateLabelingSetting: 'private_labeling_setting',
};
const projects: RefProjection = {
  name: P,
  reducers: {
    project: {
      'project.added': (e) => [insert(P, {
        ...own(e), ...created(e), state: 1, resource_owner: e.owner, name: str(e, 'name'),
        project_role_assertion: bool(e, 'projectRoleAssertion'), project_role_check: bool(e, 'projectRoleCheck'),
        has_project_check: bool(e, 'hasProjectCheck'), private_labeling_setting: num(e, 'privateLabelingSetting'),
      })],
      'project.changed': (e) => {
        const set = Object.fromEntries(Object.entries(PROJECT_KEYS).filter(([k]) => has(e, k)).map(([k, c]) => [c, p(e)[k]]));
        return Object.keys(set).length ? [update(P, { ...set, ...bump(e) }, own(e))] : null;
      },
      'project.deactivated': (e) => [update(P, { state: 2, ...bump(e) }, own(e))],
      'project.reactivated': (e) => [update(P, { state: 1, ...bump(e) }, own(e))],
      'project.removed': (e) => [remove(P, own(e))],
    },
    org: { 'org.removed': ownerRemoved(P) },
    instance: { 'instance.removed': ofInstance(P) },
  },
};

// ---- projections.apps7 family (§3.5) ----
const A = 'projections.apps7';
const API = 'projections.apps7_api_configs';
const OIDC = 'projections.apps7_oidc_configs';
const SAML = 'projections.apps7_saml_configs';
const app = (e: RefEvent) => ({ id: str(e, 'appId'), instance_id: e.instanceId });
const child = (e: RefEvent) => ({ app_id: str(e, 'appId'), instance_id: e.instanceId });
const appBump = (e: RefEvent) => update(A, bump(e), app(e));
/** A change of a config row followed by the app's bump; none of the columns present ⇒ no-op. */
const configChange = (table: string, cols: (e: RefEvent) => Values): Reduce => (e) => {
  const set = cols(e);
  return Object.keys(set).length ? [update(table, set, child(e)), appBump(e)] : null;
};

const OIDC_KEYS: Record<string, [string, 'num' | 'bool' | 'str' | 'arr']> = {
  oidcVersion: ['version', 'num'], redirectUris: ['redirect_uris', 'arr'], responseTypes: ['response_types', 'arr'],
  grantTypes: ['grant_types', 'arr'], applicationType: ['application_type', 'num'], authMethodType: ['auth_method_type', 'num'],
  postLogoutRedirectUris: ['post_logout_redirect_uris', 'arr'], devMode: ['is_dev_mode', 'bool'],
  accessTokenType: ['access_token_type', 'num'], accessTokenRoleAssertion: ['access_token_role_assertion', 'bool'],
  idTokenRoleAssertion: ['id_token_role_assertion', 'bool'], idTokenUserinfoAssertion: ['id_token_userinfo_assertion', 'bool'],
  clockSkew: ['clock_skew', 'num'], additionalOrigins: ['additional_origins', 'arr'],
  skipNativeAppSuccessPage: ['skip_native_app_success_page', 'bool'], backChannelLogoutURI: ['back_channel_logout_uri', 'str'],
  loginVersion: ['login_version', 'num'], loginBaseURI: ['login_base_uri', 'str'],
};
const oidcValue = (e: RefEvent, key: string, kind: 'num' | 'bool' | 'str' | 'arr') =>
  kind === 'num' ? num(e, key) : kind === 'bool' ? bool(e, key) : kind === 'str' ? str(e, key) : arr(e, key);
const oidcColumns = (e: RefEvent, onlyPresent: boolean): Values =>
  Object.fromEntries(Object.entries(OIDC_KEYS).filter(([k]) => !onlyPresent || has(e, k)).map(([k, [c, kind]]) => [c, oidcValue(e, k, kind)]));
const metadata = (e: RefEvent) => Buffer.from(str(e, 'metadata'), 'base64');

const apps: RefProjection = {
  name: A,
  reducers: {
    project: {
      'project.application.added': (e) => [insert(A, { ...app(e), name: str(e, 'name'), project_id: e.aggregateId, ...created(e), resource_owner: e.owner, state: 1 })],
      'project.application.changed': (e) => (str(e, 'name') === '' ? null : [update(A, { name: str(e, 'name'), ...bump(e) }, app(e))]),
      'project.application.deactivated': (e) => [update(A, { state: 2, ...bump(e) }, app(e))],
      'project.application.reactivated': (e) => [update(A, { state: 1, ...bump(e) }, app(e))],
      'project.application.removed': (e) => [remove(A, app(e))],
      'project.removed': (e) => [remove(A, { project_id: e.aggregateId, instance_id: e.instanceId })],
      'project.application.config.api.added': (e) => [
        insert(API, { ...child(e), client_id: str(e, 'clientId'), client_secret: secret(e), auth_method: num(e, 'authMethodType') }), appBump(e)],
      'project.application.config.api.changed': configChange(API, (e) => (has(e, 'authMethodType') ? { auth_method: num(e, 'authMethodType') } : {})),
      'project.application.config.api.secret.changed': (e) => [update(API, { client_secret: secret(e) }, child(e)), appBump(e)],
      'project.application.config.api.secret.updated': (e) => [update(API, { client_secret: str(e, 'hashedSecret') }, child(e)), appBump(e)],
      'project.application.config.oidc.added': (e) => [
        insert(OIDC, { ...child(e), client_id: str(e, 'clientId'), client_secret: secret(e), ...oidcColumns(e, false) }), appBump(e)],
      'project.application.config.oidc.changed': configChange(OIDC, (e) => oidcColumns(e, true)),
      'project.application.config.oidc.secret.changed': (e) => [update(OIDC, { client_secret: secret(e) }, child(e)), appBump(e)],
      'project.application.config.oidc.secret.updated': (e) => [update(OIDC, { client_secret: str(e, 'hashedSecret') }, child(e)), appBump(e)],
      'project.application.config.saml.added': (e) => [
        insert(SAML, { ...child(e), entity_id: str(e, 'entityId'), metadata: metadata(e), metadata_url: str(e, 'metadata_url') }), appBump(e)],
      'project.application.config.saml.changed': configChange(SAML, (e) => ({
        ...(has(e, 'metadata') ? { metadata: metadata(e) } : {}),
        ...(has(e, 'metadata_url') ? { metadata_url: str(e, 'metadata_url') } : {}),
        ...(str(e, 'entityId') !== '' ? { entity_id: str(e, 'entityId') } : {}),
      })),
    },
    org: { 'org.removed': ownerRemoved(A) },
    instance: { 'instance.removed': ofInstance(A) },
  },
};

/** The six projections of the reference, in ZITADEL's prefill order (`P/projection.go`). */
export const REFERENCE_PROJECTIONS: readonly RefProjection[] = [instances, orgs, projects, apps, ...REFERENCE_PROJECTIONS_2];
