import { sql } from 'kysely';
import type { Database } from '../db/connection.js';
import { blocksOf, eventTables } from './catalog.js';
import { blockRange, DIGESTS_TABLE, EVENTS2_COLUMN_LIST, EVENTS2_TABLE, MAPPED_COLUMNS, OLD_TABLE, quoteIdent, rowHash } from './sql.js';

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
function digestSql(side: 'old' | 'events2', serverVersionNum: number, where = ''): string {
  const from = side === 'old' ? `(SELECT ${MAPPED_COLUMNS} FROM ${OLD_TABLE}${where}) e` : `${EVENTS2_TABLE} e${where}`;
  return `SELECT instance_id, count(*)::bigint AS events, coalesce(sum(${rowHash('e', serverVersionNum)}), 0)::text AS hash FROM ${from} GROUP BY instance_id`;
}

/**
 * WHERE clauses that split `table` into up to `concurrency` block ranges, to be read side by side; one
 * empty clause (the whole table) before PostgreSQL 14, where a ctid range is a full scan per range.
 */
async function blockRangeFilters(database: Database, table: string, concurrency: number): Promise<string[]> {
  const b = await sql<{ blocks: number }>`SELECT ${sql.raw(blocksOf(`'${table}'::regclass`))} AS blocks`.execute(database.db);
  const blocks = b.rows[0].blocks;
  const parts = database.serverVersionNum >= 140000 ? Math.max(1, Math.min(concurrency, blocks)) : 1;
  if (parts === 1) return [''];
  const size = Math.ceil(blocks / parts);
  return Array.from({ length: parts }, (_, i) => ` WHERE ${blockRange(i * size, i === parts - 1 ? null : (i + 1) * size)}`);
}

/** Why there is nothing to compare (events_old or events2 does not exist), or null when both do. */
async function absentTables(database: Database): Promise<string | null> {
  const t = await eventTables(database.db);
  if (t.old && t.events2) return null;
  const missing = [!t.old && 'eventstore.events_old', !t.events2 && 'eventstore.events2'].filter(Boolean).join(' and ');
  return `${missing} ${missing.includes(' and ') ? 'do' : 'does'} not exist`;
}

/**
 * Compares, per instance, the event count and a hash of the mapped rows of events_old with those of
 * events2. Both sides are read at once on two connections (each may use parallel workers). Read-only.
 */
export async function verifyEvents2(database: Database): Promise<VerifyResult> {
  const absent = await absentTables(database);
  if (absent) return { status: 'nothing-to-verify', reason: absent };
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
  const [recorded, events2] = await Promise.all([recordedDigests(database), sideDigests(database, 'events2', concurrency)]);
  return compareDigests(recorded, events2, started);
}

/** Per instance: what the copy and the catch-up recorded in the digest table as they wrote events2. */
export function recordedDigests(database: Database): Promise<Map<string, InstanceDigest>> {
  return digest(database, `SELECT instance_id, sum(events)::bigint AS events, sum(hash)::text AS hash FROM ${DIGESTS_TABLE} GROUP BY instance_id`);
}

/** Per instance: count and hash sum of the mapped rows of events_old or of events2, read in block ranges side by side. */
export async function sideDigests(database: Database, side: 'old' | 'events2', concurrency: number): Promise<Map<string, InstanceDigest>> {
  const ranges = await blockRangeFilters(database, side === 'old' ? OLD_TABLE : EVENTS2_TABLE, concurrency);
  const pieces = await Promise.all(ranges.map((where) => digest(database, digestSql(side, database.serverVersionNum, where))));
  const sums = new Map<string, InstanceDigest>();
  for (const piece of pieces) {
    for (const [id, d] of piece) {
      const sum = sums.get(id);
      sums.set(id, sum ? { events: sum.events + d.events, hash: (BigInt(sum.hash) + BigInt(d.hash)).toString() } : d);
    }
  }
  return sums;
}

