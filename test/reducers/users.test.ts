import { describe, expect, it } from 'vitest';
import { users } from '../../src/projections/builtin/users.js';
import { compileProjection } from '../../src/projections/model.js';
import { AT, BUMP, checkCases, event, reduce, subscriptions } from './support.js';

// Expected changes written by hand from zitadel-handoff.md §3.1 and §3.6, one case (or more) per event type.

const U = 'projections.users14';
const H = 'projections.users14_humans';
const M = 'projections.users14_machines';
const N = 'projections.users14_notifications';
const u = (type: string, payload?: unknown) => event('user', 'u1', type, payload);
const userKey = { instance_id: 'i1', id: 'u1' };
const key = { instance_id: 'i1', user_id: 'u1' };
const bumpUser = { update: U, key: userKey, set: BUMP };
const b64 = (s: string) => Buffer.from(s).toString('base64');
const legacy = (crypted: string) => ({ CryptoType: 1, Algorithm: 'bcrypt', KeyID: 'k1', Crypted: b64(crypted) });
const userRow = (type: number, username: string) =>
  ({ id: 'u1', creation_date: AT, change_date: AT, sequence: 7, state: 1, resource_owner: 'o1', instance_id: 'i1', username, type });
const humanRow = (row: Record<string, unknown>) => ({ upsert: H, row: {
  user_id: 'u1', instance_id: 'i1', first_name: '', last_name: '', nick_name: null, display_name: null, preferred_language: null, gender: null,
  avatar_key: null, email: '', is_email_verified: false, phone: null, is_phone_verified: null, password_change_required: false,
  password_changed: null, mfa_init_skipped: null, ...row } });
const notificationRow = (row: Record<string, unknown>) => ({ upsert: N, row: {
  user_id: 'u1', instance_id: 'i1', last_email: '', verified_email: null, last_phone: null, verified_phone: null, password_set: false, ...row } });

const SUBSCRIBED = [
  'instance/instance.removed', 'org/org.removed',
  'user/user.added', 'user/user.deactivated', 'user/user.domain.claimed', 'user/user.email.changed', 'user/user.email.verified',
  'user/user.human.added', 'user/user.human.avatar.added', 'user/user.human.avatar.removed', 'user/user.human.email.changed',
  'user/user.human.email.verified', 'user/user.human.initialization.check.succeeded', 'user/user.human.initialization.code.added',
  'user/user.human.mfa.init.skipped', 'user/user.human.mfa.otp.email.added', 'user/user.human.mfa.otp.sms.added',
  'user/user.human.mfa.otp.verified', 'user/user.human.mfa.u2f.token.verified', 'user/user.human.password.changed',
  'user/user.human.passwordless.token.verified', 'user/user.human.phone.changed', 'user/user.human.phone.removed',
  'user/user.human.phone.verified', 'user/user.human.profile.changed', 'user/user.human.selfregistered',
  'user/user.initialization.check.succeeded', 'user/user.initialization.code.added', 'user/user.locked',
  'user/user.machine.added', 'user/user.machine.changed', 'user/user.machine.secret.removed', 'user/user.machine.secret.set',
  'user/user.machine.secret.updated', 'user/user.mfa.otp.init.skipped', 'user/user.mfa.otp.verified', 'user/user.phone.changed',
  'user/user.phone.removed', 'user/user.phone.verified', 'user/user.profile.changed', 'user/user.reactivated', 'user/user.removed',
  'user/user.selfregistered', 'user/user.unlocked', 'user/user.username.changed',
];

