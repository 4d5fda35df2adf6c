import { optBool, optInt, optString, payloadOf } from '../payload.js';
import type { ProjectionDefinition, ProjectionEvent, ProjectionWriter, Reducer, Row } from '../types.js';
import { ACTIVE, big, bool, changed, created, INACTIVE, instanceRemoved, setState, small, text, ts } from './common.js';

const U = 'projections.users14';
const H = 'projections.users14_humans';
const HUMAN = 1;
const MACHINE = 2;
const LOCKED = 4;
const INITIAL = 6;

const userKey = (e: ProjectionEvent) => ({ instance_id: e.instanceId, id: e.aggregateId });
const humanKey = (e: ProjectionEvent) => ({ instance_id: e.instanceId, user_id: e.aggregateId });
const emptyToNull = (v: string | undefined) => (v ? v : null);
const language = (v: string | undefined) => (v && v !== 'und' ? v : null);
const gender = (v: number | undefined) => (v !== undefined && v >= 1 && v <= 3 ? v : null);

function humanAdded(e: ProjectionEvent, w: ProjectionWriter): void {
  const p = payloadOf(e);
  const userName = optString(p, 'userName') ?? '';
  const hash = optString(p, 'encodedHash') ?? (p.secret !== undefined && p.secret !== null ? 'secret' : undefined);
  const phone = emptyToNull(optString(p, 'phone'));
  w.upsert(U, { ...userKey(e), ...created(e), state: ACTIVE, resource_owner: e.owner, username: userName, type: HUMAN });
  w.upsert(H, {
    ...humanKey(e),
    first_name: optString(p, 'firstName') ?? '',
    last_name: optString(p, 'lastName') ?? '',
    nick_name: emptyToNull(optString(p, 'nickName')),
    display_name: emptyToNull(optString(p, 'displayName')),
    preferred_language: language(optString(p, 'preferredLanguage')),
    gender: gender(optInt(p, 'gender')),
    email: optString(p, 'email') ?? '',
    is_email_verified: false,
    phone,
    is_phone_verified: phone === null ? null : false,
    password_change_required: optBool(p, 'changeRequired') ?? false,
    password_changed: hash ? e.createdAt : null,
  });
}

/** A change of the human row that also records the change on the user row. */
const human = (set: (p: Readonly<Record<string, unknown>>, e: ProjectionEvent) => Row, bumpUser = true): Reducer => (e, w) => {
  const values = set(payloadOf(e), e);
  if (bumpUser) w.update(U, userKey(e), changed(e));
  if (Object.values(values).some((v) => v !== undefined)) w.update(H, humanKey(e), values);
};

function profileChanged(p: Readonly<Record<string, unknown>>): Row {
  const has = (k: string) => p[k] !== undefined;
  return {
    first_name: optString(p, 'firstName') || undefined,
    last_name: optString(p, 'lastName') || undefined,
    nick_name: has('nickName') ? emptyToNull(optString(p, 'nickName')) : undefined,
    display_name: has('displayName') ? emptyToNull(optString(p, 'displayName')) : undefined,
    preferred_language: has('preferredLanguage') ? language(optString(p, 'preferredLanguage')) : undefined,
    gender: has('gender') ? gender(optInt(p, 'gender')) : undefined,
  };
}

const userName: Reducer = (e, w) => {
  const name = optString(payloadOf(e), 'userName');
  if (name === undefined) throw new TypeError(`${e.eventType} has no userName`);
  w.update(U, userKey(e), { username: name, ...changed(e) });
};

/** Event types with their v1 aliases. */
const both = (v2: string, v1: string, r: Reducer): Record<string, Reducer> => ({ [v2]: r, [v1]: r });

const MFA_CLEARING = [
  'user.human.mfa.otp.verified', 'user.mfa.otp.verified', 'user.human.otp.sms.added', 'user.human.otp.email.added',
  'user.human.mfa.u2f.token.verified', 'user.human.passwordless.token.verified',
];

