/**
 * Property-based proof that the bulk fold (BatchFold + bulkStatements / COPY, written by writeBatch as the
 * prefill writes it) leaves every table exactly as applying the same writer calls one by one with
 * writeOp does (the per-event path, each event in its own savepoint), from the same pre-existing rows.
 */
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/errors.js';
import { applyEventByEvent, foldBatch, inTransaction, reduceBatch, writeBatch, type RowTransfer } from '../src/projections/batch.js';
import { BUILTIN_PROJECTIONS } from '../src/projections/builtin/index.js';
import { ensureTables } from '../src/projections/ddl.js';
import { BatchFold } from '../src/projections/fold.js';
import { compileProjection, type ProjectionModel } from '../src/projections/model.js';
import type { FailedEvent } from '../src/projections/state.js';
import type { ColumnValue, ProjectionDefinition, ProjectionEvent, ProjectionWriter } from '../src/projections/types.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { dump, EventLog } from './support/events.js';

// ---------------------------------------------------------------------------------------------------
// The projection under test: a parent, a one-to-one child (like users14_humans) and a one-to-many child,
// both with a foreign key ON DELETE CASCADE; `grp` is matched by deleteWhere and changed by update.

type TableName = 'parents' | 'details' | 'items';
type Values = Record<string, ColumnValue>;
/** One writer call, as data (the reducer replays an event's calls on its writer). */
type Call =
  | { readonly kind: 'upsert'; readonly table: TableName; readonly row: Values }
  | { readonly kind: 'update'; readonly table: TableName; readonly key: Values; readonly set: Values }
  | { readonly kind: 'delete'; readonly table: TableName; readonly key: Values }
  | { readonly kind: 'deleteWhere'; readonly table: TableName; readonly match: Values }
  | { readonly kind: 'copy'; readonly table: TableName; readonly key: Values; readonly columns: Readonly<Record<string, string>> };

const ORDER: Record<TableName, string> = { parents: 'instance_id, id', details: 'instance_id, parent_id', items: 'instance_id, parent_id, id' };

function replay(schema: string, calls: readonly Call[], w: ProjectionWriter): void {
  for (const c of calls) {
    const t = `${schema}.${c.table}`;
    if (c.kind === 'upsert') w.upsert(t, c.row);
    else if (c.kind === 'update') w.update(t, c.key, c.set);
    else if (c.kind === 'delete') w.delete(t, c.key);
    else if (c.kind === 'copy') w.copy(t, c.key, c.columns);
    else w.deleteWhere(t, c.match);
  }
}

function definition(schema: string): ProjectionDefinition {
  const text = (name: string, nullable = false) => ({ name, type: 'text' as const, nullable });
  const parent = (constraint: string) => ({ table: `${schema}.parents`, columns: { instance_id: 'instance_id', parent_id: 'id' }, constraint });
  return {
    name: `${schema}.parents`,
    tables: [
      { name: `${schema}.parents`, columns: [text('instance_id'), text('id'), text('grp'), text('name', true), { name: 'n', type: 'integer', default: 0 }], primaryKey: ['instance_id', 'id'] },
      { name: `${schema}.details`, columns: [text('instance_id'), text('parent_id'), text('grp'), text('note', true)], primaryKey: ['instance_id', 'parent_id'], parent: parent(`${schema}_details_fk`) },
      { name: `${schema}.items`, columns: [text('instance_id'), text('parent_id'), text('id'), text('grp'), text('note', true)], primaryKey: ['instance_id', 'parent_id', 'id'], parent: parent(`${schema}_items_fk`) },
    ],
    reducers: { prop: { 'prop.calls': (e, w) => replay(schema, (e.payload as { calls: Call[] }).calls, w) } },
  };
}

// ---------------------------------------------------------------------------------------------------
// Generators: small key spaces, so calls collide on rows, groups and parents.

const instance = fc.constantFrom('i1', 'i1', 'i1', 'i1', 'i2');
const pid = fc.constantFrom('a', 'b');
const iid = fc.constantFrom('x', 'y');
const grp = fc.constantFrom('g1', 'g2');
const note = fc.constantFrom(null, 'n1');

