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

/**
 * Writes a folded batch with a handful of set-based statements per table: every row travels in one
 * jsonb array parameter and `jsonb_populate_recordset` turns it into the table's own row type, so
 * arrays, timestamps and small integers are converted by PostgreSQL exactly as column values.
 * Children are deleted before parents and parents upserted before children (foreign keys).
 */
export async function writeBulk(client: pg.ClientBase, writes: readonly TableWrites[]): Promise<number> {
  let statements = 0;
  const run = async (text: string, rows: readonly unknown[]) => {
    statements++;
    await client.query(text, [JSON.stringify(rows)]);
  };
  for (const w of [...writes].reverse()) {
    const t = qt(w.table.name);
    for (const [sig, matches] of w.cascades) {
      await run(`DELETE FROM ${t} AS t USING jsonb_populate_recordset(NULL::${t}, $1::jsonb) AS r WHERE ${eq(sig.split(','), 't', 'r')}`, matches);
    }
    if (w.deletes.length) {
      await run(`DELETE FROM ${t} AS t USING jsonb_populate_recordset(NULL::${t}, $1::jsonb) AS r WHERE ${eq(w.table.primaryKey, 't', 'r')}`, w.deletes);
    }
  }
  for (const w of writes) {
    const t = qt(w.table.name);
    const cols = w.table.columnNames.map(q).join(', ');
    if (w.upserts.length) {
      await run(`INSERT INTO ${t} (${cols}) SELECT ${cols} FROM jsonb_populate_recordset(NULL::${t}, $1::jsonb) ${upsertTail(w.table, (c) => `EXCLUDED.${q(c)}`)}`, w.upserts);
    }
    if (w.patches.length) {
      const setCols = new Set<string>();
      for (const p of w.patches) for (const c of Object.keys(p.set)) setCols.add(c);
      const sets = [...setCols].map((c) => `${q(c)} = CASE WHEN j.v ? '${c}' THEN r.${q(c)} ELSE t.${q(c)} END`).join(', ');
      await run(
        `UPDATE ${t} AS t SET ${sets} FROM jsonb_array_elements($1::jsonb) AS j(v), LATERAL jsonb_populate_record(NULL::${t}, j.v) AS r WHERE ${eq(w.table.primaryKey, 't', 'r')}`,
        w.patches.map((p) => ({ ...p.key, ...p.set })),
      );
    }
  }
  return statements;
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
