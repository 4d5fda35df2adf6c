import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { maskUrl, parseDuration, resolveConfig } from '../src/config.js';
import { ConfigError, connectionLostDuring, describeError, InterruptedError, isConnectionLost, PRIVILEGE_HINT, RefusedError } from '../src/errors.js';
import { exitCodeFor } from '../src/cli/exit-code.js';
import { formatProgress } from '../src/cli/format.js';
import { ProgressMeter } from '../src/progress.js';

describe('resolveConfig', () => {
  it('prefers --database over ZSETUP_DATABASE_URL over DATABASE_URL', () => {
    const env = { ZSETUP_DATABASE_URL: 'postgres://z@h/z', DATABASE_URL: 'postgres://d@h/d' };
    expect(resolveConfig({ database: 'postgres://f@h/f' }, env).target).toEqual({ kind: 'url', url: 'postgres://f@h/f' });
    expect(resolveConfig({}, env).target).toEqual({ kind: 'url', url: 'postgres://z@h/z' });
    expect(resolveConfig({}, { DATABASE_URL: 'postgres://d@h/d' }).target).toEqual({ kind: 'url', url: 'postgres://d@h/d' });
  });

  it('uses the embedded server only when asked (--embedded, ZSETUP_EMBEDDED=1) or where it is the default (seed, demo)', () => {
    expect(resolveConfig({ embedded: true, dataDir: '/tmp/x' }, {}).target).toEqual({ kind: 'embedded', dataDir: '/tmp/x' });
    expect(resolveConfig({}, { ZSETUP_EMBEDDED: '1', ZSETUP_DATA_DIR: '/tmp/y' }).target).toEqual({ kind: 'embedded', dataDir: '/tmp/y' });
    expect(resolveConfig({}, {}, { embeddedByDefault: true }).target).toEqual({ kind: 'embedded', dataDir: path.resolve('.zsetup') });
    // The explicit flag beats a URL in the environment; ZSETUP_EMBEDDED beats the generic DATABASE_URL.
    expect(resolveConfig({ embedded: true }, { DATABASE_URL: 'postgres://d@h/d' }).target.kind).toBe('embedded');
    expect(resolveConfig({}, { ZSETUP_EMBEDDED: '1', DATABASE_URL: 'postgres://d@h/d' }).target.kind).toBe('embedded');
    // A URL given for a command whose default is the embedded server still wins.
    expect(resolveConfig({}, { DATABASE_URL: 'postgres://d@h/d' }, { embeddedByDefault: true }).target.kind).toBe('url');
  });

  it('with no database named, refuses (exit 2) and lists every way to name one', () => {
    const err = catchError(() => resolveConfig({}, { ZSETUP_EMBEDDED: '0' }));
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(2);
    for (const way of ['--database', 'ZSETUP_DATABASE_URL', 'DATABASE_URL', '--embedded', 'ZSETUP_EMBEDDED=1']) expect((err as Error).message).toContain(way);
  });

  it('refuses two answers at one level', () => {
    expect(catchError(() => resolveConfig({ embedded: true, database: 'postgres://f@h/f' }, {}))?.message).toContain('--database and --embedded');
    expect(catchError(() => resolveConfig({}, { ZSETUP_EMBEDDED: 'true', ZSETUP_DATABASE_URL: 'postgres://z@h/z' }))?.message).toContain('ZSETUP_DATABASE_URL and ZSETUP_EMBEDDED');
  });

  it('reports every problem at once', () => {
    const err = catchError(() => resolveConfig({ database: 'mysql://x', lockWait: 'soon', concurrency: '0' }, {}));
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toContain('postgres://');
    expect(message).toContain('--lock-wait');
    expect(message).toContain('--concurrency');
    expect((err as ConfigError).exitCode).toBe(2);
  });

  it('parses durations and defaults; a number without a unit is refused, not guessed', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('1.5s')).toBe(1_500);
    expect(parseDuration('12')).toBeUndefined();
    expect(parseDuration('1 week')).toBeUndefined();
    const url = { database: 'postgres://f@h/f' };
    const c = resolveConfig(url, {}, { cpus: 8 });
    expect(c).toMatchObject({ lockWaitMs: 600_000, lockTimeoutMs: 30_000, statementTimeoutMs: 0, concurrency: 8 });
    expect(resolveConfig({ ...url, lockWait: '2s' }, { ZSETUP_LOCK_WAIT: '9s' }).lockWaitMs).toBe(2000);
    expect(resolveConfig(url, { ZSETUP_LOCK_WAIT: '9s' }).lockWaitMs).toBe(9000);
    const bare = catchError(() => resolveConfig({ ...url, lockWait: '5', lockTimeout: '30', statementTimeout: '10' }, {}));
    expect(bare?.message).toContain('--lock-wait: "5" needs a unit, e.g. 5s or 5m');
    expect(bare?.message).toContain('--lock-timeout: "30" needs a unit');
    expect(bare?.message).toContain('--statement-timeout: "10" needs a unit');
    expect(catchError(() => resolveConfig(url, { ZSETUP_LOCK_WAIT: '5' }))?.message).toContain('needs a unit');
  });
});

