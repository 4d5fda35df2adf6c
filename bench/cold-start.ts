/**
 * Cold start of the CLI, as a user meets it: `zsetup --version` (spawn to exit), and `zsetup migrate` on an
 * up-to-date database (spawn to the first query, and to exit). The first query is seen by a small TCP proxy
 * in front of the server that notes when the first Query or Parse message of the process arrives.
 *
 *   npm run bench -- --only cold-start [--runs 15] [--entry bin/zsetup.js]
 *
 * The first run after a build fills Node's compile cache (printed on its own); NODE_DISABLE_COMPILE_CACHE=1
 * measures without the cache.
 * Server: $ZSETUP_BENCH_DATABASE_URL, else an embedded PostgreSQL in a temporary directory; a scratch
 * database is seeded with 1,000 events and migrated first, untimed.
 */
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { benchServer, dbName, log, median, query, uptime, urlFor } from './support.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Runs the benchmark; `argv` are the flags only. */
export async function benchColdStart(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: {
    runs: { type: 'string', default: '15' },
    entry: { type: 'string', default: 'bin/zsetup.js' },
  }, strict: false });
  const runs = Number(values.runs);
  const entry = path.resolve(ROOT, String(values.entry));
  const server = await benchServer();
  const db = dbName('zbenchc', 'db');
  try {
    await query(server.url, `CREATE DATABASE ${db}`);
    const url = urlFor(server.url, db);
    for (const args of [['seed', '--events', '1000'], ['migrate']]) {
      execFileSync(process.execPath, [entry, ...args, '--database', url], { stdio: ['ignore', 'ignore', 'pipe'] });
    }
    log(`Node ${process.version}; entry ${path.relative(ROOT, entry)}; ${runs} runs each; uptime: ${uptime()}`);
    const version = [];
    for (let i = 0; i < runs; i++) version.push((await timeProcess(entry, ['--version'])).exitMs);
    log(`zsetup --version: median ${medianMs(version)} ms (${Math.min(...version)}–${Math.max(...version)}); the first run ${version[0]} ms`);
    const first: number[] = [];
    const exit: number[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await withProxy(url, (proxied) => timeProcess(entry, ['migrate', '--database', proxied], true));
      first.push(r.firstQueryMs ?? NaN);
      exit.push(r.exitMs);
    }
    log(`zsetup migrate (up to date): first query after median ${medianMs(first)} ms (${Math.min(...first)}–${Math.max(...first)}), `
      + `exit after ${medianMs(exit)} ms (${Math.min(...exit)}–${Math.max(...exit)})`);
  } finally {
    await query(server.url, `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
    await server.stop();
  }
}

interface Timing { exitMs: number; firstQueryMs?: number }

let firstQueryAt: number | undefined;

/** Spawns the CLI and times it; with `watch`, also the first query the proxy saw. */
function timeProcess(entry: string, args: string[], watch = false): Promise<Timing> {
  return new Promise((resolve, reject) => {
    firstQueryAt = undefined;
    const t = performance.now();
    const child = spawn(process.execPath, [entry, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const exitMs = Math.round(performance.now() - t);
      if (code !== 0) return reject(new Error(`zsetup ${args[0]} exited with ${code}: ${stderr.slice(-1000)}`));
      resolve({ exitMs, firstQueryMs: watch && firstQueryAt !== undefined ? Math.round(firstQueryAt - t) : undefined });
    });
  });
}

/** Runs `fn` with a URL through a proxy that records when the first Query ('Q') or Parse ('P') message passes. */
async function withProxy<T>(url: string, fn: (proxied: string) => Promise<T>): Promise<T> {
  const target = new URL(url);
  const proxy = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    client.on('data', watchMessages());
    client.pipe(upstream).pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  try {
    const proxied = new URL(url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String((proxy.address() as net.AddressInfo).port);
    return await fn(proxied.toString());
  } finally {
    await new Promise((resolve) => proxy.close(resolve));
  }
}

/** Splits the frontend stream into messages (the first one, the startup message, has no type byte). */
function watchMessages(): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  let started = false;
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const head = started ? 5 : 4;
      if (buffered.length < head) return;
      const length = buffered.readInt32BE(started ? 1 : 0) + (started ? 1 : 0);
      if (buffered.length < length) return;
      const type = started ? String.fromCharCode(buffered[0]) : '';
      if ((type === 'Q' || type === 'P') && firstQueryAt === undefined) firstQueryAt = performance.now();
      // An SSLRequest (length 8) is answered with one byte; pg sends the real startup message next.
      if (!started && length !== 8) started = true;
      buffered = buffered.subarray(length);
    }
  };
}

/** The median of whole milliseconds, as a whole number. */
function medianMs(v: readonly number[]): number {
  return Math.round(median(v));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchColdStart(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
