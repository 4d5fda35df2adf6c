/**
 * Benchmark of the projection prefill: zsetup's projection steps under the runner, as init-projections
 * runs them (ordered batches folded in memory, written in bulk, projections and instances in parallel) against a per-event handler written the way the reference system's
 * projections work (events read 1,000 at a time, one statement per change, each event inside its own
 * SAVEPOINT, the position upserted once per batch, one projection after another), on two copies of one
 * seeded database. Checks both give identical tables and positions; prints events per second and the ratio.
 *
 *   npx tsc -p . && node_modules/.bin/node dist/bench/projections.js [--events 1000000] [--instances 10] [--concurrency 2]
 *        [--keep-source] [--source <database>]
 *
 * Data: seedLegacy (legacy eventstore.events), then the events2 and milestones steps via migrate().
 * `--keep-source` keeps that seeded database (its name is printed); `--source` uses such a database
 * again instead of seeding (it is only read, as the template of the two copies).
 * Server: $ZSETUP_BENCH_DATABASE_URL, else an embedded PostgreSQL in a temporary directory.
 * ZSETUP_BENCH_STEPS=1 also prints when each zsetup step started and ended, and the process's CPU time.
 * Each timed run starts on a quiet server: after a checkpoint, with no autovacuum worker running; the
 * reference's database is vacuumed (untimed) before the zsetup run. The zsetup run shares this process
 * with the reference run, whose per-event handler has already run the same reducers and validation.
 */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { openDatabase, type Database } from '../src/db/connection.js';
import { migrate } from '../src/migrate.js';
import { applyEventByEvent, reduceBatch } from '../src/projections/batch.js';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { ensureTables } from '../src/projections/ddl.js';
import { captureEndPoint, listInstances } from '../src/projections/events.js';
import { compileProjection, type ProjectionModel } from '../src/projections/model.js';
import { OffsetCounter, recordFailures, writeState, type FailedEvent } from '../src/projections/state.js';
import type { ProjectionEvent } from '../src/projections/types.js';
import { seedLegacy } from '../src/seed/index.js';
import { events2Step } from '../steps/01-events2.js';
import { milestonesStep } from '../steps/02-milestones.js';
import { projectionSteps } from '../steps/03-projections.js';
import { benchServer, dbName, log, query, seconds, urlFor } from './support.js';

const MODELS = BUILTIN_PROJECTIONS.map(compileProjection);
const ORDER = `"position", in_tx_order, aggregate_type, aggregate_id, "sequence"`;

