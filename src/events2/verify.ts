import { sql } from 'kysely';
import type { Database } from '../db/connection.js';
import { eventTables } from './catalog.js';
import { MAPPED_ROW, OLD_TABLE } from './sql.js';

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
 * hash of every row. PostgreSQL 14+ hashes the row's values with their types' own hash functions
 * (fast: no text output of jsonb, timestamps, numerics); older servers hash the row's text.
 */
function digestSql(side: 'old' | 'events2', serverVersionNum: number): string {
  const row = side === 'old' ? MAPPED_ROW : 'e';
  const hash = serverVersionNum >= 140000 ? `hash_record_extended(${row}, 0)` : `hashtextextended(${row}::text, 0)`;
  const from = side === 'old' ? OLD_TABLE : 'eventstore.events2 e';
  return `SELECT instance_id, count(*)::bigint AS events, sum(${hash})::text AS hash FROM ${from} GROUP BY instance_id`;
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
