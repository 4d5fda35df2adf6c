/**
 * Hostile input: bad connections, databases that are not (or not quite) event stores, missing
 * privileges, rows that do not fit, and locks held by others. Each ends with a clear message, the
 * documented exit code, and nothing written that a rerun would not safely complete.
 */
import crypto from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, copyOf, dropAll, emptyDb, migrateArgs, prepareCli, seededTemplate, waitNoBackends, zsetup, type FaultDb } from './harness.js';
import { expectEndStateRight, expectEventsRight, snapshot } from './oracle.js';

let template: FaultDb;
beforeAll(async () => {
  prepareCli();
  template = await seededTemplate('zfb', { events: 4_000, instances: 4 });
});
afterAll(dropAll);

/** The snapshot without zsetup's own bookkeeping (a failed step records its error there). */
async function userData(db: FaultDb): Promise<Record<string, string>> {
  const s = await snapshot(db);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(s)) if (!k.startsWith('zsetup.')) out[k] = k === 'schemas' ? v.replace(/(^|,)zsetup(?=,|$)/, '') : v;
  return out;
}

function withPassword(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  return u.toString();
}

describe('connections and configuration', () => {
  const secret = `s3cr3t-${crypto.randomBytes(4).toString('hex')}`;

  it('unreachable host: exit 2, a clear message, the password masked, also with --json', async () => {
    for (const json of [[], ['--json']]) {
      const r = await zsetup(['migrate', ...json, '-d', `postgres://someone:${secret}@127.0.0.1:1/db`]);
      expect(r.code).toBe(2);
      expect(r.stdout + r.stderr).toContain('connection refused');
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
  });

  it('missing database: exit 2, names it', async () => {
    const u = new URL(template.url);
    u.pathname = '/zf_no_such_db';
    u.password = secret;
    const r = await zsetup(['migrate', '--json', '-d', u.toString()]);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/database "zf_no_such_db" does not exist|password authentication failed/);
    expect(r.stdout + r.stderr).not.toContain(secret);
  });

  it('wrong password: exit 2, says so, never prints it', async (ctx) => {
    const role = `zf_pw_${crypto.randomBytes(4).toString('hex')}`;
    await admin(`CREATE ROLE ${role} LOGIN PASSWORD 'right-one'`);
    try {
      // A server that trusts TCP logins (the embedded one) accepts any password: nothing to test there.
      const probe = new pg.Client({ connectionString: withPassword(template.url, role, 'wrong') });
      if (await probe.connect().then(() => true, () => false)) {
        await probe.end();
        ctx.skip();
      }
      const r = await zsetup(['status', '--json', '-d', withPassword(template.url, role, secret)]);
      expect(r.code).toBe(2);
      expect(r.stdout + r.stderr).toContain(`password authentication failed for user "${role}"`);
      expect(r.stdout + r.stderr).not.toContain(secret);
    } finally {
      await admin(`DROP ROLE ${role}`);
    }
  });

  it('a URL with a password is masked in every output of a successful run, --json included', async () => {
    const db = await copyOf(template);
    const role = `zf_ok_${crypto.randomBytes(4).toString('hex')}`;
    await admin(`CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD '${secret}'`);
    try {
      const url = withPassword(db.url, role, secret);
      for (const args of [['migrate', '--dry-run', '--json'], ['migrate', '--json'], ['status', '--json'], ['status'], ['migrate']]) {
        const r = await zsetup([...args, '-d', url]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout + r.stderr).not.toContain(secret);
        expect(r.stdout + r.stderr).toContain('***');
      }
    } finally {
      await waitNoBackends(db);
      await db.drop();
      await admin(`DROP ROLE ${role}`);
    }
  });
});

