import os from 'node:os';
import pg from 'pg';
import { Kysely, PostgresDialect, type Transaction } from 'kysely';
import { maskUrl, type DatabaseTarget } from '../config.js';
import { ConnectionError, isDatabaseError } from '../errors.js';
import { startEmbedded, type EmbeddedServer } from './embedded.js';
import type { StepsTable } from '../steps-table.js';

// PostgreSQL NUMERIC and BIGINT come back as strings by default; keep BIGINT counts as numbers
// (they stay far below 2^53 here) and NUMERIC positions as exact strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** The tables zsetup reads through kysely's typed builder. Step SQL goes through `sql` templates. */
export interface ZsetupSchema {
  'zsetup.steps': StepsTable;
}

export type Db = Kysely<ZsetupSchema>;
export type Tx = Transaction<ZsetupSchema>;

/** Session settings for every zsetup connection. */
export interface SessionSettings {
  readonly statementTimeoutMs: number;
  readonly lockTimeoutMs: number;
  /** Upper bound of connections in the pool. */
  readonly maxConnections: number;
}

/** An open database: the kysely instance, the raw pool and how to describe it without secrets. */
export interface Database {
  readonly db: Db;
  readonly pool: pg.Pool;
  /** The connection URL with the password masked. */
  readonly displayUrl: string;
  readonly embedded: boolean;
  readonly serverVersion: string;
  readonly serverVersionNum: number;
  /**
   * Cancels (pg_cancel_backend) the statements zsetup's own sessions are running right now, except
   * sessions marked with {@link Database.exemptFromCancel}. Returns how many were cancelled; never throws.
   */
  cancelRunning(): Promise<number>;
  /** Keeps a held session (the runner lock's) out of {@link Database.cancelRunning}. Returns the undo. */
  exemptFromCancel(client: pg.ClientBase): () => void;
  /** The first connection error seen on any of the pool's sessions since it opened, if any. */
  readonly lostConnection: Error | undefined;
  close(): Promise<void>;
}

/** Opens a pool to the target, starting the embedded server when no URL is configured. */
export async function openDatabase(
  target: DatabaseTarget,
  settings: SessionSettings,
  onLog: (message: string) => void = () => {},
): Promise<Database> {
  let server: EmbeddedServer | undefined;
  let url: string;
  if (target.kind === 'embedded') {
    server = await startEmbedded(target.dataDir, onLog);
    url = server.url;
  } else {
    url = target.url;
  }
  try {
    return await connect(url, settings, server);
  } catch (err) {
    await server?.stop();
    throw err;
  }
}

