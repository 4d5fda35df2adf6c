import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNNER_LOCK } from '../src/db/lock.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { ensureBuilt, runCli } from './support/cli.js';

let tdb: TestDatabase;
beforeAll(async () => {
  ensureBuilt();
  tdb = await createTestDatabase('cli');
});
afterAll(() => tdb?.drop());

describe('bin/zsetup.js', () => {
  it('prints its version and help with examples and exit codes', async () => {
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Examples:');
    expect(help.stdout).toContain('Exit codes:');
    const migrateHelp = await runCli(['migrate', '--help']);
    expect(migrateHelp.stdout).toContain('--dry-run');
    expect(migrateHelp.stdout).toContain('Examples:');
  });

  it('runs migrate, then status, as JSON on stdout with logs on stderr', async () => {
    const run = await runCli(['migrate', '--json', '-d', tdb.url]);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.exitCode).toBe(0);
    expect(Array.isArray(result.steps)).toBe(true);
    expect(run.stderr).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z database: /m);
    const status = await runCli(['status', '--json'], { ZSETUP_DATABASE_URL: tdb.url });
    expect(status.code).toBe(0);
    const report = JSON.parse(status.stdout);
    expect(report.runner).toBeNull();
    for (const s of result.steps) expect(report.steps.find((r: { id: string }) => r.id === s.id)?.status).toBe('succeeded');
    const again = await runCli(['migrate', '-d', tdb.url]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/up to date|no steps/);
  });

  it('fails a bad password with exit 2, one clear line, and the password masked everywhere', async () => {
    const u = new URL(tdb.url);
    u.password = 'Wr0ng-Secret-pw';
    for (const args of [['migrate'], ['migrate', '--json'], ['status', '--json'], ['migrate', '--dry-run']]) {
      const r = await runCli([...args, '-d', u.toString()]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('password authentication failed');
      expect(r.stderr).toContain(':***@');
      expect(r.stdout + r.stderr).not.toContain('Wr0ng-Secret-pw');
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  });

  it('ends connection errors quickly with exit 2', async () => {
    const refused = await runCli(['status', '-d', 'postgres://u:pw@127.0.0.1:1/db']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('connection refused');
    const unknownHost = await runCli(['status', '-d', 'postgres://u:pw@no-such-host.invalid:5432/db']);
    expect(unknownHost.code).toBe(2);
    expect(unknownHost.stderr).toMatch(/unknown host|lookup failed/);
    expect(unknownHost.ms).toBeLessThan(15_000);
    const u = new URL(tdb.url);
    u.pathname = '/no_such_database_zs';
    const missing = await runCli(['status', '-d', u.toString()]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('database "no_such_database_zs" does not exist');
  });

  it('rejects bad flags with exit 2', async () => {
    expect((await runCli(['migrate', '--bogus'])).code).toBe(2);
    const bad = await runCli(['migrate', '--lock-wait', 'soon', '-d', tdb.url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--lock-wait');
  });

  it('exits 3 when the lock wait runs out, naming the holder', async () => {
    const holder = await tdb.client();
    await holder.query(`SET application_name = 'other-runner'`);
    await holder.query('SELECT pg_advisory_lock($1, $2)', [...RUNNER_LOCK]);
    const r = await runCli(['migrate', '--lock-wait', '1500ms', '-d', tdb.url]);
    await holder.query('SELECT pg_advisory_unlock($1, $2)', [...RUNNER_LOCK]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('other-runner');
    expect(r.stderr).toContain('waiting for the runner lock');
  });
});
