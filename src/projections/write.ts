import type pg from 'pg';
import type { TableWrites } from './fold.js';
import type { Op, TableModel } from './model.js';
import type { ColumnValue } from './types.js';

/** Quotes a column name (many are reserved words: "sequence", "position", "type", "name"). */
export const q = (ident: string): string => `"${ident}"`;

/** Quotes a schema-qualified table name. */
export function qt(name: string): string {
  const [schema, table] = name.split('.');
  return `${q(schema)}.${q(table)}`;
}

const eq = (cols: readonly string[], a: string, b: string) => cols.map((c) => `${a}.${q(c)} = ${b}.${q(c)}`).join(' AND ');

function upsertTail(t: TableModel, excluded: (c: string) => string): string {
  if (t.nonKey.length === 0) return `ON CONFLICT (${t.primaryKey.map(q).join(', ')}) DO NOTHING`;
  return `ON CONFLICT (${t.primaryKey.map(q).join(', ')}) DO UPDATE SET ${t.nonKey.map((c) => `${q(c)} = ${excluded(c)}`).join(', ')}`;
}

/** One statement of a batch write: text with `$n` placeholders and their values, all text. */
export interface BatchStatement {
  readonly text: string;
  readonly values: readonly string[];
}

/**
 * The rows of statement parameter $1 (a JSON array of objects) as the table's own row type, so arrays,
 * timestamps and small integers are converted by PostgreSQL exactly as column values. `json`, not
 * `jsonb`: PostgreSQL parses it faster, and each row is read once.
 */
const rowsOf = (t: string) => `json_populate_recordset(NULL::${t}, $1::json)`;

/**
 * The statements that write a folded batch, a handful per table, every table's rows in one JSON array
 * (see rowsOf). Children are deleted before parents and parents upserted before children (foreign keys).
 */
export function bulkStatements(writes: readonly TableWrites[]): BatchStatement[] {
  const out: BatchStatement[] = [];
  const add = (text: string, rows: readonly unknown[]) => out.push({ text, values: [JSON.stringify(rows)] });
  for (const w of [...writes].reverse()) {
    const t = qt(w.table.name);
    const deleteMatching = (cols: readonly string[], rows: readonly unknown[]) =>
      add(`DELETE FROM ${t} AS t USING ${rowsOf(t)} AS r WHERE ${eq(cols, 't', 'r')}`, rows);
    for (const [sig, matches] of w.cascades) deleteMatching(sig.split(','), matches);
    if (w.deletes.length) deleteMatching(w.table.primaryKey, w.deletes);
  }
  for (const w of writes) {
    const t = qt(w.table.name);
    const cols = w.table.columnNames.map(q).join(', ');
    if (w.upserts.length) {
      add(`INSERT INTO ${t} (${cols}) SELECT ${cols} FROM ${rowsOf(t)} ${upsertTail(w.table, (c) => `EXCLUDED.${q(c)}`)}`, w.upserts);
    }
    if (w.patches.length) {
      const setCols = new Set<string>();
      for (const p of w.patches) for (const c in p.set) setCols.add(c);
      const sets = [...setCols].map((c) => `${q(c)} = CASE WHEN j.v ? '${c}' THEN r.${q(c)} ELSE t.${q(c)} END`).join(', ');
      add(
        `UPDATE ${t} AS t SET ${sets} FROM jsonb_array_elements($1::jsonb) AS j(v), LATERAL jsonb_populate_record(NULL::${t}, j.v) AS r WHERE ${eq(w.table.primaryKey, 't', 'r')}`,
        w.patches.map((p) => ({ ...p.key, ...p.set })),
      );
    }
  }
  return out;
}

/** A dollar-quoted literal of `value`, with a tag that does not occur in it. */
function dollarQuoted(value: string): string {
  let tag = '$zs$';
  for (let n = 0; value.includes(tag); n++) tag = `$zs${n}$`;
  return `${tag}${value}${tag}`;
}

/**
 * Runs statements as ONE simple-protocol query (one round trip), their values inlined as dollar-quoted
 * literals: the database then works through a whole batch while Node folds the next one. A failing
 * statement stops the rest and leaves an open transaction aborted, as a failing single statement does.
 */
export async function runScript(client: pg.ClientBase, statements: readonly BatchStatement[]): Promise<void> {
  if (statements.length === 0) return;
  const script = statements.map((st) => `${st.text.replace(/\$(\d+)/g, (_m, n: string) => dollarQuoted(st.values[Number(n) - 1]))};`);
  await client.query(script.join('\n'));
}

/** A column value as a query parameter: jsonb values are sent as JSON text, the rest as pg converts them. */
function param(t: TableModel, column: string, v: ColumnValue): unknown {
  return t.columns.get(column)?.type === 'jsonb' && v !== null ? JSON.stringify(v) : v;
}

/**
 * Executes one change as one plain statement, the way a per-event projection handler does. Used to
 * isolate a failing event when a bulk write fails, and by the benchmark's reference handler.
 */
export async function writeOp(client: pg.ClientBase, op: Op): Promise<void> {
  const t = op.table;
  const values: unknown[] = [];
  const p = (c: string, v: ColumnValue) => {
    values.push(param(t, c, v));
    return `$${values.length}`;
  };
  const where = (vals: Readonly<Record<string, ColumnValue>>) => Object.entries(vals).map(([c, v]) => `${q(c)} = ${p(c, v)}`).join(' AND ');
  switch (op.kind) {
    case 'upsert': {
      const placeholders = t.columnNames.map((c) => p(c, op.row[c]));
      await client.query(`INSERT INTO ${qt(t.name)} (${t.columnNames.map(q).join(', ')}) VALUES (${placeholders.join(', ')}) ${upsertTail(t, (c) => `EXCLUDED.${q(c)}`)}`, values);
      return;
    }
    case 'update': {
      const sets = Object.entries(op.set).map(([c, v]) => `${q(c)} = ${p(c, v)}`);
      if (sets.length === 0) return;
      await client.query(`UPDATE ${qt(t.name)} SET ${sets.join(', ')} WHERE ${where(op.key)}`, values);
      return;
    }
    case 'delete':
      await client.query(`DELETE FROM ${qt(t.name)} WHERE ${where(op.key)}`, values);
      return;
    case 'deleteWhere':
      await client.query(`DELETE FROM ${qt(t.name)} WHERE ${where(op.match)}`, values);
      return;
  }
}
