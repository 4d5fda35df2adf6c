/**
 * Benchmark of the projection prefill, measured as a user runs it: `zsetup init-projections` as its own
 * process (node bin/zsetup.js … --database <url>), timed from spawn to exit, against a re-creation of
 * ZITADEL's projection handler (bench/reference-handler.ts: parallel instance workers, batches of 1,000,
 * a savepoint per statement, its own SQL per event type), on copies of one seeded database.
 *
 *   npm run bench -- --only projections [--events 1000000,5000000] [--runs 5] [--ref-workers 10]
 *        [--keep-source] [--source <db>[,<db>…]]
 *
 * Per size: `zsetup seed --events N` and `zsetup migrate` (events2, milestones) build the source once; then
 * `--runs` rounds, each on two fresh TEMPLATE copies, the two sides interleaved (odd rounds reference first,
 * even rounds zsetup first), each timed run on a quiet server (checkpoint, no autovacuum worker). After each
 * round both sides' tables are compared (all twelve projection tables, their column definitions, the six
 * projections' `current_states` rows and `failed_events2` keys): any difference fails the benchmark.
 * Prints per round, then the median and the spread of both sides and of the ratio, with `uptime`.
 * Server: $ZSETUP_BENCH_DATABASE_URL, else an embedded PostgreSQL in a temporary directory.
 */
import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { REFERENCE_TABLES, ZITADEL_SETUP_INDEXES } from './reference-ddl.js';
import { referencePrefill } from './reference-handler.js';
import { benchServer, dbName, log, median, query, runZsetup, seconds, uptime, urlFor, withSourceDatabase, ZSETUP_BIN } from './support.js';

const PROJECTIONS = ['projections.instances', 'projections.orgs1', 'projections.projects4', 'projections.apps7', 'projections.users14', 'projections.milestones3'];
/** ZITADEL's worker count when the pool reports no limit (and for a pool of ≥ 40 connections); capped at the instances. */
const DEFAULT_REF_WORKERS = 10;

interface Round { readonly refMs: number; readonly refCpuMs: number; readonly zsMs: number; readonly events: number; readonly zsEvents: number; readonly differ: readonly string[] }

/** Runs the benchmark; `argv` are the flags only. */
export async function benchProjections(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: {
    events: { type: 'string', default: '1000000,5000000' },
    runs: { type: 'string', default: '5' },
    'ref-workers': { type: 'string', default: String(DEFAULT_REF_WORKERS) },
    'keep-source': { type: 'boolean', default: false },
    source: { type: 'string' },
  }, strict: false });
  const sizes = String(values.events).split(',').map(Number);
  const sources = typeof values.source === 'string' ? values.source.split(',') : [];
  const runs = Number(values.runs);
  const workers = Number(values['ref-workers']);
  const server = await benchServer();
  let failed = false;
  try {
    log(`PostgreSQL ${(await query(server.url, `SELECT current_setting('server_version') AS v`))[0].v}; Node ${process.version}; `
      + `reference workers ${workers}; ${runs} interleaved rounds per size`);
    log(`uptime: ${uptime()}`);
    const count = sources.length || sizes.length;
    for (let i = 0; i < count; i++) {
      const rounds = await benchSize(server.url, sources[i], sizes[i], runs, workers, Boolean(values['keep-source']));
      failed ||= rounds.some((r) => r.differ.length > 0 || r.zsEvents !== r.events);
    }
    log(`uptime: ${uptime()}`);
    if (failed) {
      log('FAILED: the two sides did not produce the same tables (see MISMATCH above)');
      process.exitCode = 1;
    }
  } finally {
    await server.stop();
  }
}

async function benchSize(server: string, source: string | undefined, events: number, runs: number, workers: number, keep: boolean): Promise<Round[]> {
  return withSourceDatabase({ server, given: source, prefix: 'zbenchp', keep, events, build: (url) => seed(url, events) }, async (src) => {
    const n = (await query(urlFor(server, src), `SELECT count(*)::int AS n, count(DISTINCT instance_id)::int AS i FROM eventstore.events2`))[0];
    log(`${n.n.toLocaleString('en-US')} events in events2, ${n.i} instance ids`);
    const rounds: Round[] = [];
    for (let i = 1; i <= runs; i++) rounds.push(await round(server, src, i, workers));
    summarize(rounds);
    return rounds;
  });
}

