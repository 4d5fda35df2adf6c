import { sql } from 'kysely';
import type { ReadableDb } from './catalog.js';

/** What the server reports that the move's copy and index builds are sized by (one query: {@link readServerResources}). */
export interface ServerResources {
  /** `server_version_num`, e.g. 150018. */
  readonly serverVersionNum: number;
  readonly maxParallelMaintenanceWorkers: number;
  readonly maxParallelWorkers: number;
  readonly maxWorkerProcesses: number;
  readonly sharedBuffersBytes: number;
  /** The operator's hint of the memory the server may use for caching: PostgreSQL does not report RAM. */
  readonly effectiveCacheSizeBytes: number;
  /** The server's own `maintenance_work_mem`: the build never uses less. */
  readonly maintenanceWorkMemBytes: number;
  /** Main fork of the table the indexes are built on (or of its source, before the copy). */
  readonly tableBytes: number;
}

/** How the move copies and builds, decided by {@link chooseStrategy}. Plain data. */
export interface MoveStrategy {
  /** Index builds running at the same time, each on its own connection. */
  readonly buildsAtOnce: number;
  /** `max_parallel_maintenance_workers` of each build's session (PostgreSQL's parallel B-tree build workers). */
  readonly parallelWorkersPerBuild: number;
  /** `maintenance_work_mem` of each build's session, in kB as PostgreSQL spells it, e.g. `524288kB`. */
  readonly maintenanceWorkMem: string;
  readonly maintenanceWorkMemBytes: number;
  /** Connections the chunked copy uses. */
  readonly copyConnections: number;
  /** One line: what was chosen and from what. */
  readonly reason: string;
}

/** Share of `effective_cache_size` that all concurrent builds together may sort in. */
export const BUILD_MEMORY_SHARE = 0.25;
/** Below this per participant PostgreSQL itself drops parallel build workers (`plan_create_index_workers`). */
const MIN_MEMORY_PER_PARTICIPANT = 32 * 1024 * 1024;
/** The four indexes of events2 (the primary key's unique index and three others). */
const EVENTS2_INDEX_COUNT = 4;
const MB = 1024 * 1024;

/**
 * Chooses the copy and build strategy from the server's settings and the CPUs.
 *
 * `cpus` is `--concurrency`: PostgreSQL does not report its cores, and zsetup's default for the flag is
 * the CPUs zsetup itself can use (src/cpus.ts), which is the server's only when both share the machine;
 * an operator with a bigger database server passes its core count.
 *
 * Rules (measured on 2 cores, see BENCHMARKS.md "events2: build strategy"): one build per core (at
 * most the four), each with one parallel worker per core it can have, within what the server grants
 * (`max_parallel_maintenance_workers`; builds × workers within `max_parallel_workers`). Builds side by
 * side beat one build at a time with the server's workers (the reference's way) on every shape measured:
 * their heap scans share pages (synchronized scans) and one build's single-process stretches (final
 * merge, index write) overlap the others' sorts. Memory is a bounded share of `effective_cache_size`,
 * divided over the builds at once, never below the server's `maintenance_work_mem` and never more than
 * a sort of the table needs (64 MB against 1 GB made no difference beyond noise, so the share is modest).
 */
