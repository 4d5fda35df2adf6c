/**
 * Benchmark of the events2 step, per dataset shape, on identical copies of one seeded legacy database:
 *   - the reference system's approach (rename, one CREATE TABLE … AS SELECT, primary key, NOT NULLs,
 *     three indexes), alone;
 *   - `zsetup migrate --offline --only events2` as a user runs it: a separate, cold `node bin/zsetup.js`
 *     process, timed from spawn to exit, its peak RSS from `/usr/bin/time`; the ratio against the
 *     reference, whose rows and catalog must come out identical;
 *   - on the `default` shape (unless `--no-online`): the reference again with the legacy writer trying to
 *     insert all the while (its downtime), and `zsetup migrate` online with the writer at `--rate`
 *     events/s: the writer's latency without capture (baseline), `--prepare` (capture, copy, indexes,
 *     catch-up), the capture's cost while nothing else runs, then the cut-over.
 * Prints per shape the times, the ratio and its target, then a table of all shapes; for the downtime: the
 * longest time an insert was blocked or failing before the switch (both), the cut-over's lock hold time
 * and attempts, the writer's p50 / p99 latency per phase against its baseline, and whether every committed
 * event arrived exactly once.
 *
 *   npx tsc -p . && node_modules/.bin/node dist/bench/events2.js [--shapes default,issue,large-payloads,one-instance]
 *     [--events 2000000] [--rounds 1] [--concurrency 2] [--rate 1000] [--no-online] [--warm-projections] [--throttle auto|off] [--keep-source PREFIX]
 *   … dist/bench/events2.js --capture-probe   # only: the capture trigger's cost per insert, statement vs row level
 *
 * `--warm-projections` adds a third online run (default shape): `migrate --prepare --init-projections`, then
 * `migrate --init-projections`, the writer on, and prints each projection pass and how long the new version
 * waits after the cut-over for warm projections, against the pass before it (about what a cold prefill takes).
 *
 * `--keep-source PREFIX` keeps each shape's seeded source as `PREFIX_<shape>` and reuses it when it exists.
 * Server: $ZSETUP_BENCH_DATABASE_URL, else an embedded PostgreSQL in a temporary directory.
 */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { openDatabase, type Database } from '../src/db/connection.js';
import { captureTablesDdl, captureTriggersDdl } from '../src/events2/capture.js';
import { MAPPED_COLUMNS } from '../src/events2/sql.js';
import { migrate } from '../src/migrate.js';
import { EVENTS2_INDEXES, EVENTS2_NOT_NULLS, EVENTS2_PRIMARY_KEY, LEGACY_EVENTS_TABLE } from '../src/schema.js';
import { seedLegacy, type SeedOptions } from '../src/seed/index.js';
import type { RunEvent, Step, StepResult } from '../src/step.js';
import { events2Step, events2StepFor } from '../steps/01-events2.js';
import { composeSteps } from '../steps/index.js';
import { LegacyWriter, writerEventsFound, type WriteRecord } from '../test/support/legacy-writer.js';
import { benchServer, dbName, log, median, query, runZsetup, seconds, uptime, urlFor } from './support.js';

/** A dataset shape: `zsetup seed` options (the event count comes from `--events`). */
interface Shape {
  readonly name: string;
  readonly description: string;
  readonly seed: Omit<SeedOptions, 'events' | 'seed'>;
  /** Ratio zsetup / reference the shape must stay at or under. */
  readonly target: number;
}

/** The shapes `--shapes` chooses from. */
const SHAPES: readonly Shape[] = [
  { name: 'default', description: 'zsetup seed defaults, 20 instances', seed: { instances: 20 }, target: 0.8 },
  {
    name: 'issue', description: '24 instances, ~10,000 aggregates, 200-byte payloads, 8 events per transaction (issue 16)',
    seed: { instances: 24, aggregates: 10_000, payloadBytes: 200, eventsPerTx: 8 }, target: 1.0,
  },
  { name: 'large-payloads', description: '20 instances, 4,000-byte payloads', seed: { instances: 20, payloadBytes: 4_000 }, target: 1.0 },
  { name: 'one-instance', description: '1 instance', seed: { instances: 1 }, target: 1.0 },
  { name: 'few-aggregates', description: '20 instances, ~2,000 aggregates', seed: { instances: 20, aggregates: 2_000 }, target: 1.0 },
];

