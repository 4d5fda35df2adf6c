/**
 * Stopping zsetup: Ctrl-C typed on a real terminal (a pseudo-terminal made by `script`, never a pipe),
 * and SIGTERM while a statement cannot finish (another session holds a lock it needs), in the copy,
 * the index builds and the projection prefill. Each ends with exit 130 and the step recorded as
 * interrupted, SIGTERM within 5 s, and the rerun finishes.
 */
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../src/errors.js';
import { BIN } from './support/cli.js';
import { copyOf, dropAll, migrateArgs, prepareCli, seededTemplate, sleep, startCli, waitFor, waitStopped, zsetup, type FaultDb } from './fault/harness.js';
import { expectProjectionsRight } from './fault/oracle.js';
import { expectMovedExactly } from './support/moved.js';

let template: FaultDb;
beforeAll(async () => {
  prepareCli();
  template = await seededTemplate('zsig', { events: 6_000, instances: 4 });
});
afterAll(dropAll);

/** The pid of the zsetup process whose command line names `marker`, once it is stopped (SIGSTOP). */
async function stoppedZsetup(marker: string): Promise<number> {
  return waitFor(`a stopped zsetup for ${marker}`, async () => {
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        if (!cmdline.includes(BIN) || !cmdline.includes(marker)) continue;
        if (/\) T /.test(fs.readFileSync(`/proc/${entry}/stat`, 'utf8'))) return Number(entry);
      } catch {
        // the process ended meanwhile
      }
    }
    return undefined;
  });
}

/** Whether `pid` has SIGINT pending (bit 2 of the pending-signal masks in /proc). */
function sigintPending(pid: number): boolean {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return ['SigPnd', 'ShdPnd'].some((field) => (BigInt(`0x${new RegExp(`${field}:\\s*([0-9a-f]+)`).exec(status)![1]}`) & 2n) !== 0n);
}

