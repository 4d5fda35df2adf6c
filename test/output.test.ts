import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropName, formatBytes, formatProgress, groupDigits, labelled } from '../src/cli/format.js';
import { renderMigrate, renderStatus } from '../src/cli/render.js';
import { Reporter } from '../src/cli/reporter.js';
import { availableCpus, cgroupCpuLimit } from '../src/cpus.js';
import { RUNNER_LOCK } from '../src/db/lock.js';
import { MIN_MEASURED_MS, ProgressMeter } from '../src/progress.js';
import type { RunEvent } from '../src/step.js';
import { BIN, ensureBuilt, runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

const run = promisify(execFile);

/** A Reporter writing into a string, as on a pipe (plain lines) or a terminal (spinners). */
function capture(mode: 'plain' | 'tty', progressIntervalMs = 60_000): { reporter: Reporter; text: () => string } {
  let out = '';
  const stream = new Writable({ write(chunk, _enc, done) { out += chunk; done(); } }) as unknown as NodeJS.WriteStream;
  Object.assign(stream, { isTTY: mode === 'tty', columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
  return { reporter: new Reporter({ mode, color: false, progressIntervalMs, stream }), text: () => out };
}

const progress = (phase: string, done: number, total: number | null = 10): RunEvent =>
  ({ type: 'step-progress', stepId: 'events2', progress: { phase, done, total, unit: 'events', rate: null, etaSeconds: null } });

describe('progress and numbers (no database)', () => {
  it('gives no rate nor ETA until the rate is measured', () => {
    let t = 0;
    const meter = new ProgressMeter(15_000, () => t);
    meter.update({ phase: 'copy', done: 0, total: 2_000_000, unit: 'events' });
    // The first chunk lands after half a second: far too early to tell (this once read `ETA 60h14m`).
    t = 500;
    expect(meter.update({ phase: 'copy', done: 10, total: 2_000_000 })).toMatchObject({ rate: null, etaSeconds: null });
    t = MIN_MEASURED_MS - 1;
    expect(meter.update({ phase: 'copy', done: 50_000, total: 2_000_000 }).etaSeconds).toBeNull();
    t = 4_000;
    const p = meter.update({ phase: 'copy', done: 400_000, total: 2_000_000, unit: 'events' });
    expect(p.rate).toBe(100_000);
    expect(p.etaSeconds).toBe(16);
    expect(formatProgress(p)).toBe('copy: 400,000 / 2,000,000 events (20%), 100,000 events/s, ETA 16.0s');
    // Nothing moved for a while: no rate to speak of, so no ETA.
    t = 30_000;
    meter.update({ phase: 'copy', done: 400_000, total: 2_000_000 });
    t = 50_000;
    expect(meter.update({ phase: 'copy', done: 400_000, total: 2_000_000 }).etaSeconds).toBeNull();
  });

  it('groups the digits of counts, not of ids, positions, times or ports', () => {
    expect(groupDigits('projections.users14: 13086 events from 1200 instances in 3 batches')).toBe('projections.users14: 13,086 events from 1,200 instances in 3 batches');
    expect(groupDigits("instance '160000449765604720': 47289 events")).toBe("instance '160000449765604720': 47,289 events");
    for (const kept of ['end point 1764585575.123456', 'at 2026-12-01T10:00:00Z', 'host:5432/db', 'took 1234ms', 'user/1234567 sequence 12', 'in 2026']) {
      expect(groupDigits(kept)).toBe(kept);
    }
    expect(formatBytes(512)).toBe('512 bytes');
    expect(formatBytes(1536 * 1024)).toBe('1.5 MB');
    expect(formatBytes(300.2 * 1024 * 1024)).toBe('301 MB');
    expect(formatBytes(3.5 * 1024 ** 3)).toBe('3.5 GB');
  });

  it('says a projection name once', () => {
    expect(labelled('projection:projections.orgs1', 'projections.orgs1: 12 events')).toBe('projection:projections.orgs1: 12 events');
    expect(labelled('events2', 'moved 5 events')).toBe('events2: moved 5 events');
    expect(dropName('projection:projections.orgs1', 'projections.orgs1: 12 events')).toBe('12 events');
  });

  it('logs every phase change in plain mode, and within a phase one line per interval', () => {
    const { reporter, text } = capture('plain');
    reporter.handle({ type: 'step-start', stepId: 'events2', title: 'move', attempt: 1, resuming: false });
    for (const [phase, done] of [['copy', 0], ['copy', 5], ['copy', 9], ['index events2_pkey', 0], ['index es_wm', 1], ['index es_wm', 2], ['verify', 0]] as const) {
      reporter.handle(progress(phase, done));
    }
    const lines = text().trim().split('\n').map((l) => l.replace(/^\S+ /, ''));
    expect(lines).toEqual([
      'start events2: move',
      'events2: copy: 0 / 10 events (0%)',
      'events2: index events2_pkey: 0 / 10 events (0%)',
      'events2: index es_wm: 1 / 10 events (10%)',
      'events2: verify: 0 / 10 events (0%)',
    ]);
  });

  it('prints a step result once: the live line has it, the final report only a closing line and a failure in full', () => {
    const { reporter, text } = capture('plain');
    const ok = { id: 'projection:projections.orgs1', title: 'prefill', status: 'succeeded' as const, attempt: 1, durationMs: 1200, summary: { message: 'projections.orgs1: 12345 events from 3 instance(s)' } };
    reporter.handle({ type: 'step-end', result: ok });
    expect(text()).toMatch(/ ok projection:projections\.orgs1: 12,345 events from 3 instance\(s\) \(1\.2s\)\n$/);
    const error = { kind: 'StepFailedError', message: 'duplicate key value', sqlstate: '23505', hint: 'look at it', exitCode: 1 } as any;
    const failed = { id: 'events2', title: 'move', status: 'failed' as const, attempt: 1, durationMs: 50, error };
    reporter.handle({ type: 'step-end', result: failed });
    expect(text()).toMatch(/ FAILED events2: failed \(50ms\)\n$/);
    const report = renderMigrate({ upToDate: false, lockWaitedMs: 0, steps: [ok, failed, { id: 'x', title: 'x', status: 'not-run' }] });
    expect(report).not.toContain('12,345');
    expect(report.split('duplicate key value').length).toBe(2);
    expect(report).toMatch(/^stopped: events2 failed after 50ms; 1 step succeeded, 1 step not run\n\nerror in step events2 \[SQLSTATE 23505\]: duplicate key value\nhint: look at it$/);
    expect(renderMigrate({ upToDate: false, lockWaitedMs: 0, steps: [ok, { ...ok, id: 'b' }] })).toBe('done: 2 steps succeeded');
    const status = { runner: null, zitadel: [], steps: [{ id: ok.id, title: 'prefill', status: 'succeeded' as const, live: false, row: { summary: ok.summary } as any }] };
    expect(renderStatus(status)).toContain('\n    12,345 events from 3 instance(s)');
    expect(renderStatus(status, { summaries: false })).not.toContain('12,345');
  });

  it('takes the CPUs a cgroup quota allows, not the host\'s', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zsetup-cgroup-'));
    try {
      fs.mkdirSync(path.join(root, 'kubepods', 'pod1'), { recursive: true });
      fs.writeFileSync(path.join(root, 'cpu.max'), 'max 100000\n');
      fs.writeFileSync(path.join(root, 'kubepods', 'cpu.max'), '400000 100000\n');
      fs.writeFileSync(path.join(root, 'kubepods', 'pod1', 'cpu.max'), '250000 100000\n');
      expect(cgroupCpuLimit({ cgroupRoot: root, selfCgroup: '0::/kubepods/pod1\n' })).toBe(2.5);
      expect(availableCpus({ cgroupRoot: root, selfCgroup: '0::/kubepods/pod1\n', schedulable: 16 })).toBe(2);
      expect(availableCpus({ cgroupRoot: root, selfCgroup: '0::/kubepods/pod1\n', schedulable: 1 })).toBe(1);
      // No quota (`max`): the scheduler's count.
      expect(availableCpus({ cgroupRoot: root, selfCgroup: '0::/\n', schedulable: 8 })).toBe(8);
      // cgroup v1, in a container whose cgroup path is `/`.
      fs.mkdirSync(path.join(root, 'cpu,cpuacct'));
      fs.writeFileSync(path.join(root, 'cpu,cpuacct', 'cpu.cfs_quota_us'), '50000\n');
      fs.writeFileSync(path.join(root, 'cpu,cpuacct', 'cpu.cfs_period_us'), '100000\n');
      expect(availableCpus({ cgroupRoot: root, selfCgroup: '4:cpu,cpuacct:/\n3:memory:/\n', schedulable: 8 })).toBe(1);
      expect(availableCpus({ cgroupRoot: path.join(root, 'none'), selfCgroup: '', schedulable: 3 })).toBe(3);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('output of the CLI', () => {
  let tdb: TestDatabase;
  let seedLog: string;
  beforeAll(async () => {
    ensureBuilt();
    tdb = await createTestDatabase('output');
    const seed = await runCli(['seed', '--events', '40000', '--instances', '3', '-d', tdb.url], { ZSETUP_PROGRESS_INTERVAL_MS: '3600000' });
    expect(seed.code, seed.stderr).toBe(0);
    seedLog = seed.stderr;
  });

  it('seed shows its phases, in order', () => {
    const phases = [...seedLog.matchAll(/^\S+ seed: ([a-z ]+): \d/gm)].map((m) => m[1]);
    expect(phases.slice(0, 5)).toEqual(['stage the rows', 'load', 'build indexes', 'milestones', 'analyze']);
    // Then, for a database of a later ZITADEL version, its setup steps.
    expect(phases.slice(5)).toEqual(phases.length > 5 ? ['upgrade to the release'] : []);
  });
  afterAll(() => tdb?.drop());

  it('lists --lock-timeout and --statement-timeout in --help', async () => {
    for (const cmd of ['migrate', 'status', 'verify', 'init-projections']) {
      const help = await runCli([cmd, '--help']);
      expect(help.stdout, cmd).toContain('--lock-timeout <duration>');
      expect(help.stdout, cmd).toContain('--statement-timeout <duration>');
    }
  });

  it('a lock held by another application is named, not taken for another zsetup', async () => {
    const holder = await tdb.client();
    await holder.query(`SET application_name = 'billing-batch'`);
    await holder.query('SELECT pg_advisory_lock($1, $2)', [...RUNNER_LOCK]);
    try {
      const r = await runCli(['migrate', '--lock-wait', '1s', '-d', tdb.url]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain("held by application_name 'billing-batch'");
      expect(r.stderr).toContain('not by a zsetup runner');
      expect(r.stderr).not.toContain('another zsetup');
    } finally {
      await holder.query('SELECT pg_advisory_unlock($1, $2)', [...RUNNER_LOCK]);
    }
  });

  it('plain mode logs every phase, each result once, numbers grouped', async () => {
    const r = await runCli(['migrate', '--init-projections', '-d', tdb.url], { ZSETUP_PROGRESS_INTERVAL_MS: '3600000' });
    expect(r.code, r.stderr).toBe(0);
    const phases = new Set([...r.stderr.matchAll(/^\S+ events2: ([a-z][a-z0-9_ -]*?): \d/gm)].map((m) => m[1]));
    for (const phase of ['copy', 'index events2_pkey', 'index es_wm', 'verify']) expect(phases, [...phases].join(', ')).toContain(phase);
    const all = r.stdout + r.stderr;
    expect(all.match(/moved 40,000 events/g)).toHaveLength(1);
    expect(all).not.toMatch(/projection:projections\.(\w+): projections\.\1:/);
    // A legacy database: the projections are prefilled before the cut-over too; a pass after it with nothing new is already done.
    expect(r.stdout.trim()).toMatch(/^done: \d+ steps succeeded(, \d+ steps? already done)?$/);
    // Step lines: every count of four digits or more has its separators.
    for (const line of r.stderr.split('\n').filter((l) => / (ok|start) /.test(l))) {
      expect(line.replace(/^\S+ /, '').replace(/users14|apps7|orgs1|projects4|milestones3|events2/g, ''), line).not.toMatch(/(?<![\w.:/'-])\d{4,}(?![\w.:/'-])/);
    }
  });

  it('status --init-projections shows a projection that fell behind', async () => {
    const [{ instance_id: instance }] = await tdb.query(`SELECT instance_id FROM eventstore.events2 WHERE aggregate_type = 'org' LIMIT 1`);
    await tdb.query(`
      INSERT INTO eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision, created_at, payload, creator, owner, "position", in_tx_order)
      VALUES ($1, 'org', 'org-written-later', 'org.added', 1, 1, now(), '{"name": "Later"}', 'app', 'org-written-later', EXTRACT(EPOCH FROM clock_timestamp()), 1)`, [instance]);
    const json = JSON.parse((await runCli(['status', '--init-projections', '--json', '-d', tdb.url])).stdout);
    const orgs = json.steps.find((s: any) => s.id === 'projection:projections.orgs1');
    expect(orgs).toMatchObject({ status: 'succeeded', projection: { eventsToApply: 1, instancesToApply: 1 } });
    expect(json.steps.find((s: any) => s.id === 'projection:projections.users14').projection.eventsToApply).toBe(0);
    const human = (await runCli(['status', '--init-projections', '-d', tdb.url])).stdout;
    expect(human).toMatch(/^projection:projections\.orgs1 +succeeded \(behind\)/m);
    expect(human).toContain('behind: 1 event to apply in 1 instance arrived since');
    expect(human).toMatch(/^projection:projections\.users14 +succeeded +attempts/m);
    const plain = JSON.parse((await runCli(['status', '--json', '-d', tdb.url])).stdout);
    expect(plain.steps.find((s: any) => s.id === 'projection:projections.orgs1').projection).toBeUndefined();
  });
});

describe('on a terminal (a real pseudo-terminal through script)', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    ensureBuilt();
    tdb = await createTestDatabase('output_tty');
  });
  afterAll(() => tdb?.drop());

  /** Runs zsetup in a pseudo-terminal of 120 columns and returns everything the terminal received. */
  async function inTerminal(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
    const cmd = `stty cols 120 rows 40; ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} ${args.map((a) => JSON.stringify(a)).join(' ')}`;
    const base: NodeJS.ProcessEnv = { ...process.env, ZSETUP_DATABASE_URL: '', DATABASE_URL: '', TERM: 'xterm-256color', ...env };
    // A terminal as an operator has one: not CI, colours unless NO_COLOR says otherwise.
    for (const name of ['CI', 'FORCE_COLOR', ...('NO_COLOR' in env ? [] : ['NO_COLOR'])]) delete base[name];
    const { stdout } = await run('script', ['-qfec', cmd, '/dev/null'], {
      env: base,
      timeout: 120_000,
      maxBuffer: 32 * 1024 * 1024,
    });
    return stdout;
  }
  const colour = /\x1b\[(3[0-7]|9[0-7])m/;

  it('NO_COLOR turns every colour off, the spinner\'s too', async () => {
    const seeded = await inTerminal(['seed', '--events', '20000', '--instances', '2', '-d', tdb.url], {});
    // A spinner ran (its frames redraw the line) and it was coloured: the check below could fail.
    expect(seeded).toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/);
    expect(seeded).toMatch(colour);
    const env = { NO_COLOR: '1' };
    const migrated = await inTerminal(['migrate', '--init-projections', '-d', tdb.url], env);
    expect(migrated).toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/);
    expect(migrated).toContain('✔ events2: moved 20,000 events');
    expect(migrated).not.toMatch(colour);
  });
});
