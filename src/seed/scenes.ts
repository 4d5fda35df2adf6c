/**
 * The shape of a seeded event stream, as data. An instance's history is its creation push followed by
 * a sequence of "scenes": a login, a new user, a new project with an app, … Each scene is one or more
 * pushes (transactions) of events; all events of a push share their `creation_date`.
 *
 * Event types, aggregates and owners follow ../shared/spec/zitadel-events.md §1–§3; the weights give
 * the proportions of §3 (authentication flows dominate, org/project/app events are rare).
 */

/**
 * Which aggregate an event is written to. The seed SQL resolves each role to aggregate type, id and owner:
 * `instance` → the instance; `org` → the scene's org (owner = itself); `user` → the scene's user (owner = its org);
 * `login_client` → the instance's login-client machine user; `project` → the scene's project (owner = its org);
 * `session` / `oidc` / `authreq` → the scene's session, OIDC session (`V2_…`) and auth request (`V2_…`).
 */
export type AggregateRole = 'instance' | 'org' | 'user' | 'login_client' | 'project' | 'session' | 'oidc' | 'authreq';

/**
 * Who wrote an event (`editor_user`): `''` (setup), the instance `admin`, the user it concerns (`self`),
 * the instance's `login` client user, or a literal system name.
 */
export type EditorRole = '' | 'admin' | 'self' | 'login' | 'SYSTEM' | 'LOGIN';

/** One event of a scene template: aggregate, type, editor, service and an optional argument. */
export type EventTemplate = readonly [agg: AggregateRole, eventType: string, editor: EditorRole, service: string, arg?: string];

/** A kind of scene: how often it happens among activity scenes and its pushes. */
export interface SceneKind {
  readonly kind: string;
  /** Per mille of activity scenes. Zero for scenes placed explicitly (setup, removals of whole things). */
  readonly weight: number;
  readonly pushes: readonly (readonly EventTemplate[])[];
}

const MGMT = 'Management-API';
const ADMIN = 'Admin-API';
const AUTH = 'Auth-API';
const Z = 'zitadel';

/** Setup apps of the IAM project: name and the id offset of the app inside the instance (see seed SQL). */
const SETUP_API_APPS = [['Management-API', '4'], ['Admin-API', '5'], ['Auth-API', '6']] as const;

/** The creation of an instance: one push, written by setup (`editor_user` ''). */
const SETUP: SceneKind = {
  kind: 'setup',
  weight: 0,
  pushes: [[
    ['instance', 'instance.added', '', Z],
    ['instance', 'instance.default.language.set', '', Z],
    ['instance', 'instance.domain.added', '', Z],
    ['instance', 'instance.domain.primary.set', '', Z],
    ['org', 'org.added', '', Z],
    ['org', 'org.domain.added', '', Z],
    ['org', 'org.domain.verified', '', Z],
    ['org', 'org.domain.primary.set', '', Z],
    ['instance', 'instance.default.org.set', '', Z],
    ['user', 'user.human.added', '', Z],
    ['user', 'user.human.email.verified', '', Z],
    ['project', 'project.added', '', Z],
    ['instance', 'instance.iam.project.set', '', Z],
    ...SETUP_API_APPS.flatMap(([name, n]): EventTemplate[] => [
      ['project', 'project.application.added', '', Z, `${n}:${name}`],
      ['project', 'project.application.config.api.added', '', Z, `${n}:${name}`],
    ]),
    ['project', 'project.application.added', '', Z, '7:Console'],
    ['project', 'project.application.config.oidc.added', '', Z, '7:Console'],
    ['instance', 'instance.iam.console.set', '', Z],
    ['login_client', 'user.machine.added', '', Z],
  ]],
};

