/**
 * Benchmark of the events2 step: the reference system's approach (rename, one CREATE TABLE … AS SELECT,
 * primary key, NOT NULLs, three indexes) against `zsetup migrate`, on two identical copies of one
 * seeded legacy database. Prints both times, the ratio and zsetup's peak RSS.
 *
 *   npx tsc -p . && node_modules/.bin/node dist/bench/events2.js [--events 2000000] [--instances 20] [--concurrency 2] [--keep-source NAME]
 *
 * Server: $ZSETUP_BENCH_DATABASE_URL, else an embedded PostgreSQL in a temporary directory.
 */
import fs from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { openDatabase, type Database } from '../src/db/connection.js';
import { MAPPED_COLUMNS } from '../src/events2/sql.js';
import { migrate } from '../src/migrate.js';
import { EVENTS2_INDEXES, EVENTS2_NOT_NULLS, EVENTS2_PRIMARY_KEY, LEGACY_EVENTS_INDEXES, LEGACY_EVENTS_TABLE } from '../src/schema.js';
import { events2Step } from '../steps/01-events2.js';
import { benchServer, dbName, log, query, seconds, urlFor } from './support.js';

interface BenchOptions {
  readonly events: number;
  readonly instances: number;
  readonly concurrency: number;
  /** Name of a seeded source database to keep (and reuse when it exists) across runs. */
  readonly keepSource?: string;
}

/** Runs the benchmark; `argv` are the flags only. */
export async function benchEvents2(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: {
    events: { type: 'string', default: '2000000' },
    instances: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: String(Math.max(2, os.availableParallelism())) },
    'keep-source': { type: 'string' },
  }, strict: false });
  const keepSource = typeof values['keep-source'] === 'string' ? values['keep-source'] : undefined;
  if (keepSource !== undefined && !/^[a-z_][a-z0-9_]*$/.test(keepSource)) throw new Error(`--keep-source: not a plain database name: ${keepSource}`);
  const options: BenchOptions = { events: Number(values.events), instances: Number(values.instances), concurrency: Number(values.concurrency), keepSource };
  const server = await benchServer();
  const names = { src: keepSource ?? dbName('zbench', 'src'), ref: dbName('zbench', 'ref'), zs: dbName('zbench', 'zs') };
  try {
    const admin = (sqlText: string) => query(server.url, sqlText);
    const version = (await admin(`SELECT current_setting('server_version') AS v`))[0].v;
    log(`PostgreSQL ${version}; ${options.events.toLocaleString('en-US')} events, ${options.instances} instances, concurrency ${options.concurrency}`);
    let t = Date.now();
    const reuse = keepSource !== undefined && (await admin(`SELECT 1 FROM pg_database WHERE datname = '${keepSource}'`)).length > 0;
    if (reuse) {
      log(`reusing the seeded source database ${keepSource} (--keep-source)`);
    } else {
      await admin(`CREATE DATABASE ${names.src}`);
      await seed(urlFor(server.url, names.src), options);
      log(`seeded in ${seconds(Date.now() - t)}`);
    }
    await admin(`CREATE DATABASE ${names.ref} TEMPLATE ${names.src}`);
    await admin(`CREATE DATABASE ${names.zs} TEMPLATE ${names.src}`);
    if (!keepSource) await admin(`DROP DATABASE ${names.src}`);
    await admin('CHECKPOINT');
    t = Date.now();
    await reference(urlFor(server.url, names.ref));
    const referenceMs = Date.now() - t;
    log(`reference: ${seconds(referenceMs)}`);
    await admin('CHECKPOINT');
    const { ms: zsetupMs, peakRss, summary } = await zsetup(urlFor(server.url, names.zs), options.concurrency);
    log(`zsetup:    ${seconds(zsetupMs)} (${Object.entries(summary).filter(([k]) => k.endsWith('Ms')).map(([k, v]) => `${k} ${seconds(Number(v))}`).join(', ')})`);
    const same = await compare(urlFor(server.url, names.ref), urlFor(server.url, names.zs));
    log(`results identical: rows ${same.rows ? 'yes' : 'NO'}, constraints and indexes ${same.catalog ? 'yes' : 'NO'}`);
    log(`ratio zsetup/reference: ${(zsetupMs / referenceMs).toFixed(2)} (target ≤ 0.60)`);
    log(`zsetup peak RSS during the run: ${(peakRss / 1024 / 1024).toFixed(0)} MB`);
    if (!same.rows || !same.catalog) process.exitCode = 1;
  } finally {
    for (const name of [names.ref, names.zs, ...(keepSource ? [] : [names.src])]) await query(server.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await server.stop();
  }
}

