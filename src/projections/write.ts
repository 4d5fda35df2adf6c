import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Cascade, TableWrites } from './fold.js';
import type { Op, TableModel } from './model.js';
import { Base64Bytes } from './payload.js';
import type { ColumnType, ColumnValue } from './types.js';

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

/** The new rows of one table, to be sent with COPY. */
export interface CopyRows {
  readonly table: TableModel;
  readonly rows: readonly Readonly<Record<string, ColumnValue>>[];
}

/**
 * How a folded batch is written, in order: `before` (deletions, children before parents; then, without
 * COPY, the upserts), `copies` (new rows, parents first), `after` (partial updates). Every table's rows
 * of a statement travel as one JSON array (see rowsOf). Upserts and updates never touch the same row in
 * one batch (the fold keeps one change per key) and updates never change a key, so updates may follow
 * every upsert.
 */
export interface BulkPlan {
  readonly before: BatchStatement[];
  readonly copies: CopyRows[];
  readonly after: BatchStatement[];
}

/**
 * The DELETE of a segment's matches of one signature that spare the stored rows of the segment's full
 * rows held since before them (see Cascade): the matches carry their count under `zsetup:before`, the
 * full rows' keys theirs under `zsetup:since` (column names are lower-case identifiers, so no column,
 * nor the query's own column of that name, collides). The held keys are read once (MATERIALIZED), as the anti join's hashed side.
 */
function sparingDelete(w: TableWrites, cols: readonly string[], cascades: readonly Cascade[]): BatchStatement {
  const t = qt(w.table.name);
  const pk = w.table.primaryKey;
  const held = w.upserts.map((row, i) => {
    const key: Record<string, unknown> = { 'zsetup:since': w.heldSince[i] };
    for (const c of pk) key[c] = row[c];
    return key;
  });
  return {
    text: `WITH held AS MATERIALIZED (
             SELECT x.*, (h.v->>'zsetup:since')::int AS "zsetup:since" FROM json_array_elements($2::json) AS h(v), LATERAL json_populate_record(NULL::${t}, h.v) AS x)
           DELETE FROM ${t} AS t
           USING (SELECT r.*, (m.v->>'zsetup:before')::int AS "zsetup:before" FROM json_array_elements($1::json) AS m(v), LATERAL json_populate_record(NULL::${t}, m.v) AS r) AS r
           WHERE ${eq(cols, 't', 'r')} AND NOT EXISTS (SELECT 1 FROM held x WHERE ${eq(pk, 't', 'x')} AND x."zsetup:since" < r."zsetup:before")`,
    values: [
      JSON.stringify(cascades.map((c) => (c.sparesBefore === null ? c.match : { ...c.match, 'zsetup:before': c.sparesBefore }))),
      JSON.stringify(held),
    ],
  };
}