/** Per instance, `old` (counted first) against `events2`: equal, or the instances that differ. */
export function compareDigests(old: Map<string, InstanceDigest>, events2: Map<string, InstanceDigest>, started: number): Exclude<VerifyResult, { status: 'nothing-to-verify' }> {
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
export function describeMismatches(mismatches: readonly InstanceMismatch[], limit = 10, source = 'in events_old'): string {
  const lines = mismatches.slice(0, limit).map((m) =>
    `instance '${m.instanceId}': ${m.oldEvents.toLocaleString('en-US')} event(s) ${source}, ${m.events2Events.toLocaleString('en-US')} in events2${m.oldEvents === m.events2Events ? ', contents differ' : ''}`);
  if (mismatches.length > limit) lines.push(`… and ${(mismatches.length - limit).toLocaleString('en-US')} more instance(s)`);
  return lines.join('; ');
}

/** A moved event that is not in events2 as it was moved: its key, and what is wrong with it. */
export interface MovedEventKey {
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly sequence: number;
  /** `missing`: no events2 row has its key; `differs`: the row with its key has other contents. */
  readonly problem: 'missing' | 'differs';
}

/** One instance whose moved events are not all in events2 unchanged. */
export interface MovedMismatch {
  readonly instanceId: string;
  /** Events of the instance in events_old. */
  readonly movedEvents: number;
  readonly missing: number;
  readonly differing: number;
  /** Up to {@link EXAMPLES_PER_INSTANCE} of the events concerned. */
  readonly examples: readonly MovedEventKey[];
}

/** Events in events2 that were not moved from events_old: written after the move. */
export interface AppendedEvents {
  readonly events: number;
  readonly instances: number;
  /** Per instance with appended events, most first. */
  readonly byInstance: readonly { readonly instanceId: string; readonly events: number }[];
}

/** Result of comparing the moved events of events_old with their counterparts in events2. */
export type MovedVerifyResult =
  | { readonly status: 'nothing-to-verify'; readonly reason: string }
  | {
      readonly status: 'equal' | 'mismatch';
      /** Instances in events_old. */
      readonly instances: number;
      /** Events in events_old, each compared with the events2 row of its key. */
      readonly events: number;
      /** Information, not part of the comparison. */
      readonly appended: AppendedEvents;
      readonly mismatches: readonly MovedMismatch[];
      readonly durationMs: number;
    };

/** Examples of missing or changed events listed per instance. */
export const EXAMPLES_PER_INSTANCE = 3;

/**
 * Per instance of events_old: its events, how many of them have no events2 row with their key, how
 * many have one with other contents (compared column by column in events2's types), and a few of them.
 */
function movedSql(): string {
  const columns = (alias: string) => `ROW(${EVENTS2_COLUMN_LIST.map(({ name, type }) => `${alias}.${quoteIdent(name)}::${type}`).join(', ')})`;
  return `
    WITH pairs AS (
      SELECT o.instance_id, o.aggregate_type, o.aggregate_id, o."sequence",
             e.instance_id IS NULL AS missing,
             e.instance_id IS NOT NULL AND ${columns('o')} IS DISTINCT FROM ${columns('e')} AS differs
      FROM (SELECT ${MAPPED_COLUMNS} FROM ${OLD_TABLE}) o
      LEFT JOIN ${EVENTS2_TABLE} e
        ON e.instance_id = o.instance_id AND e.aggregate_type = o.aggregate_type
       AND e.aggregate_id = o.aggregate_id AND e."sequence" = o."sequence")
    SELECT instance_id, count(*)::bigint AS events,
           count(*) FILTER (WHERE missing)::bigint AS missing,
           count(*) FILTER (WHERE differs)::bigint AS differing,
           (array_agg(json_build_object('aggregateType', aggregate_type, 'aggregateId', aggregate_id, 'sequence', "sequence",
                                        'problem', CASE WHEN missing THEN 'missing' ELSE 'differs' END)
                      ORDER BY aggregate_type, aggregate_id, "sequence")
              FILTER (WHERE missing OR differs))[1:${EXAMPLES_PER_INSTANCE}] AS examples
    FROM pairs GROUP BY instance_id`;
}

/**
 * `zsetup verify`: compares every event of events_old (mapped) with the events2 row of its key
 * (instance, aggregate type, aggregate id, sequence). Events in events2 without a counterpart were
 * appended after the move (milestones-v2, the application) and are counted, not compared. Read-only.
 */
export async function verifyMovedEvents(database: Database): Promise<MovedVerifyResult> {
  const absent = await absentTables(database);
  if (absent) return { status: 'nothing-to-verify', reason: absent };
  const started = Date.now();
  const [moved, events2] = await Promise.all([
    readOnly(database, movedSql()),
    readOnly(database, `SELECT instance_id, count(*)::bigint AS events FROM ${EVENTS2_TABLE} GROUP BY instance_id`),
  ]);
  const found = new Map<string, number>();
  const mismatches: MovedMismatch[] = [];
  let events = 0;
  for (const r of moved) {
    const m = { instanceId: r.instance_id as string, movedEvents: Number(r.events), missing: Number(r.missing), differing: Number(r.differing) };
    events += m.movedEvents;
    found.set(m.instanceId, m.movedEvents - m.missing);
    if (m.missing > 0 || m.differing > 0) mismatches.push({ ...m, examples: r.examples ?? [] });
  }
  mismatches.sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0));
  const byInstance = events2
    .map((r) => ({ instanceId: r.instance_id as string, events: Number(r.events) - (found.get(r.instance_id) ?? 0) }))
    .filter((a) => a.events > 0)
    .sort((a, b) => b.events - a.events || (a.instanceId < b.instanceId ? -1 : 1));
  const appended = { events: byInstance.reduce((n, a) => n + a.events, 0), instances: byInstance.length, byInstance };
  return { status: mismatches.length ? 'mismatch' : 'equal', instances: moved.length, events, appended, mismatches, durationMs: Date.now() - started };
}

async function readOnly(database: Database, query: string): Promise<any[]> {
  return database.db.transaction().setAccessMode('read only').execute(async (tx) => {
    await sql`SET LOCAL statement_timeout = 0`.execute(tx);
    return (await sql.raw<any>(query).execute(tx)).rows;
  });
}