/** The seed generator when present (src/seed), else a plain SQL generator of the legacy table. */
async function seed(url: string, options: BenchOptions): Promise<void> {
  const seedModule = new URL('../src/seed/index.js', import.meta.url);
  if (fs.existsSync(seedModule)) {
    const { seedLegacy } = await import(seedModule.href);
    const database = await openDatabase({ kind: 'url', url }, { statementTimeoutMs: 0, lockTimeoutMs: 0, maxConnections: options.concurrency + 2 });
    try {
      await seedLegacy(database, { events: options.events, instances: options.instances, seed: 1 });
    } finally {
      await database.close();
    }
    return;
  }
  log('src/seed/index.js not built: seeding with the benchmark\'s plain generator');
  const perInstance = Math.ceil(options.events / options.instances);
  await query(url, `${LEGACY_EVENTS_TABLE}
    INSERT INTO eventstore.events (event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence,
      previous_aggregate_sequence, creation_date, event_data, editor_user, editor_service, resource_owner, instance_id)
    SELECT (ARRAY['user.human.added', 'user.human.password.changed', 'session.added', 'session.user.checked', 'oidc_session.added', 'project.application.added'])[1 + g % 6],
           (ARRAY['user', 'user', 'session', 'session', 'oidc_session', 'project'])[1 + g % 6],
           (i * 1000000 + g / 7)::text, 'v' || (1 + g % 2), g, NULLIF(g - 1, 0),
           timestamptz '2023-06-01 00:00:00+00' + g * interval '137 milliseconds' + (g % 3) * interval '1 microsecond',
           CASE WHEN g % 10 = 0 THEN NULL ELSE jsonb_build_object('userName', 'user' || g || '@example.com', 'firstName', 'First' || (g % 97),
             'lastName', 'Last' || (g % 89), 'userAgentID', md5(g::text), 'preferredLanguage', 'en') END,
           'user-' || (g % 500), 'zitadel', 'org-' || i || '-' || (g % 3), 'instance-' || i
    FROM generate_series(1, ${options.instances}) i, generate_series(1, ${perInstance}) g
    WHERE (i - 1) * ${perInstance} + g <= ${options.events};
    ${LEGACY_EVENTS_INDEXES}`);
  await query(url, 'VACUUM ANALYZE eventstore.events');
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

async function zsetup(url: string, concurrency: number): Promise<{ ms: number; peakRss: number; summary: Record<string, unknown> }> {
  const database: Database = await openDatabase({ kind: 'url', url }, { statementTimeoutMs: 0, lockTimeoutMs: 30_000, maxConnections: concurrency + 4 });
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage.rss()); }, 100);
  try {
    const started = Date.now();
    const result = await migrate(database, { steps: [events2Step], lockWaitMs: 10_000, stepOptions: { concurrency, exact: false }, version: 'bench' });
    const ms = Date.now() - started;
    const step = result.steps[0];
    if (step.status !== 'succeeded') throw new Error(`zsetup failed: ${JSON.stringify(step.error)}`);
    return { ms, peakRss: Math.max(peakRss, process.memoryUsage.rss()), summary: step.summary ?? {} };
  } finally {
    clearInterval(sampler);
    await database.close();
  }
}

/** Same rows (count and a hash over every row) and the same constraint, index and column definitions. */
async function compare(a: string, b: string): Promise<{ rows: boolean; catalog: boolean }> {
  const rowsSql = `SET max_parallel_workers_per_gather = 2;
    SELECT count(*)::text AS n, sum(hashtextextended(e::text, 0))::text AS h FROM eventstore.events2 e`;
  const catalogSql = `
    SELECT json_build_object(
      'columns', (SELECT json_agg(json_build_array(attname, format_type(atttypid, atttypmod), attnotnull) ORDER BY attnum)
                  FROM pg_attribute WHERE attrelid = 'eventstore.events2'::regclass AND attnum > 0 AND NOT attisdropped),
      'indexes', (SELECT json_agg(indexdef ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'eventstore' AND tablename = 'events2'),
      'constraints', (SELECT json_agg(conname || ' ' || pg_get_constraintdef(oid) ORDER BY conname) FROM pg_constraint WHERE conrelid = 'eventstore.events2'::regclass)
    )::text AS c`;
  const [ra, rb] = await Promise.all([queryLast(a, rowsSql), queryLast(b, rowsSql)]);
  const [ca, cb] = await Promise.all([query(a, catalogSql), query(b, catalogSql)]);
  if (ca[0].c !== cb[0].c) log(`catalog differs:\n  reference ${ca[0].c}\n  zsetup    ${cb[0].c}`);
  return { rows: ra.n === rb.n && ra.h === rb.h, catalog: ca[0].c === cb[0].c };
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
