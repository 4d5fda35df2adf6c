import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/connection.js';
import { chooseStrategy, readServerResources, type ServerResources } from '../src/events2/strategy.js';
import { planMigrate } from '../src/plan.js';
import { migrate } from '../src/migrate.js';
import { offlineStep, seedAwkwardLegacy } from './events2-support.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

const MB = 1024 * 1024;
const GB = 1024 * MB;

/** PostgreSQL 15's defaults, with a 400 MB table. */
const PG15_DEFAULTS: ServerResources = {
  serverVersionNum: 150018,
  maxParallelMaintenanceWorkers: 2,
  maxParallelWorkers: 8,
  maxWorkerProcesses: 8,
  sharedBuffersBytes: 128 * MB,
  effectiveCacheSizeBytes: 4 * GB,
  maintenanceWorkMemBytes: 64 * MB,
  tableBytes: 400 * MB,
};

const decision = (server: ServerResources, cpus: number) => {
  const { buildsAtOnce, parallelWorkersPerBuild, maintenanceWorkMem, copyConnections } = chooseStrategy(server, cpus);
  return { buildsAtOnce, parallelWorkersPerBuild, maintenanceWorkMem, copyConnections };
};

describe('chooseStrategy: server profiles → decisions', () => {
  it('2 CPUs, server defaults: two builds at once with one parallel worker each, memory as much as the sort needs', () => {
    // A quarter of effective_cache_size (1 GB) over two builds is 512 MB; the 400 MB table (in 64 MB steps: 448 MB) bounds it.
    expect(decision(PG15_DEFAULTS, 2)).toEqual({ buildsAtOnce: 2, parallelWorkersPerBuild: 1, maintenanceWorkMem: `${448 * 1024}kB`, copyConnections: 2 });
  });

  it('more CPUs: all four builds at once, as many workers as the server grants, the memory share divided over them', () => {
    expect(decision(PG15_DEFAULTS, 4)).toEqual({ buildsAtOnce: 4, parallelWorkersPerBuild: 1, maintenanceWorkMem: `${256 * 1024}kB`, copyConnections: 4 });
    expect(decision(PG15_DEFAULTS, 16)).toEqual({ buildsAtOnce: 4, parallelWorkersPerBuild: 2, maintenanceWorkMem: `${256 * 1024}kB`, copyConnections: 16 });
  });

  it('parallel builds switched off by the server, or a server before PostgreSQL 11: serial builds side by side', () => {
    expect(decision({ ...PG15_DEFAULTS, maxParallelMaintenanceWorkers: 0 }, 16)).toMatchObject({ buildsAtOnce: 4, parallelWorkersPerBuild: 0 });
    expect(decision({ ...PG15_DEFAULTS, serverVersionNum: 100023 }, 2)).toMatchObject({ buildsAtOnce: 2, parallelWorkersPerBuild: 0 });
  });

  it('the worker pool is shared: four builds never ask for more than max_parallel_workers', () => {
    expect(decision({ ...PG15_DEFAULTS, maxParallelWorkers: 4 }, 16)).toMatchObject({ buildsAtOnce: 4, parallelWorkersPerBuild: 1 });
    expect(decision({ ...PG15_DEFAULTS, maxParallelWorkers: 2 }, 16)).toMatchObject({ buildsAtOnce: 4, parallelWorkersPerBuild: 0 });
    expect(decision({ ...PG15_DEFAULTS, maxWorkerProcesses: 1 }, 16)).toMatchObject({ parallelWorkersPerBuild: 1 });
  });

  it('1 CPU: one serial build at a time, with the memory one build may have', () => {
    expect(decision(PG15_DEFAULTS, 1)).toEqual({ buildsAtOnce: 1, parallelWorkersPerBuild: 0, maintenanceWorkMem: `${448 * 1024}kB`, copyConnections: 1 });
  });

  it('never below the server\'s maintenance_work_mem, never more than the share of effective_cache_size', () => {
    expect(decision({ ...PG15_DEFAULTS, maintenanceWorkMemBytes: 2 * GB }, 2).maintenanceWorkMem).toBe(`${2 * 1024 * 1024}kB`);
    const big = { ...PG15_DEFAULTS, tableBytes: 20 * GB, effectiveCacheSizeBytes: 64 * GB };
    expect(decision(big, 8)).toMatchObject({ buildsAtOnce: 4, maintenanceWorkMem: `${4 * 1024 * 1024}kB` });
    // A small table: the sort's need (64 MB at least) bounds it, not the share.
    expect(decision({ ...PG15_DEFAULTS, tableBytes: 9 * MB }, 2).maintenanceWorkMem).toBe(`${64 * 1024}kB`);
  });

  it('too little memory for a worker\'s 32 MB: no parallel workers rather than PostgreSQL dropping them silently', () => {
    const tiny = { ...PG15_DEFAULTS, effectiveCacheSizeBytes: 128 * MB, maintenanceWorkMemBytes: 32 * MB };
    expect(decision(tiny, 2)).toMatchObject({ parallelWorkersPerBuild: 0, maintenanceWorkMem: `${32 * 1024}kB` });
  });

  it('states what it chose and from what in one line', () => {
    const s = chooseStrategy(PG15_DEFAULTS, 2);
    expect(s.reason).toMatch(/^2 index builds at once with 1 parallel worker\(s\) each and maintenance_work_mem 448MB \(2 CPU\(s\) by --concurrency; .*effective_cache_size 4GB.*table 400MB\); copy on 2 connection\(s\)$/);
    expect(s.reason).not.toContain('\n');
  });
});