describe('Ctrl-C on a terminal', () => {
  it('while the spinner runs: the terminal stays in cooked mode, Ctrl-C becomes SIGINT, exit 130 recorded as interrupted; the rerun finishes', async () => {
    const db = await copyOf(template);
    // bash, not exec: after zsetup it prints the exit code and the terminal's mode. Without job control,
    // bash waits for a child that handles SIGINT itself and then carries on.
    const command = `stty cols 120 rows 40; ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} ${migrateArgs(db).map((a) => JSON.stringify(a)).join(' ')}; ` +
      'echo "zsetup-exit=$?"; stty -a';
    const env: NodeJS.ProcessEnv = {
      ...process.env, SHELL: '/bin/bash', TERM: 'xterm', ZSETUP_DATABASE_URL: '', DATABASE_URL: '',
      // Frozen mid-copy with the spinner running, so Ctrl-C lands exactly there.
      ZSETUP_TEST_KILL_AT: 'progress events2 2 copy', ZSETUP_TEST_KILL_SIGNAL: 'SIGSTOP',
    };
    delete env.CI; // CI=true turns the spinners off
    delete env.NO_COLOR;
    const pty = spawn('script', ['-qfec', command, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    pty.stdout.on('data', (d) => (out += d));
    pty.stderr.on('data', (d) => (out += d));
    const ended = new Promise<number | null>((resolve) => pty.on('close', (code) => resolve(code)));
    const pid = await stoppedZsetup(db.name);
    // The spinner is on screen (TTY mode) and the terminal still turns Ctrl-C into a signal.
    const tty = fs.readlinkSync(`/proc/${pid}/fd/2`);
    expect(tty).toMatch(/^\/dev\/pts\/\d+$/);
    expect(out).toContain('events2:');
    const mode = execFileSync('stty', ['-a', '-F', tty]).toString();
    expect(mode).toMatch(/(^|\s)isig(\s|$)/);
    expect(mode).toMatch(/(^|\s)icanon(\s|$)/);
    pty.stdin.write('\x03');
    await waitFor('the terminal to send SIGINT', async () => sigintPending(pid), 5_000);
    process.kill(pid, 'SIGCONT');
    expect(await ended, out).toBe(0);
    expect(out).toContain('zsetup-exit=130');
    expect(out).toContain('SIGINT received: stopping after the current unit of work');
    expect(out).toContain('interrupted (SIGINT); rerun to resume');
    // After zsetup the terminal is as it was: signals, line editing, echo.
    const after = out.slice(out.indexOf('zsetup-exit=130'));
    for (const flag of ['isig', 'icanon', 'echo']) expect(after).toMatch(new RegExp(`(^|\\s)${flag}(\\s|$)`));
    expect(await db.query(`SELECT status FROM zsetup.steps WHERE id = 'events2'`)).toEqual([{ status: 'interrupted' }]);
    const rerun = await zsetup(migrateArgs(db));
    expect(rerun.code, rerun.stderr).toBe(0);
    await expectMovedExactly(db);
  });
});

describe('SIGTERM does not wait out a statement', () => {
  const cases = [
    { phase: 'copy', at: 'progress events2 2 copy', step: 'events2', lock: 'LOCK TABLE eventstore.events2 IN SHARE MODE' },
    { phase: 'index build', at: 'progress events2 1 index', step: 'events2', lock: 'LOCK TABLE eventstore.events2 IN ROW EXCLUSIVE MODE' },
    // At the prefill's first progress event no unit of orgs1 is in flight, so the lock is taken before zsetup
    // goes on: orgs1's only batch cannot commit ahead of it on a loaded machine.
    { phase: 'prefill', at: 'progress projection:projections.orgs1 1', step: 'projection:projections.orgs1', lock: 'LOCK TABLE projections.orgs1 IN SHARE MODE', lockFirst: true },
  ];
  for (const c of cases) {
    it(`in the ${c.phase}: the blocked statement is cancelled, exit 130 within 5 s, recorded as interrupted; the rerun finishes`, async () => {
      const db = await copyOf(template);
      // A lock_timeout far beyond the test: only the cancel can end the blocked statement in time.
      const run = startCli(migrateArgs(db, '--lock-timeout', '10m'), { ZSETUP_TEST_KILL_AT: c.at, ZSETUP_TEST_KILL_SIGNAL: 'SIGSTOP' });
      await waitStopped(run);
      const holder = await db.client();
      await holder.query('BEGIN');
      // Queued behind the units in flight (they commit once zsetup goes on), ahead of the next ones.
      const locked = holder.query(c.lock);
      if ('lockFirst' in c) await locked;
      run.child.kill('SIGCONT');
      await locked;
      await waitFor('a zsetup statement blocked by the lock', async () => {
        const r = await holder.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database()
          AND application_name = 'zsetup' AND wait_event_type = 'Lock'`);
        return r.rows[0].n > 0;
      });
      const sent = Date.now();
      run.child.kill('SIGTERM');
      const r = await run.done;
      const tookMs = Date.now() - sent;
      await holder.query('ROLLBACK');
      expect(r.code, r.stderr).toBe(EXIT.interrupted);
      expect(tookMs).toBeLessThan(5_000);
      expect(r.stderr).toContain('SIGTERM received');
      expect(r.stderr).toContain('interrupted (SIGTERM); rerun to resume');
      expect(await db.query(`SELECT status FROM zsetup.steps WHERE id = $1`, [c.step])).toEqual([{ status: 'interrupted' }]);
      // Nothing zsetup started is still running on the server.
      await sleep(200);
      expect(await db.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'zsetup'`)).toEqual([]);
      const rerun = await zsetup(migrateArgs(db, '--lock-wait', '5s'));
      expect(rerun.code, rerun.stderr).toBe(0);
      await expectMovedExactly(db);
      if (c.phase === 'prefill') await expectProjectionsRight(db);
    });
  }
});
