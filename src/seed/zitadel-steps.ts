/**
 * The setup runs a real ZITADEL installation went through, as data: which steps each version's `setup`
 * records, in its order (../shared/spec/zitadel-handoff.md §1.2, §1.3, §2), and when. The seed turns a
 * run into `system.migration.*` events and applies the effects of the steps whose objects live in
 * `eventstore` / `projections` (see upgrade-sql.ts); the others are only recorded, as their objects
 * (auth.*, logstore, caches, fields, views) are outside what zsetup reads.
 */
import { LEGACY_SETUP_STEPS } from './scenes.js';

/** The database shapes `zsetup seed` can build: what the named ZITADEL version's setup leaves behind. */
export const ZITADEL_VERSIONS = ['v2.38', 'v2.71', 'v4'] as const;
export type ZitadelVersion = (typeof ZITADEL_VERSIONS)[number];

/** Guard for a preset name. */
export function isZitadelVersion(value: string): value is ZitadelVersion {
  return (ZITADEL_VERSIONS as readonly string[]).includes(value);
}

/**
 * How the event was pushed. `fallback`: ZITADEL's Go-side push without the SQL push function (before
 * step 40 created it): in_tx_order is the 0-based index in the batch and position the clock time of the
 * insert. `function`: the push function: in_tx_order 1…, position the epoch of the transaction time.
 */
export type PushPath = 'fallback' | 'function';

/** One step of a setup run. `lastRun` marks a repeatable step (its `repeatable.done` carries it). */
export interface RunStep {
  readonly name: string;
  readonly lastRun?: Readonly<Record<string, unknown>>;
  /** Only the `done` event lands (step 14 on an upgrade: its `started` push fails, events2 is missing). */
  readonly doneOnly?: boolean;
  /** Microseconds the step's work takes between its started and done events. Default is a few ms. */
  readonly workUs?: number;
}

/** One `system.migration.*` event of a run, in push order. */
export interface RunEvent {
  readonly eventType: 'system.migration.started' | 'system.migration.done' | 'system.migration.repeatable.done';
  readonly name: string;
  /** Transaction (REF) / statement (MAIN) time of the push, microseconds since the epoch. */
  readonly atUs: number;
  readonly path: PushPath;
  readonly lastRun?: Readonly<Record<string, unknown>>;
}

const CONFIG = { externalDomain: 'localhost', externalSecure: false, externalPort: 8080 } as const;
/** Binary versions stamped into `projection_tables`' lastRun; labels of the presets, not release claims. */
export const BINARY_VERSION: Readonly<Record<Exclude<ZitadelVersion, 'v2.38'>, string>> = { 'v2.71': 'v2.71.0', v4: 'v4.10.0' };

const step = (name: string, workUs?: number): RunStep => ({ name, workUs });
const repeatable = (name: string, lastRun: Record<string, unknown> = {}): RunStep => ({ name, lastRun });

/** The steps the legacy (≤ v2.38) setup runs recorded; a v2 setup skips them. */
export const LEGACY_DONE: ReadonlySet<string> = new Set(LEGACY_SETUP_STEPS);

/**
 * REF's `setup` on a legacy database, in REF's order (§1.2), minus the steps the legacy runs already
 * recorded done (01–03, 05–08). `12_auth_users_otp_columns` and `13_fix_quota_constraints` were not
 * yet recorded by the seeded legacy history, so this run does them.
 */
export const REF_RUN: readonly RunStep[] = [
  { name: '14_events_push', doneOnly: true, workUs: 41_000_000 },
  step('40_init_push_func_v4', 180_000),
  step('28_add_search_table'),
  step('31_add_aggregate_index_to_fields'),
  step('12_auth_users_otp_columns'),
  step('13_fix_quota_constraints'),
  step('15_current_projection_state', 1_500_000),
  step('16_unique_constraint_lower'),
  step('17_add_offset_col_to_current_states'),
  step('19_add_current_sequences_index', 6_000_000),
  step('20_add_by_user_index_on_session'),
  step('22_active_instance_events_index', 2_000_000),
  step('23_correct_global_unique_constraints'),
  step('24_add_actor_col_to_auth_tokens'),
  step('26_auth_users3'),
  step('29_init_fields_for_project_grant', 900_000),
  step('30_fill_fields_for_org_domain_verified', 700_000),
  step('34_add_cache_schema'),
  step('35_add_position_to_index_es_wm', 9_000_000),
  step('36_fill_v3_milestones', 400_000),
  step('38_back_channel_logout_notification_start_'),
  step('44_replace_current_sequences_index', 6_000_000),
  step('43_correct_project_owners', 1_200_000),
  step('46_init_permission_functions'),
  step('47_fill_membership_fields', 800_000),
  repeatable('config_change', CONFIG),
  repeatable('projection_tables', { version: BINARY_VERSION['v2.71'] }),
  repeatable('repeatable_delete_stale_org_fields'),
  repeatable('repeatable_fill_fields_for_instance_domains'),
  repeatable('repeatable_sync_role_permissions'),
  step('18_add_lower_fields_to_login_names'),
  step('21_add_block_field_to_limits'),
  step('25_user14_add_lower_fields_to_verified_email'),
  step('27_idp_templates6_add_saml_name_id_format'),
  step('32_add_auth_sessionID'),
  step('33_sms_configs3_twilio_add_verification_sid'),
  step('37_apps7_oidc_configs_add_back_channel_logout_uri'),
  step('40_apps7_oidc_configs_login_version'),
  step('43_create_fields_domain_index'),
];

