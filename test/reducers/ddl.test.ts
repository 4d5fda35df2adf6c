import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_PROJECTIONS } from '../../src/projections/builtin/index.js';
import { tableDdl } from '../../src/projections/ddl.js';
import { compileProjection } from '../../src/projections/model.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

// The tables as zitadel-handoff.md §3.0/§3.1 describes them at the reference version, written out by hand:
// "column type [NN] [= default]", constraints by name, secondary indexes. Created here by zsetup's DDL and
// read back from PostgreSQL's catalog.
//
// apps7_oidc_configs includes back_channel_logout_uri, login_version and login_base_uri: they are part of
// the reference's table, and its steps 37_apps7_oidc_configs_add_back_channel_logout_uri and
// 40_apps7_oidc_configs_login_version add them with guarded (IF NOT EXISTS) ALTERs, so finding them
// present never fails those steps (§1.2). MAIN-only columns (apps7_saml_configs.login_version /
// login_base_uri, step 48) and step 25's users14_notifications.verified_email_lower are left to ZITADEL.
const EXPECTED: Record<string, { columns: string[]; constraints: string[]; indexes: string[] }> = {
  'projections.instances': {
    columns: ['id text NN', "name text NN = ''::text", 'change_date timestamp with time zone NN', 'creation_date timestamp with time zone NN',
      "default_org_id text NN = ''::text", "iam_project_id text NN = ''::text", "console_client_id text NN = ''::text",
      "console_app_id text NN = ''::text", 'sequence bigint NN', "default_language text NN = ''::text"],
    constraints: ['instances_pkey PRIMARY KEY (id)'],
    indexes: [],
  },
  'projections.orgs1': {
    columns: ['id text NN', 'creation_date timestamp with time zone NN', 'change_date timestamp with time zone NN', 'resource_owner text NN',
      'instance_id text NN', 'org_state smallint NN', 'sequence bigint NN', 'name text NN', "primary_domain text NN = ''::text"],
    constraints: ['orgs1_pkey PRIMARY KEY (instance_id, id)'],
    indexes: ['orgs1_domain_idx (primary_domain)', 'orgs1_name_idx (name)'],
  },
  'projections.projects4': {
    columns: ['id text NN', 'creation_date timestamp with time zone NN', 'change_date timestamp with time zone NN', 'sequence bigint NN',
      'state smallint NN', 'resource_owner text NN', 'instance_id text NN', 'name text NN', 'project_role_assertion boolean NN',
      'project_role_check boolean NN', 'has_project_check boolean NN', 'private_labeling_setting smallint NN'],
    constraints: ['projects4_pkey PRIMARY KEY (instance_id, id)'],
    indexes: ['projects4_resource_owner_idx (resource_owner)'],
  },
  'projections.apps7': {
    columns: ['id text NN', 'name text NN', 'project_id text NN', 'creation_date timestamp with time zone NN', 'change_date timestamp with time zone NN',
      'resource_owner text NN', 'instance_id text NN', 'state smallint NN', 'sequence bigint NN'],
    constraints: ['apps7_pkey PRIMARY KEY (instance_id, id)'],
    indexes: ['apps7_project_id_idx (project_id)'],
  },
  'projections.apps7_api_configs': {
    columns: ['app_id text NN', 'instance_id text NN', 'client_id text NN', 'client_secret text', 'auth_method smallint NN'],
    constraints: ['apps7_api_configs_pkey PRIMARY KEY (instance_id, app_id)',
      'fk_api_configs_ref_apps7 FOREIGN KEY (instance_id, app_id) REFERENCES projections.apps7(instance_id, id) ON DELETE CASCADE'],
    indexes: ['apps7_api_configs_client_id_idx (client_id)'],
  },
  'projections.apps7_oidc_configs': {
    columns: ['app_id text NN', 'instance_id text NN', 'version smallint NN', 'client_id text NN', 'client_secret text', 'redirect_uris text[]',
      'response_types smallint[]', 'grant_types smallint[]', 'application_type smallint NN', 'auth_method_type smallint NN',
      'post_logout_redirect_uris text[]', 'is_dev_mode boolean NN', 'access_token_type smallint NN', 'access_token_role_assertion boolean NN = false',
      'id_token_role_assertion boolean NN = false', 'id_token_userinfo_assertion boolean NN = false', 'clock_skew bigint NN = 0',
      'additional_origins text[]', 'skip_native_app_success_page boolean NN = false', 'back_channel_logout_uri text', 'login_version smallint',
      'login_base_uri text'],
    constraints: ['apps7_oidc_configs_pkey PRIMARY KEY (instance_id, app_id)',
      'fk_oidc_configs_ref_apps7 FOREIGN KEY (instance_id, app_id) REFERENCES projections.apps7(instance_id, id) ON DELETE CASCADE'],
    indexes: ['apps7_oidc_configs_client_id_idx (client_id)'],
  },
  'projections.apps7_saml_configs': {
    columns: ['app_id text NN', 'instance_id text NN', 'entity_id text NN', 'metadata bytea NN', 'metadata_url text NN'],
    constraints: ['apps7_saml_configs_pkey PRIMARY KEY (instance_id, app_id)',
      'fk_saml_configs_ref_apps7 FOREIGN KEY (instance_id, app_id) REFERENCES projections.apps7(instance_id, id) ON DELETE CASCADE'],
    indexes: ['apps7_saml_configs_entity_id_idx (entity_id)'],
  },
  'projections.users14': {
    columns: ['id text NN', 'creation_date timestamp with time zone NN', 'change_date timestamp with time zone NN', 'sequence bigint NN',
      'state smallint NN', 'resource_owner text NN', 'instance_id text NN', 'username text NN', 'type smallint NN'],
    constraints: ['users14_pkey PRIMARY KEY (instance_id, id)'],
    indexes: ['users14_resource_owner_idx (resource_owner)', 'users14_username_idx (username)'],
  },
  'projections.users14_humans': {
    columns: ['user_id text NN', 'instance_id text NN', 'first_name text NN', 'last_name text NN', 'nick_name text', 'display_name text',
      'preferred_language text', 'gender smallint', 'avatar_key text', 'email text NN', 'is_email_verified boolean NN = false', 'phone text',
      'is_phone_verified boolean', 'password_change_required boolean NN', 'password_changed timestamp with time zone',
      'mfa_init_skipped timestamp with time zone'],
    constraints: ['fk_humans_ref_users14 FOREIGN KEY (instance_id, user_id) REFERENCES projections.users14(instance_id, id) ON DELETE CASCADE',
      'users14_humans_pkey PRIMARY KEY (instance_id, user_id)'],
    indexes: [],
  },
  'projections.users14_machines': {
    columns: ['user_id text NN', 'instance_id text NN', 'name text NN', 'description text', 'secret text', 'access_token_type smallint NN = 0'],
    constraints: ['fk_machines_ref_users14 FOREIGN KEY (instance_id, user_id) REFERENCES projections.users14(instance_id, id) ON DELETE CASCADE',
      'users14_machines_pkey PRIMARY KEY (instance_id, user_id)'],
    indexes: [],
  },
  'projections.users14_notifications': {
    columns: ['user_id text NN', 'instance_id text NN', 'last_email text', 'verified_email text', 'last_phone text', 'verified_phone text',
      'password_set boolean NN = false'],
    constraints: ['fk_notifications_ref_users14 FOREIGN KEY (instance_id, user_id) REFERENCES projections.users14(instance_id, id) ON DELETE CASCADE',
      'users14_notifications_pkey PRIMARY KEY (instance_id, user_id)'],
    indexes: [],
  },
  'projections.milestones3': {
    columns: ['instance_id text NN', 'type smallint NN', 'reached_date timestamp with time zone', 'last_pushed_date timestamp with time zone'],
    constraints: ['milestones3_pkey PRIMARY KEY (instance_id, type)'],
    indexes: [],
  },
};