const parentKey = fc.record({ instance_id: instance, id: pid });
const childKey = fc.record({ instance_id: instance, parent_id: pid });
const itemKey = fc.record({ instance_id: instance, parent_id: pid, id: iid });
const subset = <T extends Values>(arb: fc.Arbitrary<T>) => arb.chain((v) => fc.subarray(Object.keys(v)).map((ks) => Object.fromEntries(ks.map((k) => [k, v[k]])) as Values));

const parentRow = fc.record({ instance_id: instance, id: pid, grp, name: note, n: fc.integer({ min: 0, max: 2 }) });
const detailRow = fc.record({ instance_id: instance, parent_id: pid, grp, note });
const itemRow = fc.record({ instance_id: instance, parent_id: pid, id: iid, grp, note });

/** Calls weighted so that rows are written, moved between groups and then purged by group often. */
const call: fc.Arbitrary<Call> = fc.oneof(
  { weight: 4, arbitrary: parentRow.map((row) => ({ kind: 'upsert', table: 'parents', row }) as const) },
  { weight: 4, arbitrary: fc.record({ key: parentKey, set: subset(fc.record({ grp, name: note, n: fc.integer({ min: 0, max: 2 }) })) }).map((c) => ({ kind: 'update', table: 'parents', ...c }) as const) },
  { weight: 1, arbitrary: parentKey.map((key) => ({ kind: 'delete', table: 'parents', key }) as const) },
  {
    weight: 4,
    arbitrary: fc.oneof(
      { weight: 3, arbitrary: fc.record({ instance_id: instance, grp }) }, fc.record({ grp }), fc.record({ instance_id: instance }), { weight: 2, arbitrary: fc.record({ name: note }) },
      fc.record({ instance_id: instance, id: pid }),
    ).map((match) => ({ kind: 'deleteWhere', table: 'parents', match }) as const),
  },
  // Same-row copies (like verified_email := last_email); parents.name is also matched by deleteWhere.
  { weight: 2, arbitrary: parentKey.map((key) => ({ kind: 'copy', table: 'parents', key, columns: { name: 'grp' } }) as const) },
  { weight: 2, arbitrary: childKey.map((key) => ({ kind: 'copy', table: 'details', key, columns: { note: 'grp' } }) as const) },
  { weight: 3, arbitrary: detailRow.map((row) => ({ kind: 'upsert', table: 'details', row }) as const) },
  { weight: 2, arbitrary: fc.record({ key: childKey, set: subset(fc.record({ grp, note })) }).map((c) => ({ kind: 'update', table: 'details', ...c }) as const) },
  { weight: 1, arbitrary: childKey.map((key) => ({ kind: 'delete', table: 'details', key }) as const) },
  { weight: 2, arbitrary: fc.oneof(fc.record({ grp }), fc.record({ instance_id: instance, parent_id: pid })).map((match) => ({ kind: 'deleteWhere', table: 'details', match }) as const) },
  { weight: 3, arbitrary: itemRow.map((row) => ({ kind: 'upsert', table: 'items', row }) as const) },
  { weight: 2, arbitrary: fc.record({ key: itemKey, set: subset(fc.record({ grp, note })) }).map((c) => ({ kind: 'update', table: 'items', ...c }) as const) },
  { weight: 1, arbitrary: itemKey.map((key) => ({ kind: 'delete', table: 'items', key }) as const) },
  {
    weight: 2,
    arbitrary: fc.oneof(fc.record({ grp }), fc.record({ parent_id: pid }), fc.record({ instance_id: instance, parent_id: pid }), fc.record({ grp, note }))
      .map((match) => ({ kind: 'deleteWhere', table: 'items', match }) as const),
  },
);

/** Rows stored before the stream: parents, and children of some of them (so the foreign keys hold). */
interface Initial {
  readonly parents: Values[];
  readonly details: Values[];
  readonly items: Values[];
}