describe('databases that are not what zsetup expects', () => {
  it('a database with unrelated tables and no event store: refused (exit 5) by the run and the dry-run alike, nothing created, not even zsetup\'s schema', async () => {
    const db = await emptyDb();
    await db.query(`CREATE TABLE public.customers (id int PRIMARY KEY, name text); INSERT INTO customers VALUES (1, 'x')`);
    const before = await snapshot(db);
    for (const extra of [[], ['--json'], ['--dry-run'], ['--dry-run', '--json']]) {
      const r = await zsetup(migrateArgs(db, ...extra));
      expect(r.code, r.stderr).toBe(5);
      expect(r.stdout + r.stderr).toContain('this database is not an event store');
      expect(r.stdout + r.stderr).toContain('public.customers');
      if (extra.includes('--json')) expect(JSON.parse(r.stdout).exitCode).toBe(5);
      expect(await snapshot(db)).toEqual(before);
    }
    expect(await db.query(`SELECT to_regnamespace('zsetup')::text AS s`)).toEqual([{ s: null }]);
  });

  it('an events2 left half-filled by another tool: refused (exit 5), nothing changed', async () => {
    const db = await copyOf(template);
    await db.query(`ALTER TABLE eventstore.events RENAME TO events_old;
      CREATE TABLE eventstore.events2 AS SELECT instance_id, aggregate_type, aggregate_id, event_type, event_sequence AS "sequence",
        substr(aggregate_version, 2)::smallint AS revision, creation_date AS created_at, event_data AS payload, editor_user AS creator,
        resource_owner AS owner, EXTRACT(EPOCH FROM creation_date) AS "position", event_sequence::integer AS in_tx_order
      FROM eventstore.events_old WHERE event_sequence % 3 <> 0`);
    const before = await userData(db);
    const r = await zsetup(migrateArgs(db));
    expect(r.code, r.stderr).toBe(5);
    expect(r.stdout + r.stderr).toMatch(/events2 already has rows that zsetup did not copy/);
    expect(await userData(db)).toEqual(before);
  });

  it('an old table with an extra column is moved as usual (the mapping names its columns)', async () => {
    const db = await copyOf(template);
    await db.query(`ALTER TABLE eventstore.events ADD COLUMN note text DEFAULT 'extra'`);
    const r = await zsetup(migrateArgs(db));
    expect(r.code, r.stderr).toBe(0);
    await expectEventsRight(db);
  });

  it('an old table missing a mapped column: refused (exit 5) naming it, before anything is written', async () => {
    const db = await copyOf(template);
    await db.query(`ALTER TABLE eventstore.events DROP COLUMN editor_user`);
    const before = await userData(db);
    const r = await zsetup(migrateArgs(db));
    expect(r.code, r.stderr).toBe(5);
    expect(r.stdout + r.stderr).toContain('editor_user');
    expect(await userData(db)).toEqual(before);
  });

  it('a legacy row whose aggregate_version does not parse: refused (exit 5) naming it, nothing written', async () => {
    const db = await copyOf(template);
    const [row] = await db.query(`UPDATE eventstore.events SET aggregate_version = 'version-one'
      WHERE (instance_id, event_sequence) = (SELECT instance_id, event_sequence FROM eventstore.events WHERE instance_id <> '' ORDER BY 1, 2 LIMIT 1)
      RETURNING instance_id, event_sequence::text AS seq`);
    const before = await userData(db);
    const r = await zsetup(migrateArgs(db));
    expect(r.code, r.stderr).toBe(5);
    expect(r.stdout + r.stderr).toContain(`instance '${row.instance_id}' sequence ${row.seq} aggregate_version 'version-one'`);
    expect(await userData(db)).toEqual(before);
  });

  it('milestone rows of an unknown type: refused (exit 5) naming them, no milestone event written; fixed, the rerun completes', async () => {
    const db = await copyOf(template);
    const [inst] = await db.query(`SELECT instance_id FROM projections.milestones ORDER BY 1 LIMIT 1`);
    await db.query(`INSERT INTO projections.milestones (instance_id, type, reached_date) VALUES ($1, 9, now())`, [inst.instance_id]);
    const r = await zsetup(migrateArgs(db));
    expect(r.code, r.stderr).toBe(5);
    expect(r.stdout + r.stderr).toContain(`instance "${inst.instance_id}" type 9: unknown milestone type 9`);
    expect((await db.query(`SELECT count(*)::int AS n FROM eventstore.events2 WHERE aggregate_type = 'milestone'`))[0].n).toBe(0);
    await db.query(`DELETE FROM projections.milestones WHERE type = 9`);
    const rerun = await zsetup(migrateArgs(db));
    expect(rerun.code, rerun.stderr).toBe(0);
    await expectEndStateRight(db);
  });
});

