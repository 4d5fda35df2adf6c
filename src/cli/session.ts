import fs from 'node:fs';
import type { Command } from 'commander';
import { availableCpus } from '../cpus.js';
import { resolveConfig, type ConfigOptions, type ResolvedConfig } from '../config.js';
import { openDatabase, scrub, type Database } from '../db/connection.js';
import {
  ConnectionLostError, EXIT, INSUFFICIENT_PRIVILEGE, InterruptedError, isConnectionLost, isDatabaseError, PRIVILEGE_HINT,
  RefusedError, ZsetupError, type ExitCode,
} from '../errors.js';
import { Reporter } from './reporter.js';
import { StopHandler } from './stop.js';

/** zsetup's version, from package.json. */
export const VERSION: string = JSON.parse(
  fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
).version;

/** Flags every database command takes. */
export interface CommonFlags extends ConfigOptions {
  readonly json?: boolean;
}

/** Adds the shared connection and output flags to a command. One place, not copied per command. */
export function withCommonOptions(cmd: Command): Command {
  return cmd
    .option('-d, --database <url>', 'PostgreSQL URL (default: $ZSETUP_DATABASE_URL, else $DATABASE_URL)')
    .option('--embedded', 'use the embedded PostgreSQL in --data-dir (also: ZSETUP_EMBEDDED=1); never the default for this command')
    .option('--data-dir <dir>', 'data directory of the embedded PostgreSQL (default: $ZSETUP_DATA_DIR or ./.zsetup)')
    .option('--json', 'print one JSON document on stdout, errors included; logs go to stderr')
    .option('--statement-timeout <duration>', 'statement_timeout of zsetup sessions, e.g. 30m (default: none)')
    .option('--lock-timeout <duration>', 'lock_timeout of zsetup sessions, e.g. 30s (default: 30s)');
}

/** Adds the flags of commands that run steps: `--lock-wait` and `--concurrency`. */
export function withRunOptions(cmd: Command): Command {
  return cmd
    .option('--lock-wait <duration>', 'how long to wait for another runner, e.g. 30s, 10m (default: 10m)')
    .option('--concurrency <n>', 'parallel connections for data-moving steps, and projections prefilled at once (default: number of CPUs, at least 2)');
}

/** What a command action gets. */
export interface Session {
  readonly config: ResolvedConfig;
  readonly database: Database;
  readonly reporter: Reporter;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  readonly signal: AbortSignal;
  /** Prints the JSON document (with --json) or the human text, on stdout. */
  output(json: unknown, human: () => string): void;
}

/** How a command uses {@link withSession}. */
export interface SessionOptions {
  /** The embedded server is this command's default when no database is named (`seed`). Default is false. */
  readonly embeddedByDefault?: boolean;
  /**
   * The command only reads (`status`, `verify`, a dry-run): a missing privilege (42501) is a refusal
   * with a hint (exit 5), since nothing was written. Default is false.
   */
  readonly readOnly?: boolean;
}

/**
 * Resolves config, opens the database, installs the stop handlers, runs the action and closes
 * everything on every path. Returns the exit code.
 */
export async function withSession(
  flags: CommonFlags,
  action: (s: Session) => Promise<ExitCode>,
  env: NodeJS.ProcessEnv = process.env,
  options: SessionOptions = {},
): Promise<ExitCode> {
  const config = resolveConfig(flags, env, { embeddedByDefault: options.embeddedByDefault, cpus: availableCpus() });
  const reporter = Reporter.forStderr();
  let database: Database | undefined;
  const stop = new StopHandler({
    warn: (m) => reporter.warn(m),
    cancelRunning: async () => database?.cancelRunning(),
    beforeForcedExit(line) {
      reporter.close();
      process.stderr.write(`zsetup: ${line}\n`);
    },
  });
  stop.install();
  try {
    // Two connections per stream: projections prefilled side by side may hold `concurrency` + 1 streams.
    database = await openDatabase(
      config.target,
      { statementTimeoutMs: config.statementTimeoutMs, lockTimeoutMs: config.lockTimeoutMs, maxConnections: 2 * config.concurrency + 4 },
      (m) => reporter.info(m),
    );
    reporter.info(`database: ${database.displayUrl} (PostgreSQL ${database.serverVersion})`);
    if (stop.signal.aborted) throw new InterruptedError(`stopped (${String(stop.signal.reason)}) before any work started; nothing was changed`);
    const db = database;
    const exitCode = await action({
      config,
      database: db,
      reporter,
      signal: stop.signal,
      output(json, human) {
        reporter.close();
        const url = config.target.kind === 'url' ? config.target.url : '';
        const text = flags.json ? JSON.stringify(json, null, 2) : human();
        process.stdout.write(scrub(text, url) + '\n');
        markDocumentWritten();
      },
    });
    if (exitCode === EXIT.interrupted && stop.signal.aborted) {
      reporter.close();
      process.stderr.write(`zsetup: interrupted (${String(stop.signal.reason)}); rerun to resume\n`);
    }
    return exitCode;
  } catch (err) {
    throw explain(err, stop.signal, options.readOnly ?? false);
  } finally {
    reporter.close();
    await database?.close();
    stop.uninstall();
  }
}

/**
 * What a failure means given how the session went: after a stop request a cancelled statement is the
 * interruption itself; in a read-only command a missing privilege refuses (nothing was written).
 */
function explain(err: unknown, signal: AbortSignal, readOnly: boolean): unknown {
  if (err instanceof ZsetupError) return err;
  if (isConnectionLost(err)) return new ConnectionLostError(`lost the connection to PostgreSQL (${(err as Error).message}); rerun to resume`, undefined, isDatabaseError(err) ? err.code : undefined);
  if (signal.aborted) {
    return new InterruptedError(`interrupted (${String(signal.reason)}); rerun to resume`, undefined, isDatabaseError(err) ? err.code : undefined);
  }
  if (readOnly && isDatabaseError(err) && err.code === INSUFFICIENT_PRIVILEGE) {
    return new RefusedError(`${err.message}; nothing was changed`, PRIVILEGE_HINT, err.code);
  }
  return err;
}

let documentWritten = false;

function markDocumentWritten(): void {
  documentWritten = true;
}

/** Whether a command already printed its (one) result document on stdout. */
export function wasDocumentWritten(): boolean {
  return documentWritten;
}