/** The plan that writes a folded batch; with `copy`, new rows are sent with COPY instead of upserted. */
export function bulkStatements(writes: readonly TableWrites[], copy = false): BulkPlan {
  const plan: BulkPlan = { before: [], copies: [], after: [] };
  const add = (to: BatchStatement[], text: string, rows: readonly unknown[]) => to.push({ text, values: [JSON.stringify(rows)] });
  for (const w of [...writes].reverse()) {
    const t = qt(w.table.name);
    const deleteMatching = (cols: readonly string[], rows: readonly unknown[]) =>
      add(plan.before, `DELETE FROM ${t} AS t USING ${rowsOf(t)} AS r WHERE ${eq(cols, 't', 'r')}`, rows);
    for (const [sig, cascades] of w.cascades) {
      const cols = sig.split(',');
      if (cascades.every((c) => c.sparesBefore === null)) deleteMatching(cols, cascades.map((c) => c.match));
      else plan.before.push(sparingDelete(w, cols, cascades));
    }
    if (w.deletes.length) deleteMatching(w.table.primaryKey, w.deletes);
  }
  for (const w of writes) {
    const t = qt(w.table.name);
    const cols = w.table.columnNames.map(q).join(', ');
    if (w.upserts.length && copy) plan.copies.push({ table: w.table, rows: w.upserts });
    else if (w.upserts.length) {
      add(plan.before, `INSERT INTO ${t} (${cols}) SELECT ${cols} FROM ${rowsOf(t)} ${upsertTail(w.table, (c) => `EXCLUDED.${q(c)}`)}`, w.upserts);
    }
    if (w.patches.length) {
      const setCols = new Set<string>();
      const copied = new Map<string, Set<string>>();
      for (const p of w.patches) {
        for (const c in p.set) setCols.add(c);
        for (const [to, from] of Object.entries(p.copies ?? {})) {
          setCols.add(to);
          if (!copied.has(to)) copied.set(to, new Set());
          copied.get(to)!.add(from);
        }
      }
      // A copy travels as the key `copy:<to>:<from>`, which the row type ignores; the source is read
      // from the stored row (t), as a copy's source is what the row held before this statement.
      const branch = (c: string) => [...(copied.get(c) ?? [])].map((from) => `WHEN j.v ? 'copy:${c}:${from}' THEN t.${q(from)} `).join('');
      const sets = [...setCols].map((c) => `${q(c)} = CASE WHEN j.v ? '${c}' THEN r.${q(c)} ${branch(c)}ELSE t.${q(c)} END`).join(', ');
      add(
        plan.after,
        `UPDATE ${t} AS t SET ${sets} FROM jsonb_array_elements($1::jsonb) AS j(v), LATERAL jsonb_populate_record(NULL::${t}, j.v) AS r WHERE ${eq(w.table.primaryKey, 't', 'r')}`,
        w.patches.map((p) => ({ ...p.key, ...p.set, ...Object.fromEntries(Object.entries(p.copies ?? {}).map(([to, from]) => [`copy:${to}:${from}`, true])) })),
      );
    }

  }
  return plan;
}

const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIALS = /[\\\n\r\t]/g;
const COPY_ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Text as a field of COPY's text format: backslash, newline, carriage return and tab escaped. */
function copyEscape(s: string): string {
  return COPY_SPECIAL.test(s) ? s.replace(COPY_SPECIALS, (c) => COPY_ESCAPES[c]) : s;
}

/** An array literal (`{"a","b"}`, `{1,2}`): every text element quoted, `"` and `\` escaped. */
function arrayLiteral(values: readonly (string | number)[]): string {
  return `{${values.map((v) => (typeof v === 'number' ? String(v) : `"${v.replace(/["\\]/g, '\\$&')}"`)).join(',')}}`;
}

/** A validated column value as a field of COPY's text format (\N for NULL). */
function copyField(type: ColumnType, v: ColumnValue | undefined): string {
  if (v === null || v === undefined) return '\\N';
  switch (type) {
    case 'boolean':
      return v ? 't' : 'f';
    case 'smallint':
    case 'integer':
    case 'bigint':
      return String(v);
    case 'jsonb':
      return copyEscape(JSON.stringify(v));
    case 'text[]':
    case 'smallint[]':
      return copyEscape(arrayLiteral(v as readonly (string | number)[]));
    case 'bytea':
      // The hex form `\x0a…` as text: COPY unescapes the doubled backslash, then bytea's input parses the hex.
      return copyEscape(v instanceof Base64Bytes ? v.toJSON() : (v as string));
    default:
      return copyEscape(String(v));
  }
}

/** A bytea value whose text is this long or longer is a piece of COPY data of its own (see copyData). */
const LARGE_BYTEA = 64 * 1024;

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/**
 * A bytea value as a field of COPY data: `\\x` (COPY unescapes the doubled backslash) and two hex digits
 * per byte. A base64 value is decoded into the second half of the piece and spelled out in hex from the
 * front, in place (byte i is read before hex digits 2i and 2i+1 are written, which never reach an unread
 * byte), so its bytes are never held anywhere else.
 */