/** Scenes after the instance's creation. Weights add up to 1000. */
const ACTIVITY: readonly SceneKind[] = [
  // Interactive login (login v2 + OIDC code flow with refresh token), spec §3: ≈ 15 events.
  { kind: 'login', weight: 400, pushes: [
    [['authreq', 'auth_request.added', 'login', Z]],
    [['session', 'session.added', 'login', Z], ['session', 'session.user.checked', 'login', Z]],
    [['session', 'session.password.checked', 'login', Z], ['user', 'user.human.password.check.succeeded', 'login', Z]],
    [['session', 'session.token.set', 'login', Z]],
    [['authreq', 'auth_request.session.linked', 'login', Z]],
    [['authreq', 'auth_request.code.added', 'login', Z]],
    [
      ['authreq', 'auth_request.code.exchanged', 'SYSTEM', Z],
      ['oidc', 'oidc_session.added', 'SYSTEM', Z],
      ['oidc', 'oidc_session.access_token.added', 'SYSTEM', Z],
      ['oidc', 'oidc_session.refresh_token.added', 'SYSTEM', Z],
      ['authreq', 'auth_request.succeeded', 'SYSTEM', Z],
    ],
  ] },
  // SSO re-login with the session of the instance's latest login.
  { kind: 'sso', weight: 250, pushes: [
    [['authreq', 'auth_request.added', 'login', Z]],
    [['authreq', 'auth_request.session.linked', 'login', Z]],
    [['authreq', 'auth_request.code.added', 'login', Z]],
    [
      ['authreq', 'auth_request.code.exchanged', 'SYSTEM', Z],
      ['oidc', 'oidc_session.added', 'SYSTEM', Z],
      ['oidc', 'oidc_session.access_token.added', 'SYSTEM', Z],
      ['authreq', 'auth_request.succeeded', 'SYSTEM', Z],
    ],
  ] },
  // Refresh-token grant on the OIDC session of the latest login.
  { kind: 'refresh', weight: 150, pushes: [[['oidc', 'oidc_session.access_token.added', 'SYSTEM', Z]]] },
  { kind: 'user_human', weight: 60, pushes: [
    [['user', 'user.human.added', 'admin', MGMT]],
    [['user', 'user.human.email.verified', 'self', 'LOGIN']],
    [['user', 'user.human.password.changed', 'self', 'LOGIN']],
  ] },
  { kind: 'user_machine', weight: 8, pushes: [[['user', 'user.machine.added', 'admin', MGMT]]] },
  { kind: 'user_profile', weight: 30, pushes: [[['user', 'user.human.profile.changed', 'self', AUTH]]] },
  { kind: 'user_email', weight: 15, pushes: [
    [['user', 'user.human.email.changed', 'self', AUTH]],
    [['user', 'user.human.email.verified', 'self', 'LOGIN']],
  ] },
  { kind: 'user_password', weight: 20, pushes: [[['user', 'user.human.password.changed', 'self', 'LOGIN']]] },
  { kind: 'user_username', weight: 5, pushes: [[['user', 'user.username.changed', 'admin', MGMT]]] },
  { kind: 'user_lock', weight: 8, pushes: [[['user', 'user.locked', 'LOGIN', 'LOGIN']], [['user', 'user.unlocked', 'admin', MGMT]]] },
  { kind: 'user_deactivate', weight: 5, pushes: [[['user', 'user.deactivated', 'admin', MGMT]], [['user', 'user.reactivated', 'admin', MGMT]]] },
  // A user that is created and later removed; nothing refers to it afterwards.
  { kind: 'user_removed', weight: 10, pushes: [
    [['user', 'user.human.added', 'admin', MGMT]],
    [['user', 'user.human.email.verified', 'self', 'LOGIN']],
    [['user', 'user.removed', 'admin', MGMT]],
  ] },
  { kind: 'org', weight: 6, pushes: [[
    ['org', 'org.added', 'admin', MGMT],
    ['org', 'org.domain.added', 'admin', MGMT],
    ['org', 'org.domain.verified', 'admin', MGMT],
    ['org', 'org.domain.primary.set', 'admin', MGMT],
  ]] },
  { kind: 'org_changed', weight: 3, pushes: [[['org', 'org.changed', 'admin', MGMT]]] },
  { kind: 'org_deact', weight: 2, pushes: [[['org', 'org.deactivated', 'admin', MGMT]], [['org', 'org.reactivated', 'admin', MGMT]]] },
  { kind: 'project', weight: 8, pushes: [
    [['project', 'project.added', 'admin', MGMT]],
    [['project', 'project.application.added', 'admin', MGMT], ['project', 'project.application.config.oidc.added', 'admin', MGMT]],
  ] },
  { kind: 'app_api', weight: 4, pushes: [
    [['project', 'project.application.added', 'admin', MGMT], ['project', 'project.application.config.api.added', 'admin', MGMT]],
  ] },
  { kind: 'app_changed', weight: 4, pushes: [[['project', 'project.application.changed', 'admin', MGMT]]] },
  { kind: 'project_changed', weight: 4, pushes: [[['project', 'project.changed', 'admin', MGMT]]] },
  { kind: 'project_deact', weight: 2, pushes: [[['project', 'project.deactivated', 'admin', MGMT]], [['project', 'project.reactivated', 'admin', MGMT]]] },
  // A project with an app, later the app and the project are removed.
  { kind: 'project_removed', weight: 2, pushes: [
    [['project', 'project.added', 'admin', MGMT]],
    [['project', 'project.application.added', 'admin', MGMT], ['project', 'project.application.config.oidc.added', 'admin', MGMT]],
    [['project', 'project.application.removed', 'admin', MGMT]],
    [['project', 'project.removed', 'admin', MGMT]],
  ] },
  { kind: 'instance_changed', weight: 2, pushes: [[['instance', 'instance.changed', 'admin', ADMIN]]] },
  { kind: 'instance_domain', weight: 2, pushes: [[['instance', 'instance.domain.added', 'admin', ADMIN]]] },
];

