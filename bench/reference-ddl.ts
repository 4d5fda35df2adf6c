/**
 * The reference handler's own tables, written from the hand-off fact sheet (zitadel-handoff.md §3.0, §3.1, §4.1),
 * not from zsetup's definitions: the six projections with every child table, plus `current_states` and
 * `failed_events2` in their v2-era shape. Created if absent, as ZITADEL's `projection_tables` step does.
 */

const NN = 'NOT NULL';

/** `CREATE TABLE IF NOT EXISTS` and index statements of the six projections, in ZITADEL's projection order. */
export const REFERENCE_DDL: readonly string[] = [
  `CREATE SCHEMA IF NOT EXISTS projections`,
  `CREATE TABLE IF NOT EXISTS projections.current_states (
     projection_name TEXT ${NN}, instance_id TEXT ${NN}, last_updated TIMESTAMPTZ, aggregate_id TEXT, aggregate_type TEXT,
     "sequence" INT8, event_date TIMESTAMPTZ, "position" DECIMAL, filter_offset INTEGER,
     PRIMARY KEY (projection_name, instance_id))`,
  `CREATE INDEX IF NOT EXISTS cs_instance_id_idx ON projections.current_states (instance_id)`,
  `CREATE TABLE IF NOT EXISTS projections.failed_events2 (
     projection_name TEXT ${NN}, instance_id TEXT ${NN}, aggregate_type TEXT ${NN}, aggregate_id TEXT ${NN},
     event_creation_date TIMESTAMPTZ ${NN}, failed_sequence INT8 ${NN}, failure_count INT2 DEFAULT 0, error TEXT, last_failed TIMESTAMPTZ,
     PRIMARY KEY (projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence))`,
  `CREATE INDEX IF NOT EXISTS fe2_instance_id_idx ON projections.failed_events2 (instance_id)`,

  `CREATE TABLE IF NOT EXISTS projections.instances (
     id TEXT ${NN}, name TEXT ${NN} DEFAULT '', change_date TIMESTAMPTZ ${NN}, creation_date TIMESTAMPTZ ${NN},
     default_org_id TEXT ${NN} DEFAULT '', iam_project_id TEXT ${NN} DEFAULT '', console_client_id TEXT ${NN} DEFAULT '',
     console_app_id TEXT ${NN} DEFAULT '', "sequence" BIGINT ${NN}, default_language TEXT ${NN} DEFAULT '',
     PRIMARY KEY (id))`,

  `CREATE TABLE IF NOT EXISTS projections.orgs1 (
     id TEXT ${NN}, creation_date TIMESTAMPTZ ${NN}, change_date TIMESTAMPTZ ${NN}, resource_owner TEXT ${NN}, instance_id TEXT ${NN},
     org_state SMALLINT ${NN}, "sequence" BIGINT ${NN}, name TEXT ${NN}, primary_domain TEXT ${NN} DEFAULT '',
     PRIMARY KEY (instance_id, id))`,
  `CREATE INDEX IF NOT EXISTS orgs1_domain_idx ON projections.orgs1 (primary_domain)`,
  `CREATE INDEX IF NOT EXISTS orgs1_name_idx ON projections.orgs1 (name)`,

  `CREATE TABLE IF NOT EXISTS projections.projects4 (
     id TEXT ${NN}, creation_date TIMESTAMPTZ ${NN}, change_date TIMESTAMPTZ ${NN}, "sequence" BIGINT ${NN}, state SMALLINT ${NN},
     resource_owner TEXT ${NN}, instance_id TEXT ${NN}, name TEXT ${NN}, project_role_assertion BOOLEAN ${NN},
     project_role_check BOOLEAN ${NN}, has_project_check BOOLEAN ${NN}, private_labeling_setting SMALLINT ${NN},
     PRIMARY KEY (instance_id, id))`,
  `CREATE INDEX IF NOT EXISTS projects4_resource_owner_idx ON projections.projects4 (resource_owner)`,

  `CREATE TABLE IF NOT EXISTS projections.apps7 (
     id TEXT ${NN}, name TEXT ${NN}, project_id TEXT ${NN}, creation_date TIMESTAMPTZ ${NN}, change_date TIMESTAMPTZ ${NN},
     resource_owner TEXT ${NN}, instance_id TEXT ${NN}, state SMALLINT ${NN}, "sequence" BIGINT ${NN},
     PRIMARY KEY (instance_id, id))`,
  `CREATE INDEX IF NOT EXISTS apps7_project_id_idx ON projections.apps7 (project_id)`,
  `CREATE TABLE IF NOT EXISTS projections.apps7_api_configs (
     app_id TEXT ${NN}, instance_id TEXT ${NN}, client_id TEXT ${NN}, client_secret TEXT, auth_method SMALLINT ${NN},
     PRIMARY KEY (instance_id, app_id),
     CONSTRAINT fk_api_configs_ref_apps7 FOREIGN KEY (instance_id, app_id) REFERENCES projections.apps7 (instance_id, id) ON DELETE CASCADE)`,
  `CREATE INDEX IF NOT EXISTS apps7_api_configs_client_id_idx ON projections.apps7_api_configs (client_id)`,
  `CREATE TABLE IF NOT EXISTS projections.apps7_oidc_configs (
     app_id TEXT ${NN}, instance_id TEXT ${NN}, version SMALLINT ${NN}, client_id TEXT ${NN}, client_secret TEXT,
     redirect_uris TEXT[], response_types SMALLINT[], grant_types SMALLINT[], application_type SMALLINT ${NN},
     auth_method_type SMALLINT ${NN}, post_logout_redirect_uris TEXT[], is_dev_mode BOOLEAN ${NN}, access_token_type SMALLINT ${NN},
     access_token_role_assertion BOOLEAN ${NN} DEFAULT false, id_token_role_assertion BOOLEAN ${NN} DEFAULT false,
     id_token_userinfo_assertion BOOLEAN ${NN} DEFAULT false, clock_skew BIGINT ${NN} DEFAULT 0, additional_origins TEXT[],
     skip_native_app_success_page BOOLEAN ${NN} DEFAULT false, back_channel_logout_uri TEXT, login_version SMALLINT, login_base_uri TEXT,
     PRIMARY KEY (instance_id, app_id),
     CONSTRAINT fk_oidc_configs_ref_apps7 FOREIGN KEY (instance_id, app_id) REFERENCES projections.apps7 (instance_id, id) ON DELETE CASCADE)`,
  `CREATE INDEX IF NOT EXISTS apps7_oidc_configs_client_id_idx ON projections.apps7_oidc_configs (client_id)`,
  `CREATE TABLE IF NOT EXISTS projections.apps7_saml_configs (
     app_id TEXT ${NN}, instance_id TEXT ${NN}, entity_id TEXT ${NN}, metadata BYTEA ${NN}, metadata_url TEXT ${NN},
     PRIMARY KEY (instance_id, app_id),
     CONSTRAINT fk_saml_configs_ref_apps7 FOREIGN KEY (instance_id, app_id) REFERENCES projections.apps7 (instance_id, id) ON DELETE CASCADE)`,
  `CREATE INDEX IF NOT EXISTS apps7_saml_configs_entity_id_idx ON projections.apps7_saml_configs (entity_id)`,

  `CREATE TABLE IF NOT EXISTS projections.users14 (
     id TEXT ${NN}, creation_date TIMESTAMPTZ ${NN}, change_date TIMESTAMPTZ ${NN}, "sequence" BIGINT ${NN}, state SMALLINT ${NN},
     resource_owner TEXT ${NN}, instance_id TEXT ${NN}, username TEXT ${NN}, type SMALLINT ${NN},
     PRIMARY KEY (instance_id, id))`,
  `CREATE INDEX IF NOT EXISTS users14_username_idx ON projections.users14 (username)`,
  `CREATE INDEX IF NOT EXISTS users14_resource_owner_idx ON projections.users14 (resource_owner)`,
  `CREATE TABLE IF NOT EXISTS projections.users14_humans (
     user_id TEXT ${NN}, instance_id TEXT ${NN}, first_name TEXT ${NN}, last_name TEXT ${NN}, nick_name TEXT, display_name TEXT,
     preferred_language TEXT, gender SMALLINT, avatar_key TEXT, email TEXT ${NN}, is_email_verified BOOLEAN ${NN} DEFAULT false,
     phone TEXT, is_phone_verified BOOLEAN, password_change_required BOOLEAN ${NN}, password_changed TIMESTAMPTZ, mfa_init_skipped TIMESTAMPTZ,
     PRIMARY KEY (instance_id, user_id),
     CONSTRAINT fk_humans_ref_users14 FOREIGN KEY (instance_id, user_id) REFERENCES projections.users14 (instance_id, id) ON DELETE CASCADE)`,
  `CREATE TABLE IF NOT EXISTS projections.users14_machines (
     user_id TEXT ${NN}, instance_id TEXT ${NN}, name TEXT ${NN}, description TEXT, secret TEXT, access_token_type SMALLINT ${NN} DEFAULT 0,
     PRIMARY KEY (instance_id, user_id),
     CONSTRAINT fk_machines_ref_users14 FOREIGN KEY (instance_id, user_id) REFERENCES projections.users14 (instance_id, id) ON DELETE CASCADE)`,
  `CREATE TABLE IF NOT EXISTS projections.users14_notifications (
     user_id TEXT ${NN}, instance_id TEXT ${NN}, last_email TEXT, verified_email TEXT, last_phone TEXT, verified_phone TEXT,
     password_set BOOLEAN ${NN} DEFAULT false,
     PRIMARY KEY (instance_id, user_id),
     CONSTRAINT fk_notifications_ref_users14 FOREIGN KEY (instance_id, user_id) REFERENCES projections.users14 (instance_id, id) ON DELETE CASCADE)`,

  `CREATE TABLE IF NOT EXISTS projections.milestones3 (
     instance_id TEXT ${NN}, type SMALLINT ${NN}, reached_date TIMESTAMPTZ, last_pushed_date TIMESTAMPTZ,
     PRIMARY KEY (instance_id, type))`,
];

/** Every projection table of the six projections (what the benchmark compares), parents before children. */
export const REFERENCE_TABLES: readonly string[] = [
  'projections.instances', 'projections.orgs1', 'projections.projects4',
  'projections.apps7', 'projections.apps7_api_configs', 'projections.apps7_oidc_configs', 'projections.apps7_saml_configs',
  'projections.users14', 'projections.users14_humans', 'projections.users14_machines', 'projections.users14_notifications',
  'projections.milestones3',
];

/**
 * What ZITADEL's own setup builds on events2 before it prefills (handoff §1.2, step 22
 * `22_active_instances_events_index`): the partial index its instance list reads. The benchmark builds it,
 * untimed, in the reference's copy, so the reference lists instances as fast as ZITADEL would.
 */
export const ZITADEL_SETUP_INDEXES: readonly string[] = [
  `CREATE INDEX IF NOT EXISTS active_instances_events ON eventstore.events2 (aggregate_type, event_type)
     WHERE aggregate_type = 'instance' AND event_type IN ('instance.added', 'instance.removed')`,
];