interface BenchOptions {
  readonly events: number;
  readonly concurrency: number;
  /** Events per second the legacy writer inserts during the reference's and the online move. */
  readonly rate: number;
  /** Interleaved reference / zsetup runs per shape; the median is reported. */
  readonly rounds: number;
  readonly online: boolean;
  /** Also the online move with `--init-projections` (warm projections across the cut-over). */
  readonly warm: boolean;
  /** The online copy's throttle (`--throttle auto|off`, as `zsetup migrate --throttle`). */
  readonly throttle: 'auto' | 'off';
  /** Prefix of the seeded source databases to keep (and reuse when they exist) across runs. */
  readonly keepSource?: string;
}

/** One shape's result. */
interface ShapeResult {
  readonly shape: Shape;
  readonly referenceMs: number[];
  readonly zsetupMs: number[];
  readonly peakRssKb: number;
  readonly identical: boolean;
  readonly summary: Record<string, unknown>;
}

/** Runs the benchmark; `argv` are the flags only. */
export async function benchEvents2(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: {
    shapes: { type: 'string', default: 'default' },
    events: { type: 'string', default: '2000000' },
    rounds: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: String(Math.max(2, os.availableParallelism())) },
    rate: { type: 'string', default: '1000' },
    'no-online': { type: 'boolean' },
    'warm-projections': { type: 'boolean' },
    throttle: { type: 'string', default: 'auto' },
    'keep-source': { type: 'string' },
    'capture-probe': { type: 'boolean' },
    instances: { type: 'string' },
  }, strict: false }); // bench/run.ts hands every benchmark all flags
  if (values['capture-probe']) return captureProbe();
  const keepSource = typeof values['keep-source'] === 'string' ? values['keep-source'] : undefined;
  if (keepSource !== undefined && !/^[a-z_][a-z0-9_]*$/.test(keepSource)) throw new Error(`--keep-source: not a plain database name: ${keepSource}`);
  const shapes = String(values.shapes).split(',').map((name) => {
    const shape = SHAPES.find((s) => s.name === name.trim());
    if (!shape) throw new Error(`--shapes: unknown shape ${name}; known: ${SHAPES.map((s) => s.name).join(', ')}`);
    // --instances (the benchmark's earlier flag) still sets the default shape's instances.
    return shape.name === 'default' && values.instances ? { ...shape, seed: { instances: Number(values.instances) } } : shape;
  });
  const options: BenchOptions = {
    events: Number(values.events), concurrency: Number(values.concurrency), rate: Number(values.rate),
    rounds: Math.max(1, Number(values.rounds)), online: !values['no-online'], warm: Boolean(values['warm-projections']), keepSource,
    throttle: values.throttle === 'off' ? 'off' : 'auto',
  };
  const server = await benchServer();
  try {
    const version = (await query(server.url, `SELECT current_setting('server_version') AS v`))[0].v;
    log(`PostgreSQL ${version}; ${options.events.toLocaleString('en-US')} events, shapes ${shapes.map((s) => s.name).join(', ')}, ${options.rounds} round(s), concurrency ${options.concurrency}, online throttle ${options.throttle}; ${uptime()}`);
    const results: ShapeResult[] = [];
    let failed = false;
    for (const shape of shapes) {
      const r = await benchShape(server.url, shape, options);
      results.push(r.result);
      failed ||= !r.ok;
    }
    finalTable(results);
    if (failed) process.exitCode = 1;
  } finally {
    await server.stop();
  }
}