describe('readServerResources on a real server', () => {
  let tdb: TestDatabase;
  let database: Database;
  beforeAll(async () => {
    tdb = await createTestDatabase('strat');
    database = await tdb.open();
    await tdb.query(`CREATE SCHEMA eventstore; CREATE TABLE eventstore.events2 AS SELECT g, repeat('x', 100) AS t FROM generate_series(1, 20000) g`);
  });
  afterAll(async () => tdb.drop());

  it('reads the settings as the server reports them, and the table\'s size', async () => {
    const r = await readServerResources(database.db, 'eventstore.events2');
    const [settings] = await tdb.query(`
      SELECT current_setting('server_version_num')::int AS v,
             (SELECT setting::int FROM pg_settings WHERE name = 'max_parallel_maintenance_workers') AS mpmw,
             (SELECT setting::int FROM pg_settings WHERE name = 'max_parallel_workers') AS mpw,
             (SELECT setting::int FROM pg_settings WHERE name = 'max_worker_processes') AS mwp,
             (SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers')::text AS sb,
             (SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'effective_cache_size')::text AS ecs,
             (SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'maintenance_work_mem')::text AS mwm,
             pg_relation_size('eventstore.events2')::text AS size`);
    expect(r).toEqual({
      serverVersionNum: settings.v,
      maxParallelMaintenanceWorkers: settings.mpmw,
      maxParallelWorkers: settings.mpw,
      maxWorkerProcesses: settings.mwp,
      sharedBuffersBytes: Number(settings.sb),
      effectiveCacheSizeBytes: Number(settings.ecs),
      maintenanceWorkMemBytes: Number(settings.mwm),
      tableBytes: Number(settings.size),
    });
    expect(r.tableBytes).toBeGreaterThan(2 * MB);
    expect(r.effectiveCacheSizeBytes).toBeGreaterThan(0);
  });

  it('a missing table counts as empty', async () => {
    expect((await readServerResources(database.db, 'eventstore.no_such_table')).tableBytes).toBe(0);
  });

  it('follows a session setting', async () => {
    const r = await database.db.transaction().execute(async (tx) => {
      await sql`SET LOCAL maintenance_work_mem = '96MB'`.execute(tx);
      return readServerResources(tx, 'eventstore.events2');
    });
    expect(r.maintenanceWorkMemBytes).toBe(96 * MB);
  });
});

describe('the strategy in the dry-run and in the run', () => {
  let tdb: TestDatabase | undefined;
  afterAll(async () => tdb?.drop());

  it('the plan states the strategy the build then logs and uses', async () => {
    tdb = await createTestDatabase('stratp');
    await seedAwkwardLegacy(tdb, 200);
    const database = await tdb.open();
    const plan = await planMigrate(database, { steps: [offlineStep], stepOptions: { concurrency: 3, exact: true } });
    const planned = String(plan.steps[0].plan?.details.strategy);
    expect(planned).toMatch(/^3 index builds at once with 1 parallel worker\(s\) each and maintenance_work_mem \d+MB \(3 CPU\(s\) by --concurrency; /);
    const logs: string[] = [];
    const result = await migrate(database, {
      steps: [offlineStep], lockWaitMs: 10_000, stepOptions: { concurrency: 3, exact: false }, version: 'test',
      onEvent: (e) => { if (e.type === 'log') logs.push(e.message); },
    });
    expect(result.steps[0].status).toBe('succeeded');
    const used = logs.find((m) => m.startsWith('events2 indexes: '))?.slice('events2 indexes: '.length);
    // Builds and workers as planned; the memory and the table size are the source's in the plan, events2's in the build.
    expect(used?.replace(/\d+MB/g, 'N')).toBe(planned.replace(/\d+MB/g, 'N'));
  });
});