/**
 * An org with a user and a project that is then removed (placed once per instance, at {@link ORG_REMOVAL_SCENE}).
 * Its user and project use the scene's secondary ids; nothing refers to them afterwards.
 */
const ORG_REMOVED: SceneKind = {
  kind: 'org_removed',
  weight: 0,
  pushes: [
    [
      ['org', 'org.added', 'admin', MGMT],
      ['org', 'org.domain.added', 'admin', MGMT],
      ['org', 'org.domain.verified', 'admin', MGMT],
      ['org', 'org.domain.primary.set', 'admin', MGMT],
    ],
    [['user', 'user.human.added', 'admin', MGMT]],
    [['project', 'project.added', 'admin', MGMT]],
    [['org', 'org.removed', 'admin', ADMIN]],
  ],
};

/** The last event of a removed instance. */
const INSTANCE_REMOVED: SceneKind = { kind: 'instance_removed', weight: 0, pushes: [[['instance', 'instance.removed', 'SYSTEM', Z]]] };

/** Every scene kind. */
export const SCENE_KINDS: readonly SceneKind[] = [SETUP, ...ACTIVITY, ORG_REMOVED, INSTANCE_REMOVED];

/** Weighted kinds for activity scenes (weights sum to 1000). */
export const ACTIVITY_KINDS: readonly SceneKind[] = ACTIVITY;

/** Events in an instance's creation push. */
export const SETUP_EVENTS = SETUP.pushes[0].length;

/** Activity scene number at which the instance's org removal is placed (when the instance is that long). */
export const ORG_REMOVAL_SCENE = 25;

/** Mean events per activity scene, for sizing the generated scene range. */
export const MEAN_SCENE_EVENTS =
  ACTIVITY.reduce((sum, k) => sum + k.weight * k.pushes.flat().length, 0) / ACTIVITY.reduce((sum, k) => sum + k.weight, 0);

/** One row of the template table the seed SQL joins scenes with. */
export interface TemplateRow {
  readonly kind: string;
  readonly ord: number;
  readonly push: number;
  readonly agg: AggregateRole;
  readonly eventType: string;
  readonly editor: EditorRole;
  readonly service: string;
  readonly arg: string | null;
}

/** Flattens the scene kinds into template rows, numbered by position (`ord`) and push inside the scene. */
export function templateRows(kinds: readonly SceneKind[] = SCENE_KINDS): TemplateRow[] {
  return kinds.flatMap((k) =>
    k.pushes.flatMap((events, push) => events.map((e) => ({ push, agg: e[0], eventType: e[1], editor: e[2], service: e[3], arg: e[4] ?? null })))
      .map((e, ord) => ({ kind: k.kind, ord, ...e })),
  );
}

/**
 * The template rows with SAML apps: the API app of an `app_api` scene gets a SAML configuration instead
 * (`project.application.config.saml.added`, its payload from events-sql.ts). The scenes, their events and
 * ids stay the same; only that event's type changes. For `zsetup seed --saml-metadata-bytes`.
 */
export function samlApps(rows: readonly TemplateRow[]): TemplateRow[] {
  return rows.map((r) => (r.kind === 'app_api' && r.eventType === 'project.application.config.api.added'
    ? { ...r, eventType: 'project.application.config.saml.added' } : r));
}

/**
 * The setup steps an older reference installation (before v2.39) recorded as `system.migration.*`
 * events, in order. 12 and 13 are not among them: this installation's last legacy upgrade predates them.
 */
export const LEGACY_SETUP_STEPS: readonly string[] = [
  '01_tables',
  '02_assets',
  '03_default_instance',
  '04_eventstore_indexes',
  '05_last_failed',
  // The only name step 06 ever had; a done event under another name makes ZITADEL run it again.
  '06_resource_owner_columns',
  '07_logstore',
  '08_auth_token_indexes',
  '09_optimise_indexes',
  '10_correct_creation_date',
  '11_event_created_at',
];
