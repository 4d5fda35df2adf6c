/**
 * Memory of the projection prefill on large payloads (issue 16 §3): `zsetup init-projections` as a cold
 * process under `/usr/bin/time`, its peak RSS per stream length. The data are `zsetup seed` databases whose
 * SAML apps carry metadata of `--saml-metadata-bytes` (base64 in the payload, about 4/3 of that in JSON
 * text), optionally every payload padded to `--payload-bytes`, then `zsetup migrate --offline` (events2, milestones).
 *
 *   npm run bench -- --only projections-memory [--events 100000,300000,1000000] [--saml-metadata-bytes 1000000]
 *        [--payload-bytes <n>] [--runs 1] [--limit-mb 300] [--keep-source] [--source <db>[,<db>…]]
 *
 * Per size: seeded and migrated once; then `--runs` prefills, each on a fresh TEMPLATE copy after a
 * checkpoint. Prints per run the projection events, the payload text they carry, peak RSS (`%M`), elapsed,
 * user and system time, with `uptime`; fails (exit code 1) when a peak passes `--limit-mb` or a run
 * records failed events. Target: under 300 MB at every size, flat in the stream length.
 * Server: $ZSETUP_BENCH_DATABASE_URL, else an embedded PostgreSQL in a temporary directory.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { benchServer, dbName, log, query, runZsetup, seconds, uptime, urlFor, withSourceDatabase, ZSETUP_BIN } from './support.js';

/** The aggregate types the built-in projections read large payloads from (apps on project, users, orgs, instances). */
const PROJECTION_AGGREGATES = ['instance', 'org', 'project', 'user'];

/** One timed prefill. */
interface Run {
  readonly peakKb: number;
  readonly elapsedS: number;
  readonly userS: number;
  readonly sysS: number;
  readonly events: number;
  readonly failedEvents: number;
  readonly batches: number;
}

interface SeedShape {
  readonly samlMetadataBytes: number;
  readonly payloadBytes?: number;
}

/** Runs the benchmark; `argv` are the flags only. */
export async function benchProjectionsMemory(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: {
    events: { type: 'string', default: '100000,300000,1000000' },
    'saml-metadata-bytes': { type: 'string', default: '1000000' },
    'payload-bytes': { type: 'string' },
    runs: { type: 'string', default: '1' },
    'limit-mb': { type: 'string', default: '300' },
    'keep-source': { type: 'boolean', default: false },
    source: { type: 'string' },
  }, strict: false });
  const sizes = String(values.events).split(',').map(Number);
  const sources = typeof values.source === 'string' ? values.source.split(',') : [];
  const shape: SeedShape = {
    samlMetadataBytes: Number(values['saml-metadata-bytes']),
    payloadBytes: typeof values['payload-bytes'] === 'string' ? Number(values['payload-bytes']) : undefined,
  };
  const runs = Number(values.runs);
  const limitKb = Number(values['limit-mb']) * 1024;
  const server = await benchServer();
  const peaks: number[] = [];
  let failed = false;
  try {
    log(`PostgreSQL ${(await query(server.url, `SELECT current_setting('server_version') AS v`))[0].v}; Node ${process.version}; `
      + `${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB; `
      + (sources.length ? 'given sources' : `seeded with SAML metadata of ${shape.samlMetadataBytes.toLocaleString('en-US')} bytes${shape.payloadBytes ? `, payloads padded to ${shape.payloadBytes} bytes` : ''}`)
      + `; limit ${values['limit-mb']} MB peak RSS`);
    log(`uptime: ${uptime()}`);
    const count = sources.length || sizes.length;
    for (let i = 0; i < count; i++) {
      const results = await benchSize(server.url, sources[i], sizes[i], shape, runs, Boolean(values['keep-source']));
      for (const r of results) {
        peaks.push(r.peakKb);
        failed ||= r.peakKb >= limitKb || r.failedEvents > 0;
      }
    }
    log(`\npeak RSS over all sizes: ${mb(Math.min(...peaks))}–${mb(Math.max(...peaks))} (limit ${values['limit-mb']} MB)`);
    log(`uptime: ${uptime()}`);
    if (failed) {
      log('FAILED: a peak RSS reached the limit, or a prefill recorded failed events');
      process.exitCode = 1;
    }
  } finally {
    await server.stop();
  }
}