/**
 * The newest setup (MAIN's steps, then IDX's 81 and 82) on a database REF set up (§1.3): only the
 * new steps run, then the repeatables whose check says so (`config_change` is unchanged and skipped;
 * `projection_tables` sees a new version; the `repeatable_*` ones always run). MAIN's per-resource
 * count-trigger repeatables and `repeatable_migrate_river` are not in the spec sheet by name, so they
 * are not recorded.
 */
export const NEWEST_RUN: readonly RunStep[] = [
  step('49_init_permitted_orgs_function'),
  step('50_idp_templates6_add_use_pkce'),
  step('51_idp_templates6_add_root_ca'),
  step('52_idp_templates6_ldap2'),
  step('53_init_permitted_orgs_function_v2'),
  step('54_instance_position_index_remove_again'),
  step('55_execution_handler_start'),
  step('56_idp_templates6_add_saml_federated_logout'),
  step('57_create_resource_counts'),
  step('58_replace_login_names3_view'),
  step('60_generate_system_id'),
  step('61_idp_templates6_add_saml_signature_algorithm'),
  step('62_http_provider_add_signing_key'),
  step('63_alter_resource_counts'),
  step('64_change_push_position', 150_000),
  step('65_fix_user_metadata5_index'),
  step('67_sync_member_role_fields'),
  step('81_eventstore_commands_to_events_clock_timestamp', 150_000),
  step('82_current_states_in_tx_order', 300_000),
  repeatable('repeatable_transactional_tables'),
  repeatable('projection_tables', { version: BINARY_VERSION.v4 }),
  repeatable('repeatable_delete_stale_org_fields'),
  repeatable('repeatable_fill_fields_for_instance_domains'),
  repeatable('repeatable_sync_role_permissions'),
  step('48_apps7_saml_configs_login_version'),
  step('59_setup_webkeys'),
  step('66_session_recovery_code_checked_at'),
];

/** Start of the REF upgrade run and of the newest run (exact UTC microseconds, fixed: not seeded). */
export const REF_RUN_START_US = Date.UTC(2025, 2, 3, 8, 15, 42) * 1000 + 314_159;
export const NEWEST_RUN_START_US = Date.UTC(2026, 0, 12, 6, 30, 9) * 1000 + 271_828;

/** Gap between one push and the next inside a run. */
const PUSH_GAP_US = 2_113;

/**
 * The events of one run, in push order, with their times: started, the step's work, done (or
 * repeatable.done). Until `40_init_push_func_v4` is done, pushes take the fallback path.
 */
export function runEvents(steps: readonly RunStep[], startUs: number, pushFunctionExists: boolean): RunEvent[] {
  const out: RunEvent[] = [];
  let at = startUs;
  let hasFunction = pushFunctionExists;
  for (const s of steps) {
    const path: PushPath = hasFunction ? 'function' : 'fallback';
    if (!s.doneOnly) {
      out.push({ eventType: 'system.migration.started', name: s.name, atUs: at, path });
      at += PUSH_GAP_US;
    }
    at += s.workUs ?? 3_407;
    if (s.name.startsWith('40_init_push_func')) hasFunction = true;
    const doneType = s.lastRun ? 'system.migration.repeatable.done' : 'system.migration.done';
    out.push({ eventType: doneType, name: s.name, atUs: at, path: hasFunction ? 'function' : 'fallback', lastRun: s.lastRun });
    at += PUSH_GAP_US;
  }
  return out;
}

/** The runs after the legacy history that a preset's database went through. */
export function upgradeRuns(version: ZitadelVersion): readonly RunEvent[][] {
  if (version === 'v2.38') return [];
  const ref = runEvents(REF_RUN, REF_RUN_START_US, false);
  return version === 'v2.71' ? [ref] : [ref, runEvents(NEWEST_RUN, NEWEST_RUN_START_US, true)];
}

/**
 * The `eventstore.unique_constraints` rows (instance '', type, lower-cased field) the pushes of these
 * events leave (§2.2): started adds `migration_started`, done adds `migration_done`, repeatable.done
 * deletes `migration_started`.
 */
export function migrationConstraints(events: readonly Pick<RunEvent, 'eventType' | 'name'>[]): { type: string; field: string }[] {
  const rows = new Map<string, { type: string; field: string }>();
  for (const e of events) {
    const field = e.name.toLowerCase();
    if (e.eventType === 'system.migration.started') rows.set(`s/${field}`, { type: 'migration_started', field });
    else if (e.eventType === 'system.migration.done') rows.set(`d/${field}`, { type: 'migration_done', field });
    else rows.delete(`s/${field}`);
  }
  return [...rows.values()];
}