export function chooseStrategy(server: ServerResources, cpus: number, indexes = EVENTS2_INDEX_COUNT): MoveStrategy {
  const cores = Math.max(1, Math.floor(cpus));
  // Parallel B-tree builds came with PostgreSQL 11; workers come out of max_worker_processes too.
  const serverWorkers = server.serverVersionNum >= 110000
    ? Math.max(0, Math.min(server.maxParallelMaintenanceWorkers, server.maxParallelWorkers, server.maxWorkerProcesses))
    : 0;
  const buildsAtOnce = Math.max(1, Math.min(indexes, cores));
  // A worker per core a build can have; the pool is shared, so builds × workers stays within max_parallel_workers.
  const workers = cores >= 2 ? Math.min(serverWorkers, Math.floor(cores / buildsAtOnce), Math.floor(server.maxParallelWorkers / buildsAtOnce)) : 0;
  const memory = buildMemory(server, buildsAtOnce);
  // Each participant must get its 32 MB, else PostgreSQL silently plans fewer workers.
  const parallelWorkersPerBuild = Math.max(0, Math.min(workers, Math.floor(memory / MIN_MEMORY_PER_PARTICIPANT) - 1));
  const copyConnections = cores;
  return {
    buildsAtOnce,
    parallelWorkersPerBuild,
    maintenanceWorkMem: `${Math.floor(memory / 1024)}kB`,
    maintenanceWorkMemBytes: memory,
    copyConnections,
    reason: `${buildsAtOnce === 1 ? 'one index build at a time' : `${buildsAtOnce} index builds at once`} with ${parallelWorkersPerBuild} parallel worker(s) each`
      + ` and maintenance_work_mem ${formatMemory(memory)} (${cores} CPU(s) by --concurrency; server: max_parallel_maintenance_workers ${server.maxParallelMaintenanceWorkers},`
      + ` max_parallel_workers ${server.maxParallelWorkers}, effective_cache_size ${formatMemory(server.effectiveCacheSizeBytes)},`
      + ` maintenance_work_mem ${formatMemory(server.maintenanceWorkMemBytes)}, table ${formatMemory(server.tableBytes)}); copy on ${copyConnections} connection(s)`,
  };
}

/** The memory per build: its share of the budget, within [server setting, what sorting the table needs]. */
function buildMemory(server: ServerResources, buildsAtOnce: number): number {
  const share = Math.floor((server.effectiveCacheSizeBytes * BUILD_MEMORY_SHARE) / buildsAtOnce);
  // The sort holds the index tuples, which are smaller than the rows: the table's size bounds it.
  // Rounded up to 64 MB, so the dry-run (sized by the source) and the build (by events2) mostly agree.
  const need = Math.max(64 * MB, Math.ceil(server.tableBytes / (64 * MB)) * 64 * MB);
  return Math.max(server.maintenanceWorkMemBytes, Math.min(share, need));
}

function formatMemory(bytes: number): string {
  return bytes >= 1024 * MB && bytes % (1024 * MB) === 0 ? `${bytes / 1024 / MB}GB` : `${Math.round(bytes / MB)}MB`;
}

/** Reads {@link ServerResources} in one query; `table` is the relation whose size bounds the sorts (0 when it does not exist). */
export async function readServerResources(db: ReadableDb, table: string): Promise<ServerResources> {
  const r = await sql<{
    version: number; mpmw: number; mpw: number; mwp: number; sb: string; ecs: string; mwm: string; table_bytes: string;
  }>`
    SELECT current_setting('server_version_num')::int AS version,
           current_setting('max_parallel_maintenance_workers')::int AS mpmw,
           current_setting('max_parallel_workers')::int AS mpw,
           current_setting('max_worker_processes')::int AS mwp,
           pg_size_bytes(current_setting('shared_buffers'))::text AS sb,
           pg_size_bytes(current_setting('effective_cache_size'))::text AS ecs,
           pg_size_bytes(current_setting('maintenance_work_mem'))::text AS mwm,
           coalesce(pg_relation_size(to_regclass(${table})), 0)::text AS table_bytes`.execute(db);
  const s = r.rows[0];
  return {
    serverVersionNum: s.version,
    maxParallelMaintenanceWorkers: s.mpmw,
    maxParallelWorkers: s.mpw,
    maxWorkerProcesses: s.mwp,
    sharedBuffersBytes: Number(s.sb),
    effectiveCacheSizeBytes: Number(s.ecs),
    maintenanceWorkMemBytes: Number(s.mwm),
    tableBytes: Number(s.table_bytes),
  };
}

/** The strategy for `table` on this server: {@link readServerResources}, then {@link chooseStrategy}. */
export async function strategyFor(db: ReadableDb, table: string, cpus: number): Promise<MoveStrategy> {
  return chooseStrategy(await readServerResources(db, table), cpus);
}
