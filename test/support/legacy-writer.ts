/**
 * A stand-in for the old ZITADEL version writing `eventstore.events` while zsetup moves it: steady
 * transactions of 1–5 events on a new aggregate each, per-instance `event_sequence` numbers handed
 * out when a transaction starts (so concurrent transactions commit out of order), some held open a
 * while before COMMIT, some rolled back. Every transaction's start, end, outcome and keys are kept.
 * Used by the online-move tests and the downtime benchmark.
 */
import pg from 'pg';

/** Inputs of {@link LegacyWriter.start}. */
export interface LegacyWriterOptions {
  readonly url: string;
  /** Events per second over all connections. Default is 200. */
  readonly eventsPerSecond?: number;
  /** Connections writing side by side. Default is 4. */
  readonly connections?: number;
  /** Share of transactions rolled back. Default is 0.1. */
  readonly rollbackShare?: number;
  /** Share of transactions held open 20–200 ms before their COMMIT (out-of-order commits). Default is 0.15. */
  readonly holdShare?: number;
  /** Instances written to. Default: those of the table (instance id ''), else `writer-inst`. */
  readonly instances?: readonly string[];
  /**
   * Payloads carry what the built-in projections read (`org.added`: name; `user.human.added`: userName,
   * names, email), so the events fill projection rows. Default is false (the writer's plain payload).
   */
  readonly projectionPayloads?: boolean;
}

/** One key of a legacy event. */
export interface LegacyKey {
  readonly instanceId: string;
  readonly sequence: number;
}

/** One transaction of the writer. */
export interface WriteRecord {
  /** `performance.timeOrigin`-based milliseconds (Date.now() scale). */
  readonly start: number;
  readonly end: number;
  /** The deliberate hold before COMMIT, not counted as latency. */
  readonly holdMs: number;
  readonly outcome: 'committed' | 'rolled-back' | 'failed';
  /** SQLSTATE of a failure. */
  readonly code?: string;
  readonly message?: string;
  readonly keys: readonly LegacyKey[];
}

const EVENT_TYPES = [['user', 'user.human.added'], ['user', 'user.human.password.changed'], ['session', 'session.added'], ['org', 'org.added']] as const;

/** The writer; {@link stop} returns every transaction it ran. */
export class LegacyWriter {
  readonly records: WriteRecord[] = [];
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private readonly clients: pg.Client[] = [];
  private readonly next = new Map<string, number>();
  private aggregates = 0;

  private constructor(private readonly options: Required<Omit<LegacyWriterOptions, 'instances'>> & { instances: readonly string[] }) {}

  /** Connects, reads where each instance's sequence stands, and starts writing. */
  static async start(options: LegacyWriterOptions): Promise<LegacyWriter> {
    const probe = new pg.Client({ connectionString: options.url });
    await probe.connect();
    try {
      const found = await probe.query<{ instance_id: string; max: string }>(
        `SELECT instance_id, max(event_sequence)::text AS max FROM eventstore.events WHERE instance_id <> '' GROUP BY 1 ORDER BY 1`);
      const instances = options.instances ?? (found.rows.length ? found.rows.map((r) => r.instance_id) : ['writer-inst']);
      const w = new LegacyWriter({
        url: options.url,
        eventsPerSecond: options.eventsPerSecond ?? 200,
        connections: options.connections ?? 4,
        rollbackShare: options.rollbackShare ?? 0.1,
        holdShare: options.holdShare ?? 0.15,
        projectionPayloads: options.projectionPayloads ?? false,
        instances,
      });
      for (const id of instances) w.next.set(id, Number(found.rows.find((r) => r.instance_id === id)?.max ?? 0) + 1);
      for (let i = 0; i < w.options.connections; i++) {
        const c = new pg.Client({ connectionString: options.url, application_name: 'legacy-writer' });
        c.on('error', () => {});
        await c.connect();
        w.clients.push(c);
      }
      w.loops.push(...w.clients.map((c, i) => w.loop(c, i)));
      return w;
    } finally {
      await probe.end();
    }
  }

