import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNNER_LOCK } from '../src/db/lock.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { BIN, ensureBuilt, runCli } from './support/cli.js';
import { spawn } from 'node:child_process';

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

  it('shows the session flags in --help: --embedded, --lock-timeout, --statement-timeout', async () => {
    const help = await runCli(['migrate', '--help']);
    for (const flag of ['--embedded', '--lock-timeout <duration>', '--statement-timeout <duration>', '--lock-wait <duration>']) expect(help.stdout).toContain(flag);
  });
});

describe('no database named', () => {
  it('migrate, init-projections, status and verify refuse (exit 2) listing the ways to name one, and start no embedded server', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'zsetup-nodb-'));
    try {
      for (const args of [['migrate'], ['migrate', '--dry-run'], ['init-projections'], ['status'], ['verify']]) {
        const r = await runCli(args, { ZSETUP_EMBEDDED: '' }, { cwd });
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        for (const way of ['--database', 'ZSETUP_DATABASE_URL', 'DATABASE_URL', '--embedded', 'ZSETUP_EMBEDDED=1']) expect(r.stderr).toContain(way);
        const json = await runCli([...args, '--json'], { ZSETUP_EMBEDDED: '' }, { cwd });
        expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, exitCode: 2, error: { code: 'usage' } });
      }
      // No ./.zsetup: nothing was started or initialised behind the operator's back.
      expect(fs.readdirSync(cwd)).toEqual([]);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('--embedded together with --database is a mistake (exit 2)', async () => {
    const r = await runCli(['status', '--embedded', '-d', tdb.url]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--database and --embedded both name a database');
  });
});

describe('flag checks', () => {
  it('--exact without --dry-run, and durations without a unit, are usage errors (exit 2)', async () => {
    const exact = await runCli(['migrate', '--exact', '-d', tdb.url]);
    expect(exact.code).toBe(2);
    expect(exact.stderr).toContain('--exact counts rows for the dry-run report: use it with --dry-run');
    for (const [flag, value] of [['--lock-wait', '5'], ['--lock-timeout', '30'], ['--statement-timeout', '600']]) {
      const r = await runCli(['migrate', flag, value, '-d', tdb.url]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${flag}: "${value}" needs a unit, e.g. ${value}s or ${value}m`);
    }
    expect((await runCli(['migrate', '--lock-wait', '5s', '--dry-run', '--exact', '-d', tdb.url])).code).toBe(0);
  });
});

/** The one JSON document on stdout (JSON.parse fails on two, or on anything else printed there). */
function onlyDocument(stdout: string): any {
  return JSON.parse(stdout);
}

describe('--json on every error path: exactly one JSON document on stdout, never a password', () => {
  const secret = 'Wr0ng-Json-Secret';

  it('wrong password and missing database: code, message, SQLSTATE and exit code', async () => {
    const bad = new URL(tdb.url);
    bad.password = secret;
    const pw = await runCli(['migrate', '--json', '-d', bad.toString()]);
    expect(pw.code).toBe(2);
    expect(onlyDocument(pw.stdout)).toMatchObject({ ok: false, exitCode: 2, error: { kind: 'ConnectionError', code: 'connection', sqlstate: '28P01' } });
    expect(onlyDocument(pw.stdout).error.message).toContain('password authentication failed');
    expect(pw.stdout + pw.stderr).not.toContain(secret);
    const missing = new URL(tdb.url);
    missing.pathname = '/no_such_database_json';
    const db = await runCli(['status', '--json', '-d', missing.toString()]);
    expect(db.code).toBe(2);
    expect(onlyDocument(db.stdout)).toMatchObject({ exitCode: 2, error: { code: 'connection', sqlstate: '3D000' } });
  });

  it('a usage error from the command line parser', async () => {
    const r = await runCli(['migrate', '--json', '--bogus']);
    expect(r.code).toBe(2);
    expect(onlyDocument(r.stdout)).toEqual({ ok: false, exitCode: 2, error: { kind: 'UsageError', code: 'usage', message: "unknown option '--bogus'" } });
  });

  it('a lock timeout (exit 3) and a stop while waiting for the lock (exit 130)', async () => {
    const holder = await tdb.client();
    await holder.query('SELECT pg_advisory_lock($1, $2)', [...RUNNER_LOCK]);
    try {
      const timeout = await runCli(['migrate', '--json', '--lock-wait', '1s', '-d', tdb.url]);
      expect(timeout.code).toBe(3);
      expect(onlyDocument(timeout.stdout)).toMatchObject({ ok: false, exitCode: 3, error: { kind: 'LockTimeoutError', code: 'lock-timeout' } });
      // SIGTERM while it waits: one document saying it was interrupted.
      const child = spawn(process.execPath, [BIN, 'migrate', '--json', '--lock-wait', '1m', '-d', tdb.url],
        { env: { ...process.env, ZSETUP_DATABASE_URL: '', DATABASE_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const code = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      while (!stderr.includes('waiting for the runner lock')) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGTERM');
      expect(await code, stderr).toBe(130);
      expect(onlyDocument(stdout)).toMatchObject({ ok: false, exitCode: 130, error: { kind: 'InterruptedError', code: 'interrupted' } });
    } finally {
      await holder.query('SELECT pg_advisory_unlock($1, $2)', [...RUNNER_LOCK]);
    }
  });
});