async function connect(url: string, settings: SessionSettings, server?: EmbeddedServer): Promise<Database> {
  const pool = new pg.Pool({
    connectionString: url,
    application_name: 'zsetup',
    statement_timeout: settings.statementTimeoutMs || undefined,
    lock_timeout: settings.lockTimeoutMs || undefined,
    connectionTimeoutMillis: 10_000,
    max: settings.maxConnections,
    idleTimeoutMillis: 10_000,
  });
  const sessions = trackSessions(pool);
  let version: { server_version: string; server_version_num: number };
  try {
    const r = await pool.query(
      `SELECT current_setting('server_version') AS server_version, current_setting('server_version_num')::int AS server_version_num`,
    );
    version = r.rows[0];
  } catch (err) {
    await pool.end().catch(() => {});
    throw connectionError(err, url);
  }
  const db = new Kysely<ZsetupSchema>({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    pool,
    displayUrl: server ? `embedded PostgreSQL in ${server.dataDir} (${maskUrl(url)})` : maskUrl(url),
    embedded: server !== undefined,
    serverVersion: version.server_version,
    serverVersionNum: version.server_version_num,
    cancelRunning: () => cancelSessions(url, sessions),
    exemptFromCancel(client) {
      sessions.exempt.add(client);
      return () => sessions.exempt.delete(client);
    },
    get lostConnection() {
      return sessions.lost;
    },
    async close() {
      await db.destroy().catch(() => {});
      // kysely only ends a pool it has used; end it ourselves so no idle client keeps the process alive.
      if (!pool.ended) await pool.end().catch(() => {});
      await server?.stop();
    },
  };
}

/** The pool's sessions, as far as cancelling and error reporting need them. */
interface Sessions {
  readonly clients: Set<pg.Client>;
  readonly exempt: Set<pg.ClientBase>;
  lost: Error | undefined;
}

/**
 * Puts an 'error' listener on every session of the pool for its whole life. pg-pool listens only while
 * a client is idle; a checked-out client (a kysely transaction, a COPY stream, a held session) whose
 * server goes away emits 'error' with no listener, and Node ends the process with a stack trace. The
 * query in flight is rejected as well, so the error reaches the step that ran it; here it is only noted.
 */
function trackSessions(pool: pg.Pool): Sessions {
  const sessions: Sessions = { clients: new Set(), exempt: new Set(), lost: undefined };
  const note = (err: Error) => {
    sessions.lost ??= err;
  };
  pool.on('error', note);
  pool.on('connect', (client) => {
    sessions.clients.add(client);
    client.on('error', note);
  });
  pool.on('remove', (client) => {
    sessions.clients.delete(client);
    sessions.exempt.delete(client);
  });
  return sessions;
}

/**
 * Cancels what zsetup's own sessions run: on a separate short-lived connection (the pool may be
 * full), only backends whose pid is one of this pool's sessions AND whose application_name is zsetup's,
 * and only while they are active, so no other session of the server is ever touched.
 */
async function cancelSessions(url: string, sessions: Sessions): Promise<number> {
  const pids = [...sessions.clients].filter((c) => !sessions.exempt.has(c)).map((c) => (c as unknown as { processID?: number }).processID)
    .filter((pid): pid is number => typeof pid === 'number');
  if (pids.length === 0) return 0;
  const client = new pg.Client({ connectionString: url, application_name: 'zsetup-cancel', connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const r = await client.query<{ n: number }>(
      `SELECT count(*) FILTER (WHERE pg_cancel_backend(pid))::int AS n FROM pg_stat_activity
        WHERE pid = ANY($1::int[]) AND application_name = 'zsetup' AND state = 'active' AND pid <> pg_backend_pid()`,
      [pids],
    );
    return r.rows[0].n;
  } catch {
    return 0;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Maps a failed connection attempt to one clear line, with the password masked. */
export function connectionError(err: unknown, url: string): ConnectionError {
  const where = maskUrl(url);
  let host = '?';
  let database = '?';
  let user = '?';
  try {
    const u = new URL(url);
    host = `${u.hostname}:${u.port || 5432}`;
    database = decodeURIComponent(u.pathname.replace(/^\//, '')) || user;
    user = decodeURIComponent(u.username) || os.userInfo().username;
  } catch {
    /* keep placeholders */
  }
  const e = err as NodeJS.ErrnoException & { code?: string };
  const code = e?.code ?? '';
  const text = e instanceof Error ? e.message : String(err);
  const reasons: Record<string, string> = {
    ECONNREFUSED: `connection refused by ${host} (is PostgreSQL running and listening there?)`,
    ENOTFOUND: `unknown host in ${where}`,
    EAI_AGAIN: `host name lookup failed for ${where}`,
    ETIMEDOUT: `connection to ${host} timed out`,
    EHOSTUNREACH: `host ${host} is unreachable`,
    '28P01': `password authentication failed for user "${user}"`,
    '28000': `the server rejected the login of user "${user}" (no pg_hba.conf entry or no such role)`,
    '3D000': `database "${database}" does not exist`,
    '57P03': `the server at ${host} is starting up or shutting down`,
  };
  const reason = reasons[code] ?? (/timeout/i.test(text) ? `connection to ${host} timed out` : scrub(text, url));
  return new ConnectionError(
    `cannot connect to ${where}: ${reason}`,
    isDatabaseError(err) ? undefined : 'check --database / ZSETUP_DATABASE_URL / DATABASE_URL',
    isDatabaseError(err) ? err.code : undefined,
  );
}

/** Removes a URL's password from any text (error messages sometimes echo connection strings). */
export function scrub(text: string, url: string): string {
  try {
    const pw = decodeURIComponent(new URL(url).password);
    // A password that also appears in the masked URL (say, equal to the user name) cannot be told
    // apart from it; replacing it would garble the URL and reveal which part it is.
    if (!pw || maskUrl(url).includes(pw)) return text;
    return text.split(pw).join('***');
  } catch {
    return text;
  }
}
