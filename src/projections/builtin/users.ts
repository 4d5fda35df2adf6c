import { hasSecretOrEncodedHash, optBool, optInt, optString, payloadOf, secretOrEncodedHash } from '../payload.js';
import type { ProjectionDefinition, ProjectionEvent, ProjectionWriter, Reducer, Row } from '../types.js';
import { ACTIVE, big, bool, changed, childOf, created, emptyToNull, INACTIVE, instanceRemoved, setState, small, text, ts } from './common.js';

const U = 'projections.users14';
const H = 'projections.users14_humans';
const M = 'projections.users14_machines';
const N = 'projections.users14_notifications';
const HUMAN = 1;
const MACHINE = 2;
const LOCKED = 4;
const INITIAL = 6;
type Payload = Readonly<Record<string, unknown>>;

const userKey = (e: ProjectionEvent) => ({ instance_id: e.instanceId, id: e.aggregateId });
const childKey = (e: ProjectionEvent) => ({ instance_id: e.instanceId, user_id: e.aggregateId });
/** NULL for the root language (`und`), the reference's `Valid: !tag.IsRoot()`. */
const language = (v: string | undefined) => (v && v !== 'und' ? v : null);
/** NULL unless female (1), male (2) or diverse (3), the reference's `Gender.Specified()`. */
const gender = (v: number | undefined) => (v !== undefined && v >= 1 && v <= 3 ? v : null);

/** user.human.added / .selfregistered and their v1 forms: the user, human and notification rows. */
function humanAdded(e: ProjectionEvent, w: ProjectionWriter): void {
  const p = payloadOf(e);
  const email = optString(p, 'email') ?? '';
  const phone = emptyToNull(optString(p, 'phone'));
  const passwordSet = hasSecretOrEncodedHash(p, 'secret', 'encodedHash');
  w.upsert(U, { ...userKey(e), ...created(e), state: ACTIVE, resource_owner: e.owner, username: optString(p, 'userName') ?? '', type: HUMAN });
  w.upsert(H, {
    ...childKey(e),
    first_name: optString(p, 'firstName') ?? '',
    last_name: optString(p, 'lastName') ?? '',
    nick_name: emptyToNull(optString(p, 'nickName')),
    display_name: emptyToNull(optString(p, 'displayName')),
    preferred_language: language(optString(p, 'preferredLanguage')),
    gender: gender(optInt(p, 'gender')),
    email,
    phone,
    password_change_required: optBool(p, 'changeRequired') ?? false,
    password_changed: passwordSet ? e.createdAt : null,
  });
  // last_email keeps '' for an absent address (a plain string in the reference), last_phone does not.
  w.upsert(N, { ...childKey(e), last_email: email, last_phone: phone, password_set: passwordSet });
}

/** What one event sets on the human and notification rows; `bump` also records the change on the user row. */
interface HumanChange {
  readonly human?: Row;
  readonly notification?: Row;
}

const human = (change: (p: Payload, e: ProjectionEvent) => HumanChange, bump = true): Reducer => (e, w) => {
  const c = change(payloadOf(e), e);
  if (bump) w.update(U, userKey(e), changed(e));
  if (c.human) w.update(H, childKey(e), c.human);
  if (c.notification) w.update(N, childKey(e), c.notification);
};

/** A verification: the human change, and the notification row's verified address copied from its last one. */
const verified = (change: (p: Payload, e: ProjectionEvent) => HumanChange, copy: Readonly<Record<string, string>>): Reducer => (e, w) => {
  human(change)(e, w);
  w.copy(N, childKey(e), copy);
};

/** profile.changed: first/last name if non-empty, the others whenever present, stored as given. */
function profileChanged(p: Payload, e: ProjectionEvent): HumanChange {
  const set: Row = Object.fromEntries(Object.entries({
    first_name: optString(p, 'firstName') || undefined,
    last_name: optString(p, 'lastName') || undefined,
    nick_name: optString(p, 'nickName'),
    display_name: optString(p, 'displayName'),
    preferred_language: optString(p, 'preferredLanguage'),
    gender: optInt(p, 'gender'),
  }).filter(([, v]) => v !== undefined));
  // The reference's update without columns fails its whole statement ("no values"), bump included.
  if (Object.keys(set).length === 0) throw new TypeError(`${e.eventType} changes no column of ${H}`);
  return { human: set };
}

/** A machine row change together with the user row's change. */
const machine = (set: (p: Payload) => Row): Reducer => (e, w) => {
  w.update(U, userKey(e), changed(e));
  w.update(M, childKey(e), set(payloadOf(e)));
};

const userName: Reducer = (e, w) => w.update(U, userKey(e), { username: optString(payloadOf(e), 'userName') ?? '', ...changed(e) });

/** Event types with their v1 aliases. */
const both = (v2: string, v1: string, r: Reducer): Record<string, Reducer> => ({ [v2]: r, [v1]: r });

