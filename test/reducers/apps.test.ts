import { describe, expect, it } from 'vitest';
import { apps } from '../../src/projections/builtin/apps.js';
import { AT, BUMP, checkCases, event, subscriptions } from './support.js';

// Expected changes written by hand from zitadel-handoff.md §3.1 and §3.5, one case (or more) per event type.

const T = 'projections.apps7';
const API = 'projections.apps7_api_configs';
const OIDC = 'projections.apps7_oidc_configs';
const SAML = 'projections.apps7_saml_configs';
const p = (type: string, payload?: unknown) => event('project', 'p1', type, payload);
const appKey = { instance_id: 'i1', id: 'a1' };
const configKey = { instance_id: 'i1', app_id: 'a1' };
const bumpApp = { update: T, key: appKey, set: BUMP };
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
/** A legacy encrypted secret object as Go marshals crypto.CryptoValue (no JSON tags: Go field names). */
const legacy = (crypted: string | Buffer) => ({ CryptoType: 1, Algorithm: 'bcrypt', KeyID: '', Crypted: b64(crypted) });
const prefix = 'project.application.config';

describe('projections.apps7 family (§3.5)', () => {
  it('subscribes to exactly the listed events', () => {
    expect(subscriptions(apps)).toEqual([
      'instance/instance.removed', 'org/org.removed',
      'project/project.application.added', 'project/project.application.changed',
      'project/project.application.config.api.added', 'project/project.application.config.api.changed',
      'project/project.application.config.api.secret.changed', 'project/project.application.config.api.secret.updated',
      'project/project.application.config.oidc.added', 'project/project.application.config.oidc.changed',
      'project/project.application.config.oidc.secret.changed', 'project/project.application.config.oidc.secret.updated',
      'project/project.application.config.saml.added', 'project/project.application.config.saml.changed',
      'project/project.application.deactivated', 'project/project.application.reactivated', 'project/project.application.removed',
      'project/project.removed',
    ]);
  });

  it('reduces the app events', () => {
    checkCases({ ...apps, reducers: { project: pick(apps.reducers.project, 'project.application.added', 'project.application.changed', 'project.application.deactivated', 'project.application.reactivated', 'project.application.removed', 'project.removed'), org: apps.reducers.org, instance: apps.reducers.instance } }, [
      { event: p('project.application.added', { appId: 'a1', name: 'spa' }), ops: [{ upsert: T, row: {
        id: 'a1', name: 'spa', project_id: 'p1', creation_date: AT, change_date: AT, resource_owner: 'o1', instance_id: 'i1', state: 1, sequence: 7 } }] },
      { event: p('project.application.changed', { appId: 'a1', name: 'spa2' }), ops: [{ update: T, key: appKey, set: { name: 'spa2', ...BUMP } }] },
      { name: 'changed without a name is a no-op', event: p('project.application.changed', { appId: 'a1', name: '' }), ops: [] },
      { event: p('project.application.deactivated', { appId: 'a1' }), ops: [{ update: T, key: appKey, set: { state: 2, ...BUMP } }] },
      { event: p('project.application.reactivated', { appId: 'a1' }), ops: [{ update: T, key: appKey, set: { state: 1, ...BUMP } }] },
      { event: p('project.application.removed', { appId: 'a1' }), ops: [{ delete: T, key: appKey }] },
      { event: p('project.removed'), ops: [{ deleteWhere: T, match: { instance_id: 'i1', project_id: 'p1' } }] },
      { event: event('org', 'o1', 'org.removed'), ops: [{ deleteWhere: T, match: { instance_id: 'i1', resource_owner: 'o1' } }] },
      { event: event('instance', 'i1', 'instance.removed'), ops: [
        { deleteWhere: T, match: { instance_id: 'i1' } }, { deleteWhere: API, match: { instance_id: 'i1' } },
        { deleteWhere: OIDC, match: { instance_id: 'i1' } }, { deleteWhere: SAML, match: { instance_id: 'i1' } }] },
    ]);
  });

  it('reduces the API config events (secrets: hashedSecret, or the legacy Crypted bytes as text)', () => {
    checkCases({ ...apps, reducers: { project: pick(apps.reducers.project, `${prefix}.api.added`, `${prefix}.api.changed`, `${prefix}.api.secret.changed`, `${prefix}.api.secret.updated`) } }, [
      { event: p(`${prefix}.api.added`, { appId: 'a1', clientId: 'api@p1', hashedSecret: '$2a$10$hash', authMethodType: 1 }), ops: [
        { upsert: API, row: { app_id: 'a1', instance_id: 'i1', client_id: 'api@p1', client_secret: '$2a$10$hash', auth_method: 1 } }, bumpApp] },
      { name: 'api.added with a legacy secret object: its Crypted bytes, and it wins over hashedSecret',
        event: p(`${prefix}.api.added`, { appId: 'a1', clientId: 'api@p1', clientSecret: legacy('$2a$10$legacy'), hashedSecret: 'ignored' }), ops: [
          { upsert: API, row: { app_id: 'a1', instance_id: 'i1', client_id: 'api@p1', client_secret: '$2a$10$legacy', auth_method: 0 } }, bumpApp] },
      { name: 'api.added without any secret writes \'\' (not NULL)', event: p(`${prefix}.api.added`, { appId: 'a1' }), ops: [
        { upsert: API, row: { app_id: 'a1', instance_id: 'i1', client_id: '', client_secret: '', auth_method: 0 } }, bumpApp] },
      { name: 'a legacy secret whose bytes are not UTF-8 fails (PostgreSQL rejects such text)',
        event: p(`${prefix}.api.added`, { appId: 'a1', clientSecret: legacy(Buffer.from([0xff, 0xfe, 0x41])) }), fails: /not UTF-8/ },
      { name: 'a legacy secret that is not base64 fails (Go cannot decode it)',
        event: p(`${prefix}.api.added`, { appId: 'a1', clientSecret: { Crypted: 'not base64!' } }), fails: /base64/ },
      { event: p(`${prefix}.api.changed`, { appId: 'a1', authMethodType: 0 }), ops: [{ update: API, key: configKey, set: { auth_method: 0 } }, bumpApp] },
      { name: 'api.changed without authMethodType is a no-op', event: p(`${prefix}.api.changed`, { appId: 'a1' }), ops: [] },
      { event: p(`${prefix}.api.secret.changed`, { appId: 'a1', hashedSecret: 'h2' }), ops: [{ update: API, key: configKey, set: { client_secret: 'h2' } }, bumpApp] },
      { name: 'api.secret.changed with a legacy secret', event: p(`${prefix}.api.secret.changed`, { appId: 'a1', clientSecret: legacy('old-crypted') }),
        ops: [{ update: API, key: configKey, set: { client_secret: 'old-crypted' } }, bumpApp] },
      { event: p(`${prefix}.api.secret.updated`, { appId: 'a1', hashedSecret: 'h3' }), ops: [{ update: API, key: configKey, set: { client_secret: 'h3' } }, bumpApp] },
    ]);
  });

  it('reduces the OIDC config events (absent scalars 0/false/\'\', empty arrays NULL, clock skew in ns)', () => {
    const zero = {
      version: 0, client_id: '', client_secret: '', redirect_uris: null, response_types: null, grant_types: null, application_type: 0,
      auth_method_type: 0, post_logout_redirect_uris: null, is_dev_mode: false, access_token_type: 0, access_token_role_assertion: false,
      id_token_role_assertion: false, id_token_userinfo_assertion: false, clock_skew: 0, additional_origins: null,
      skip_native_app_success_page: false, back_channel_logout_uri: '', login_version: 0, login_base_uri: '',
    };
    checkCases({ ...apps, reducers: { project: pick(apps.reducers.project, `${prefix}.oidc.added`, `${prefix}.oidc.changed`, `${prefix}.oidc.secret.changed`, `${prefix}.oidc.secret.updated`) } }, [
      { event: p(`${prefix}.oidc.added`, {
        appId: 'a1', oidcVersion: 0, clientId: 'cid@p1', hashedSecret: 'hs', redirectUris: ['https://a/cb', 'https://a/cb2'], responseTypes: [0, 1],
        grantTypes: [0, 2], applicationType: 1, authMethodType: 2, postLogoutRedirectUris: [], devMode: true, accessTokenType: 1,
        accessTokenRoleAssertion: true, idTokenRoleAssertion: false, idTokenUserinfoAssertion: true, clockSkew: 1_500_000_000,
        additionalOrigins: ['https://b'], skipNativeAppSuccessPage: true, backChannelLogoutURI: 'https://a/bcl', loginVersion: 2, loginBaseURI: 'https://login/',
      }), ops: [{ upsert: OIDC, row: {
        app_id: 'a1', instance_id: 'i1', version: 0, client_id: 'cid@p1', client_secret: 'hs', redirect_uris: ['https://a/cb', 'https://a/cb2'],
        response_types: [0, 1], grant_types: [0, 2], application_type: 1, auth_method_type: 2, post_logout_redirect_uris: null, is_dev_mode: true,
        access_token_type: 1, access_token_role_assertion: true, id_token_role_assertion: false, id_token_userinfo_assertion: true,
        clock_skew: 1_500_000_000, additional_origins: ['https://b'], skip_native_app_success_page: true, back_channel_logout_uri: 'https://a/bcl',
        login_version: 2, login_base_uri: 'https://login/' } }, bumpApp] },
      { name: 'oidc.added with nothing but the app id', event: p(`${prefix}.oidc.added`, { appId: 'a1' }), ops: [
        { upsert: OIDC, row: { app_id: 'a1', instance_id: 'i1', ...zero } }, bumpApp] },
      { event: p(`${prefix}.oidc.changed`, { appId: 'a1', redirectUris: [], grantTypes: [1], clockSkew: 0, devMode: false, loginBaseURI: 'https://l2', clientId: 'not changeable' }),
        ops: [{ update: OIDC, key: configKey, set: { redirect_uris: null, grant_types: [1], clock_skew: 0, is_dev_mode: false, login_base_uri: 'https://l2' } }, bumpApp] },
      { name: 'oidc.changed with every other key present', event: p(`${prefix}.oidc.changed`, {
        appId: 'a1', oidcVersion: 1, responseTypes: [2], applicationType: 2, authMethodType: 3, postLogoutRedirectUris: ['https://out'], accessTokenType: 0,
        accessTokenRoleAssertion: false, idTokenRoleAssertion: true, idTokenUserinfoAssertion: false, additionalOrigins: ['https://c'],
        skipNativeAppSuccessPage: false, backChannelLogoutURI: '', loginVersion: 1 }),
        ops: [{ update: OIDC, key: configKey, set: {
          version: 1, response_types: [2], application_type: 2, auth_method_type: 3, post_logout_redirect_uris: ['https://out'], access_token_type: 0,
          access_token_role_assertion: false, id_token_role_assertion: true, id_token_userinfo_assertion: false, additional_origins: ['https://c'],
          skip_native_app_success_page: false, back_channel_logout_uri: '', login_version: 1 } }, bumpApp] },
      { name: 'oidc.changed with no known key is a no-op', event: p(`${prefix}.oidc.changed`, { appId: 'a1', clientId: 'x' }), ops: [] },
      { event: p(`${prefix}.oidc.secret.changed`, { appId: 'a1', clientSecret: legacy('enc') }), ops: [{ update: OIDC, key: configKey, set: { client_secret: 'enc' } }, bumpApp] },
      { event: p(`${prefix}.oidc.secret.updated`, { appId: 'a1', hashedSecret: 'h4' }), ops: [{ update: OIDC, key: configKey, set: { client_secret: 'h4' } }, bumpApp] },
    ]);
  });

  it('reduces the SAML config events (metadata: base64 in JSON, bytes in the table)', () => {
    checkCases({ ...apps, reducers: { project: pick(apps.reducers.project, `${prefix}.saml.added`, `${prefix}.saml.changed`) } }, [
      { event: p(`${prefix}.saml.added`, { appId: 'a1', entityId: 'https://sp', metadata: b64('<xml/>'), metadata_url: 'https://sp/md' }), ops: [
        { upsert: SAML, row: { app_id: 'a1', instance_id: 'i1', entity_id: 'https://sp', metadata: '\\x3c786d6c2f3e', metadata_url: 'https://sp/md' } }, bumpApp] },
      { name: 'saml.added without a metadata URL writes \'\'', event: p(`${prefix}.saml.added`, { appId: 'a1', entityId: 'e', metadata: '' }), ops: [
        { upsert: SAML, row: { app_id: 'a1', instance_id: 'i1', entity_id: 'e', metadata: '\\x', metadata_url: '' } }, bumpApp] },
      { name: 'saml.added without metadata fails (NOT NULL)', event: p(`${prefix}.saml.added`, { appId: 'a1', entityId: 'e' }), fails: /metadata must not be null/ },
      { event: p(`${prefix}.saml.changed`, { appId: 'a1', metadata: b64('<a/>'), metadata_url: '', entityId: '' }), ops: [
        { update: SAML, key: configKey, set: { metadata: '\\x3c612f3e', metadata_url: '' } }, bumpApp] },
      { name: 'saml.changed with a new entity id', event: p(`${prefix}.saml.changed`, { appId: 'a1', entityId: 'https://sp2' }), ops: [
        { update: SAML, key: configKey, set: { entity_id: 'https://sp2' } }, bumpApp] },
      { name: 'saml.changed with nothing to change is a no-op', event: p(`${prefix}.saml.changed`, { appId: 'a1', entityId: '' }), ops: [] },
    ]);
  });
});

/** The reducers of some event types only (each group's cases then cover exactly that group). */
function pick<T>(reducers: Readonly<Record<string, T>>, ...types: string[]): Record<string, T> {
  for (const t of types) if (!reducers[t]) throw new Error(`no reducer for ${t}`);
  return Object.fromEntries(types.map((t) => [t, reducers[t]]));
}