const initial: fc.Arbitrary<Initial> = fc
  .uniqueArray(parentRow, { selector: (r) => `${r.instance_id}/${r.id}`, maxLength: 4 })
  .chain((parents) => {
    const of = parents.map((p) => ({ instance_id: p.instance_id, parent_id: p.id }));
    if (of.length === 0) return fc.constant({ parents, details: [], items: [] });
    const owner = fc.constantFrom(...of);
    return fc.record({
      parents: fc.constant(parents),
      details: fc.uniqueArray(fc.record({ owner, grp, note }).map((d) => ({ ...d.owner, grp: d.grp, note: d.note })), { selector: (r) => `${r.instance_id}/${r.parent_id}`, maxLength: 6 }),
      items: fc.uniqueArray(fc.record({ owner, id: iid, grp, note }).map((d) => ({ ...d.owner, id: d.id, grp: d.grp, note: d.note })), {
        selector: (r) => `${r.instance_id}/${r.parent_id}/${r.id}`, maxLength: 8,
      }),
    });
  });

/** A stream: events of one to three calls each, cut into batches at the given event indexes. */
interface Scenario {
  readonly initial: Initial;
  readonly events: readonly (readonly Call[])[];
  readonly cuts: readonly number[];
  readonly copy: boolean;
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  initial,
  events: fc.array(fc.array(call, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 20 }),
  cuts: fc.array(fc.integer({ min: 1, max: 19 }), { maxLength: 3 }),
  copy: fc.boolean(),
});

// ---------------------------------------------------------------------------------------------------
// The two ways of applying a stream, and the comparison.

const FOLDED = 'prop_fold';
const SEQUENTIAL = 'prop_seq';

function events(calls: readonly (readonly Call[])[]): ProjectionEvent[] {
  return calls.map((c, i) => ({
    instanceId: 'i1', aggregateType: 'prop', aggregateId: 'stream', eventType: 'prop.calls', sequence: i + 1, revision: 1,
    createdAt: '2024-01-01T00:00:00.000000Z', payload: { calls: c }, creator: 'c', owner: 'o', position: `${1000 + i}`, inTxOrder: 1,
  }));
}

/** Splits events into consecutive batches at the cut indexes. */
function batches<T>(list: readonly T[], cuts: readonly number[]): T[][] {
  const at = [...new Set(cuts.filter((c) => c > 0 && c < list.length))].sort((a, b) => a - b);
  const out: T[][] = [];
  let from = 0;
  for (const c of [...at, list.length]) {
    out.push(list.slice(from, c));
    from = c;
  }
  return out;
}

async function reset(client: pg.ClientBase, schema: string, rows: Initial): Promise<void> {
  await client.query(`TRUNCATE ${schema}.parents, ${schema}.details, ${schema}.items`);
  for (const t of ['parents', 'details', 'items'] as const) {
    if (rows[t].length) await client.query(`INSERT INTO ${schema}.${t} SELECT * FROM json_populate_recordset(NULL::${schema}.${t}, $1)`, [JSON.stringify(rows[t])]);
  }
}

async function tables(client: pg.ClientBase, schema: string): Promise<Record<TableName, string[]>> {
  const out = {} as Record<TableName, string[]>;
  for (const t of Object.keys(ORDER) as TableName[]) out[t] = await dump(client, `${schema}.${t}`, ORDER[t]);
  return out;
}

/** The sequences of the events each path recorded as failed (a call the database rejected). */
async function failedSequences(client: pg.ClientBase, projection: string): Promise<number[]> {
  const r = await client.query(`SELECT failed_sequence::int AS s FROM projections.failed_events2 WHERE projection_name = $1 ORDER BY 1`, [projection]);
  return r.rows.map((x) => x.s);
}

interface Outcome {
  readonly folded: Record<TableName, string[]>;
  readonly sequential: Record<TableName, string[]>;
  readonly foldedFailures: number[];
  readonly sequentialFailures: number[];
  /** Batches the bulk write could not write (a constraint failed) and replayed event by event. */
  readonly replayed: number;
}