/** Runs the benchmark; `argv` are the flags only. */
export async function benchProjections(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: {
    events: { type: 'string', default: '1000000' },
    instances: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: String(Math.max(2, os.availableParallelism())) },
    'keep-source': { type: 'boolean', default: false },
    source: { type: 'string' },
  }, strict: false });
  const events = Number(values.events);
  const instances = Number(values.instances);
  const concurrency = Number(values.concurrency);
  const server = await benchServer();
  const source = typeof values.source === 'string' ? values.source : undefined;
  const names = { src: source ?? dbName('zbenchp', 'src'), ref: dbName('zbenchp', 'ref'), zs: dbName('zbenchp', 'zs') };
  const keep = new Set(source || values['keep-source'] ? [names.src] : []);
  const admin = (text: string) => query(server.url, text);
  try {
    const version = (await admin(`SELECT current_setting('server_version') AS v`))[0].v;
    if (source) {
      const n = (await query(urlFor(server.url, source), `SELECT count(*)::int AS n, count(DISTINCT instance_id)::int AS i FROM eventstore.events2`))[0];
      log(`PostgreSQL ${version}; source database ${source}: ${n.n.toLocaleString('en-US')} events in events2, ${n.i} instances, concurrency ${concurrency}`);
    } else {
      log(`PostgreSQL ${version}; ${events.toLocaleString('en-US')} seeded events, ${instances} instances, concurrency ${concurrency}`);
      await admin(`CREATE DATABASE ${names.src}`);
      const t = Date.now();
      await prepare(urlFor(server.url, names.src), events, instances, concurrency);
      log(`seeded and moved to events2 in ${seconds(Date.now() - t)}${keep.size ? ` (kept as ${names.src})` : ''}`);
    }
    log(`load average: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    await admin(`CREATE DATABASE ${names.ref} TEMPLATE ${names.src}`);
    await admin(`CREATE DATABASE ${names.zs} TEMPLATE ${names.src}`);
    if (!keep.size) await admin(`DROP DATABASE ${names.src}`);
    await settle(server.url);
    const ref = await timed(urlFor(server.url, names.ref), concurrency, (db) => referencePrefill(db));
    log(`reference: ${ref.events.toLocaleString('en-US')} events in ${seconds(ref.ms)} = ${rate(ref.events, ref.ms)} events/s`);
    // The reference's tables were just written for half a minute: vacuumed now, untimed, autovacuum does
    // not work on them during the zsetup run.
    await query(urlFor(server.url, names.ref), 'VACUUM ANALYZE');
    await settle(server.url);
    const zs = await timed(urlFor(server.url, names.zs), concurrency, (db) => zsetupPrefill(db, concurrency));
    log(`zsetup:    ${zs.events.toLocaleString('en-US')} events in ${seconds(zs.ms)} = ${rate(zs.events, zs.ms)} events/s (peak RSS ${Math.round(zs.peakRss / 2 ** 20)} MiB)`);
    const diff = await compare(urlFor(server.url, names.ref), urlFor(server.url, names.zs));
    log(`tables and current_states identical: ${diff.length === 0 ? 'yes' : `NO (${diff.join(', ')})`}`);
    log(`ratio: zsetup is ${(ref.ms / zs.ms).toFixed(1)}x the reference (load average now ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})`);
    if (diff.length || zs.events !== ref.events) process.exitCode = 1;
  } finally {
    for (const n of Object.values(names)) if (!keep.has(n)) await admin(`DROP DATABASE IF EXISTS ${n} WITH (FORCE)`).catch(() => {});
    await server.stop();
  }
}

/** Seeds the legacy table, then runs the events2 and milestones steps, as an upgrade would. */
async function prepare(url: string, events: number, instances: number, concurrency: number): Promise<void> {
  const database = await openDatabase({ kind: 'url', url }, { statementTimeoutMs: 0, lockTimeoutMs: 0, maxConnections: concurrency + 4 });
  try {
    await seedLegacy(database, { events, instances, seed: 1 });
    const r = await migrate(database, { steps: [events2Step, milestonesStep], lockWaitMs: 10_000, stepOptions: { concurrency, exact: false }, version: 'bench' });
    const failed = r.steps.find((s) => s.status !== 'succeeded');
    if (failed) throw new Error(`step ${failed.id} ${failed.status}: ${failed.error?.message}`);
    await database.pool.query('VACUUM ANALYZE eventstore.events2');
  } finally {
    await database.close();
  }
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

async function timed(url: string, concurrency: number, fn: (db: Database) => Promise<number>) {
  const database = await openDatabase({ kind: 'url', url }, { statementTimeoutMs: 0, lockTimeoutMs: 0, maxConnections: 2 * concurrency + 4 });
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  try {
    const started = Date.now();
    const cpu = process.cpuUsage();
    const events = await fn(database);
    const used = process.cpuUsage(cpu);
    if (process.env.ZSETUP_BENCH_STEPS) log(`  node cpu ${Math.round((used.user + used.system) / 1000)} ms`);
    return { ms: Date.now() - started, events, peakRss };
  } finally {
    clearInterval(sampler);
    await database.close();
  }
}

/** zsetup's prefill as `zsetup init-projections` runs it: the projection steps under the runner. */
async function zsetupPrefill(database: Database, concurrency: number): Promise<number> {
  const t0 = Date.now();
  const onEvent = process.env.ZSETUP_BENCH_STEPS ? (e: { type: string; stepId?: string; result?: { id: string } }) => {
    if (e.type === 'step-start' || e.type === 'step-end') log(`  +${Date.now() - t0} ms ${e.type} ${e.stepId ?? e.result?.id}`);
  } : undefined;
  const r = await migrate(database, { steps: projectionSteps(MODELS), lockWaitMs: 10_000, stepOptions: { concurrency, exact: false }, version: 'bench', onEvent });
  const failed = r.steps.find((s) => s.status !== 'succeeded');
  if (failed) throw new Error(`step ${failed.id} ${failed.status}: ${failed.error?.message}`);
  if (process.env.ZSETUP_BENCH_STEPS) for (const s of r.steps) log(`  ${s.id}: ${s.durationMs} ms`);
  return r.steps.reduce((n, s) => n + Number(s.summary?.events ?? 0), 0);
}

/**
 * The reference handler: per projection, per instance, read the next 1,000 events ordered after the
 * stored position, apply each event's statements inside its own savepoint (a failure is recorded and
 * skipped), upsert the position, commit; repeat while a full batch came back.
 */
async function referencePrefill(database: Database): Promise<number> {
  const { position: endPoint } = await captureEndPoint(database.pool);
  const client = await database.pool.connect();
  let total = 0;
  try {
    for (const model of MODELS) {
      await ensureTables(client, model);
      for (const instance of await listInstances(client)) total += await referenceInstance(client, model, instance, endPoint);
    }
  } finally {
    client.release();
  }
  return total;
}

async function referenceInstance(client: pg.PoolClient, model: ProjectionModel, instance: string, endPoint: string): Promise<number> {
  let last: ProjectionEvent | null = null;
  let total = 0;
  const offset = new OffsetCounter(null, 0);
  for (;;) {
    const after = last ? `AND (${ORDER}) > ($5::numeric, $6::int, $7::text, $8::text, $9::bigint)` : '';
    const values: unknown[] = [instance, model.aggregateTypes, model.eventTypes, endPoint];
    if (last) values.push(last.position, last.inTxOrder, last.aggregateType, last.aggregateId, last.sequence);
    const r = await client.query({
      text: `SELECT aggregate_type, aggregate_id, event_type, "sequence", revision, creator, owner, payload, "position", in_tx_order,
               to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at
             FROM eventstore.events2 WHERE instance_id = $1 AND aggregate_type = ANY($2) AND event_type = ANY($3)
               AND "position" < $4::numeric ${after} ORDER BY ${ORDER} LIMIT 1000`,
      values,
      types: { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig,
    });
    if (r.rows.length === 0) return total;
    const events: ProjectionEvent[] = r.rows.map((row) => ({
      instanceId: instance, aggregateType: row.aggregate_type, aggregateId: row.aggregate_id, eventType: row.event_type,
      sequence: Number(row.sequence), revision: Number(row.revision), createdAt: row.created_at, creator: row.creator, owner: row.owner,
      payload: row.payload === null ? null : JSON.parse(row.payload), position: row.position, inTxOrder: Number(row.in_tx_order),
    }));
    await client.query('BEGIN');
    const { reduced, failures } = reduceBatch(model, events);
    const all: FailedEvent[] = [...failures];
    await applyEventByEvent(client, reduced, all);
    await recordFailures(client, model.name, all);
    for (const e of events) offset.add(e);
    last = events[events.length - 1];
    await writeState(client, model.name, last, offset.value);
    await client.query('COMMIT');
    total += events.length;
    if (events.length < 1000) return total;
  }
}

/** Tables (and current_states without last_updated, failed_events2 without times) that differ between two databases. */
async function compare(a: string, b: string): Promise<string[]> {
  const tables = MODELS.flatMap((m) => m.tables.map((t) => `SELECT * FROM ${t.name}`));
  tables.push(
    `SELECT projection_name, instance_id, aggregate_id, aggregate_type, "sequence", event_date, "position", filter_offset, in_tx_order FROM projections.current_states`,
    `SELECT projection_name, instance_id, aggregate_type, aggregate_id, failed_sequence, failure_count, error FROM projections.failed_events2`,
  );
  const differ: string[] = [];
  for (const t of tables) {
    const digest = async (url: string) => (await query(url, `SELECT count(*) AS n, md5(coalesce(string_agg(j, E'\\n' ORDER BY j), '')) AS h FROM (SELECT to_jsonb(x)::text AS j FROM (${t}) x) y`))[0];
    const [x, y] = [await digest(a), await digest(b)];
    if (x.n !== y.n || x.h !== y.h) differ.push(`${t.replace(/^SELECT .* FROM /, '')}: ${x.n} vs ${y.n} rows`);
  }
  return differ;
}

const rate = (n: number, ms: number) => Math.round(n / (ms / 1000)).toLocaleString('en-US');

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchProjections(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
