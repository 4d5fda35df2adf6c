import type pg from 'pg';
import { InterruptedError, LockTimeoutError } from '../errors.js';
import type { LockHolder } from '../step.js';
import type { Database } from './connection.js';

/** The runner lock: a session-level advisory lock on the two keys ('zset', 1). */
export const RUNNER_LOCK = [0x7a736574, 1] as const;

/** Options for {@link withAdvisoryLock}. */
export interface LockOptions {
  /** Give up after this long. */
  readonly waitMs: number;
  /** Time between try-lock attempts. Default is 500 ms. */
  readonly pollMs?: number;
  /** Called on each unsuccessful attempt with whoever holds the lock. */
  readonly onWait?: (holder: LockHolder | null, waitedMs: number) => void;
  /** Called when the lock connection dies while `fn` runs: the lock is gone, so the work must stop. */
  readonly onLost?: (err: Error) => void;
  /** Stops waiting (with an InterruptedError) when aborted. */
  readonly signal?: AbortSignal;
}

/**
 * Takes the runner lock with a polling try-lock (never a blocking wait, so the caller can report
 * who holds it and can time out), runs `fn`, and releases the lock on every path.
 */
export async function withAdvisoryLock<T>(
  database: Database,
  options: LockOptions,
  fn: (waitedMs: number) => Promise<T>,
): Promise<T> {
  const client = await database.pool.connect();
  let broken = false;
  const onError = (err: Error) => {
    broken = true;
    options.onLost?.(err);
  };
  client.on('error', onError);
  // Stopping cancels zsetup's running statements; the lock session must live on to release the lock.
  const unexempt = database.exemptFromCancel(client);
  try {
    const waitedMs = await acquire(client, options);
    // A dead lock connection means another runner may take over: poll it so we notice quickly.
    const watch = setInterval(() => {
      client.query('SELECT 1').catch((err: Error) => onError(err));
    }, 2000);
    try {
      return await fn(waitedMs);
    } finally {
      clearInterval(watch);
      if (!broken) await client.query('SELECT pg_advisory_unlock($1, $2)', [...RUNNER_LOCK]).catch(() => {});
    }
  } finally {
    unexempt();
    client.removeListener('error', onError);
    client.release(broken ? true : undefined);
  }
}

async function acquire(client: pg.PoolClient, options: LockOptions): Promise<number> {
  const started = Date.now();
  let attempts = 0;
  for (;;) {
    const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [...RUNNER_LOCK]);
    if (r.rows[0].ok) return attempts === 0 ? 0 : Date.now() - started;
    attempts++;
    const waited = Date.now() - started;
    const holder = await lockHolder(client);
    if (waited >= options.waitMs) {
      throw new LockTimeoutError(
        `gave up after ${Math.round(waited / 1000)}s waiting for the zsetup runner lock${holder ? `, held by ${describeHolder(holder)}` : ''}`,
        lockWaitHint(holder),
      );
    }
    if (options.signal?.aborted) throw new InterruptedError('stopped while waiting for the runner lock; nothing was changed');
    options.onWait?.(holder, waited);
    await new Promise((r) => setTimeout(r, Math.min(options.pollMs ?? 500, Math.max(1, options.waitMs - waited))));
  }
}

/** Who holds the runner lock right now, or null when nobody does. */
export async function lockHolder(client: pg.ClientBase | pg.Pool): Promise<LockHolder | null> {
  const r = await client.query(
    `SELECT a.pid, coalesce(a.application_name, '') AS application_name, a.client_addr::text AS client_addr,
            a.backend_start
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      LIMIT 1`,
    [...RUNNER_LOCK],
  );
  const row = r.rows[0];
  if (!row) return null;
  return {
    pid: row.pid,
    applicationName: row.application_name,
    clientAddr: row.client_addr,
    backendStart: new Date(row.backend_start).toISOString(),
  };
}

/** `pid 123 (zsetup) from 10.0.0.5, connected since …` */
export function describeHolder(h: LockHolder): string {
  return `backend pid ${h.pid} (${h.applicationName || 'no application_name'}) from ${h.clientAddr ?? 'local socket'}, connected since ${h.backendStart}`;
}

/** What to do about a runner lock held too long: names its holder instead of assuming another zsetup. */
export function lockWaitHint(holder: LockHolder | null): string {
  if (!holder) return 'its holder released it just now: run again';
  if (holder.applicationName === 'zsetup') {
    return `another zsetup (backend pid ${holder.pid}) is running against this database: wait for it with a longer --lock-wait, or stop it`;
  }
  const who = holder.applicationName ? `application_name '${holder.applicationName}'` : 'a session without application_name';
  return `the lock is held by ${who} (backend pid ${holder.pid}), not by a zsetup runner: look it up with ` +
    `SELECT * FROM pg_stat_activity WHERE pid = ${holder.pid}; end that session or raise --lock-wait`;
}