/** Seeds (or reuses) the shape's source, then the interleaved rounds, then (default shape) the online move. */
async function benchShape(serverUrl: string, shape: Shape, options: BenchOptions): Promise<{ result: ShapeResult; ok: boolean }> {
  const admin = (sqlText: string) => query(serverUrl, sqlText);
  const src = options.keepSource ? `${options.keepSource}_${shape.name.replace(/-/g, '_')}` : dbName('zbench', 'src');
  const scratch: string[] = [];
  const copy = async (kind: string) => {
    const name = dbName('zbench', kind);
    scratch.push(name);
    await admin(`CREATE DATABASE ${name} TEMPLATE ${src}`);
    return urlFor(serverUrl, name);
  };
  log(`\n== shape ${shape.name}: ${shape.description}`);
  try {
    const t = Date.now();
    const reuse = options.keepSource !== undefined && (await admin(`SELECT 1 FROM pg_database WHERE datname = '${src}'`)).length > 0;
    if (reuse) {
      log(`reusing the seeded source database ${src} (--keep-source)`);
    } else {
      await admin(`CREATE DATABASE ${src}`);
      if (!options.keepSource) scratch.push(src);
      await seed(urlFor(serverUrl, src), shape, options);
      log(`seeded in ${seconds(Date.now() - t)}; ${uptime()}`);
    }
    const size = (await query(urlFor(serverUrl, src), `SELECT pg_size_pretty(pg_total_relation_size('eventstore.events')) AS s`))[0].s;
    log(`source eventstore.events: ${size} with indexes and TOAST`);
    const referenceMs: number[] = [];
    const zsetupMs: number[] = [];
    let peakRssKb = 0;
    let identical = true;
    let summary: Record<string, unknown> = {};
    for (let round = 1; round <= options.rounds; round++) {
      // One copy at a time on disk (large payloads at 2M events are ~10 GB per copy): the reference's
      // result is fingerprinted and dropped before zsetup's copy is made.
      const ref = await copy('ref');
      await admin('CHECKPOINT');
      let t0 = Date.now();
      await reference(ref);
      referenceMs.push(Date.now() - t0);
      log(`round ${round}: reference ${seconds(referenceMs.at(-1)!)}; ${uptime()}`);
      const expected = await fingerprint(ref);
      for (const name of scratch.splice(-1)) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      const zs = await copy('zs');
      await admin('CHECKPOINT');
      t0 = Date.now();
      const cold = await zsetupCold(zs, options.concurrency);
      zsetupMs.push(cold.ms);
      peakRssKb = Math.max(peakRssKb, cold.peakRssKb);
      summary = cold.summary;
      log(`round ${round}: zsetup --offline (cold process) ${seconds(cold.ms)} (${timings(cold.summary)}; verify runs beside the index builds); peak RSS ${(cold.peakRssKb / 1024).toFixed(0)} MB; ${uptime()}`);
      if (cold.strategy) log(`  strategy: ${cold.strategy}`);
      const same = sameAs(expected, await fingerprint(zs));
      log(`round ${round}: results identical: rows ${same.rows ? 'yes' : 'NO'}, constraints and indexes ${same.catalog ? 'yes' : 'NO'}`);
      identical &&= same.rows && same.catalog;
      for (const name of scratch.splice(-1)) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
    const ratio = median(zsetupMs) / median(referenceMs);
    log(`shape ${shape.name}: reference ${seconds(median(referenceMs))}, zsetup ${seconds(median(zsetupMs))}, ratio zsetup/reference ${ratio.toFixed(2)} (target ≤ ${shape.target.toFixed(2)}: ${ratio <= shape.target ? 'met' : 'NOT MET'})`);
    let ok = identical;
    if (options.online && shape.name === 'default') ok = (await onlinePart(serverUrl, copy, options, median(zsetupMs))) && ok;
    return { result: { shape, referenceMs, zsetupMs, peakRssKb, identical, summary }, ok };
  } finally {
    for (const name of scratch) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
  }
}

/** The reference with the writer on (its downtime), then zsetup's online move with the writer on. */
async function onlinePart(serverUrl: string, copy: (kind: string) => Promise<string>, options: BenchOptions, offlineMs: number): Promise<boolean> {
  const ref = await copy('refw');
  const on = await copy('on');
  await query(serverUrl, 'CHECKPOINT');
  // The writer starts with the reference's rename, so all its inserts fail; its downtime is the whole run.
  const refWriter = await LegacyWriter.start({ url: ref, ...writerShape(options.rate) });
  const t = Date.now();
  await reference(ref);
  const referenceMs = Date.now() - t;
  const refSwitch = Date.now();
  await sleep(1000);
  const refRecords = await refWriter.stop();
  const referenceOutageMs = longestOutage(refRecords, t, refSwitch).ms;
  log(`reference with the writer on: ${seconds(referenceMs)}; longest insert blocked or failing before the switch: ${seconds(referenceOutageMs)}`);
  await query(serverUrl, 'CHECKPOINT');
  const online = await onlineMove(on, options, false);
  report(online, { referenceMs, referenceOutageMs, offlineMs });
  if (!options.warm) return online.exact;
  const warmUrl = await copy('warm');
  await query(serverUrl, 'CHECKPOINT');
  log('online move with --init-projections (warm projections across the cut-over), the writer on:');
  const warm = await onlineMove(warmUrl, options, true);
  report(warm, { referenceMs, referenceOutageMs, offlineMs });
  reportWarm(warm);
  return online.exact && warm.exact;
}

function finalTable(results: readonly ShapeResult[]): void {
  log('\n| Shape | Reference | zsetup (cold process) | Ratio | Target | Identical | Peak RSS |');
  log('|---|---|---|---|---|---|---|');
  for (const r of results) {
    const ratio = median(r.zsetupMs) / median(r.referenceMs);
    const spread = (v: number[]) => (v.length > 1 ? ` (${seconds(Math.min(...v))}–${seconds(Math.max(...v))})` : '');
    log(`| ${r.shape.name} | ${seconds(median(r.referenceMs))}${spread(r.referenceMs)} | ${seconds(median(r.zsetupMs))}${spread(r.zsetupMs)} (last round: ${timings(r.summary)}) | ${ratio.toFixed(2)} | ≤ ${r.shape.target.toFixed(2)} ${ratio <= r.shape.target ? 'met' : 'NOT MET'} | ${r.identical ? 'yes' : 'NO'} | ${(r.peakRssKb / 1024).toFixed(0)} MB |`);
  }
  log(uptime());
}

/** Seeds the shape with `zsetup seed`'s generator (seed 1). */
async function seed(url: string, shape: Shape, options: BenchOptions): Promise<void> {
  const database = await openDatabase({ kind: 'url', url }, { statementTimeoutMs: 0, lockTimeoutMs: 0, maxConnections: options.concurrency + 2 });
  try {
    await seedLegacy(database, { ...shape.seed, events: options.events, seed: 1 });
  } finally {
    await database.close();
  }
}

/** What the reference system's setup step does, statement by statement, with server defaults. */
async function reference(url: string): Promise<void> {
  await query(url, `ALTER TABLE eventstore.events RENAME TO events_old`);
  await query(url, `CREATE TABLE eventstore.events2 (instance_id, aggregate_type, aggregate_id, event_type, "sequence", revision,
    created_at, payload, creator, owner, "position", in_tx_order) AS SELECT ${MAPPED_COLUMNS} FROM eventstore.events_old`);
  await query(url, `BEGIN; ALTER TABLE eventstore.events2 DROP CONSTRAINT IF EXISTS events2_pkey; ${EVENTS2_PRIMARY_KEY}; COMMIT`);
  await query(url, EVENTS2_NOT_NULLS);
  for (const [name, columns] of Object.entries(EVENTS2_INDEXES)) await query(url, `CREATE INDEX IF NOT EXISTS ${name} ON eventstore.events2 ${columns}`);
}

/**
 * `zsetup migrate --offline --only events2 --json` as its own process, timed from spawn to exit; peak
 * RSS is the process's maximum resident set as `/usr/bin/time` reports it (kB).
 */
async function zsetupCold(url: string, concurrency: number): Promise<{ ms: number; peakRssKb: number; summary: Record<string, unknown>; strategy?: string }> {
  const run = await runZsetup(['migrate', '--offline', '--only', 'events2', '--database', url, '--json', '--concurrency', String(concurrency), '--lock-wait', '10s'], { measure: true });
  if (run.code !== 0) throw new Error(`zsetup exited ${run.code}:\n${run.stdout}\n${run.stderr}`);
  const step = JSON.parse(run.stdout).steps?.find((s: { id: string }) => s.id === 'events2');
  if (step?.status !== 'succeeded') throw new Error(`zsetup's events2 step did not succeed: ${run.stdout}`);
  const strategy = /events2 indexes: (.*)$/m.exec(run.stderr)?.[1];
  return { ms: run.ms, peakRssKb: run.times!.peakKb, summary: step.summary ?? {}, strategy };
}

/** What the comparison looks at: the rows (count and a hash over every row) and the column, index and constraint definitions. */
interface Fingerprint {
  readonly n: string;
  readonly h: string;
  readonly catalog: string;
}

async function fingerprint(url: string): Promise<Fingerprint> {
  // Without the system.migration events zsetup records for ZITADEL (the reference records none), and
  // without what the writer may have inserted into the reference's copy before its rename.
  const rows = await queryLast(url, `SET max_parallel_workers_per_gather = 2;
    SELECT count(*)::text AS n, sum(hashtextextended(e::text, 0))::text AS h FROM eventstore.events2 e
    WHERE NOT (instance_id = '' AND aggregate_type = 'system' AND event_type LIKE 'system.migration.%' AND payload->>'name' = '14_events_push')
      AND NOT coalesce(payload->>'by' = 'legacy-writer', false)`);
  const catalog = await queryLast(url, `
    SELECT json_build_object(
      'columns', (SELECT json_agg(json_build_array(attname, format_type(atttypid, atttypmod), attnotnull) ORDER BY attnum)
                  FROM pg_attribute WHERE attrelid = 'eventstore.events2'::regclass AND attnum > 0 AND NOT attisdropped),
      'indexes', (SELECT json_agg(indexdef ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'eventstore' AND tablename = 'events2'),
      'constraints', (SELECT json_agg(conname || ' ' || pg_get_constraintdef(oid) ORDER BY conname) FROM pg_constraint WHERE conrelid = 'eventstore.events2'::regclass)
    )::text AS c`);
  return { n: rows.n, h: rows.h, catalog: catalog.c };
}

function sameAs(reference: Fingerprint, zsetup: Fingerprint): { rows: boolean; catalog: boolean } {
  if (reference.catalog !== zsetup.catalog) log(`catalog differs:\n  reference ${reference.catalog}\n  zsetup    ${zsetup.catalog}`);
  return { rows: reference.n === zsetup.n && reference.h === zsetup.h, catalog: reference.catalog === zsetup.catalog };
}

/** The writer as the benchmark runs it: enough connections for the rate, few long transactions. */
function writerShape(rate: number) {
  return { eventsPerSecond: rate, connections: Math.max(4, Math.ceil(rate / 125)), rollbackShare: 0.05, holdShare: 0.05 };
}

function timings(summary: Record<string, unknown>): string {
  return Object.entries(summary).filter(([k]) => k.endsWith('Ms')).map(([k, v]) => `${k} ${seconds(Number(v))}`).join(', ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The longest time inserts were blocked or failing before the switch (when the new table takes
 * writes): the longest gap in [from, switchAt] without a commit, counting a transaction's own time
 * to commit (without its deliberate hold) as blocked.
 */
function longestOutage(records: readonly WriteRecord[], from: number, switchAt: number): Outage {
  const committed = records.filter((r) => r.outcome === 'committed' && r.end >= from && r.end <= switchAt);
  const commits = committed.map((r) => r.end).sort((a, b) => a - b);
  let longest: Outage = { ms: 0, from, to: from, kind: 'no commit' };
  let last = from;
  for (const end of [...commits, switchAt]) {
    if (end - last > longest.ms) longest = { ms: end - last, from: last, to: end, kind: 'no commit' };
    last = end;
  }
  for (const r of committed) {
    const own = r.end - r.start - r.holdMs;
    if (own > longest.ms) longest = { ms: own, from: r.start, to: r.end, kind: 'one transaction' };
  }
  return longest;
}

/** The longest stretch of an outage: no commit at all, or one transaction's own time to commit. */
interface Outage {
  readonly ms: number;
  readonly from: number;
  readonly to: number;
  readonly kind: 'no commit' | 'one transaction';
}

/** The phases an outage overlapped, by name. */
function phasesOf(outage: Outage, phases: ReadonlyMap<string, readonly [number, number]>): string {
  const names = [...phases].filter(([, [a, b]]) => a < outage.to && b > outage.from).map(([name]) => name);
  return names.length ? names.join(', ') : 'between phases';
}

/** p50 / p99 of the writer's commit latency (without the deliberate hold) in [from, to). */
function latency(records: readonly WriteRecord[], from: number, to: number): { p50: number; p99: number; n: number } {
  const l = records.filter((r) => r.outcome === 'committed' && r.start >= from && r.start < to).map((r) => r.end - r.start - r.holdMs).sort((a, b) => a - b);
  const at = (q: number) => (l.length ? l[Math.min(l.length - 1, Math.floor(q * l.length))] : NaN);
  return { p50: at(0.5), p99: at(0.99), n: l.length };
}

interface OnlineResult {
  readonly prepareMs: number;
  readonly cutOverRunMs: number;
  readonly prepareSummary: Record<string, unknown>;
  readonly summary: Record<string, unknown>;
  readonly records: readonly WriteRecord[];
  /** Phase → [start, end) in ms, from the engine's progress events. */
  readonly phases: ReadonlyMap<string, readonly [number, number]>;
  readonly baseline: readonly [number, number];
  readonly captureIdle: readonly [number, number];
  readonly switchAt: number;
  readonly moveStart: number;
  readonly exact: boolean;
  /** With --init-projections: each projection pass's span (first start to last end) and events applied, per run. */
  readonly passes: readonly ProjectionPassSpan[];
  /** When the run with the cut-over ended (the projections after it caught up). */
  readonly endAt: number;
}

/** One pass of the projection steps within one `migrate` run. */
interface ProjectionPassSpan {
  /** The run and the pass, e.g. `migrate: after the cut-over`. */
  readonly label: string;
  readonly from: number;
  readonly to: number;
  readonly events: number;
  readonly steps: number;
}

/** A projection step that did work: its run, its pass (from its title), its start and end, its events. */
interface ProjectionRun {
  readonly run: string;
  readonly pass: string;
  readonly from: number;
  readonly to: number;
  readonly events: number;
}

/** The spans of the projection passes, in the order they began. */
function passSpans(runs: readonly ProjectionRun[]): ProjectionPassSpan[] {
  const groups = new Map<string, ProjectionRun[]>();
  for (const r of runs) {
    const label = `${r.run}${r.pass}`;
    groups.set(label, [...(groups.get(label) ?? []), r]);
  }
  return [...groups].map(([label, rs]) => ({
    label, steps: rs.length, events: rs.reduce((n, r) => n + r.events, 0),
    from: Math.min(...rs.map((r) => r.from)), to: Math.max(...rs.map((r) => r.to)),
  })).sort((a, b) => a.from - b.from);
}

/**
 * zsetup's online move with the writer on: 10 s of baseline (no capture), `--prepare`, 10 s with the
 * capture on and nothing else running, then `migrate` (catch-up and cut-over), the writer still on.
 */
async function onlineMove(url: string, options: BenchOptions, warm: boolean): Promise<OnlineResult> {
  const database: Database = await openDatabase({ kind: 'url', url }, { statementTimeoutMs: 0, lockTimeoutMs: 30_000, maxConnections: options.concurrency + 4 });
  const phases = new Map<string, [number, number]>();
  let current = '';
  let label = '';
  const startedAt = new Map<string, number>();
  const projectionRuns: ProjectionRun[] = [];
  const onEvent = (e: RunEvent) => {
    // A step id appears twice in a warm run (a pass before and after the cut-over): its end belongs to its latest start.
    if (e.type === 'step-start') startedAt.set(e.stepId, Date.now());
    if (e.type === 'step-end') recordProjection(e.result);
    if (e.type !== 'step-progress' || e.stepId !== events2Step.id) return;
    const phase = label + (e.progress.phase.startsWith('index') ? 'indexes' : e.progress.phase.replace(/ locked$/, ''));
    if (phase !== current) {
      const now = Date.now();
      if (phases.has(current)) phases.get(current)![1] = now;
      phases.set(phase, [phases.get(phase)?.[0] ?? now, now]);
      current = phase;
    }
  };
  const recordProjection = (r: StepResult) => {
    if (r.status !== 'succeeded' || typeof r.summary?.projection !== 'string') return;
    const side = / \((before|after) the cut-over\)$/.exec(r.title)?.[1];
    projectionRuns.push({ run: label || '--prepare: ', pass: side ? `${side} the cut-over` : 'one pass', from: startedAt.get(r.id) ?? Date.now(), to: Date.now(), events: Number(r.summary.events ?? 0) });
  };
  const run = (steps: Step<any>[]) => migrate(database, { steps, lockWaitMs: 10_000, stepOptions: { concurrency: options.concurrency, exact: false, throttle: options.throttle }, version: 'bench', onEvent });
  const writer = await LegacyWriter.start({ url, ...writerShape(options.rate) });
  try {
    const b0 = Date.now();
    await sleep(10_000);
    const baseline = [b0, Date.now()] as const;
    const moveStart = Date.now();
    const prepared = await run(warm ? await composeSteps(database.db, { initProjections: true, move: 'prepare' }) : [events2StepFor('prepare')]);
    const prepareMs = Date.now() - moveStart;
    const preparedFailed = prepared.steps.find((r) => r.status !== 'succeeded');
    if (preparedFailed) throw new Error(`zsetup --prepare failed in ${preparedFailed.id}: ${JSON.stringify(preparedFailed.error)}`);
    if (phases.has(current)) phases.get(current)![1] = Date.now();
    current = '';
    label = 'migrate: ';
    const c0 = Date.now();
    await sleep(10_000);
    const captureIdle = [c0, Date.now()] as const;
    const t = Date.now();
    const done = await run(warm ? await composeSteps(database.db, { initProjections: true }) : [events2Step]);
    const endAt = Date.now();
    const cutOverRunMs = endAt - t;
    if (phases.has(current)) phases.get(current)![1] = Date.now();
    const doneFailed = done.steps.find((r) => r.status === 'failed' || r.status === 'interrupted' || r.status === 'not-run');
    if (doneFailed) throw new Error(`zsetup migrate failed in ${doneFailed.id}: ${JSON.stringify(doneFailed.error)}`);
    const summary: Record<string, unknown> = done.steps.find((r) => r.summary?.cutOver)?.summary ?? {};
    const switchAt = Date.parse((summary.cutOver as { at: string }).at);
    await sleep(1000);
    const records = await writer.stop();
    const exact = await exactlyOnce(database, writer, moveStart);
    const prepareSummary = prepared.steps.find((r) => r.id === events2Step.id)?.summary ?? {};
    return { prepareMs, cutOverRunMs, prepareSummary, summary, records, phases, baseline, captureIdle, switchAt, moveStart, exact, passes: passSpans(projectionRuns), endAt };
  } finally {
    await writer.stop();
    await database.close();
  }
}

/** events2 equals the mapping of events_old, and every committed write of the writer is in it once. */
async function exactlyOnce(database: Database, writer: LegacyWriter, moveStart: number): Promise<boolean> {
  const mapped = `SELECT ${MAPPED_COLUMNS} FROM eventstore.events_old`;
  // Not the events zsetup wrote during the move: ZITADEL's migration bookkeeping and (with --init-projections) the
  // milestones step's events. The legacy table's own system.migration events are moved like any other.
  const moved = `SELECT * FROM eventstore.events2 WHERE NOT ((aggregate_type = 'system' AND event_type LIKE 'system.migration.%' OR aggregate_type = 'milestone')
    AND created_at >= to_timestamp(${moveStart / 1000}))`;
  const d = await database.pool.query(`SELECT (SELECT count(*) FROM (${mapped} EXCEPT ALL ${moved}) a)::int AS missing, (SELECT count(*) FROM (${moved} EXCEPT ALL ${mapped}) b)::int AS extra`);
  const committed = writer.committed();
  const found = await writerEventsFound({ query: async (text) => (await database.pool.query(text)).rows }, committed);
  const ok = d.rows[0].missing === 0 && d.rows[0].extra === 0 && found === committed.length;
  log(`online: events2 = mapping of events_old: missing ${d.rows[0].missing}, extra ${d.rows[0].extra}; writer's committed events in events2: ${found} of ${committed.length}${ok ? '' : '  <-- NOT EXACT'}`);
  return ok;
}

function report(o: OnlineResult, ref: { referenceMs: number; referenceOutageMs: number; offlineMs: number }): void {
  const ms = (n: number) => `${Math.round(n)} ms`;
  const cut = o.summary.cutOver as { attempts: number; lockHeldMs: number; lockWaitMs: number; drained: number };
  const longest = longestOutage(o.records, o.moveStart, o.switchAt);
  const outage = longest.ms;
  const base = latency(o.records, ...o.baseline);
  const idle = latency(o.records, ...o.captureIdle);
  const totalMs = o.prepareMs + o.cutOverRunMs;
  log(`zsetup online: --prepare ${seconds(o.prepareMs)} (${timings(o.prepareSummary)}), then migrate ${seconds(o.cutOverRunMs)} (${timings(o.summary)}); total ${seconds(totalMs)} = ${(totalMs / ref.offlineMs).toFixed(2)}× the offline move (target ≤ 1.5)`);
  log(`  cut-over: attempt ${cut.attempts}, lock held ${ms(cut.lockHeldMs)} (target ≤ 200 ms), waited ${ms(cut.lockWaitMs)} for it, ${cut.drained} events drained under it`);
  log(`  longest insert blocked or failing before the switch: ${ms(outage)} (target ≤ 1000 ms); reference ${seconds(ref.referenceOutageMs)}; ratio ${((outage / ref.referenceOutageMs) * 100).toFixed(2)}% (target ≤ 1%)`);
  log(`    it was ${longest.kind === 'no commit' ? 'a stretch without any commit' : 'one transaction\'s own time to commit'}, ${((longest.from - o.moveStart) / 1000).toFixed(1)} s into the move, during ${phasesOf(longest, new Map([...o.phases, ['the wait with the capture on and nothing else running', o.captureIdle]]))}`);
  log(`  writer latency p50 / p99: baseline (no capture) ${ms(base.p50)} / ${ms(base.p99)} (${base.n} tx); capture on, nothing else running ${ms(idle.p50)} / ${ms(idle.p99)} (${idle.n} tx)`);
  for (const [phase, [from, to]] of o.phases) {
    const l = latency(o.records, from, to);
    if (l.n === 0) continue;
    const flag = phase === 'copy' ? ` (${(l.p99 / base.p99).toFixed(2)}× baseline p99, target ≤ 2)` : '';
    log(`    during ${phase} (${seconds(to - from)}): ${ms(l.p50)} / ${ms(l.p99)} (${l.n} tx)${flag}`);
  }
  const committed = o.records.filter((r) => r.outcome === 'committed').reduce((n, r) => n + r.keys.length, 0);
  const failed = o.records.filter((r) => r.outcome === 'failed' && r.start < o.switchAt);
  const codes = [...new Set(failed.map((r) => r.code ?? r.message))].join(', ');
  log(`  writer: ${committed} events committed during the run; ${failed.length} transactions started before the switch failed${codes ? ` (${codes}${codes === '42P01' ? ': queued behind the cut-over\'s lock, then the table was renamed' : ''})` : ''}`);
}

/** The warm-projection figures: each pass, and the new version's wait after the cut-over. */
function reportWarm(o: OnlineResult): void {
  for (const p of o.passes) log(`  projections, ${p.label}: ${p.events} events over ${p.steps} projections in ${seconds(p.to - p.from)}`);
  const before = o.passes.find((p) => p.label === '--prepare: before the cut-over');
  const wait = o.endAt - o.switchAt;
  log(`  after the cut-over the projections were warm ${seconds(wait)} later (catch-up of the projections and the milestones)` +
    (before ? `; the pass before the cut-over, about what a cold start would wait, took ${seconds(before.to - before.from)}` : ''));
}

async function queryLast(url: string, text: string): Promise<any> {
  return (await query(url, text))[0];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchEvents2(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}

/**
 * What the capture costs a writer: transactions of one 3-row INSERT and of three 1-row INSERTs into a
 * legacy table, without a trigger, with the capture's statement-level trigger (transition table), and
 * with the same queue filled by a row-level trigger. Alternating rounds, mean per transaction.
 */
async function captureProbe(): Promise<void> {
  const server = await benchServer();
  const name = dbName('zbench', 'probe');
  try {
    await query(server.url, `CREATE DATABASE ${name}`);
    const url = urlFor(server.url, name);
    await query(url, `${LEGACY_EVENTS_TABLE} CREATE SCHEMA zsetup; ${captureTablesDdl().join(';\n')};
      CREATE FUNCTION zsetup.events2_capture_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
      BEGIN INSERT INTO zsetup.events2_log (instance_id, event_sequence) VALUES (NEW.instance_id, NEW.event_sequence); RETURN NULL; END $fn$`);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const modes: Record<string, string[]> = {
      none: [],
      statement: captureTriggersDdl().slice(0, 1),
      row: ['CREATE TRIGGER zsetup_events2_capture AFTER INSERT ON eventstore.events FOR EACH ROW EXECUTE FUNCTION zsetup.events2_capture_row()'],
    };
    const totals = new Map<string, number[]>();
    let seq = 0;
    const row = () => { seq++; return `('e', 'a', 'agg-${seq % 1000}', 'v1', ${seq}, '{"k": ${seq}}', 'u', 'zitadel', 'o', 'i')`; };
    const cols = '(event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence, event_data, editor_user, editor_service, resource_owner, instance_id)';
    for (let round = 0; round < 5; round++) {
      for (const [mode, ddl] of Object.entries(modes)) {
        await client.query('DROP TRIGGER IF EXISTS zsetup_events2_capture ON eventstore.events');
        for (const d of ddl) await client.query(d);
        for (const shape of ['1 statement × 3 rows', '3 statements × 1 row']) {
          const t0 = performance.now();
          for (let i = 0; i < 500; i++) {
            await client.query('BEGIN');
            if (shape.startsWith('1')) await client.query(`INSERT INTO eventstore.events ${cols} VALUES ${row()}, ${row()}, ${row()}`);
            else for (let k = 0; k < 3; k++) await client.query(`INSERT INTO eventstore.events ${cols} VALUES ${row()}`);
            await client.query('COMMIT');
          }
          const key = `${shape}|${mode}`;
          totals.set(key, [...(totals.get(key) ?? []), (performance.now() - t0) / 500]);
        }
      }
    }
    await client.end();
    log(`capture probe (PostgreSQL ${(await query(server.url, 'SHOW server_version'))[0].server_version}; load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}): mean ms per transaction over 5 × 500`);
    for (const shape of ['1 statement × 3 rows', '3 statements × 1 row']) {
      const mean = (mode: string) => { const v = totals.get(`${shape}|${mode}`)!; return v.reduce((a, b) => a + b, 0) / v.length; };
      const base = mean('none');
      log(`  ${shape}: no trigger ${base.toFixed(3)}; statement trigger ${mean('statement').toFixed(3)} (+${((mean('statement') / base - 1) * 100).toFixed(0)}%); row trigger ${mean('row').toFixed(3)} (+${((mean('row') / base - 1) * 100).toFixed(0)}%)`);
    }
  } finally {
    await query(server.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await server.stop();
  }
}