const MFA_SKIPPED = ['user.human.mfa.init.skipped', 'user.mfa.otp.init.skipped'];
const MFA_ADDED = [
  'user.human.mfa.otp.verified', 'user.mfa.otp.verified', 'user.human.mfa.otp.sms.added', 'user.human.mfa.otp.email.added',
  'user.human.mfa.u2f.token.verified', 'user.human.passwordless.token.verified',
];
const mfaSkipped = human((_p, e) => ({ human: { mfa_init_skipped: e.createdAt } }), false);
const mfaAdded = human(() => ({ human: { mfa_init_skipped: null } }), false);

/**
 * `projections.users14` with `_humans`, `_machines` and `_notifications` (spec zitadel-handoff.md §3.1,
 * §3.6). The child rows reference the user row and go with it (ON DELETE CASCADE).
 */
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
      parent: childOf(U, 'humans', 'user_id'),
    },
    {
      name: M,
      columns: [
        text('user_id'), text('instance_id'), text('name'), text('description', { nullable: true }),
        text('secret', { nullable: true }), small('access_token_type', { default: 0 }),
      ],
      primaryKey: ['instance_id', 'user_id'],
      parent: childOf(U, 'machines', 'user_id'),
    },
    {
      name: N,
      columns: [
        text('user_id'), text('instance_id'), text('last_email', { nullable: true }), text('verified_email', { nullable: true }),
        text('last_phone', { nullable: true }), text('verified_phone', { nullable: true }), bool('password_set', { default: false }),
      ],
      primaryKey: ['instance_id', 'user_id'],
      parent: childOf(U, 'notifications', 'user_id'),
    },
  ],
  reducers: {
    user: {
      ...both('user.human.added', 'user.added', humanAdded),
      ...both('user.human.selfregistered', 'user.selfregistered', humanAdded),
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
      ...both('user.human.email.changed', 'user.email.changed', human((p) => ({
        human: { email: optString(p, 'email') ?? '', is_email_verified: false },
        notification: { last_email: emptyToNull(optString(p, 'email')) },
      }))),
      ...both('user.human.email.verified', 'user.email.verified', verified(() => ({ human: { is_email_verified: true } }), { verified_email: 'last_email' })),
      ...both('user.human.phone.changed', 'user.phone.changed', human((p) => ({
        human: { phone: optString(p, 'phone') ?? '', is_phone_verified: false },
        notification: { last_phone: emptyToNull(optString(p, 'phone')) },
      }))),
      ...both('user.human.phone.removed', 'user.phone.removed', human(() => ({
        human: { phone: null, is_phone_verified: null },
        notification: { last_phone: null, verified_phone: null },
      }))),
      ...both('user.human.phone.verified', 'user.phone.verified', verified(() => ({ human: { is_phone_verified: true } }), { verified_phone: 'last_phone' })),
      'user.human.avatar.added': human((p) => ({ human: { avatar_key: optString(p, 'storeKey') ?? '' } })),
      'user.human.avatar.removed': human(() => ({ human: { avatar_key: null } })),
      // Only the v2 type: the reference has no reducer for v1 user.password.changed. No users14 bump.
      'user.human.password.changed': human((p, e) => ({
        human: { password_change_required: optBool(p, 'changeRequired') ?? false, password_changed: e.createdAt },
        notification: { password_set: true },
      }), false),
      'user.machine.added': (e, w) => {
        const p = payloadOf(e);
        w.upsert(U, { ...userKey(e), ...created(e), state: ACTIVE, resource_owner: e.owner, username: optString(p, 'userName') ?? '', type: MACHINE });
        w.upsert(M, { ...childKey(e), name: optString(p, 'name') ?? '', description: emptyToNull(optString(p, 'description')), access_token_type: optInt(p, 'accessTokenType') ?? 0 });
      },
      'user.machine.changed': (e, w) => {
        const p = payloadOf(e);
        const set: Row = Object.fromEntries(Object.entries({
          name: optString(p, 'name'), description: optString(p, 'description'), access_token_type: optInt(p, 'accessTokenType'),
        }).filter(([, v]) => v !== undefined));
        if (Object.keys(set).length) machine(() => set)(e, w);
      },
      'user.machine.secret.set': machine((p) => ({ secret: secretOrEncodedHash(p, 'clientSecret', 'hashedSecret') })),
      'user.machine.secret.updated': machine((p) => ({ secret: optString(p, 'hashedSecret') ?? '' })),
      'user.machine.secret.removed': machine(() => ({ secret: null })),
      ...Object.fromEntries(MFA_SKIPPED.map((t) => [t, mfaSkipped])),
      ...Object.fromEntries(MFA_ADDED.map((t) => [t, mfaAdded])),
    },
    org: { 'org.removed': (e, w) => w.deleteWhere(U, { instance_id: e.instanceId, resource_owner: e.aggregateId }) },
    // The child tables are listed so that their rows of this batch go at once in memory; in the database
    // the cascade removes them with the users either way.
    instance: { 'instance.removed': instanceRemoved(U, H, M, N) },
  },
};
