import path from 'node:path';
import { ConfigError } from './errors.js';

/** Options as given by flags; every field optional. */
export interface ConfigOptions {
  readonly database?: string;
  readonly dataDir?: string;
  readonly lockWait?: string;
  readonly statementTimeout?: string;
  readonly lockTimeout?: string;
  readonly concurrency?: string | number;
}

/** Where zsetup connects: a URL, or the embedded PostgreSQL in a data directory. */
export type DatabaseTarget =
  | { readonly kind: 'url'; readonly url: string }
  | { readonly kind: 'embedded'; readonly dataDir: string };

/** Configuration after flags > environment > defaults were applied and validated. */
export interface ResolvedConfig {
  readonly target: DatabaseTarget;
  /** How long to wait for another runner's lock, in ms. Default is 10 minutes. */
  readonly lockWaitMs: number;
  /** statement_timeout for zsetup's sessions, in ms (0 = none). Default is 0: bulk steps run long. */
  readonly statementTimeoutMs: number;
  /** lock_timeout for zsetup's sessions, in ms. Default is 30 s, so a blocked DDL fails instead of hanging. */
  readonly lockTimeoutMs: number;
  /** Parallel connections for data-moving steps. Default is the number of CPUs of this machine, at least 2. */
  readonly concurrency: number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `500ms`, `30s`, `5m`, `1h` or a bare number of seconds into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']);
}

/**
 * Resolves flags > environment (`ZSETUP_*`, `DATABASE_URL`) > defaults and reports every problem at once.
 */
export function resolveConfig(
  flags: ConfigOptions,
  env: NodeJS.ProcessEnv = process.env,
  cpus = 2,
): ResolvedConfig {
  const problems: string[] = [];
  const duration = (name: string, value: string | undefined, fallback: number): number => {
    if (value === undefined || value === '') return fallback;
    const ms = parseDuration(value);
    if (ms === undefined) problems.push(`${name}: "${value}" is not a duration (use e.g. 500ms, 30s, 5m, 1h)`);
    return ms ?? fallback;
  };
  const url = flags.database ?? nonEmpty(env.ZSETUP_DATABASE_URL) ?? nonEmpty(env.DATABASE_URL);
  if (url !== undefined && !/^postgres(ql)?:\/\//.test(url)) {
    problems.push('database URL must start with postgres:// or postgresql://');
  } else if (url !== undefined) {
    try {
      new URL(url);
    } catch {
      problems.push('database URL cannot be parsed');
    }
  }
  const dataDir = path.resolve(flags.dataDir ?? nonEmpty(env.ZSETUP_DATA_DIR) ?? '.zsetup');
  const concurrencyText = String(flags.concurrency ?? nonEmpty(env.ZSETUP_CONCURRENCY) ?? Math.max(2, cpus));
  const concurrency = Number(concurrencyText);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    problems.push(`--concurrency: "${concurrencyText}" must be a whole number from 1 to 64`);
  }
  const config: ResolvedConfig = {
    target: url !== undefined ? { kind: 'url', url } : { kind: 'embedded', dataDir },
    lockWaitMs: duration('--lock-wait', flags.lockWait ?? env.ZSETUP_LOCK_WAIT, 10 * 60_000),
    statementTimeoutMs: duration('--statement-timeout', flags.statementTimeout ?? env.ZSETUP_STATEMENT_TIMEOUT, 0),
    lockTimeoutMs: duration('--lock-timeout', flags.lockTimeout ?? env.ZSETUP_LOCK_TIMEOUT, 30_000),
    concurrency,
  };
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return config;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

/** Replaces the password of a PostgreSQL URL with `***`. Unparsable text is returned with any `:secret@` masked. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
  }
}
