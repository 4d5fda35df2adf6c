import { sql } from 'kysely';
import type { Tx } from '../db/connection.js';
import type { RunContext } from '../step.js';
import { events2Indexes, events2Shape, matches } from './catalog.js';
import { createIndex, EVENTS2_INDEX_SPECS, EVENTS2_TABLE, quoteIdent, type IndexSpec } from './sql.js';
import { strategyFor, type MoveStrategy } from './strategy.js';

/**
 * Brings a filled events2 to its final shape, each piece guarded by the catalog so a rerun after a
 * crash continues where it stopped: column type and NOT NULLs (only for a table another tool made),
 * the primary key's unique index and the three indexes built in parallel, the primary key attached
 * to its index, then ANALYZE. Returns the names of the indexes it built.
 */
export async function buildEvents2(ctx: RunContext<any>): Promise<string[]> {
  const strategy = await strategyFor(ctx.db, EVENTS2_TABLE, ctx.options.concurrency);
  await fixColumns(ctx, strategy);
  const built = await buildIndexes(ctx, strategy);
  await attachPrimaryKey(ctx);
  ctx.throwIfStopped();
  ctx.progress({ phase: 'analyze', done: 0, total: 1, unit: 'tables' });
  await ctx.transaction(async (tx) => {
    await sql`SET LOCAL statement_timeout = 0`.execute(tx);
    await sql`ANALYZE eventstore.events2`.execute(tx);
    // Off since the cut-off when zsetup created the table; the table is complete now.
    const off = await sql<{ off: boolean }>`
      SELECT coalesce(reloptions @> ARRAY['autovacuum_enabled=off'], false) AS off FROM pg_class WHERE oid = 'eventstore.events2'::regclass`.execute(tx);
    if (off.rows[0]?.off) await sql`ALTER TABLE eventstore.events2 RESET (autovacuum_enabled)`.execute(tx);
  });
  ctx.progress({ phase: 'analyze', done: 1, total: 1, unit: 'tables' });
  return built;
}

/** Only a table made by another tool can need this (the reference's released copy made in_tx_order BIGINT). */
async function fixColumns(ctx: RunContext<any>, strategy: MoveStrategy): Promise<void> {
  const shape = await events2Shape(ctx.db);
  const alters: string[] = [];
  if (shape.wrongColumns.some((c) => c.startsWith('in_tx_order: bigint'))) alters.push('ALTER COLUMN in_tx_order TYPE integer');
  alters.push(...shape.missingNotNulls.map((c) => `ALTER COLUMN ${quoteIdent(c)} SET NOT NULL`));
  if (alters.length === 0) return;
  ctx.progress({ phase: 'constraints', done: 0, total: 1, unit: 'tables' });
  ctx.log(`events2: ${alters.join(', ')}`);
  await ctx.transaction(async (tx) => {
    await sessionForBuilds(tx, strategy);
    await sql.raw(`ALTER TABLE eventstore.events2 ${alters.join(', ')}`).execute(tx);
  });
}

async function buildIndexes(ctx: RunContext<any>, strategy: MoveStrategy): Promise<string[]> {
  const existing = await events2Indexes(ctx.db);
  const shape = await events2Shape(ctx.db);
  const todo: IndexSpec[] = [];
  for (const spec of EVENTS2_INDEX_SPECS) {
    const index = existing.find((i) => i.name === spec.name);
    if (index?.valid && matches(index, spec)) continue;
    if (index) {
      ctx.log(`events2: dropping index ${spec.name} (${index.valid ? `unexpected definition: ${index.definition}` : 'left invalid by an interrupted build'}); rebuilding it`);
      const drop = spec.name === 'events2_pkey' && shape.hasPrimaryKey
        ? 'ALTER TABLE eventstore.events2 DROP CONSTRAINT events2_pkey'
        : `DROP INDEX eventstore.${spec.name}`;
      await ctx.transaction((tx) => sql.raw(drop).execute(tx));
    }
    todo.push(spec);
  }
  if (todo.length > 0) ctx.log(`events2 indexes: ${strategy.reason}`);
  const total = todo.length;
  let done = 0;
  const queue = [...todo];
  let failure: unknown;
  // Plain CREATE INDEX takes a SHARE lock: builds on one table do not block each other.
  const worker = async () => {
    for (let spec = queue.shift(); spec && failure === undefined; spec = queue.shift()) {
      ctx.throwIfStopped();
      ctx.progress({ phase: `index ${spec.name}`, done, total, unit: 'indexes' });
      await ctx.transaction(async (tx) => {
        await sessionForBuilds(tx, strategy);
        await sql.raw(createIndex(spec)).execute(tx);
      });
      done++;
      ctx.progress({ phase: `index ${spec.name}`, done, total, unit: 'indexes' });
    }
  };
  const n = Math.min(todo.length, strategy.buildsAtOnce);
  await Promise.all(Array.from({ length: n }, () => worker().catch((err) => { failure ??= err; })));
  if (failure !== undefined) throw failure;
  return todo.map((s) => s.name);
}

async function sessionForBuilds(tx: Tx, strategy: MoveStrategy): Promise<void> {
  await sql`SET LOCAL statement_timeout = 0`.execute(tx);
  await sql.raw(`SET LOCAL maintenance_work_mem = '${strategy.maintenanceWorkMem}'`).execute(tx);
  await sql.raw(`SET LOCAL max_parallel_maintenance_workers = ${strategy.parallelWorkersPerBuild}`).execute(tx);
}

async function attachPrimaryKey(ctx: RunContext<any>): Promise<void> {
  const shape = await events2Shape(ctx.db);
  if (shape.hasPrimaryKey) return;
  ctx.throwIfStopped();
  // The columns are NOT NULL already, so this only renames the index into the constraint: no scan.
  await ctx.transaction((tx) =>
    sql`ALTER TABLE eventstore.events2 ADD CONSTRAINT events2_pkey PRIMARY KEY USING INDEX events2_pkey`.execute(tx));
}
