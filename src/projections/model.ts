import { ConfigError } from '../errors.js';
import { Base64Bytes, isTimestamp } from './payload.js';
import type { ColumnDefinition, ColumnValue, ProjectionDefinition, ProjectionEvent, ProjectionWriter, Reducer, Row, TableDefinition } from './types.js';

/** A table definition checked and prepared for the engine. */
export interface TableModel {
  readonly def: TableDefinition;
  readonly name: string;
  readonly columns: ReadonlyMap<string, ColumnDefinition>;
  readonly columnNames: readonly string[];
  readonly columnList: readonly ColumnDefinition[];
  readonly primaryKey: readonly string[];
  readonly nonKey: readonly string[];
  /** Child tables with the mapping child column → parent column. */
  readonly children: readonly { readonly table: TableModel; readonly columns: Readonly<Record<string, string>> }[];
}

/** A projection definition checked and prepared for the engine. */
export interface ProjectionModel {
  readonly def: ProjectionDefinition;
  readonly name: string;
  /** Parents before children. */
  readonly tables: readonly TableModel[];
  readonly byName: ReadonlyMap<string, TableModel>;
  readonly aggregateTypes: readonly string[];
  readonly eventTypes: readonly string[];
  reducer(aggregateType: string, eventType: string): Reducer | undefined;
}

/** One change an event makes, validated against the table model. */
export type Op =
  | { readonly kind: 'upsert'; readonly table: TableModel; readonly row: Readonly<Record<string, ColumnValue>> }
  | { readonly kind: 'update'; readonly table: TableModel; readonly key: Readonly<Record<string, ColumnValue>>; readonly set: Readonly<Record<string, ColumnValue>> }
  | { readonly kind: 'delete'; readonly table: TableModel; readonly key: Readonly<Record<string, ColumnValue>> }
  | { readonly kind: 'deleteWhere'; readonly table: TableModel; readonly match: Readonly<Record<string, ColumnValue>> }
  /** Same-row copies: target column → source column. */
  | { readonly kind: 'copy'; readonly table: TableModel; readonly key: Readonly<Record<string, ColumnValue>>; readonly columns: Readonly<Record<string, string>> };

const IDENT = /^[a-z_][a-z0-9_]*$/;
const TABLE = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/;

/** Checks a definition (built-in or loaded from a file) and prepares it. Throws ConfigError listing every problem. */
export function compileProjection(def: ProjectionDefinition): ProjectionModel {
  const problems: string[] = [];
  const where = `projection ${JSON.stringify(def?.name)}`;
  if (typeof def?.name !== 'string' || def.name === '') problems.push('a projection needs a non-empty string `name`');
  if (!Array.isArray(def?.tables) || def.tables.length === 0) problems.push(`${where}: \`tables\` must be a non-empty array`);
  if (typeof def?.reducers !== 'object' || def.reducers === null) problems.push(`${where}: \`reducers\` must be an object`);
  if (problems.length) throw new ConfigError(problems.join('\n'));
  const byName = new Map<string, TableModel>();
  const tables: TableModel[] = [];
  for (const t of def.tables) {
    const model = compileTable(t, byName, problems, where);
    if (model) {
      byName.set(model.name, model);
      tables.push(model);
    }
  }
  const aggregateTypes: string[] = [];
  const eventTypes = new Set<string>();
  // event type → aggregate type → reducer: Map lookups of the strings read from the database cost less
  // than property lookups on the definition's objects.
  const reducers = new Map<string, Map<string, Reducer>>();
  for (const [agg, events] of Object.entries(def.reducers)) {
    aggregateTypes.push(agg);
    for (const [type, fn] of Object.entries(events ?? {})) {
      if (typeof fn !== 'function') problems.push(`${where}: reducer for ${agg}/${type} is not a function`);
      eventTypes.add(type);
      if (!reducers.has(type)) reducers.set(type, new Map());
      reducers.get(type)!.set(agg, fn);
    }
  }
  if (eventTypes.size === 0) problems.push(`${where}: no reducers`);
  if (problems.length) throw new ConfigError(problems.join('\n'));
  return {
    def,
    name: def.name,
    tables,
    byName,
    aggregateTypes,
    eventTypes: [...eventTypes],
    reducer: (agg, type) => reducers.get(type)?.get(agg),
  };
}

