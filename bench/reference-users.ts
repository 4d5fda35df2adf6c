/**
 * The reference handler's statements for `projections.users14` (+ humans, machines, notifications) and
 * `projections.milestones3`, from the hand-off fact sheet §3.6 and §3.7 (see bench/reference-statements.ts).
 */
import { bool, bump, Copy, created, crypted, has, insert, nullIfEmpty, num, ofInstance, own, ownerRemoved, p, remove, str, update, type Exec, type Reduce, type RefEvent, type RefProjection, type Values } from './reference-sql.js';

const U = 'projections.users14';
const H = 'projections.users14_humans';
const M = 'projections.users14_machines';
const N = 'projections.users14_notifications';
const ACTIVE = 1;
const INACTIVE = 2;
const LOCKED = 4;
const INITIAL = 6;

const child = (e: RefEvent) => ({ user_id: e.aggregateId, instance_id: e.instanceId });
const userBump = (e: RefEvent) => update(U, bump(e), own(e));
/** `preferredLanguage` as stored at creation: NULL for the root language (absent or `und`). */
const language = (v: string) => (v === '' || v === 'und' ? null : v);
/** `gender`: NULL unless female (1), male (2) or diverse (3). */
const gender = (v: number) => (v >= 1 && v <= 3 ? v : null);
/** Whether the payload carries a password hash (`encodedHash`, or a legacy `secret` crypto value). */
const hasPassword = (e: RefEvent) => str(e, 'encodedHash') !== '' || crypted(p(e).secret) !== '';

function humanAdded(e: RefEvent): Exec[] {
  const phone = nullIfEmpty(str(e, 'phone'));
  return [
    insert(U, { ...own(e), ...created(e), resource_owner: e.owner, state: ACTIVE, username: str(e, 'userName'), type: 1 }),
    insert(H, {
      ...child(e), first_name: str(e, 'firstName'), last_name: str(e, 'lastName'),
      nick_name: nullIfEmpty(str(e, 'nickName')), display_name: nullIfEmpty(str(e, 'displayName')),
      preferred_language: language(str(e, 'preferredLanguage')), gender: gender(num(e, 'gender')),
      email: str(e, 'email'), phone, password_change_required: bool(e, 'changeRequired'),
      password_changed: hasPassword(e) ? e.createdAt : null,
    }),
    insert(N, { ...child(e), last_email: str(e, 'email'), last_phone: phone, password_set: hasPassword(e) }),
  ];
}

/** The user's bump, then the listed child-table updates. */
const bumpAnd = (...parts: [string, (e: RefEvent) => Values][]): Reduce => (e) =>
  [userBump(e), ...parts.map(([table, set]) => update(table, set(e), child(e)))];

function profileChanged(e: RefEvent): Values {
  const set: Values = {};
  if (str(e, 'firstName') !== '') set.first_name = str(e, 'firstName');
  if (str(e, 'lastName') !== '') set.last_name = str(e, 'lastName');
  if (has(e, 'nickName')) set.nick_name = str(e, 'nickName');
  if (has(e, 'displayName')) set.display_name = str(e, 'displayName');
  if (has(e, 'preferredLanguage')) set.preferred_language = str(e, 'preferredLanguage');
  if (has(e, 'gender')) set.gender = num(e, 'gender');
  return set;
}

function machineChanged(e: RefEvent): Exec[] | null {
  const set: Values = {};
  if (has(e, 'name')) set.name = str(e, 'name');
  if (has(e, 'description')) set.description = str(e, 'description');
  if (has(e, 'accessTokenType')) set.access_token_type = num(e, 'accessTokenType');
  return Object.keys(set).length ? [userBump(e), update(M, set, child(e))] : null;
}

const state = (s: number, withBump: boolean): Reduce => (e) => [update(U, { state: s, ...(withBump ? bump(e) : {}) }, own(e))];
const username: Reduce = (e) => [update(U, { username: str(e, 'userName'), ...bump(e) }, own(e))];
const humans = (set: (e: RefEvent) => Values): Reduce => (e) => [update(H, set(e), child(e))];
/** The same reducer under a v2 event type and its v1 alias. */
const both = (v2: string, v1: string, r: Reduce): Record<string, Reduce> => ({ [v2]: r, [v1]: r });

const MFA_CLEARING = [
  'user.human.mfa.otp.verified', 'user.mfa.otp.verified', 'user.human.mfa.otp.sms.added', 'user.human.mfa.otp.email.added',
  'user.human.mfa.u2f.token.verified', 'user.human.passwordless.token.verified',
];

