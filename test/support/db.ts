import crypto from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connection.js';

/** A database of its own for one test file (or one test), dropped by `drop()`. */
export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  /** Opens zsetup's Database on it (close it yourself, or let drop() terminate its sessions). */
  open(options?: { maxConnections?: number; lockTimeoutMs?: number; statementTimeoutMs?: number }): Promise<Database>;
  /** A plain pg client for arranging and asserting. */
  client(): Promise<pg.Client>;
  query<T extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

/** URL of the test server, with another database name. */
export function urlFor(database: string): string {
  const u = new URL(inject('serverUrl'));
  u.pathname = `/${database}`;
  return u.toString();
}

/** Creates a fresh, uniquely named database on the test server. */
export async function createTestDatabase(prefix = 'zt'): Promise<TestDatabase> {
  const name = `${prefix}_${crypto.randomBytes(5).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = urlFor(name);
  const opened: Database[] = [];
  const clients: pg.Client[] = [];
  return {
    url,
    name,
    async open(options = {}) {
      const db = await openDatabase(
        { kind: 'url', url },
        { statementTimeoutMs: options.statementTimeoutMs ?? 0, lockTimeoutMs: options.lockTimeoutMs ?? 30_000, maxConnections: options.maxConnections ?? 8 },
      );
      opened.push(db);
      return db;
    },
    async client() {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    query: (text, values) => queryOnce(url, text, values),
    async drop() {
      await Promise.all(opened.map((d) => d.close().catch(() => {})));
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/** Runs one query on a short-lived connection to `url`. */
export async function queryOnce<T extends pg.QueryResultRow = any>(url: string, text: string, values?: unknown[]): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

async function adminQuery(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: urlFor('postgres') });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}