function compileTable(t: TableDefinition, known: Map<string, TableModel>, problems: string[], where: string): TableModel | undefined {
  if (typeof t?.name !== 'string' || !TABLE.test(t.name)) {
    problems.push(`${where}: table name ${JSON.stringify(t?.name)} must be schema.table in lower case`);
    return undefined;
  }
  const columns = new Map<string, ColumnDefinition>();
  for (const c of t.columns ?? []) {
    if (typeof c?.name !== 'string' || !IDENT.test(c.name)) problems.push(`${where}: ${t.name}: bad column name ${JSON.stringify(c?.name)}`);
    else if (!COLUMN_TYPES.has(c.type)) problems.push(`${where}: ${t.name}.${c.name}: unknown type ${JSON.stringify(c.type)}`);
    else columns.set(c.name, c);
  }
  const pk = t.primaryKey ?? [];
  if (pk.length === 0) problems.push(`${where}: ${t.name} needs a primary key`);
  for (const k of pk) if (!columns.has(k)) problems.push(`${where}: ${t.name}: primary key column ${k} is not a column`);
  const model: TableModel = {
    def: t,
    name: t.name,
    columns,
    columnNames: [...columns.keys()],
    columnList: [...columns.values()],
    primaryKey: pk,
    nonKey: [...columns.keys()].filter((c) => !pk.includes(c)),
    children: [],
  };
  if (t.parent) {
    const parent = known.get(t.parent.table);
    if (!parent) problems.push(`${where}: ${t.name}: parent ${t.parent.table} must be listed before it`);
    else (parent.children as TableModel['children'][number][]).push({ table: model, columns: t.parent.columns });
  }
  return model;
}

const COLUMN_TYPES = new Set(['text', 'smallint', 'integer', 'bigint', 'numeric', 'boolean', 'timestamptz', 'jsonb', 'text[]', 'smallint[]', 'bytea']);