let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase('projddl');
  const ddl = BUILTIN_PROJECTIONS.flatMap((d) => compileProjection(d).tables.map(tableDdl));
  await tdb.query(ddl.join('\n'));
});
afterAll(() => tdb?.drop());

describe('built-in projection tables (spec §3.1)', () => {
  it('are exactly the twelve tables of the six projections', async () => {
    const names = BUILTIN_PROJECTIONS.flatMap((d) => d.tables.map((t) => t.name));
    expect(names.sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const [table, expected] of Object.entries(EXPECTED)) {
    it(`${table}: columns, types, NOT NULL, defaults, constraints and indexes`, async () => {
      const columns = await tdb.query<{ line: string }>(
        `SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NN' ELSE '' END
                || coalesce(' = ' || pg_get_expr(d.adbin, d.adrelid), '') AS line
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, [table]);
      expect(columns.map((c) => c.line)).toEqual(expected.columns);
      // PostgreSQL 18 also lists NOT NULL as constraints (contype 'n'); the column lines cover those.
      const constraints = await tdb.query<{ line: string }>(
        `SELECT conname || ' ' || pg_get_constraintdef(oid) AS line FROM pg_constraint WHERE conrelid = $1::regclass AND contype <> 'n' ORDER BY conname`, [table]);
      expect(constraints.map((c) => c.line)).toEqual(expected.constraints);
      // Every index but the primary key's, with its method and key columns.
      const indexes = await tdb.query<{ line: string }>(
        `SELECT i.relname || CASE WHEN m.amname = 'btree' THEN '' ELSE ' ' || m.amname END || ' ('
                || (SELECT string_agg(coalesce(a.attname, '<expression>'), ', ' ORDER BY k.n)
                    FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
                    LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum) || ')' AS line
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am m ON m.oid = i.relam
         WHERE x.indrelid = $1::regclass AND NOT x.indisprimary ORDER BY i.relname`, [table]);
      expect(indexes.map((c) => c.line)).toEqual(expected.indexes);
    });
  }
});
