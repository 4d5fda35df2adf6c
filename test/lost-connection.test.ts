/**
 * The server goes away mid-run: a PostgreSQL of this file's own (embedded, in a temp dir) is shut down
 * in immediate mode (SIGQUIT to the postmaster, what `pg_ctl stop -m immediate` sends) while zsetup
 * copies. zsetup must end with one line and exit 6, never an unhandled 'error' event; after a restart
 * the rerun finishes exactly. The shared test server is never touched.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/connection.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { EXIT } from '../src/errors.js';
import { seedLegacy } from '../src/seed/index.js';
import { prepareCli, startCli, waitFor, waitStopped, zsetup, type FaultDb } from './fault/harness.js';
import { expectMovedExactly } from './support/moved.js';
import { queryOnce } from './support/db.js';

let dir: string;
let server: EmbeddedServer | undefined;

/** The database `name` on this file's own server. */
function dbOn(url: string, name: string): FaultDb {
  const u = new URL(url);
  u.pathname = `/${name}`;
  const dbUrl = u.toString();
  return {
    name,
    url: dbUrl,
    query: (text, values) => queryOnce(dbUrl, text, values),
    client: () => Promise.reject(new Error('not needed here')),
    drop: async () => {},
  };
}

async function start(): Promise<string> {
  server = await startEmbedded(dir, () => {});
  return server.url;
}

/** `pg_ctl stop -m immediate`: SIGQUIT to the postmaster; its backends exit at once, nothing is flushed. */
async function stopImmediately(): Promise<void> {
  const pid = Number(fs.readFileSync(path.join(dir, 'pgdata', 'postmaster.pid'), 'utf8').split('\n')[0]);
  process.kill(pid, 'SIGQUIT');
  await waitFor('the postmaster to exit', async () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, 30_000);
  // Our handle would otherwise wait for a server that is gone.
  await server?.stop();
  server = undefined;
}

beforeAll(async () => {
  prepareCli();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zsetup-lost-'));
  fs.chmodSync(dir, 0o755);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the server goes away mid-copy', () => {
  for (const json of [false, true]) {
    it(`immediate shutdown during events2: copy${json ? ' (--json)' : ''}: one line, exit 6, no stack trace; the rerun after a restart finishes`, async () => {
      const url = await start();
      const name = `lost_${json ? 'json' : 'text'}`;
      await queryOnce(url, `CREATE DATABASE ${name}`);
      const db = dbOn(url, name);
      const database = await openDatabase({ kind: 'url', url: db.url }, { statementTimeoutMs: 0, lockTimeoutMs: 30_000, maxConnections: 4 });
      try {
        await seedLegacy(database, { events: 6_000, instances: 4, seed: 3 });
      } finally {
        await database.close();
      }
      // Frozen in the middle of the copy (other chunks in flight), the server dies, then zsetup goes on.
      const run = startCli(['migrate', '--concurrency', '2', '-d', db.url, ...(json ? ['--json'] : [])],
        { ZSETUP_TEST_KILL_AT: 'progress events2 2 copy', ZSETUP_TEST_KILL_SIGNAL: 'SIGSTOP' });
      await waitStopped(run);
      await stopImmediately();
      run.child.kill('SIGCONT');
      const r = await run.done;
      expect(r.signal).toBeNull();
      expect(r.code, r.stderr).toBe(EXIT.connectionLost);
      const all = r.stdout + r.stderr;
      expect(all).not.toContain("Unhandled 'error' event");
      expect(all).not.toMatch(/\n\s+at /); // no stack trace
      expect(all).toContain('lost the connection to PostgreSQL during events2: copy; rerun to resume');
      if (json) {
        const doc = JSON.parse(r.stdout);
        expect(doc.exitCode).toBe(EXIT.connectionLost);
        const failed = doc.steps.find((s: { status: string }) => s.status === 'failed');
        expect(failed.error).toMatchObject({ code: 'connection-lost', exitCode: EXIT.connectionLost });
      }
      // After the restart (crash recovery), the rerun resumes and ends with every event moved exactly.
      const restarted = dbOn(await start(), name);
      const rerun = await zsetup(['migrate', '--concurrency', '2', '-d', restarted.url]);
      expect(rerun.code, rerun.stderr).toBe(0);
      await expectMovedExactly(restarted);
      await server?.stop();
      server = undefined;
    });
  }

  it('a server that is gone before a step starts: exit 6 or a connection error (2), one line each', async () => {
    const url = await start();
    await queryOnce(url, 'CREATE DATABASE lost_early');
    const db = dbOn(url, 'lost_early');
    // Frozen when the first step starts: the pool and the lock session are open, then the server dies.
    const run = startCli(['migrate', '--json', '-d', db.url], { ZSETUP_TEST_KILL_AT: 'start events2', ZSETUP_TEST_KILL_SIGNAL: 'SIGSTOP' });
    await waitStopped(run);
    await stopImmediately();
    run.child.kill('SIGCONT');
    const r = await run.done;
    expect(r.signal).toBeNull();
    expect([EXIT.connectionLost, EXIT.usage], r.stderr).toContain(r.code);
    expect(r.stdout + r.stderr).not.toContain("Unhandled 'error' event");
    expect(r.stdout + r.stderr).not.toMatch(/\n\s+at /);
    expect(JSON.parse(r.stdout).exitCode).toBe(r.code);
  });
});
