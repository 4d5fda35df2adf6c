/**
 * ZITADEL's setup steps from 14 on, in the order its `setup` runs them, and who does each one's work
 * on a database zsetup prepared (spec zitadel-handoff.md §1.2–§1.4, §4.1). `status` shows this list
 * next to what the database records; the README's hand-off table says the same in prose.
 */

/** Who does a ZITADEL step's work. */
export type StepOwner =
  /** zsetup does the whole effect and records the step done. */
  | 'zsetup'
  /** Left to ZITADEL's setup: its SQL succeeds on zsetup's objects (guarded, or about objects zsetup never touches). */
  | 'zitadel';

export interface ZitadelSetupStep {
  readonly name: string;
  readonly owner: StepOwner;
  /** One line: why, or which zsetup step records it. */
  readonly why: string;
}

const z = (name: string, why: string): ZitadelSetupStep => ({ name, owner: 'zsetup', why });
const left = (name: string, why: string): ZitadelSetupStep => ({ name, owner: 'zitadel', why });

/** The names zsetup records, by the zsetup step that records them. */
export const RECORDED_BY = {
  events2: '14_events_push',
  milestones: '36_fill_v3_milestones',
  currentStates: '15_current_projection_state',
  filterOffset: '17_add_offset_col_to_current_states',
} as const;

/** ZITADEL's steps from 14 on: REF's list order, then MAIN's additions, then the newest (IDX). */
export const ZITADEL_SETUP_STEPS: readonly ZitadelSetupStep[] = [
  z(RECORDED_BY.events2, 'zsetup step events2: the move to eventstore.events2 (ZITADEL would only find events2 and return)'),
  left('40_init_push_func_v4', 'creates the push functions from events2\'s column order and in_tx_order type; zsetup creates none of them'),
  left('28_add_search_table', 'eventstore.fields: zsetup never creates it'),
  left('31_add_aggregate_index_to_fields', 'guarded index on eventstore.fields'),
  z(RECORDED_BY.currentStates, 'zsetup step projection:*: creates failed_events2 / current_states and copies the legacy handler states and failures'),
  left('16_unique_constraint_lower', 'idempotent update of eventstore.unique_constraints'),
  z(RECORDED_BY.filterOffset, 'zsetup step projection:*: current_states.filter_offset (ZITADEL\'s unguarded ADD COLUMN would fail with 42701)'),
  left('19_add_current_sequences_index', 'guarded concurrent index on events2 (later dropped by 44)'),
  left('22_active_instance_events_index', 'guarded concurrent partial index on events2'),
  left('23_correct_global_unique_constraints', 'idempotent update of unique_constraints'),
  left('29_init_fields_for_project_grant', 'fills eventstore.fields, which zsetup does not manage'),
  left('30_fill_fields_for_org_domain_verified', 'fills eventstore.fields'),
  left('35_add_position_to_index_es_wm', 'rebuilds es_wm with position (guarded); zsetup builds the step-14 form of es_wm'),
  z(RECORDED_BY.milestones, 'zsetup step milestones-v2: the same milestone.v2 events, exactly once'),
  left('38_back_channel_logout_notification_start_', 'start marker of a handler zsetup does not prefill (on conflict do nothing)'),
  left('44_replace_current_sequences_index', 'guarded concurrent index on events2'),
  left('43_correct_project_owners', 'no-op when project owners are consistent'),
  left('46_init_permission_functions', 'or-replace views and functions'),
  left('47_fill_membership_fields', 'fills eventstore.fields'),
  left('projection_tables', 'repeatable: creates every projection\'s missing tables (guarded); zsetup\'s tables have ZITADEL\'s exact shape'),
  left('37_apps7_oidc_configs_add_back_channel_logout_uri', 'guarded ADD COLUMN; zsetup creates the column already'),
  left('40_apps7_oidc_configs_login_version', 'guarded ADD COLUMN; zsetup creates the columns already'),
  left('54_instance_position_index_remove_again', 'guarded DROP INDEX (MAIN)'),
  left('55_execution_handler_start', 'start marker of a handler zsetup does not prefill (MAIN)'),
  left('64_change_push_position', 'replaces the push function (MAIN)'),
  left('48_apps7_saml_configs_login_version', 'guarded ADD COLUMN on apps7_saml_configs (MAIN)'),
  left('82_current_states_in_tx_order', 'guarded: adds current_states.in_tx_order with its triggers; zsetup writes the column only where it exists'),
];