function catchError(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  return undefined;
}

describe('maskUrl', () => {
  it('never shows the password', () => {
    expect(maskUrl('postgres://zitadel:s3cr%40t@db:5432/zitadel')).toBe('postgres://zitadel:***@db:5432/zitadel');
    expect(maskUrl('postgres://zitadel@db/zitadel')).toBe('postgres://zitadel@db/zitadel');
    expect(maskUrl('postgres://u:pa ss@[bad/x')).not.toContain('pa ss');
  });
});

describe('exit codes and progress', () => {
  it('maps step results to the documented exit codes', () => {
    expect(exitCodeFor([{ id: 'a', title: 'a', status: 'succeeded' }])).toBe(0);
    expect(exitCodeFor([{ id: 'a', title: 'a', status: 'skipped' }])).toBe(0);
    expect(exitCodeFor([{ id: 'a', title: 'a', status: 'failed', error: { kind: 'DatabaseError', code: 'database', message: 'x', exitCode: 1 } }])).toBe(1);
    expect(exitCodeFor([{ id: 'a', title: 'a', status: 'failed', error: { kind: 'RefusedError', code: 'refused', message: 'x', exitCode: 5 } }])).toBe(5);
    expect(exitCodeFor([{ id: 'a', title: 'a', status: 'interrupted' }, { id: 'b', title: 'b', status: 'not-run' }])).toBe(130);
  });

  it('computes rate and ETA over a window', () => {
    let t = 0;
    const meter = new ProgressMeter(10_000, () => t);
    meter.update({ phase: 'copy', done: 0, total: 1000, unit: 'events' });
    t = 2000;
    const p = meter.update({ phase: 'copy', done: 200, total: 1000, unit: 'events' });
    expect(p.rate).toBe(100);
    expect(p.etaSeconds).toBe(8);
    expect(formatProgress(p)).toBe('copy: 200 / 1,000 events (20%), 100 events/s, ETA 8.0s');
    t = 3000;
    expect(meter.update({ phase: 'index es_wm', done: 0, total: 1, unit: 'indexes' }).rate).toBeNull();
    // BIGINT/NUMERIC counts can arrive as strings; the meter works on numbers.
    const p2 = meter.update({ phase: 'copy', done: '12000' as unknown as number, total: '12000' as unknown as number });
    expect(p2.done).toBe(12000);
    expect(p2.total).toBe(12000);
  });
});

describe('error reports', () => {
  const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

  it('tells a lost connection from a failed statement', () => {
    for (const err of [pgError('57P01', 'terminating connection due to administrator command'), pgError('57P02', 'crash shutdown'),
      pgError('08006', 'connection failure'), pgError('ECONNRESET', 'read ECONNRESET'), new Error('Connection terminated unexpectedly'),
      new Error('Client has encountered a connection error and is not queryable')]) {
      expect(isConnectionLost(err), err.message).toBe(true);
      expect(describeError(err)).toMatchObject({ code: 'connection-lost', exitCode: 6 });
    }
    for (const err of [pgError('23505', 'duplicate key'), pgError('57014', 'canceling statement due to user request'), new Error('boom'), new ConfigError('x')]) {
      expect(isConnectionLost(err), err.message).toBe(false);
    }
  });

  it('names the step and phase of a lost connection, keeping the SQLSTATE', () => {
    const e = describeError(connectionLostDuring('events2', 'copy', pgError('57P01', 'terminating connection due to administrator command')));
    expect(e).toMatchObject({ message: 'lost the connection to PostgreSQL during events2: copy; rerun to resume', sqlstate: '57P01', exitCode: 6, code: 'connection-lost' });
  });

  it('gives every class its code and exit code, and a missing privilege a hint', () => {
    expect(describeError(new RefusedError('no'))).toMatchObject({ code: 'refused', exitCode: 5 });
    expect(describeError(new InterruptedError('stop'))).toMatchObject({ code: 'interrupted', exitCode: 130 });
    expect(describeError(new ConfigError('bad'))).toMatchObject({ code: 'usage', exitCode: 2 });
    expect(describeError(pgError('42501', 'permission denied for schema eventstore'))).toMatchObject({ code: 'database', sqlstate: '42501', hint: PRIVILEGE_HINT, exitCode: 1 });
  });
});
