import path from 'node:path';
import { ConfigError } from './errors.js';

/** Options as given by flags; every field optional. */
export interface ConfigOptions {
  readonly database?: string;
  /** `--embedded`: use the embedded PostgreSQL even though no database is named. */
  readonly embedded?: boolean;
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

/**
 * Parses `500ms`, `30s`, `5m`, `1h` into milliseconds. A bare number is refused: `--lock-wait 5`
 * could mean seconds or minutes, and guessing wrong waits 60 times too long or too short.
 */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(text);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNITS[m[2]]);
}

/** How a command may use the embedded PostgreSQL when no database is named. */
export interface ResolveOptions {
  /** Fall back to the embedded server when no database is named (`seed`, `demo`). Default is false. */
  readonly embeddedByDefault?: boolean;
  /** CPUs of this machine (the default concurrency). Default is 2. */
  readonly cpus?: number;
}

/** What an operator can do to name the database, for the error when none is named. */
export const WAYS_TO_NAME_A_DATABASE = [
  '--database postgres://user:password@host:5432/dbname',
  'ZSETUP_DATABASE_URL=postgres://…',
  'DATABASE_URL=postgres://…',
  '--embedded (or ZSETUP_EMBEDDED=1) for the embedded PostgreSQL in --data-dir (default ./.zsetup)',
] as const;

/**
 * Resolves flags > environment (`ZSETUP_*`, `DATABASE_URL`) > defaults and reports every problem at once.
 */
export function resolveConfig(
  flags: ConfigOptions,
  env: NodeJS.ProcessEnv = process.env,
  options: ResolveOptions = {},
): ResolvedConfig {
  const problems: string[] = [];
  const duration = (name: string, value: string | undefined, fallback: number): number => {
    if (value === undefined || value === '') return fallback;
    const ms = parseDuration(value);
    if (ms === undefined) {
      const hint = /^\s*\d+(\.\d+)?\s*$/.test(value) ? `needs a unit, e.g. ${value.trim()}s or ${value.trim()}m` : 'is not a duration (use e.g. 500ms, 30s, 5m, 1h)';
      problems.push(`${name}: "${value}" ${hint}`);
    }
    return ms ?? fallback;
  };
  const choice = chooseDatabase(flags, env, options.embeddedByDefault ?? false, problems);
  const url = choice === 'embedded' || choice === 'none' ? undefined : choice;
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
  const concurrencyText = String(flags.concurrency ?? nonEmpty(env.ZSETUP_CONCURRENCY) ?? Math.max(2, options.cpus ?? 2));
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

/**
 * The database to use, or `none` (a problem is recorded): `--database` or `--embedded` >
 * `ZSETUP_DATABASE_URL` or `ZSETUP_EMBEDDED=1` > `DATABASE_URL` > the embedded server where the command
 * allows it as a default. Two answers at one level are a mistake worth stopping for.
 */
function chooseDatabase(flags: ConfigOptions, env: NodeJS.ProcessEnv, embeddedByDefault: boolean, problems: string[]): string | 'embedded' | 'none' {
  const levels: [url: string | undefined, embedded: boolean, names: string][] = [
    [nonEmpty(flags.database), Boolean(flags.embedded), '--database and --embedded'],
    [nonEmpty(env.ZSETUP_DATABASE_URL), isOn(env.ZSETUP_EMBEDDED), 'ZSETUP_DATABASE_URL and ZSETUP_EMBEDDED'],
    [nonEmpty(env.DATABASE_URL), false, ''],
  ];
  for (const [url, embedded, names] of levels) {
    if (url !== undefined && embedded) {
      problems.push(`${names} both name a database: use one of them`);
      return 'none';
    }
    if (url !== undefined) return url;
    if (embedded) return 'embedded';
  }
  if (embeddedByDefault) return 'embedded';
  problems.push(`no database named; zsetup does not guess one. Name it with one of:\n  ${WAYS_TO_NAME_A_DATABASE.join('\n  ')}`);
  return 'none';
}

function isOn(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());
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