describe('projections.users14 family (§3.6)', () => {
  it('subscribes to exactly the listed events', () => {
    expect(subscriptions(users)).toEqual(SUBSCRIBED);
  });

  it('does not take the events the spec lists as not subscribed', () => {
    const model = compileProjection(users);
    for (const type of ['user.password.changed', 'user.mfa.init.skipped', 'user.human.otp.sms.added', 'user.human.mfa.otp.added',
      'user.mfa.otp.added', 'user.machine.secret.check.succeeded', 'user.machine.secret.check.failed', 'user.human.password.check.succeeded',
      'user.token.added', 'user.pat.added']) {
      expect(reduce(model, u(type, { changeRequired: true })), type).toEqual([]);
    }
  });

  it('reduces the user creations: users14, humans and notifications rows, machines rows', () => {
    checkCases({ ...users, reducers: { user: pick(users.reducers.user, 'user.human.added', 'user.added', 'user.human.selfregistered', 'user.selfregistered', 'user.machine.added') } }, [
      { event: u('user.human.added', {
        userName: 'ada', firstName: 'Ada', lastName: 'Lovelace', nickName: '', displayName: 'Ada L', preferredLanguage: 'und', gender: 0,
        email: 'ada@x.test', phone: '', changeRequired: true, encodedHash: '$argon2id$v=19$x' }), ops: [
        { upsert: U, row: userRow(1, 'ada') },
        humanRow({ first_name: 'Ada', last_name: 'Lovelace', display_name: 'Ada L', email: 'ada@x.test', password_change_required: true, password_changed: AT }),
        notificationRow({ last_email: 'ada@x.test', password_set: true }),
      ] },
      { name: 'v1 user.added with a legacy password secret, an empty e-mail and a phone', event: u('user.added', {
        userName: 'old', email: '', phone: '+41 79 000 00 00', preferredLanguage: 'de', gender: 2, secret: legacy('$2a$10$pw') }), ops: [
        { upsert: U, row: userRow(1, 'old') },
        humanRow({ preferred_language: 'de', gender: 2, phone: '+41 79 000 00 00', password_changed: AT }),
        // last_email is '' (not NULL) on creation; last_phone is NULL only when empty.
        notificationRow({ last_email: '', last_phone: '+41 79 000 00 00', password_set: true }),
      ] },
      { event: u('user.human.selfregistered', { userName: 'self', firstName: 'S', email: 's@x', gender: 3, nickName: 'sy' }), ops: [
        { upsert: U, row: userRow(1, 'self') },
        humanRow({ first_name: 'S', nick_name: 'sy', gender: 3, email: 's@x' }),
        notificationRow({ last_email: 's@x' }),
      ] },
      { name: 'v1 user.selfregistered: unknown gender, empty legacy secret', event: u('user.selfregistered', { userName: 'v1', gender: 4, secret: { Crypted: '' } }), ops: [
        { upsert: U, row: userRow(1, 'v1') }, humanRow({}), notificationRow({}),
      ] },
      { event: u('user.machine.added', { userName: 'bot', name: 'Bot', description: '', accessTokenType: 1 }), ops: [
        { upsert: U, row: userRow(2, 'bot') },
        { upsert: M, row: { user_id: 'u1', instance_id: 'i1', name: 'Bot', description: null, secret: null, access_token_type: 1 } },
      ] },
      { name: 'user.machine.added with only a user name', event: u('user.machine.added', { userName: 'bot2', description: 'a bot' }), ops: [
        { upsert: U, row: userRow(2, 'bot2') },
        { upsert: M, row: { user_id: 'u1', instance_id: 'i1', name: '', description: 'a bot', secret: null, access_token_type: 0 } },
      ] },
    ]);
  });

  it('reduces the state and user-row events (initialisation without a bump)', () => {
    const state = (s: number, bump = true) => [{ update: U, key: userKey, set: bump ? { state: s, ...BUMP } : { state: s } }];
    checkCases({ ...users, reducers: {
      user: pick(users.reducers.user, 'user.human.initialization.code.added', 'user.initialization.code.added', 'user.human.initialization.check.succeeded',
        'user.initialization.check.succeeded', 'user.locked', 'user.unlocked', 'user.deactivated', 'user.reactivated', 'user.removed',
        'user.username.changed', 'user.domain.claimed'),
      org: users.reducers.org, instance: users.reducers.instance,
    } }, [
      { event: u('user.human.initialization.code.added', { code: {} }), ops: state(6, false) },
      { event: u('user.initialization.code.added'), ops: state(6, false) },
      { event: u('user.human.initialization.check.succeeded'), ops: state(1, false) },
      { event: u('user.initialization.check.succeeded'), ops: state(1, false) },
      { event: u('user.locked'), ops: state(4) },
      { event: u('user.unlocked'), ops: state(1) },
      { event: u('user.deactivated'), ops: state(2) },
      { event: u('user.reactivated'), ops: state(1) },
      { event: u('user.removed'), ops: [{ delete: U, key: userKey }] },
      { event: u('user.username.changed', { userName: 'ada.l' }), ops: [{ update: U, key: userKey, set: { username: 'ada.l', ...BUMP } }] },
      { event: u('user.domain.claimed', { userName: 'u1@tmp' }), ops: [{ update: U, key: userKey, set: { username: 'u1@tmp', ...BUMP } }] },
      { event: event('org', 'o1', 'org.removed'), ops: [{ deleteWhere: U, match: { instance_id: 'i1', resource_owner: 'o1' } }] },
      { event: event('instance', 'i1', 'instance.removed'), ops: [U, H, M, N].map((t) => ({ deleteWhere: t, match: { instance_id: 'i1' } })) },
    ]);
  });

  it('reduces the human events', () => {
    checkCases({ ...users, reducers: { user: pick(users.reducers.user, 'user.human.profile.changed', 'user.profile.changed', 'user.human.email.changed',
      'user.email.changed', 'user.human.email.verified', 'user.email.verified', 'user.human.phone.changed', 'user.phone.changed', 'user.human.phone.removed',
      'user.phone.removed', 'user.human.phone.verified', 'user.phone.verified', 'user.human.avatar.added', 'user.human.avatar.removed',
      'user.human.password.changed') } }, [
      { name: 'profile.changed: empty first name skipped, the others stored as given (\'\', und, 0 kept)',
        event: u('user.human.profile.changed', { firstName: '', lastName: 'L2', nickName: '', displayName: 'D', preferredLanguage: 'und', gender: 0 }),
        ops: [bumpUser, { update: H, key, set: { last_name: 'L2', nick_name: '', display_name: 'D', preferred_language: 'und', gender: 0 } }] },
      { event: u('user.profile.changed', { firstName: 'A' }), ops: [bumpUser, { update: H, key, set: { first_name: 'A' } }] },
      { name: 'profile.changed without a human column fails (the reference\'s "no values"), bump included',
        event: u('user.human.profile.changed', { firstName: '' }), fails: /changes no column/ },
      { event: u('user.human.email.changed', { email: 'new@x' }), ops: [
        bumpUser, { update: H, key, set: { email: 'new@x', is_email_verified: false } }, { update: N, key, set: { last_email: 'new@x' } }] },
      { name: 'v1 email.changed to empty: humans \'\', notifications NULL', event: u('user.email.changed', { email: '' }), ops: [
        bumpUser, { update: H, key, set: { email: '', is_email_verified: false } }, { update: N, key, set: { last_email: null } }] },
      // §3.6: notifications.verified_email := last_email (a same-row copy).
      { event: u('user.human.email.verified'), ops: [bumpUser, { update: H, key, set: { is_email_verified: true } }, { copy: N, key, columns: { verified_email: 'last_email' } }] },
      { event: u('user.email.verified'), ops: [bumpUser, { update: H, key, set: { is_email_verified: true } }, { copy: N, key, columns: { verified_email: 'last_email' } }] },
      { event: u('user.human.phone.changed', { phone: '+1 555' }), ops: [
        bumpUser, { update: H, key, set: { phone: '+1 555', is_phone_verified: false } }, { update: N, key, set: { last_phone: '+1 555' } }] },
      { event: u('user.phone.changed', { phone: '' }), ops: [
        bumpUser, { update: H, key, set: { phone: '', is_phone_verified: false } }, { update: N, key, set: { last_phone: null } }] },
      ...['user.human.phone.removed', 'user.phone.removed'].map((t) => ({ event: u(t), ops: [
        bumpUser, { update: H, key, set: { phone: null, is_phone_verified: null } }, { update: N, key, set: { last_phone: null, verified_phone: null } }] })),
      // verified_phone := last_phone: a same-row copy, as for the e-mail.
      ...['user.human.phone.verified', 'user.phone.verified'].map((t) => ({ event: u(t), ops: [bumpUser, { update: H, key, set: { is_phone_verified: true } }, { copy: N, key, columns: { verified_phone: 'last_phone' } }] })),
      { event: u('user.human.avatar.added', { storeKey: 'i1/u1/avatar' }), ops: [bumpUser, { update: H, key, set: { avatar_key: 'i1/u1/avatar' } }] },
      { event: u('user.human.avatar.removed'), ops: [bumpUser, { update: H, key, set: { avatar_key: null } }] },
      { name: 'password.changed: human and notification rows, no users14 bump', event: u('user.human.password.changed', { encodedHash: 'h', changeRequired: true }), ops: [
        { update: H, key, set: { password_change_required: true, password_changed: AT } }, { update: N, key, set: { password_set: true } }] },
      { name: 'password.changed without changeRequired', event: u('user.human.password.changed', { encodedHash: 'h' }), ops: [
        { update: H, key, set: { password_change_required: false, password_changed: AT } }, { update: N, key, set: { password_set: true } }] },
    ]);
  });

  it('reduces the machine events (secret from hashedSecret or the legacy Crypted bytes)', () => {
    const machine = (set: Record<string, unknown>) => [bumpUser, { update: M, key, set }];
    checkCases({ ...users, reducers: { user: pick(users.reducers.user, 'user.machine.changed', 'user.machine.secret.set', 'user.machine.secret.updated', 'user.machine.secret.removed') } }, [
      { event: u('user.machine.changed', { name: 'Bot2', description: '' }), ops: machine({ name: 'Bot2', description: '' }) },
      { name: 'machine.changed: access token type only', event: u('user.machine.changed', { accessTokenType: 0 }), ops: machine({ access_token_type: 0 }) },
      { name: 'machine.changed with nothing known is a no-op', event: u('user.machine.changed', {}), ops: [] },
      { event: u('user.machine.secret.set', { hashedSecret: '$2a$10$m' }), ops: machine({ secret: '$2a$10$m' }) },
      { name: 'secret.set with a legacy secret', event: u('user.machine.secret.set', { clientSecret: legacy('crypted-secret') }), ops: machine({ secret: 'crypted-secret' }) },
      { event: u('user.machine.secret.updated', { hashedSecret: '$argon2$m' }), ops: machine({ secret: '$argon2$m' }) },
      { event: u('user.machine.secret.removed'), ops: machine({ secret: null }) },
    ]);
  });

  it('reduces the MFA events without a bump', () => {
    checkCases({ ...users, reducers: { user: pick(users.reducers.user, 'user.human.mfa.init.skipped', 'user.mfa.otp.init.skipped', 'user.human.mfa.otp.verified',
      'user.mfa.otp.verified', 'user.human.mfa.otp.sms.added', 'user.human.mfa.otp.email.added', 'user.human.mfa.u2f.token.verified', 'user.human.passwordless.token.verified') } }, [
      ...['user.human.mfa.init.skipped', 'user.mfa.otp.init.skipped'].map((t) => ({ event: u(t), ops: [{ update: H, key, set: { mfa_init_skipped: AT } }] })),
      ...['user.human.mfa.otp.verified', 'user.mfa.otp.verified', 'user.human.mfa.otp.sms.added', 'user.human.mfa.otp.email.added',
        'user.human.mfa.u2f.token.verified', 'user.human.passwordless.token.verified'].map((t) => ({ event: u(t), ops: [{ update: H, key, set: { mfa_init_skipped: null } }] })),
    ]);
  });
});

function pick<T>(reducers: Readonly<Record<string, T>>, ...types: string[]): Record<string, T> {
  for (const t of types) if (!reducers[t]) throw new Error(`no reducer for ${t}`);
  return Object.fromEntries(types.map((t) => [t, reducers[t]]));
}