/** Applies the scenario both ways: folded in batches (as prefill does), and call by call with writeOp. */
async function run(client: pg.ClientBase, models: { fold: ProjectionModel; seq: ProjectionModel }, s: Scenario): Promise<Outcome> {
  await reset(client, FOLDED, s.initial);
  await reset(client, SEQUENTIAL, s.initial);
  await client.query(`DELETE FROM projections.failed_events2 WHERE projection_name = $1`, [models.fold.name]);
  const evs = events(s.events);
  const transfer: RowTransfer = { copy: s.copy };
  let replayed = 0;
  const offsets = new Map();
  for (const batch of batches(evs, s.cuts)) {
    const outcome = await writeBatch(client, models.fold, foldBatch(models.fold, batch, offsets), transfer);
    if (outcome.replayed) replayed++;
  }
  const failures: FailedEvent[] = [];
  await inTransaction(client, () => applyEventByEvent(client, reduceBatch(models.seq, evs).reduced, failures));
  return {
    folded: await tables(client, FOLDED),
    sequential: await tables(client, SEQUENTIAL),
    foldedFailures: await failedSequences(client, models.fold.name),
    sequentialFailures: failures.map((f) => f.event.sequence).sort((a, b) => a - b),
    replayed,
  };
}

function expectSame(o: Outcome): void {
  expect(o.folded).toEqual(o.sequential);
  expect(o.foldedFailures).toEqual(o.sequentialFailures);
}

// ---------------------------------------------------------------------------------------------------

let db: TestDatabase;
let client: pg.Client;
const models = { fold: compileProjection(definition(FOLDED)), seq: compileProjection(definition(SEQUENTIAL)) };

beforeAll(async () => {
  db = await createTestDatabase('zfold');
  client = await db.client();
  // The projection DDL records ZITADEL's bookkeeping in the event store, so it needs events2.
  await EventLog.create(client);
  await ensureTables(client, models.fold, models.seq);
});

afterAll(async () => {
  await db?.drop();
});

const P = (id: string, g: string, extra: Values = {}): Call => ({ kind: 'upsert', table: 'parents', row: { instance_id: 'i1', id, grp: g, name: null, ...extra } });
const move = (id: string, g: string): Call => ({ kind: 'update', table: 'parents', key: { instance_id: 'i1', id }, set: { grp: g } });
const purge = (g: string): Call => ({ kind: 'deleteWhere', table: 'parents', match: { instance_id: 'i1', grp: g } });
const D = (id: string): Call => ({ kind: 'upsert', table: 'details', row: { instance_id: 'i1', parent_id: id, grp: 'g1', note: null } });
const none: Initial = { parents: [], details: [], items: [] };
const scene = (events: Call[][], initialRows: Initial = none, copy = false): Scenario => ({ initial: initialRows, events, cuts: [], copy });

