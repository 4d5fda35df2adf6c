import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

/** The CLI as a user runs it. */
export const ZSETUP_BIN = fileURLToPath(new URL('../../bin/zsetup.js', import.meta.url));

/** The median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** `uptime`'s line: the load averages printed next to every figure. */
export function uptime(): string {
  return execFileSync('uptime', { encoding: 'utf8' }).trim();
}

/** What `/usr/bin/time -f '%M %e %U %S'` reports of a process. */
export interface ProcessTimes {
  readonly peakKb: number;
  readonly elapsedS: number;
  readonly userS: number;
  readonly sysS: number;
}

/** A finished cold zsetup process: its exit code, output and wall time from spawn to exit. */
export interface ZsetupProcess {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
  /** With `measure`: the process's peak RSS and CPU as `/usr/bin/time` reports them. */
  readonly times?: ProcessTimes;
}

/**
 * Runs `zsetup <args>` as its own process (a cold start, as a user runs it), optionally under
 * `/usr/bin/time` for its peak RSS and CPU, and resolves when it has exited, whatever its exit code.
 */
export function runZsetup(args: readonly string[], options: { measure?: boolean } = {}): Promise<ZsetupProcess> {
  const timeFile = path.join(os.tmpdir(), `zsetup-bench-time-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  const command = [process.execPath, ZSETUP_BIN, ...args];
  const [file, argv] = options.measure ? ['/usr/bin/time', ['-o', timeFile, '-f', '%M %e %U %S', ...command]] : [command[0], command.slice(1)];
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - started;
      let times: ProcessTimes | undefined;
      if (options.measure) {
        const [peakKb, elapsedS, userS, sysS] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
        fs.rmSync(timeFile, { force: true });
        times = { peakKb, elapsedS, userS, sysS };
      }
      resolve({ code, stdout, stderr, ms, times });
    });
  });
}
