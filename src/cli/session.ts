import fs from 'node:fs';
import os from 'node:os';
import { Option, type Command } from 'commander';
import { resolveConfig, type ConfigOptions, type ResolvedConfig } from '../config.js';
import { openDatabase, scrub, type Database } from '../db/connection.js';
import { EXIT, InterruptedError, type ExitCode } from '../errors.js';
import { Reporter } from './reporter.js';

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
    .option('-d, --database <url>', 'PostgreSQL URL (default: $ZSETUP_DATABASE_URL, $DATABASE_URL, else the embedded server)')
    .option('--data-dir <dir>', 'data directory of the embedded PostgreSQL (default: $ZSETUP_DATA_DIR or ./.zsetup)')
    .option('--json', 'print one JSON document on stdout; logs go to stderr')
    .addOption(new Option('--statement-timeout <duration>', 'statement_timeout of zsetup sessions (default: none)').hideHelp())
    .addOption(new Option('--lock-timeout <duration>', 'lock_timeout of zsetup sessions (default: 30s)').hideHelp());
}

/** Adds the flags of commands that run steps: `--lock-wait` and `--concurrency`. */
export function withRunOptions(cmd: Command): Command {
  return cmd
    .option('--lock-wait <duration>', 'how long to wait for another runner (default: 10m)')
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

/**
 * Resolves config, opens the database (embedded when none is configured), installs the stop handlers,
 * runs the action and closes everything on every path. Returns the exit code.
 */
export async function withSession(
  flags: CommonFlags,
  action: (s: Session) => Promise<ExitCode>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ExitCode> {
  const config = resolveConfig(flags, env, os.availableParallelism?.() ?? os.cpus().length);
  const reporter = Reporter.forStderr();
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (name: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      reporter.warn(`second ${name}: exiting now; a rerun resumes from the last committed checkpoint`);
      process.exit(EXIT.interrupted);
    }
    reporter.warn(`${name} received: stopping after the current unit of work (press Ctrl-C again to exit at once)`);
    stop.abort(name);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let database: Database | undefined;
  try {
    // Two connections per stream: projections prefilled side by side may hold `concurrency` + 1 streams.
    database = await openDatabase(
      config.target,
      { statementTimeoutMs: config.statementTimeoutMs, lockTimeoutMs: config.lockTimeoutMs, maxConnections: 2 * config.concurrency + 4 },
      (m) => reporter.info(m),
    );
    reporter.info(`database: ${database.displayUrl} (PostgreSQL ${database.serverVersion})`);
    if (stop.signal.aborted) throw new InterruptedError('stopped before any work started; nothing was changed');
    const db = database;
    return await action({
      config,
      database: db,
      reporter,
      signal: stop.signal,
      output(json, human) {
        reporter.close();
        const url = config.target.kind === 'url' ? config.target.url : '';
        const text = flags.json ? JSON.stringify(json, null, 2) : human();
        process.stdout.write(scrub(text, url) + '\n');
      },
    });
  } finally {
    reporter.close();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await database?.close();
  }
}