/** `projections.users14` with `users14_humans` (spec zitadel-events.md §4.5). */
export const users: ProjectionDefinition = {
  name: U,
  tables: [
    {
      name: U,
      columns: [
        text('id'), ts('creation_date'), ts('change_date'), big('sequence'), small('state'), text('resource_owner'),
        text('instance_id'), text('username'), small('type'),
      ],
      primaryKey: ['instance_id', 'id'],
      indexes: { users14_username_idx: ['username'], users14_resource_owner_idx: ['resource_owner'] },
    },
    {
      name: H,
      columns: [
        text('user_id'), text('instance_id'), text('first_name'), text('last_name'),
        text('nick_name', { nullable: true }), text('display_name', { nullable: true }), text('preferred_language', { nullable: true }),
        small('gender', { nullable: true }), text('avatar_key', { nullable: true }), text('email'),
        bool('is_email_verified', { default: false }), text('phone', { nullable: true }), bool('is_phone_verified', { nullable: true }),
        bool('password_change_required'), ts('password_changed', { nullable: true }), ts('mfa_init_skipped', { nullable: true }),
      ],
      primaryKey: ['instance_id', 'user_id'],
      parent: { table: U, columns: { instance_id: 'instance_id', user_id: 'id' }, constraint: 'fk_humans_ref_users14' },
    },
  ],
  reducers: {
    user: {
      ...both('user.human.added', 'user.added', humanAdded),
      ...both('user.human.selfregistered', 'user.selfregistered', humanAdded),
      'user.machine.added': (e, w) =>
        w.upsert(U, { ...userKey(e), ...created(e), state: ACTIVE, resource_owner: e.owner, username: optString(payloadOf(e), 'userName') ?? '', type: MACHINE }),
      'user.machine.changed': (e, w) => w.update(U, userKey(e), changed(e)),
      // Initialisation moves the state only; the reference leaves change_date and sequence alone here.
      ...both('user.human.initialization.code.added', 'user.initialization.code.added', setState(U, INITIAL, false)),
      ...both('user.human.initialization.check.succeeded', 'user.initialization.check.succeeded', setState(U, ACTIVE, false)),
      'user.locked': setState(U, LOCKED),
      'user.unlocked': setState(U, ACTIVE),
      'user.deactivated': setState(U, INACTIVE),
      'user.reactivated': setState(U, ACTIVE),
      'user.removed': (e, w) => w.delete(U, userKey(e)),
      'user.username.changed': userName,
      'user.domain.claimed': userName,
      ...both('user.human.profile.changed', 'user.profile.changed', human(profileChanged)),
      ...both('user.human.email.changed', 'user.email.changed', human((p) => ({ email: optString(p, 'email') ?? '', is_email_verified: false }))),
      ...both('user.human.email.verified', 'user.email.verified', human(() => ({ is_email_verified: true }))),
      ...both('user.human.phone.changed', 'user.phone.changed', human((p) => ({ phone: optString(p, 'phone') ?? '', is_phone_verified: false }))),
      ...both('user.human.phone.removed', 'user.phone.removed', human(() => ({ phone: null, is_phone_verified: null }))),
      ...both('user.human.phone.verified', 'user.phone.verified', human(() => ({ is_phone_verified: true }))),
      'user.human.avatar.added': human((p) => ({ avatar_key: optString(p, 'storeKey') ?? null })),
      'user.human.avatar.removed': human(() => ({ avatar_key: null })),
      // The password change is recorded on the human row only (users14 change_date/sequence untouched).
      ...both('user.human.password.changed', 'user.password.changed', human((p, e) => ({
        password_change_required: optBool(p, 'changeRequired') ?? false, password_changed: e.createdAt,
      }), false)),
      ...both('user.human.mfa.init.skipped', 'user.mfa.init.skipped', human((_p, e) => ({ mfa_init_skipped: e.createdAt }))),
      ...Object.fromEntries(MFA_CLEARING.map((t) => [t, human(() => ({ mfa_init_skipped: null }))])),
    },
    org: { 'org.removed': (e, w) => w.deleteWhere(U, { instance_id: e.instanceId, resource_owner: e.aggregateId }) },
    instance: { 'instance.removed': instanceRemoved(U, H) },
  },
};