const users: RefProjection = {
  name: U,
  reducers: {
    user: {
      ...both('user.human.added', 'user.added', humanAdded),
      ...both('user.human.selfregistered', 'user.selfregistered', humanAdded),
      ...both('user.human.initialization.code.added', 'user.initialization.code.added', state(INITIAL, false)),
      ...both('user.human.initialization.check.succeeded', 'user.initialization.check.succeeded', state(ACTIVE, false)),
      'user.locked': state(LOCKED, true),
      'user.unlocked': state(ACTIVE, true),
      'user.deactivated': state(INACTIVE, true),
      'user.reactivated': state(ACTIVE, true),
      'user.removed': (e) => [remove(U, own(e))],
      'user.username.changed': username,
      'user.domain.claimed': username,
      ...both('user.human.profile.changed', 'user.profile.changed', bumpAnd([H, profileChanged])),
      ...both('user.human.email.changed', 'user.email.changed', bumpAnd(
        [H, (e) => ({ email: str(e, 'email'), is_email_verified: false })], [N, (e) => ({ last_email: nullIfEmpty(str(e, 'email')) })])),
      ...both('user.human.email.verified', 'user.email.verified', bumpAnd(
        [H, () => ({ is_email_verified: true })], [N, () => ({ verified_email: new Copy('last_email') })])),
      ...both('user.human.phone.changed', 'user.phone.changed', bumpAnd(
        [H, (e) => ({ phone: str(e, 'phone'), is_phone_verified: false })], [N, (e) => ({ last_phone: nullIfEmpty(str(e, 'phone')) })])),
      ...both('user.human.phone.removed', 'user.phone.removed', bumpAnd(
        [H, () => ({ phone: null, is_phone_verified: null })], [N, () => ({ last_phone: null, verified_phone: null })])),
      ...both('user.human.phone.verified', 'user.phone.verified', bumpAnd(
        [H, () => ({ is_phone_verified: true })], [N, () => ({ verified_phone: new Copy('last_phone') })])),
      'user.human.avatar.added': bumpAnd([H, (e) => ({ avatar_key: str(e, 'storeKey') })]),
      'user.human.avatar.removed': bumpAnd([H, () => ({ avatar_key: null })]),
      'user.human.password.changed': (e) => [
        update(H, { password_change_required: bool(e, 'changeRequired'), password_changed: e.createdAt }, child(e)),
        update(N, { password_set: true }, child(e)),
      ],
      'user.machine.added': (e) => [
        insert(U, { ...own(e), ...created(e), resource_owner: e.owner, state: ACTIVE, username: str(e, 'userName'), type: 2 }),
        insert(M, { ...child(e), name: str(e, 'name'), description: nullIfEmpty(str(e, 'description')), access_token_type: num(e, 'accessTokenType') }),
      ],
      'user.machine.changed': machineChanged,
      'user.machine.secret.set': bumpAnd([M, (e) => ({ secret: str(e, 'hashedSecret') || crypted(p(e).clientSecret) })]),
      'user.machine.secret.updated': bumpAnd([M, (e) => ({ secret: str(e, 'hashedSecret') })]),
      'user.machine.secret.removed': bumpAnd([M, () => ({ secret: null })]),
      ...both('user.human.mfa.init.skipped', 'user.mfa.otp.init.skipped', humans((e) => ({ mfa_init_skipped: e.createdAt }))),
      ...Object.fromEntries(MFA_CLEARING.map((t) => [t, humans(() => ({ mfa_init_skipped: null }))])),
    },
    org: { 'org.removed': ownerRemoved(U) },
    instance: { 'instance.removed': ofInstance(U) },
  },
};

// ---- projections.milestones3 (§3.7; zitadel-eventstore.md §6.2 for the type names) ----
const MS = 'projections.milestones3';
const MILESTONE_TYPES = ['InstanceCreated', 'AuthenticationSucceededOnInstance', 'ProjectCreated', 'ApplicationCreated',
  'AuthenticationSucceededOnApplication', 'InstanceDeleted'];
const INSTANCE_DELETED = 6;

function milestoneType(e: RefEvent): number {
  const v = p(e).type;
  const n = typeof v === 'number' ? v : MILESTONE_TYPES.findIndex((t) => t.toLowerCase() === String(v).toLowerCase()) + 1;
  if (n < 1 || n > MILESTONE_TYPES.length) throw new TypeError(`${e.eventType}: unknown milestone type ${JSON.stringify(v)}`);
  return n;
}

const milestones: RefProjection = {
  name: MS,
  reducers: {
    milestone: {
      'milestone.v2.reached': (e) => [insert(MS, { instance_id: e.instanceId, type: milestoneType(e), reached_date: str(e, 'reachedDate') || e.createdAt })],
      'milestone.v2.pushed': (e) => (milestoneType(e) === INSTANCE_DELETED
        ? [remove(MS, { instance_id: e.instanceId })]
        : [update(MS, { last_pushed_date: str(e, 'pushedDate') || e.createdAt }, { instance_id: e.instanceId, type: milestoneType(e) })]),
    },
  },
};

export const REFERENCE_PROJECTIONS_2: readonly RefProjection[] = [users, milestones];
