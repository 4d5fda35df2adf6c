import { describe, expect, it } from 'vitest';
import { maskUrl, parseDuration, resolveConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { exitCodeFor } from '../src/cli/exit-code.js';
import { formatProgress } from '../src/cli/format.js';
import { ProgressMeter } from '../src/progress.js';

describe('resolveConfig', () => {
  it('prefers --database over ZSETUP_DATABASE_URL over DATABASE_URL over the embedded default', () => {
    const env = { ZSETUP_DATABASE_URL: 'postgres://z@h/z', DATABASE_URL: 'postgres://d@h/d' };
    expect(resolveConfig({ database: 'postgres://f@h/f' }, env).target).toEqual({ kind: 'url', url: 'postgres://f@h/f' });
    expect(resolveConfig({}, env).target).toEqual({ kind: 'url', url: 'postgres://z@h/z' });
    expect(resolveConfig({}, { DATABASE_URL: 'postgres://d@h/d' }).target).toEqual({ kind: 'url', url: 'postgres://d@h/d' });
    const embedded = resolveConfig({ dataDir: '/tmp/x' }, {}).target;
    expect(embedded).toEqual({ kind: 'embedded', dataDir: '/tmp/x' });
    expect(resolveConfig({}, { ZSETUP_DATA_DIR: '/tmp/y' }).target).toEqual({ kind: 'embedded', dataDir: '/tmp/y' });
  });

  it('reports every problem at once', () => {
    let err: unknown;
    try {
      resolveConfig({ database: 'mysql://x', lockWait: 'soon', concurrency: '0' }, {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toContain('postgres://');
    expect(message).toContain('--lock-wait');
    expect(message).toContain('--concurrency');
    expect((err as ConfigError).exitCode).toBe(2);
  });

  it('parses durations and defaults', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('12')).toBe(12_000);
    expect(parseDuration('1 week')).toBeUndefined();
    const c = resolveConfig({}, {}, 8);
    expect(c).toMatchObject({ lockWaitMs: 600_000, lockTimeoutMs: 30_000, statementTimeoutMs: 0, concurrency: 8 });
    expect(resolveConfig({ lockWait: '2s' }, { ZSETUP_LOCK_WAIT: '9s' }).lockWaitMs).toBe(2000);
    expect(resolveConfig({}, { ZSETUP_LOCK_WAIT: '9s' }).lockWaitMs).toBe(9000);
  });
});

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
    expect(exitCodeFor([{ id: 'a', title: 'a', status: 'failed', error: { kind: 'DatabaseError', message: 'x', exitCode: 1 } }])).toBe(1);
    expect(exitCodeFor([{ id: 'a', title: 'a', status: 'failed', error: { kind: 'RefusedError', message: 'x', exitCode: 5 } }])).toBe(5);
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
