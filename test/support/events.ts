import type pg from 'pg';
import { EVENTS2_TABLE_COMPLETE } from '../../src/schema.js';

/** An event to append; unset fields get test defaults. */
export interface TestEvent {
  instance?: string;
  aggregateType: string;
  aggregateId: string;
  type: string;
  payload?: unknown;
  owner?: string;
  creator?: string;
  /** Defaults to a strictly increasing test position. */
  position?: string;
  inTxOrder?: number;
  createdAt?: string;
  revision?: number;
}

/** Appends events to eventstore.events2 with per-aggregate sequences and increasing positions. */
export class EventLog {
  private readonly sequences = new Map<string, number>();
  private clock = 1_700_000_000;

  constructor(private readonly db: { query(text: string, values?: unknown[]): Promise<unknown> }) {}

  static async create(db: { query(text: string, values?: unknown[]): Promise<unknown> }): Promise<EventLog> {
    await db.query(EVENTS2_TABLE_COMPLETE);
    return new EventLog(db);
  }

  /** Appends the events in one statement, in order; each gets its own position unless given. */
  async append(...events: TestEvent[]): Promise<void> {
    const rows = events.map((e) => {
      const instance = e.instance ?? 'inst1';
      const k = `${instance}/${e.aggregateType}/${e.aggregateId}`;
      const seq = (this.sequences.get(k) ?? 0) + 1;
      this.sequences.set(k, seq);
      this.clock += 1;
      const position = e.position ?? `${this.clock}.000001`;
      return {
        instance_id: instance,
        aggregate_type: e.aggregateType,
        aggregate_id: e.aggregateId,
        event_type: e.type,
        sequence: seq,
        revision: e.revision ?? 1,
        created_at: e.createdAt ?? new Date(Number(position.split('.')[0]) * 1000).toISOString(),
        payload: e.payload === undefined ? null : e.payload,
        creator: e.creator ?? 'creator',
        owner: e.owner ?? (e.aggregateType === 'org' ? e.aggregateId : instance),
        position,
        in_tx_order: e.inTxOrder ?? 0,
      };
    });
    await this.db.query(
      `INSERT INTO eventstore.events2 SELECT * FROM jsonb_populate_recordset(NULL::eventstore.events2, $1::jsonb)`,
      [JSON.stringify(rows)],
    );
  }
}

/** A table's rows as sorted JSON lines, for comparing two databases or two runs. */
export async function dump(client: pg.ClientBase | pg.Pool, table: string, orderBy: string): Promise<string[]> {
  const r = await client.query(`SELECT to_jsonb(t)::text AS j FROM ${table} t ORDER BY ${orderBy}`);
  return r.rows.map((x) => x.j);
}