describe('bulk fold equals event-by-event application', () => {
  it('issue 16 §3: add A in g2, purge g1, move A to g1, purge g1 deletes A', async () => {
    const o = await run(client, models, scene([[P('A', 'g2')], [purge('g1')], [move('A', 'g1')], [purge('g1')]]));
    expectSame(o);
    expect(o.folded.parents).toEqual([]);
  });

  it('a stored row moved into a purged group before the purge is deleted; one moved out of it survives', async () => {
    const stored: Initial = { parents: [{ instance_id: 'i1', id: 'A', grp: 'g2', name: null, n: 0 }, { instance_id: 'i1', id: 'B', grp: 'g1', name: null, n: 0 }], details: [], items: [] };
    for (const copy of [false, true]) {
      const o = await run(client, models, scene([[move('A', 'g1'), move('B', 'g2')], [purge('g1')]], stored, copy));
      expectSame(o);
      expect(o.folded.parents.map((r) => JSON.parse(r).id)).toEqual(['B']);
    }
  });

  it('a stored parent re-added in another group keeps its stored child when its old group is purged', async () => {
    const stored: Initial = { parents: [{ instance_id: 'i1', id: 'A', grp: 'g1', name: null, n: 0 }], details: [{ instance_id: 'i1', parent_id: 'A', grp: 'g1', note: 'kept' }], items: [] };
    const o = await run(client, models, scene([[P('A', 'g2')], [purge('g1')]], stored));
    expectSame(o);
    expect(o.folded.details).toHaveLength(1);
  });

  it('deleteWhere matches nothing on NULL, as SQL does', async () => {
    const o = await run(client, models, scene([[P('A', 'g1')], [{ kind: 'deleteWhere', table: 'parents', match: { name: null } }]]));
    expectSame(o);
    expect(o.folded.parents).toHaveLength(1);
  });

  it('a folded child moved into a purged group after an earlier purge is deleted (the match index follows updates)', async () => {
    const item = { instance_id: 'i1', parent_id: 'A', id: 'x' };
    const purgeItems = (g: string): Call => ({ kind: 'deleteWhere', table: 'items', match: { grp: g } });
    const o = await run(client, models, scene([
      [P('A', 'g1'), { kind: 'upsert', table: 'items', row: { ...item, grp: 'g2', note: null } }],
      [purgeItems('g1')], [{ kind: 'update', table: 'items', key: item, set: { grp: 'g1' } }], [purgeItems('g1')],
    ]));
    expectSame(o);
    expect(o.folded.items).toEqual([]);
  });

  it('a child added before its parent in one batch fails as it does event by event', async () => {
    const o = await run(client, models, scene([[D('A')], [P('A', 'g1')]]));
    expectSame(o);
    expect(o.sequentialFailures).toEqual([1]);
  });

  it('a child added without its parent and deleted in the same batch still fails as it does event by event', async () => {
    const o = await run(client, models, scene([[D('A')], [{ kind: 'delete', table: 'details', key: { instance_id: 'i1', parent_id: 'A' } }]]));
    expectSame(o);
    expect(o.sequentialFailures).toEqual([1]);
  });

  it('random call sequences over a parent and two children, in one or several batches, with COPY and with upserts', async () => {
    let replayed = 0;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const o = await run(client, models, s);
        expectSame(o);
        runs++;
        replayed += o.replayed;
      }),
      { numRuns: 200 },
    );
    // The property must exercise the bulk path, not only the event-by-event replay of rejected batches.
    expect(replayed).toBeLessThan(runs);
  });
});

describe('fold: definitions it cannot fold are rejected', () => {
  it('a child whose foreign key columns are not part of its primary key is a ConfigError', () => {
    const def = definition('prop_bad');
    const tables = def.tables.map((t) =>
      t.name.endsWith('.items')
        ? { ...t, primaryKey: ['instance_id', 'id'] }
        : t,
    );
    const model = compileProjection({ ...def, tables });
    expect(() => new BatchFold(model)).toThrow(ConfigError);
    expect(() => new BatchFold(model)).toThrow(/prop_bad\.items: foreign key column parent_id .*primary key/);
  });
});

// ---------------------------------------------------------------------------------------------------
// Consistency check at the reducer level: zsetup compared with zsetup (not an independent oracle).

const builtin = (name: string) => compileProjection(BUILTIN_PROJECTIONS.find((d) => d.name === name)!);

