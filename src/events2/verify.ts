import { sql } from 'kysely';
import type { Database } from '../db/connection.js';
import { blocksOf, eventTables } from './catalog.js';
import { blockRange, DIGESTS_TABLE, EVENTS2_TABLE, MAPPED_COLUMNS, OLD_TABLE, rowHash } from './sql.js';

/** Count and order-independent hash of one instance's events on one side. */
export interface InstanceDigest {
  readonly events: number;
  /** Sum of a 64-bit hash of every row's text, as exact decimal text. */
  readonly hash: string;
}

/** One instance whose events differ between events_old (mapped) and events2. */
export interface InstanceMismatch {
  readonly instanceId: string;
  readonly oldEvents: number;
  readonly events2Events: number;
  readonly hashesEqual: boolean;
}

/** Result of comparing events_old with events2. */
export type VerifyResult =
  | { readonly status: 'nothing-to-verify'; readonly reason: string }
  | {
      readonly status: 'equal' | 'mismatch';
      readonly instances: number;
      readonly events: number;
      readonly mismatches: readonly InstanceMismatch[];
      readonly durationMs: number;
    };

/**
 * Per-instance count and the sum (not xor: a duplicated row must not cancel itself out) of a 64-bit
 * hash of every row (see {@link rowHash}), over the mapped rows of events_old or the rows of events2,
 * optionally of one block range only.
 */
function digestSql(side: 'old' | 'events2', serverVersionNum: number, blocks?: { from: number; to: number | null }): string {
  const where = blocks ? ` WHERE ${blockRange(blocks.from, blocks.to)}` : '';
  const from = side === 'old' ? `(SELECT ${MAPPED_COLUMNS} FROM ${OLD_TABLE}${where}) e` : `${EVENTS2_TABLE} e${where}`;
  return `SELECT instance_id, count(*)::bigint AS events, coalesce(sum(${rowHash('e', serverVersionNum)}), 0)::text AS hash FROM ${from} GROUP BY instance_id`;
}

/**
 * Compares, per instance, the event count and a hash of the mapped rows of events_old with those of
 * events2. Both sides are read at once on two connections (each may use parallel workers). Read-only.
 */
export async function verifyEvents2(database: Database): Promise<VerifyResult> {
  const t = await eventTables(database.db);
  if (!t.old || !t.events2) {
    const missing = [!t.old && 'eventstore.events_old', !t.events2 && 'eventstore.events2'].filter(Boolean).join(' and ');
    return { status: 'nothing-to-verify', reason: `${missing} ${missing.includes(' and ') ? 'do' : 'does'} not exist` };
  }
  const started = Date.now();
  const version = database.serverVersionNum;
  const [old, events2] = await Promise.all([digest(database, digestSql('old', version)), digest(database, digestSql('events2', version))]);
  return compareDigests(old, events2, started);
}

/**
 * The step's own check after its copy: the events2 side is read (in `concurrency` block ranges at
 * once), the events_old side is the sum of the digests each chunk's copy stored with its rows, so
 * events_old is not read again. Null when there is no digest table (a copy another tool made, or a
 * rerun after the digests were dropped): the caller then runs {@link verifyEvents2}.
 */
export async function verifyWithDigests(database: Database, concurrency: number): Promise<VerifyResult | null> {
  const t = await sql<{ digests: boolean; events2: boolean }>`
    SELECT to_regclass(${DIGESTS_TABLE}) IS NOT NULL AS digests, to_regclass(${EVENTS2_TABLE}) IS NOT NULL AS events2`.execute(database.db);
  if (!t.rows[0].digests || !t.rows[0].events2) return null;
  const started = Date.now();
  const version = database.serverVersionNum;
  const old = await digest(database, `SELECT instance_id, sum(events)::bigint AS events, sum(hash)::text AS hash FROM ${DIGESTS_TABLE} GROUP BY instance_id`);
  const b = await sql<{ blocks: number }>`SELECT ${sql.raw(blocksOf(`'${EVENTS2_TABLE}'::regclass`))} AS blocks`.execute(database.db);
  // Before PostgreSQL 14 a ctid range is a full scan per range: read the table once instead.
  const parts = version >= 140000 ? Math.max(1, Math.min(concurrency, b.rows[0].blocks)) : 1;
  const size = Math.ceil(b.rows[0].blocks / parts);
  const ranges = Array.from({ length: parts }, (_, i) => ({ from: i * size, to: i === parts - 1 ? null : (i + 1) * size }));
  const pieces = await Promise.all(ranges.map((r) => digest(database, digestSql('events2', version, parts > 1 ? r : undefined))));
  const events2 = new Map<string, InstanceDigest>();
  for (const piece of pieces) {
    for (const [id, d] of piece) {
      const sum = events2.get(id);
      events2.set(id, sum ? { events: sum.events + d.events, hash: (BigInt(sum.hash) + BigInt(d.hash)).toString() } : d);
    }
  }
  return compareDigests(old, events2, started);
}

function compareDigests(old: Map<string, InstanceDigest>, events2: Map<string, InstanceDigest>, started: number): VerifyResult {
  const mismatches: InstanceMismatch[] = [];
  for (const id of [...new Set([...old.keys(), ...events2.keys()])].sort()) {
    const a = old.get(id);
    const b = events2.get(id);
    if (a && b && a.events === b.events && a.hash === b.hash) continue;
    mismatches.push({ instanceId: id, oldEvents: a?.events ?? 0, events2Events: b?.events ?? 0, hashesEqual: a?.hash === b?.hash });
  }
  let events = 0;
  for (const d of old.values()) events += d.events;
  return { status: mismatches.length ? 'mismatch' : 'equal', instances: old.size, events, mismatches, durationMs: Date.now() - started };
}

async function digest(database: Database, query: string): Promise<Map<string, InstanceDigest>> {
  return database.db.transaction().setAccessMode('read only').execute(async (tx) => {
    await sql`SET LOCAL statement_timeout = 0`.execute(tx);
    const r = await sql.raw<{ instance_id: string; events: number; hash: string | null }>(query).execute(tx);
    return new Map(r.rows.map((row) => [row.instance_id, { events: row.events, hash: row.hash ?? '0' }]));
  });
}

/** One line per mismatching instance, for messages. */
export function describeMismatches(mismatches: readonly InstanceMismatch[], limit = 10): string {
  const lines = mismatches.slice(0, limit).map((m) =>
    `instance '${m.instanceId}': ${m.oldEvents} event(s) in events_old, ${m.events2Events} in events2${m.oldEvents === m.events2Events ? ', contents differ' : ''}`);
  if (mismatches.length > limit) lines.push(`… and ${mismatches.length - limit} more instance(s)`);
  return lines.join('; ');
}