  /** Stops after the transactions in flight and closes the connections. */
  async stop(): Promise<WriteRecord[]> {
    this.stopping = true;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((c) => c.end().catch(() => {})));
    return this.records;
  }

  /** Keys of committed transactions. */
  committed(): LegacyKey[] {
    return this.records.filter((r) => r.outcome === 'committed').flatMap((r) => r.keys);
  }

  /** Keys of transactions that did not commit (rolled back or failed). */
  notCommitted(): LegacyKey[] {
    return this.records.filter((r) => r.outcome !== 'committed').flatMap((r) => r.keys);
  }

  private async loop(client: pg.Client, index: number): Promise<void> {
    // Average 3 events per transaction; each connection keeps its share of the rate.
    const intervalMs = (3 * 1000 * this.options.connections) / this.options.eventsPerSecond;
    let due = Date.now() + Math.random() * intervalMs;
    while (!this.stopping) {
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      if (this.stopping) break;
      due = Math.max(due + intervalMs, Date.now() - intervalMs);
      await this.transaction(client, index);
    }
  }

  /** The event's payload: the writer's plain one, or with what the built-in projections read. */
  private payload(eventType: string, key: LegacyKey, aggregate: string): Record<string, unknown> {
    const plain = { n: key.sequence, by: 'legacy-writer', text: 'Zoë ☃' };
    if (!this.options.projectionPayloads) return plain;
    if (eventType === 'org.added') return { ...plain, name: `Org ${aggregate} Zoë` };
    if (eventType === 'user.human.added') {
      return { ...plain, userName: `user-${aggregate}`, firstName: 'Zoë', lastName: `Writer ${key.sequence}`, email: `${aggregate}@example.com`, preferredLanguage: 'de' };
    }
    return plain;
  }

  private async transaction(client: pg.Client, index: number): Promise<void> {
    const instanceId = this.options.instances[Math.floor(Math.random() * this.options.instances.length)];
    const n = 1 + Math.floor(Math.random() * 5);
    const keys: LegacyKey[] = [];
    // Numbers are taken at the start, as the old version's transaction did: a transaction that started
    // later may commit first.
    for (let i = 0; i < n; i++) {
      const sequence = this.next.get(instanceId)!;
      this.next.set(instanceId, sequence + 1);
      keys.push({ instanceId, sequence });
    }
    const aggregate = `w${index}-${++this.aggregates}`;
    const roll = Math.random();
    const rollback = roll < this.options.rollbackShare;
    const holdMs = !rollback && roll < this.options.rollbackShare + this.options.holdShare ? 20 + Math.random() * 180 : 0;
    const start = Date.now();
    try {
      await client.query('BEGIN');
      for (const [i, k] of keys.entries()) {
        const [aggregateType, eventType] = EVENT_TYPES[(k.sequence + i) % EVENT_TYPES.length];
        await client.query(
          `INSERT INTO eventstore.events (event_type, aggregate_type, aggregate_id, aggregate_version, event_sequence,
             previous_aggregate_sequence, event_data, editor_user, editor_service, resource_owner, instance_id)
           VALUES ($1, $2, $3, 'v1', $4, $5, $6, $7, 'zitadel', $8, $8)`,
          [eventType, aggregateType, aggregate, k.sequence, i === 0 ? null : keys[i - 1].sequence,
            JSON.stringify(this.payload(eventType, k, aggregate)), `user-${index}`, instanceId],
        );
      }
      if (holdMs) await sleep(holdMs);
      await client.query(rollback ? 'ROLLBACK' : 'COMMIT');
      this.records.push({ start, end: Date.now(), holdMs, outcome: rollback ? 'rolled-back' : 'committed', keys });
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      const e = err as { code?: string; message?: string };
      this.records.push({ start, end: Date.now(), holdMs, outcome: 'failed', code: e.code, message: e.message, keys });
      // The old version retries after a failure; don't spin.
      await sleep(20);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The keys as a `VALUES` list for SQL checks: `('inst', 12), …`. */
export function keysSql(keys: readonly LegacyKey[]): string {
  return keys.map((k) => `('${k.instanceId.replaceAll("'", "''")}', ${k.sequence})`).join(', ');
}

/**
 * How many of `keys` are the writer's events in `events` (a table, or a parenthesised query yielding
 * events2 rows; with `legacy`, a table of the legacy shape such as events_old): matched by instance and
 * sequence, and by the writer's payload mark. 0 for no keys.
 */
export async function writerEventsFound(
  db: { query(text: string): Promise<{ n: number }[]> },
  keys: readonly LegacyKey[],
  events = 'eventstore.events2',
  legacy = false,
): Promise<number> {
  if (keys.length === 0) return 0;
  const [sequence, payload] = legacy ? ['event_sequence', 'event_data'] : ['"sequence"', 'payload'];
  const [r] = await db.query(`WITH k(instance_id, seq) AS (VALUES ${keysSql(keys)})
    SELECT count(*)::int AS n FROM k JOIN ${events} e ON e.instance_id = k.instance_id AND e.${sequence} = k.seq AND e.${payload}->>'by' = 'legacy-writer'`);
  return r.n;
}
