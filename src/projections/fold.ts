import { keyString, type Op, type ProjectionModel, type TableModel } from './model.js';
import type { ColumnValue } from './types.js';

type Values = Readonly<Record<string, ColumnValue>>;

/** The net effect of a batch on one row: a full row, a partial update of a stored row, or a deletion. */
type Entry =
  | { kind: 'row'; row: Record<string, ColumnValue> }
  | { kind: 'patch'; key: Values; set: Record<string, ColumnValue> }
  | { kind: 'deleted'; key: Values };

function assign(target: Record<string, ColumnValue>, values: Values): void {
  for (const k in values) target[k] = values[k];
}

/** What a folded batch writes to one table, in this order: cascades, deletions, upserts, updates. */
export interface TableWrites {
  readonly table: TableModel;
  /** deleteWhere matches grouped by the columns they match on. */
  readonly cascades: ReadonlyMap<string, readonly Values[]>;
  readonly deletes: readonly Values[];
  readonly upserts: readonly Values[];
  readonly patches: readonly { readonly key: Values; readonly set: Values }[];
}

/**
 * Folds the changes of many events into one net change per row (keyed by primary key), so a batch is
 * written with a few set-based statements. Order is preserved where it matters: a `deleteWhere` is
 * applied to the rows already folded, and written before every other change of the batch, which is
 * equivalent because it only matches rows stored before the batch or folded before it.
 */
export class BatchFold {
  private readonly entries = new Map<TableModel, Map<string, Entry>>();
  private readonly cascades = new Map<TableModel, Map<string, Map<unknown, Values>>>();
  /**
   * For each table and set of columns a `deleteWhere` matched on: the keys of the folded full rows by
   * their values in those columns, so each `deleteWhere` visits only the rows it deletes. Built on the
   * first `deleteWhere` with those columns, then kept up by every upsert; a key whose row was since
   * replaced or deleted is checked again before it is removed.
   */
  private readonly matchIndexes = new Map<TableModel, Map<string, MatchIndex>>();

  constructor(private readonly model: ProjectionModel) {
    for (const t of model.tables) {
      this.entries.set(t, new Map());
      this.cascades.set(t, new Map());
      this.matchIndexes.set(t, new Map());
    }
  }

  /**
   * Applies the validated changes of one event. The fold takes over the ops' row objects (they are
   * changed by later updates), so ops must not be used again after being applied.
   */
  apply(ops: readonly Op[]): void {
    for (const op of ops) {
      switch (op.kind) {
        case 'upsert': {
          const k = keyString(op.table, op.row);
          this.entries.get(op.table)!.set(k, { kind: 'row', row: op.row as Record<string, ColumnValue> });
          for (const index of this.matchIndexes.get(op.table)!.values()) index.add(k, op.row);
          break;
        }
        case 'update':
          this.update(op.table, op.key, op.set);
          break;
        case 'delete':
          this.remove(op.table, op.key);
          break;
        case 'deleteWhere':
          this.deleteWhere(op.table, op.match);
          break;
      }
    }
  }

  private update(t: TableModel, key: Values, set: Values): void {
    const map = this.entries.get(t)!;
    const k = keyString(t, key);
    const e = map.get(k);
    if (!e) map.set(k, { kind: 'patch', key, set: set as Record<string, ColumnValue> });
    else if (e.kind === 'row') assign(e.row, set);
    else if (e.kind === 'patch') assign(e.set, set);
    // A deleted row stays deleted: an UPDATE would have matched nothing.
  }

  private remove(t: TableModel, key: Values): void {
    this.entries.get(t)!.set(keyString(t, key), { kind: 'deleted', key });
    for (const child of t.children) {
      const childKey: Record<string, ColumnValue> = {};
      for (const [c, p] of Object.entries(child.columns)) childKey[c] = key[p];
      this.remove(child.table, childKey);
    }
  }

  private deleteWhere(t: TableModel, match: Values): void {
    const cols = Object.keys(match).sort();
    const sig = cols.join(',');
    let group = this.cascades.get(t)!.get(sig);
    if (!group) this.cascades.get(t)!.set(sig, (group = new Map()));
    const values = matchKey(cols, match);
    group.set(values, match);
    const entries = this.entries.get(t)!;
    let index = this.matchIndexes.get(t)!.get(sig);
    if (!index) {
      this.matchIndexes.get(t)!.set(sig, (index = new MatchIndex(cols)));
      for (const [k, e] of entries) if (e.kind === 'row') index.add(k, e.row);
    }
    for (const k of index.take(values)) {
      const e = entries.get(k);
      if (e?.kind === 'row' && cols.every((c) => e.row[c] === match[c])) {
        this.remove(t, Object.fromEntries(t.primaryKey.map((pk) => [pk, e.row[pk]])));
      }
    }
  }

  /** Number of rows changed so far (for reports). */
  get size(): number {
    let n = 0;
    for (const m of this.entries.values()) n += m.size;
    return n;
  }

  /** The writes per table, parents first. */
  writes(): TableWrites[] {
    return this.model.tables.map((table) => {
      const deletes: Values[] = [];
      const upserts: Values[] = [];
      const patches: { key: Values; set: Values }[] = [];
      for (const e of this.entries.get(table)!.values()) {
        if (e.kind === 'deleted') deletes.push(e.key);
        else if (e.kind === 'row') upserts.push(e.row);
        else patches.push({ key: e.key, set: e.set });
      }
      const cascades = new Map([...this.cascades.get(table)!].map(([sig, m]) => [sig, [...m.values()]]));
      return { table, cascades, deletes, upserts, patches };
    });
  }
}

/**
 * The values of `cols` in a row, as a Map key equal for equal values: a one-column value that is not an
 * object (array, JSON) is its own key (Maps compare keys like ===), anything else its JSON.
 */
function matchKey(cols: readonly string[], row: Values): unknown {
  if (cols.length === 1) {
    const v = row[cols[0]];
    if (v === null || typeof v !== 'object') return v;
  }
  return JSON.stringify(cols.map((c) => row[c]));
}

/** Keys of folded rows by their values in some columns (see BatchFold.matchIndexes). */
class MatchIndex {
  private readonly byValues = new Map<unknown, string[]>();

  constructor(private readonly cols: readonly string[]) {}

  add(key: string, row: Values): void {
    const values = matchKey(this.cols, row);
    const keys = this.byValues.get(values);
    if (keys) keys.push(key);
    else this.byValues.set(values, [key]);
  }

  /** The keys added with these values, forgotten here (the caller deletes their rows). */
  take(values: unknown): readonly string[] {
    const keys = this.byValues.get(values) ?? [];
    this.byValues.delete(values);
    return keys;
  }
}