const orgId = fc.constantFrom('o1', 'o2');
const userId = fc.constantFrom('u1', 'u2', 'u3');
const projectId = fc.constantFrom('p1', 'p2');
const appId = fc.constantFrom('a1', 'a2', 'a3');
type Raw = { aggregateType: string; aggregateId: string; eventType: string; owner: string; payload: Record<string, unknown> | null };
const rawEvent: fc.Arbitrary<Raw> = fc.oneof(
  fc.record({ u: userId, o: orgId, n: fc.constantFrom('ann', 'bob') }).map(({ u, o, n }) => ({ aggregateType: 'user', aggregateId: u, eventType: 'user.human.added', owner: o, payload: { userName: n, firstName: n, email: `${n}@x` } })),
  fc.record({ u: userId, o: orgId }).map(({ u, o }) => ({ aggregateType: 'user', aggregateId: u, eventType: 'user.machine.added', owner: o, payload: { userName: `m${u}` } })),
  fc.record({ u: userId, o: orgId, n: fc.constantFrom('X', 'Y') }).map(({ u, o, n }) => ({ aggregateType: 'user', aggregateId: u, eventType: 'user.human.profile.changed', owner: o, payload: { lastName: n } })),
  fc.record({ u: userId, o: orgId, t: fc.constantFrom('user.locked', 'user.removed', 'user.human.email.verified', 'user.human.phone.removed') }).map(({ u, o, t }) => ({ aggregateType: 'user', aggregateId: u, eventType: t, owner: o, payload: null })),
  fc.record({ u: userId, o: orgId, n: fc.constantFrom('ann', 'zed') }).map(({ u, o, n }) => ({ aggregateType: 'user', aggregateId: u, eventType: 'user.username.changed', owner: o, payload: { userName: n } })),
  fc.record({ p: projectId, o: orgId, a: appId }).map(({ p, o, a }) => ({ aggregateType: 'project', aggregateId: p, eventType: 'project.application.added', owner: o, payload: { appId: a, name: `app ${a}` } })),
  fc.record({ p: projectId, o: orgId, a: appId, t: fc.constantFrom('project.application.changed', 'project.application.deactivated', 'project.application.removed') })
    .map(({ p, o, a, t }) => ({ aggregateType: 'project', aggregateId: p, eventType: t, owner: o, payload: { appId: a, name: 'renamed' } })),
  fc.record({ p: projectId, o: orgId }).map(({ p, o }) => ({ aggregateType: 'project', aggregateId: p, eventType: 'project.removed', owner: o, payload: {} })),
  orgId.map((o) => ({ aggregateType: 'org', aggregateId: o, eventType: 'org.removed', owner: o, payload: {} })),
);

function builtinEvents(raw: readonly Raw[]): ProjectionEvent[] {
  const seq = new Map<string, number>();
  return raw.map((r, i) => {
    const k = `${r.aggregateType}/${r.aggregateId}`;
    seq.set(k, (seq.get(k) ?? 0) + 1);
    const at = `2024-01-01T00:00:${String(i % 60).padStart(2, '0')}.000000Z`;
    return { instanceId: 'i1', ...r, sequence: seq.get(k)!, revision: 1, createdAt: at, creator: 'c', position: `${2000 + i}`, inTxOrder: 1 };
  });
}

describe('consistency check (zsetup against zsetup): built-in reducers folded in one batch or in batches of 1', () => {
  const subjects = [builtin('projections.users14'), builtin('projections.apps7')];

  it('random user and app streams give the same tables in one batch as in batches of one event', async () => {
    await ensureTables(client, ...subjects);
    const all = subjects.flatMap((m) => m.tables);
    const snapshot = async () => {
      const out: Record<string, string[]> = {};
      for (const t of all) out[t.name] = await dump(client, t.name, t.primaryKey.join(', '));
      return out;
    };
    const clear = () => client.query(`TRUNCATE ${all.map((t) => t.name).join(', ')}; DELETE FROM projections.current_states; DELETE FROM projections.failed_events2`);
    await fc.assert(
      fc.asyncProperty(fc.array(rawEvent, { minLength: 1, maxLength: 30 }), fc.boolean(), async (raw, copy) => {
        const evs = builtinEvents(raw);
        await clear();
        for (const m of subjects) await writeBatch(client, m, foldBatch(m, evs, new Map()), { copy });
        const once = await snapshot();
        await clear();
        for (const m of subjects) {
          const offsets = new Map();
          for (const e of evs) await writeBatch(client, m, foldBatch(m, [e], offsets), { copy });
        }
        expect(await snapshot()).toEqual(once);
      }),
      { numRuns: 40 },
    );
  });
});
