import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbedded } from '../src/db/embedded.js';

/** The server a benchmark runs on: $ZSETUP_BENCH_DATABASE_URL, else an embedded PostgreSQL in a temporary directory. */
export async function benchServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const given = process.env.ZSETUP_BENCH_DATABASE_URL;
  if (given) return { url: given, stop: async () => {} };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zsetup-bench-'));
  fs.chmodSync(dir, 0o755);
  const server = await startEmbedded(dir, log);
  return { url: server.url, stop: async () => { await server.stop(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

/** Runs `text` (one or more statements) on a fresh connection; returns the rows of the last statement. */
export async function query(url: string, text: string): Promise<any[]> {
  const client = new pg.Client({ connectionString: url, statement_timeout: 0 });
  await client.connect();
  try {
    const r = await client.query(text);
    return (Array.isArray(r) ? r[r.length - 1] : r).rows;
  } finally {
    await client.end();
  }
}

/** The server URL with another database name. */
export function urlFor(server: string, database: string): string {
  const u = new URL(server);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A unique scratch database name. */
export function dbName(prefix: string, kind: string): string {
  return `${prefix}_${kind}_${crypto.randomBytes(4).toString('hex')}`;
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

/** Where a size's source database comes from: a given one (`--source`), else one seeded here by `build`. */
export interface SourceDatabase {
  readonly server: string;
  /** An existing database to use as it is; never dropped. */
  readonly given?: string;
  /** Name prefix of a seeded one. */
  readonly prefix: string;
  /** Keep a seeded one after the run (`--keep-source`). */
  readonly keep: boolean;
  readonly events: number;
  /** Fills the new, empty database at `url` as a user would (seed, migrate). */
  build(url: string): Promise<void> | void;
}

/**
 * Runs `body` on the source database of one benchmark size: the given one, or a new one seeded by
 * `build` (logged with its time), dropped afterwards unless kept.
 */
export async function withSourceDatabase<T>(source: SourceDatabase, body: (name: string) => Promise<T>): Promise<T> {
  const name = source.given ?? dbName(source.prefix, 'src');
  try {
    if (!source.given) {
      const started = Date.now();
      await query(source.server, `CREATE DATABASE ${name}`);
      await source.build(urlFor(source.server, name));
      log(`\n${source.events.toLocaleString('en-US')} seeded events: seeded and migrated in ${seconds(Date.now() - started)}${source.keep ? ` (kept as ${name})` : ''}`);
    } else log(`\nsource database ${name}`);
    return await body(name);
  } finally {
    if (!source.given && !source.keep) await query(source.server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
  }
}