function byteaPiece(v: string | Base64Bytes): Buffer {
  if (typeof v === 'string') {
    // The hex form `\x…` as validated: hex digits need no escape.
    const piece = Buffer.allocUnsafe(v.length + 1);
    piece[0] = 0x5c;
    piece.write(v, 1, 'latin1');
    return piece;
  }
  const n = v.length;
  const piece = Buffer.allocUnsafe(3 + 2 * n);
  piece.write('\\\\x', 0, 'latin1');
  if (piece.write(v.base64, 3 + n, 'base64') !== n) throw new Error('bytea value: base64 text decoded to an unexpected length');
  for (let i = 0, from = 3 + n, to = 3; i < n; i++, to += 2) {
    const b = piece[from + i];
    piece[to] = HEX_DIGITS[b >> 4];
    piece[to + 1] = HEX_DIGITS[b & 15];
  }
  return piece;
}

const isLargeBytea = (v: ColumnValue | undefined): v is string | Base64Bytes =>
  typeof v === 'string' ? v.length >= LARGE_BYTEA : v instanceof Base64Bytes && v.base64.length >= LARGE_BYTEA;

/**
 * COPY data (text format) of rows, in pieces of about 1 MiB, produced as they are sent (see copyRows). A
 * large bytea value (SAML metadata: megabytes) is written into a piece of its own from its hex text,
 * instead of being escaped, joined into its line and the line into the piece's text: each of those
 * steps is another copy of the value, and large copies are what the prefill's peak memory is made of
 * (BENCHMARKS-projections.md, "Memory on large payloads"). The bytes sent are the same either way.
 */
export function* copyData(t: TableModel, rows: readonly Readonly<Record<string, ColumnValue>>[]): Generator<Buffer> {
  const cols = t.columnList;
  let text = '';
  for (const row of rows) {
    for (let i = 0; i < cols.length; i++) {
      const { name, type } = cols[i];
      const v = row[name];
      if (i > 0) text += '\t';
      if (type === 'bytea' && isLargeBytea(v)) {
        if (text) yield Buffer.from(text);
        text = '';
        yield byteaPiece(v);
      } else text += copyField(type, v);
    }
    text += '\n';
    if (text.length >= 1 << 20) {
      yield Buffer.from(text);
      text = '';
    }
  }
  if (text) yield Buffer.from(text);
}

/**
 * Inserts new rows with `COPY … FROM STDIN`: PostgreSQL reads COPY's text format with less work than
 * JSON, and a plain insert skips the conflict check of an upsert (BENCHMARKS-projections.md). A row whose key is already stored fails the whole COPY (unique_violation); the
 * caller then writes the batch as upserts. The data is made piece by piece as the connection takes it,
 * so no more than about a piece of it is held at once.
 */
export async function copyRows(client: pg.ClientBase, { table, rows }: CopyRows): Promise<void> {
  const pieces = copyData(table, rows);
  await new Promise<void>((resolve, reject) => {
    const stream = client.query(copyFrom(`COPY ${qt(table.name)} (${table.columnNames.map(q).join(', ')}) FROM STDIN`));
    stream.on('error', reject);
    stream.on('finish', resolve);
    const send = () => {
      try {
        for (let piece = pieces.next(); !piece.done; piece = pieces.next()) {
          if (!stream.write(piece.value)) return void stream.once('drain', send);
        }
        stream.end();
      } catch (err) {
        stream.destroy(err as Error);
      }
    };
    send();
  });
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
    case 'copy': {
      const sets = Object.entries(op.columns).map(([to, from]) => `${q(to)} = ${q(from)}`);
      await client.query(`UPDATE ${qt(t.name)} SET ${sets.join(', ')} WHERE ${where(op.key)}`, values);
      return;
    }
  }
}