describe('privileges and locks', () => {
  it('a role with only CONNECT, USAGE and SELECT: refused with the missing privileges listed, nothing changed', async () => {
    const db = await copyOf(template);
    const role = `zf_ro_${crypto.randomBytes(4).toString('hex')}`;
    await admin(`CREATE ROLE ${role} LOGIN PASSWORD 'ro-pass'`);
    try {
      await db.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${role};
        GRANT USAGE ON SCHEMA eventstore, projections TO ${role};
        GRANT SELECT ON ALL TABLES IN SCHEMA eventstore, projections TO ${role}`);
      const before = await snapshot(db);
      const r = await zsetup(migrateArgs({ ...db, url: withPassword(db.url, role, 'ro-pass') }));
      expect(r.code, r.stderr).toBe(5);
      // zsetup's own needs and every step's, listed at once, before anything (zsetup's schema too) is created.
      expect(r.stdout + r.stderr).toContain(`role ${role} lacks privileges the pending steps need; nothing was changed`);
      expect(r.stdout + r.stderr).toContain('zsetup: CREATE on the database (to record its progress in schema zsetup)');
      expect(r.stdout + r.stderr).toContain('events2: ownership of eventstore.events');
      expect(await snapshot(db)).toEqual(before);
      // With its own schema allowed, the events2 preflight lists what the move lacks, before any write.
      await db.query(`GRANT CREATE ON DATABASE ${db.name} TO ${role}`);
      const data = await userData(db);
      const second = await zsetup(migrateArgs({ ...db, url: withPassword(db.url, role, 'ro-pass') }));
      expect(second.code, second.stderr).toBe(5);
      // The preflight asks every pending step at once and lists what each lacks.
      expect(second.stdout + second.stderr).toContain(`role ${role} lacks privileges the pending steps need`);
      expect(second.stdout + second.stderr).toContain('events2: ownership of eventstore.events');
      expect(second.stdout + second.stderr).toContain('CREATE on schema eventstore');
      expect(await userData(db)).toEqual(data);
    } finally {
      await waitNoBackends(db);
      await db.drop();
      await admin(`DROP ROLE ${role}`);
    }
  });

  it('a role without USAGE on the schemas: migrate, the dry-run, status and verify all refuse (exit 5) with a hint, nothing created', async () => {
    const db = await copyOf(template);
    // First migrated, so status and verify have something to read.
    expect((await zsetup(migrateArgs(db))).code).toBe(0);
    const role = `zf_nu_${crypto.randomBytes(4).toString('hex')}`;
    await admin(`CREATE ROLE ${role} LOGIN PASSWORD 'nu-pass'`);
    try {
      await db.query(`GRANT CONNECT, CREATE ON DATABASE ${db.name} TO ${role}`);
      const url = withPassword(db.url, role, 'nu-pass');
      const before = await snapshot(db);
      const runs: [string[], RegExp][] = [
        [migrateArgs({ ...db, url }), /lacks USAGE on schema zsetup, eventstore, projections; nothing was changed/],
        [['migrate', '--dry-run', '-d', url], /permission denied for schema/],
        [['status', '-d', url], /permission denied for schema/],
        [['verify', '-d', url], /permission denied for schema/],
      ];
      for (const [args, message] of runs) {
        for (const json of [false, true]) {
          const r = await zsetup(json ? [...args, '--json'] : args);
          expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(5);
          const text = json ? JSON.stringify(JSON.parse(r.stdout)) : r.stderr;
          expect(text).toMatch(message);
          expect(text).toMatch(/GRANT USAGE ON SCHEMA/);
          expect(text).not.toContain('nu-pass');
          expect(r.stderr).not.toMatch(/\n\s+at /);
          if (json) expect(JSON.parse(r.stdout).exitCode).toBe(5);
        }
      }
      expect(await snapshot(db)).toEqual(before);
    } finally {
      await waitNoBackends(db);
      await db.drop();
      await admin(`DROP ROLE ${role}`);
    }
  });

  it('lock_timeout hit while another session holds eventstore.events: exit 1 with the reason; the rerun completes', async () => {
    const db = await copyOf(template);
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE eventstore.events IN ACCESS EXCLUSIVE MODE');
    const r = await zsetup(migrateArgs(db, '--lock-timeout', '500ms'));
    await holder.query('ROLLBACK');
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout + r.stderr).toContain('canceling statement due to lock timeout');
    expect(r.stdout).toContain('55P03');
    expect((await db.query(`SELECT to_regclass('eventstore.events')::text AS t, to_regclass('eventstore.events2')::text AS e2`))[0])
      .toEqual({ t: 'eventstore.events', e2: null });
    const rerun = await zsetup(migrateArgs(db));
    expect(rerun.code, rerun.stderr).toBe(0);
    await expectEndStateRight(db);
  });
});