const SMALLINT: readonly [number, number] = [-32768, 32767];
const RANGES: Record<string, readonly [number, number]> = {
  smallint: SMALLINT,
  integer: [-2147483648, 2147483647],
  bigint: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

const NUMERIC = /^-?\d+(\.\d+)?$/;
const BYTEA_HEX = /^\\x(?:[0-9a-fA-F]{2})*$/;

/** Whether a non-null value can be stored in a column of this type. */
function fits(type: ColumnDefinition['type'], value: NonNullable<ColumnValue>): boolean {
  switch (type) {
    case 'text':
      return typeof value === 'string' && !value.includes('\u0000');
    case 'smallint':
    case 'integer':
    case 'bigint': {
      const [min, max] = RANGES[type];
      return Number.isInteger(value) && (value as number) >= min && (value as number) <= max;
    }
    case 'numeric':
      return (typeof value === 'number' && Number.isFinite(value)) || (typeof value === 'string' && NUMERIC.test(value));
    case 'boolean':
      return typeof value === 'boolean';
    case 'timestamptz':
      return typeof value === 'string' && isTimestamp(value);
    case 'jsonb':
      return true;
    case 'text[]':
      return Array.isArray(value) && value.every((v) => typeof v === 'string');
    case 'smallint[]':
      return Array.isArray(value) && value.every((v) => Number.isInteger(v) && v >= SMALLINT[0] && v <= SMALLINT[1]);
    case 'bytea':
      return (typeof value === 'string' && BYTEA_HEX.test(value)) || value instanceof Base64Bytes;
  }
}

function checkColumn(table: TableModel, col: ColumnDefinition, value: ColumnValue | undefined): ColumnValue {
  if (value === undefined || value === null) {
    if (!col.nullable) throw new TypeError(`${table.name}.${col.name} must not be null`);
    return null;
  }
  if (!fits(col.type, value)) throw new TypeError(`${table.name}.${col.name} (${col.type}) cannot hold ${JSON.stringify(value)}`);
  // Keys are compared as strings (keyString): a key's bytes in their hex form.
  return value instanceof Base64Bytes && table.primaryKey.includes(col.name) ? value.toJSON() : value;
}

/** Throws unless `value` fits the column; the engine validates before writing so one bad event cannot fail a batch. */
export function checkValue(table: TableModel, column: string, value: ColumnValue | undefined): ColumnValue {
  const col = table.columns.get(column);
  if (!col) throw new TypeError(`${table.name} has no column ${column}`);
  return checkColumn(table, col, value);
}

/** Collects one event's changes, validated as they are made. */
class OpCollector implements ProjectionWriter {
  readonly ops: Op[] = [];

  constructor(private readonly model: ProjectionModel) {}

  private table(name: string): TableModel {
    const t = this.model.byName.get(name);
    if (!t) throw new TypeError(`projection ${this.model.name} has no table ${name}`);
    return t;
  }

  upsert(name: string, row: Row): void {
    const t = this.table(name);
    this.ops.push({ kind: 'upsert', table: t, row: fullRow(t, row) });
  }

  update(name: string, key: Row, set: Row): void {
    const t = this.table(name);
    this.ops.push({ kind: 'update', table: t, key: keyOf(t, key), set: partial(t, set, true) });
  }

  delete(name: string, key: Row): void {
    const t = this.table(name);
    this.ops.push({ kind: 'delete', table: t, key: keyOf(t, key) });
  }

  deleteWhere(name: string, match: Row): void {
    const t = this.table(name);
    this.ops.push({ kind: 'deleteWhere', table: t, match: partial(t, match, false) });
  }

  copy(name: string, key: Row, columns: Readonly<Record<string, string>>): void {
    const t = this.table(name);
    for (const [to, from] of Object.entries(columns)) {
      const a = t.columns.get(to);
      const b = t.columns.get(from);
      if (!a || !b) throw new TypeError(`copy on ${t.name}: no column ${!a ? to : from}`);
      if (t.primaryKey.includes(to)) throw new TypeError(`copy on ${t.name} must not change key column ${to}`);
      if (a.type !== b.type || (b.nullable && !a.nullable)) throw new TypeError(`copy on ${t.name}: ${from} does not fit ${to}`);
    }
    this.ops.push({ kind: 'copy', table: t, key: keyOf(t, key), columns: { ...columns } });
  }
}

/** Runs the reducer for `event` and returns its validated changes. Throws if the reducer or a value is bad. */
export function reduceEvent(model: ProjectionModel, event: ProjectionEvent): Op[] {
  const reducer = model.reducer(event.aggregateType, event.eventType);
  if (!reducer) return [];
  const writer = new OpCollector(model);
  reducer(event, writer);
  return writer.ops;
}

function fullRow(t: TableModel, row: Row): Record<string, ColumnValue> {
  for (const k in row) if (!t.columns.has(k)) throw new TypeError(`${t.name} has no column ${k}`);
  const out: Record<string, ColumnValue> = {};
  for (const col of t.columnList) {
    const v = row[col.name];
    out[col.name] = checkColumn(t, col, v === undefined ? col.default : v);
  }
  return out;
}

function keyOf(t: TableModel, key: Row): Record<string, ColumnValue> {
  const out: Record<string, ColumnValue> = {};
  for (const k of t.primaryKey) {
    if (key[k] === undefined || key[k] === null) throw new TypeError(`key of ${t.name} lacks ${k}`);
    out[k] = checkValue(t, k, key[k]);
  }
  return out;
}

function partial(t: TableModel, values: Row, forbidKey: boolean): Record<string, ColumnValue> {
  const out: Record<string, ColumnValue> = {};
  let n = 0;
  for (const k in values) {
    const v = values[k];
    if (v === undefined) continue;
    if (forbidKey && t.primaryKey.includes(k)) throw new TypeError(`update of ${t.name} must not change key column ${k}`);
    out[k] = checkValue(t, k, v);
    n++;
  }
  if (!forbidKey && n === 0) throw new TypeError(`deleteWhere on ${t.name} needs at least one column`);
  return out;
}

/** The primary key of a row as a Map key. */
export function keyString(t: TableModel, row: Readonly<Record<string, ColumnValue>>): string {
  const pk = t.primaryKey;
  if (pk.length === 1) return String(row[pk[0]]);
  // Text key values cannot contain NUL (checkValue), so NUL separates them unambiguously.
  let k = '';
  for (let i = 0; i < pk.length; i++) {
    const v = row[pk[i]];
    k += (i ? '\u0000' : '') + (typeof v === 'string' ? v : JSON.stringify(v));
  }
  return k;
}
