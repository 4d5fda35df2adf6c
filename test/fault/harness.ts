/**
 * Fault-suite harness: seeded legacy template databases, cheap copies of them, and the real built CLI
 * (`bin/zsetup.js`) run as a child process that the tests can kill, stop, resume and race.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { openDatabase } from '../../src/db/connection.js';
import { seedLegacy } from '../../src/seed/index.js';
import { BIN, ensureBuilt, type CliRun } from '../support/cli.js';
import { queryOnce, urlFor } from '../support/db.js';

const root = path.resolve(import.meta.dirname, '../..');

/** A database of the test server that the fault tests arrange, break and inspect. */
export interface FaultDb {
  readonly name: string;
  readonly url: string;
  query<T extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<T[]>;
  /** A connected client (ended by drop()). */
  client(options?: { user?: string; password?: string }): Promise<pg.Client>;
  drop(): Promise<void>;
}

const created = new Set<FaultDb>();

/** Runs one statement on the server's `postgres` database. */
export function admin(text: string, values?: unknown[]): Promise<any[]> {
  return queryOnce(urlFor('postgres'), text, values);
}

function handle(name: string): FaultDb {
  const url = urlFor(name);
  const clients: pg.Client[] = [];
  const db: FaultDb = {
    name,
    url,
    query: (text, values) => queryOnce(url, text, values),
    async client(options = {}) {
      const u = new URL(url);
      if (options.user) u.username = options.user;
      if (options.password !== undefined) u.password = options.password;
      const c = new pg.Client({ connectionString: u.toString() });
      c.on('error', () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    async drop() {
      created.delete(db);
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
  created.add(db);
  return db;
}

function uniqueName(prefix: string): string {
  return `${prefix}_${crypto.randomBytes(5).toString('hex')}`;
}

/** An empty database. */
export async function emptyDb(prefix = 'zf'): Promise<FaultDb> {
  const name = uniqueName(prefix);
  await admin(`CREATE DATABASE ${name}`);
  return handle(name);
}

/** A database seeded with a legacy event store (seedLegacy: events, constraints, indexes, old milestones). */
export async function seededTemplate(prefix: string, options: { events: number; instances: number; seed?: number }): Promise<FaultDb> {
  const db = await emptyDb(prefix);
  const database = await openDatabase({ kind: 'url', url: db.url }, { statementTimeoutMs: 0, lockTimeoutMs: 30_000, maxConnections: 4 });
  try {
    await seedLegacy(database, { events: options.events, instances: options.instances, seed: options.seed ?? 7 });
  } finally {
    await database.close();
  }
  return db;
}

/**
 * A copy of `template` (CREATE DATABASE … TEMPLATE): no session may be connected to the template,
 * so leftovers (e.g. a killed run's backends) are terminated first.
 */
export async function copyOf(template: FaultDb, prefix = 'zfc'): Promise<FaultDb> {
  const name = uniqueName(prefix);
  for (let attempt = 1; ; attempt++) {
    await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [template.name]);
    try {
      await admin(`CREATE DATABASE ${name} TEMPLATE ${template.name}`);
      return handle(name);
    } catch (err) {
      // 55006: source database is being accessed by other users (a session not yet gone).
      if ((err as { code?: string }).code !== '55006' || attempt >= 20) throw err;
      await sleep(100);
    }
  }
}

/** Drops every database this file made and is still holding. */
export async function dropAll(): Promise<void> {
  await Promise.all([...created].map((d) => d.drop().catch(() => {})));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A running CLI process. */
export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything written to stderr so far. */
  stderr(): string;
  readonly done: Promise<CliRun>;
}

/** Builds dist/ when needed (npm test builds first; a bare `vitest run` may not have). */
export function prepareCli(): void {
  if (!fs.existsSync(path.join(root, 'dist', 'src', 'cli', 'test-hooks.js'))) fs.rmSync(path.join(root, 'dist', 'src', 'cli', 'main.js'), { force: true });
  ensureBuilt();
}

/** Starts `bin/zsetup.js args` (no TTY: plain lines), with `env` added. */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): CliProcess {
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: root,
    env: { ...process.env, ZSETUP_DATABASE_URL: '', DATABASE_URL: '', NO_COLOR: '1', ZSETUP_PROGRESS_INTERVAL_MS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
  return { child, pid: child.pid!, stderr: () => stderr, done };
}

/** Runs the CLI to its end. */
export function zsetup(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return startCli(args, env).done;
}

/** `migrate --init-projections` with small parallelism, so every phase has several units. */
export function migrateArgs(db: FaultDb, ...extra: string[]): string[] {
  return ['migrate', '--init-projections', '--concurrency', '2', '-d', db.url, ...extra];
}

/** Polls until `check` returns a truthy value (or fails after `timeoutMs`). */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | null | false>, timeoutMs = 60_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** True once the process is stopped (SIGSTOP): state `T` in /proc. */
export async function waitStopped(run: CliProcess): Promise<void> {
  await waitFor(`process ${run.pid} to stop`, async () => {
    try {
      const stat = fs.readFileSync(`/proc/${run.pid}/stat`, 'utf8');
      return /\) T /.test(stat);
    } catch {
      throw new Error(`process ${run.pid} ended before it stopped: ${run.stderr()}`);
    }
  });
}

/** zsetup's backends on a database (application_name = 'zsetup'). */
export async function zsetupBackends(db: FaultDb): Promise<{ pid: number; state: string; wait_event_type: string | null; query: string }[]> {
  return admin(
    `SELECT pid, state, wait_event_type, query FROM pg_stat_activity WHERE datname = $1 AND application_name = 'zsetup'`,
    [db.name],
  );
}

/** Waits until every backend of the database except ours has gone (a killed run's orphans finish and exit). */
export async function waitNoBackends(db: FaultDb): Promise<void> {
  await waitFor('orphaned backends to end', async () =>
    (await admin(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'zsetup'`, [db.name]))[0].n === 0);
}