async function benchSize(server: string, source: string | undefined, events: number, shape: SeedShape, runs: number, keep: boolean): Promise<Run[]> {
  return withSourceDatabase({ server, given: source, prefix: 'zbenchm', keep, events, build: (url) => seed(url, events, shape) }, async (src) => {
    const [n] = await query(urlFor(server, src), `SELECT count(*)::int AS n,
        (sum(octet_length(payload::text)) FILTER (WHERE aggregate_type = ANY('{${PROJECTION_AGGREGATES}}')))::float8 AS bytes,
        (max(octet_length(payload::text)))::float8 AS largest,
        count(*) FILTER (WHERE event_type = 'project.application.config.saml.added')::int AS saml
      FROM eventstore.events2`);
    log(`${n.n.toLocaleString('en-US')} events in events2; ${n.saml} SAML configs; payload text of ${PROJECTION_AGGREGATES.join('/')} events `
      + `${mb(n.bytes / 1024)}, largest payload ${mb(n.largest / 1024)}`);
    const results: Run[] = [];
    for (let i = 1; i <= runs; i++) results.push(await timedCopy(server, src, i));
    return results;
  });
}

/** `zsetup seed` with the shape, then `zsetup migrate`, as a user builds the source. */
function seed(url: string, events: number, shape: SeedShape): void {
  const flags = ['--saml-metadata-bytes', String(shape.samlMetadataBytes), ...(shape.payloadBytes ? ['--payload-bytes', String(shape.payloadBytes)] : [])];
  // Their progress lines are left out; a failure's stderr is in the error thrown.
  execFileSync(process.execPath, [ZSETUP_BIN, 'seed', '--events', String(events), ...flags, '--database', url], { stdio: ['ignore', 'ignore', 'pipe'] });
  execFileSync(process.execPath, [ZSETUP_BIN, 'migrate', '--offline', '--database', url], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** One prefill on a TEMPLATE copy of `src`, after a checkpoint; the copy is dropped afterwards. */
async function timedCopy(server: string, src: string, round: number): Promise<Run> {
  const copy = dbName('zbenchm', 'run');
  await query(server, `CREATE DATABASE ${copy} TEMPLATE ${src}`);
  try {
    await query(server, 'CHECKPOINT');
    const r = await timedPrefill(urlFor(server, copy));
    log(`  run ${round}: ${r.events.toLocaleString('en-US')} projection events in ${r.batches} batches, peak RSS ${mb(r.peakKb)}, `
      + `${r.elapsedS.toFixed(2)} s (user ${r.userS.toFixed(2)} s, sys ${r.sysS.toFixed(2)} s)${r.failedEvents ? `, ${r.failedEvents} FAILED events` : ''}; `
      + `load ${uptime().replace(/.*load average: /, '')}`);
    return r;
  } finally {
    await query(server, `DROP DATABASE IF EXISTS ${copy}`);
  }
}

/** `zsetup init-projections --json` as a cold process under `/usr/bin/time`. */
async function timedPrefill(url: string): Promise<Run> {
  const run = await runZsetup(['init-projections', '--database', url, '--json'], { measure: true });
  if (run.code !== 0) throw new Error(`zsetup init-projections exited with ${run.code}:\n${run.stderr.slice(-2000)}`);
  const steps = JSON.parse(run.stdout).steps as { summary?: { events?: number; failedEvents?: number; batches?: number } }[];
  const sum = (k: 'events' | 'failedEvents' | 'batches') => steps.reduce((n, s) => n + Number(s.summary?.[k] ?? 0), 0);
  return { ...run.times!, events: sum('events'), failedEvents: sum('failedEvents'), batches: sum('batches') };
}

const mb = (kb: number) => `${(kb / 1024).toFixed(kb < 10 * 1024 ? 1 : 0)} MB`;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchProjectionsMemory(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