/** The source as a user makes one: `zsetup seed`, then `zsetup migrate` (events2, milestones). */
async function seed(url: string, events: number): Promise<void> {
  execFileSync(process.execPath, [ZSETUP_BIN, 'seed', '--events', String(events), '--database', url], { stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync(process.execPath, [ZSETUP_BIN, 'migrate', '--database', url], { stdio: ['ignore', 'ignore', 'inherit'] });
  await query(url, 'VACUUM ANALYZE');
}

/** One round: both sides on their own copy, in alternating order, then the comparison. */
async function round(server: string, src: string, i: number, workers: number): Promise<Round> {
  const ref = dbName('zbenchp', 'ref');
  const zs = dbName('zbenchp', 'zs');
  try {
    await admin(server, `CREATE DATABASE ${ref} TEMPLATE ${src}`);
    await admin(server, `CREATE DATABASE ${zs} TEMPLATE ${src}`);
    await query(urlFor(server, ref), ZITADEL_SETUP_INDEXES.join(';\n'));
    const sides = {
      ref: async () => {
        const [t, cpu] = [performance.now(), process.cpuUsage()];
        const r = await referencePrefill(urlFor(server, ref), workers);
        const used = process.cpuUsage(cpu);
        return { ms: performance.now() - t, events: r.events, cpuMs: (used.user + used.system) / 1000 };
      },
      zs: async () => zsetupProcess(urlFor(server, zs)),
    };
    const order = i % 2 === 1 ? (['ref', 'zs'] as const) : (['zs', 'ref'] as const);
    const out: Record<string, { ms: number; events: number; cpuMs?: number }> = {};
    for (const side of order) {
      await settle(server);
      out[side] = await sides[side]();
      // Untimed: the tables just written are vacuumed, so autovacuum does not work on them during the other side's run.
      await query(urlFor(server, side === 'ref' ? ref : zs), 'VACUUM ANALYZE');
    }
    const differ = await compare(urlFor(server, ref), urlFor(server, zs));
    const r: Round = { refMs: out.ref.ms, refCpuMs: out.ref.cpuMs ?? 0, zsMs: out.zs.ms, events: out.ref.events, zsEvents: out.zs.events, differ };
    log(`round ${i} (${order.join(' then ')}): reference ${seconds(r.refMs)} (${rate(r.events, r.refMs)} events/s, Node CPU ${seconds(r.refCpuMs)}), `
      + `zsetup process ${seconds(r.zsMs)} (${rate(r.zsEvents, r.zsMs)} events/s), ratio ${(r.refMs / r.zsMs).toFixed(1)}x; `
      + `${r.events.toLocaleString('en-US')} / ${r.zsEvents.toLocaleString('en-US')} events; load ${uptime().replace(/.*load average: /, '')}`);
    for (const d of differ) log(`  MISMATCH ${d}`);
    return r;
  } finally {
    for (const db of [ref, zs]) await admin(server, `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
  }
}

/** `zsetup init-projections` as a separate process, timed as a whole; its events from the JSON result. */
async function zsetupProcess(url: string): Promise<{ ms: number; events: number }> {
  const run = await runZsetup(['init-projections', '--database', url, '--json']);
  if (run.code !== 0) throw new Error(`zsetup init-projections exited with ${run.code}:\n${run.stderr.slice(-2000)}`);
  const steps = JSON.parse(run.stdout).steps as { summary?: { events?: number } }[];
  return { ms: run.ms, events: steps.reduce((n, s) => n + Number(s.summary?.events ?? 0), 0) };
}

/**
 * What differs between the two databases: each projection table (rows, and its columns' definitions),
 * the six projections' `current_states` rows (without last_updated) and `failed_events2` keys and counts
 * (the error text is each implementation's own).
 */
async function compare(a: string, b: string): Promise<string[]> {
  const inList = PROJECTIONS.map((p) => `'${p}'`).join(', ');
  const checks: [string, string][] = REFERENCE_TABLES.map((t) => [t, `SELECT * FROM ${t}`]);
  checks.push(
    ...REFERENCE_TABLES.map((t): [string, string] => [`${t} columns`, `SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
      WHERE table_schema || '.' || table_name = '${t}'`]),
    ['current_states', `SELECT projection_name, instance_id, aggregate_id, aggregate_type, "sequence", event_date, "position", filter_offset
      FROM projections.current_states WHERE projection_name IN (${inList})`],
    ['failed_events2', `SELECT projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence, failure_count
      FROM projections.failed_events2 WHERE projection_name IN (${inList})`],
  );
  const differ: string[] = [];
  for (const [label, sql] of checks) {
    const rows = async (url: string) => (await query(url, `SELECT to_jsonb(x)::text AS j FROM (${sql}) x ORDER BY 1`)).map((r) => r.j as string);
    const [x, y] = [await rows(a).catch((e) => [`error: ${e.message}`]), await rows(b).catch((e) => [`error: ${e.message}`])];
    const [inX, inY] = [new Set(x), new Set(y)];
    const onlyX = x.filter((r) => !inY.has(r));
    const onlyY = y.filter((r) => !inX.has(r));
    if (onlyX.length || onlyY.length) {
      differ.push(`${label}: ${x.length} rows (reference) vs ${y.length} (zsetup); ${onlyX.length} only in the reference, e.g. ${onlyX[0] ?? '-'}; `
        + `${onlyY.length} only in zsetup's, e.g. ${onlyY[0] ?? '-'}`);
    }
  }
  return differ;
}

function summarize(rounds: Round[]): void {
  const ref = rounds.map((r) => r.refMs);
  const zs = rounds.map((r) => r.zsMs);
  const ratios = rounds.map((r) => r.refMs / r.zsMs);
  const spread = (v: number[], f: (n: number) => string) => `${f(Math.min(...v))}–${f(Math.max(...v))}`;
  const s = (ms: number) => (ms / 1000).toFixed(2);
  log(`median of ${rounds.length}: reference ${s(median(ref))} s (${spread(ref, s)}), zsetup process ${s(median(zs))} s (${spread(zs, s)}), `
    + `ratio ${median(ratios).toFixed(1)}x (${spread(ratios, (n) => n.toFixed(1))}); ratio of the medians ${(median(ref) / median(zs)).toFixed(1)}x`);
}

/**
 * Brings the server to the same quiet state before each timed run: a checkpoint, then no autovacuum
 * worker running anywhere on the server (waits up to 30 s, and says how long it waited).
 */
async function settle(server: string): Promise<void> {
  await query(server, 'CHECKPOINT');
  const started = Date.now();
  for (;;) {
    const [{ n }] = await query(server, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`);
    if (n === 0 || Date.now() - started > 30_000) {
      if (Date.now() - started > 200) log(`  waited ${seconds(Date.now() - started)} for autovacuum (${n} worker(s) still running)`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const admin = (server: string, text: string) => query(server, text);
const rate = (n: number, ms: number) => Math.round(n / (ms / 1000)).toLocaleString('en-US');

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchProjections(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
