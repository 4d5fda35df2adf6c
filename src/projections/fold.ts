import { ConfigError } from '../errors.js';
import { keyString, type Op, type ProjectionModel, type TableModel } from './model.js';
import type { ColumnType, ColumnValue } from './types.js';

type Values = Readonly<Record<string, ColumnValue>>;

/**
 * The net effect of a segment on one row: a full row, a partial update of a stored row, or a deletion.
 * `replaced` marks a row written over a deletion of the same segment: its stored version is gone.
 * `since` is the segment's count of changes when the key last became a full row (see Cascade).
 * `needsParent` marks a child row whose parent the segment did not write: only the database can tell
 * whether the insert fails.
 */
type Entry =
  | { kind: 'row'; row: Record<string, ColumnValue>; replaced: boolean; needsParent: boolean; since: number }
  | { kind: 'patch'; key: Values; set: Record<string, ColumnValue>; copies?: Record<string, string> }
  | { kind: 'deleted'; key: Values };

function assign(target: Record<string, ColumnValue>, values: Values): void {
  for (const k in values) target[k] = values[k];
}

/** What a folded segment writes to one table, in this order: cascades, deletions, upserts, updates. */
export interface TableWrites {
  readonly table: TableModel;
  /** deleteWhere matches grouped by the columns they match on. */
  readonly cascades: ReadonlyMap<string, readonly Cascade[]>;
  readonly deletes: readonly Values[];
  readonly upserts: readonly Values[];
  /** Per upsert, the segment's count of changes when its key became a full row (see Cascade). */
  readonly heldSince: readonly number[];
  /**
   * Partial updates; `copies` (target → source column) set a column to the stored value of another
   * one, read before the same statement's `set` (an UPDATE's SET reads the old row).
   */
  readonly patches: readonly { readonly key: Values; readonly set: Values; readonly copies?: Readonly<Record<string, string>> }[];
}

/**
 * One `deleteWhere` of a segment, as written: a DELETE of the stored rows matching `match`. With
 * `sparesBefore`, it spares the stored rows whose key is one of the segment's full rows held since before
 * that count of changes: one by one, the deleteWhere met the upserted row, which did not match (or the
 * fold would have deleted it by key), and kept it and its children. Set for tables with children only:
 * without children the DELETE does no harm, the upsert writes the row again.
 */
export interface Cascade {
  readonly match: Values;
  readonly sparesBefore: number | null;
}

/** A folded batch: its segments, each to be written (per table, see TableWrites) after the one before. */
export type FoldedWrites = readonly (readonly TableWrites[])[];

/**
 * Column types whose values PostgreSQL compares as JavaScript does (`===`, arrays element by element),
 * so the fold can decide in memory whether a row matches a `deleteWhere`. Timestamps, numerics, bytea and
 * JSON have equal values with different spellings (`…Z` and `…+00:00`, `1.0` and `1`, key order).
 */
const DECIDABLE: ReadonlySet<ColumnType> = new Set<ColumnType>(['text', 'smallint', 'integer', 'bigint', 'boolean', 'text[]', 'smallint[]']);

/**
 * Throws a ConfigError for a definition the fold cannot write exactly: a child table whose foreign key
 * columns are not all part of its primary key. The fold relies on a row's parent never changing (key
 * columns are never updated), so deleting a parent deletes exactly the children whose key names it.
 */
export function checkFoldable(model: ProjectionModel): void {
  const problems: string[] = [];
  for (const t of model.tables) {
    for (const child of t.children) {
      for (const c of Object.keys(child.columns)) {
        if (!child.table.primaryKey.includes(c)) {
          problems.push(`projection ${model.name}: ${child.table.name}: foreign key column ${c} must be part of its primary key (${child.table.primaryKey.join(', ')})`);
        }
      }
    }
  }
  if (problems.length) throw new ConfigError(problems.join('\n'));
}

/**
 * Folds the changes of many events into one net change per row (keyed by primary key), so a batch is
 * written with a few set-based statements, and the result is exactly what applying the changes one by
 * one gives (or the database rejects the bulk write, and the batch is replayed event by event).
 *
 * Why it is exact, and why it sometimes starts a new segment. A segment is written as: every
 * `deleteWhere` as a DELETE evaluated on the rows stored before the segment, the key deletions, the full
 * rows, then the partial updates. That equals one-by-one application as long as
 * - a `deleteWhere` decides in memory for every row the segment already changed (full rows and updates
 *   whose values decide the match), and the DELETE cannot remove such a row behind the fold's back: a
 *   stored row whose match columns an earlier update changed. (A stored parent that an upsert replaced
 *   before the deleteWhere, which the DELETE would take along with its stored children, is excepted
 *   from that DELETE by its key: see Cascade.)
 * - a child upsert whose parent the segment did not write is checked by the database against the
 *   stored parent, so the parent is not written or deleted later in the same segment.
 * A change that would break one of these starts a new segment instead. Segments are rare for the
 * built-in projections (a removal of an org or project after an update of a matched column); folding
 * such a change some other way, or rejecting those definitions, would give wrong rows or refuse
 * ordinary projections. What cannot be decided at all is refused when the fold is created (see
 * checkFoldable).
 */
export class BatchFold {
  private readonly done: (readonly TableWrites[])[] = [];
  private segment: Segment;

  constructor(private readonly model: ProjectionModel) {
    checkFoldable(model);
    this.segment = new Segment(model);
  }

  /**
   * Applies the validated changes of one event. The fold takes over the ops' row objects (they are
   * changed by later updates), so ops must not be used again after being applied.
   */
  apply(ops: readonly Op[]): void {
    for (const op of ops) {
      if (this.segment.apply(op)) continue;
      this.done.push(this.segment.writes());
      this.segment = new Segment(this.model);
      // A fresh segment takes any change: nothing was folded before it.
      if (!this.segment.apply(op)) throw new Error(`fold: a fresh segment refused a ${op.kind} on ${op.table.name}`);
    }
  }

  /** The writes per segment, in order; per segment, per table, parents first. */
  writes(): FoldedWrites {
    return [...this.done, this.segment.writes()];
  }
}

/**
 * What a deleteWhere removes from the fold (`rows`) and which stored rows its DELETE spares (see
 * Cascade), or 'segment' when it must start a new segment.
 */
type Removal = { readonly rows: readonly { readonly t: TableModel; readonly key: Values }[]; readonly sparesBefore: number | null } | 'segment';

/** The fold of a run of changes that one set of bulk statements writes exactly (see BatchFold). */
class Segment {
  private readonly entries = new Map<TableModel, Map<string, Entry>>();
  /** Per table, signature of matched columns, and match: the deleteWhere and the keys its DELETE spares. */
  private readonly cascades = new Map<TableModel, Map<string, Map<unknown, { match: Values; sparesBefore: number | null }>>>();
  /** Changes applied so far (see Cascade). */
  private clock = 0;
  /**
   * For each table and set of columns a `deleteWhere` matched on: the keys of the folded full rows by
   * their values in those columns, so each `deleteWhere` visits only the rows it deletes. Built on the
   * first `deleteWhere` with those columns, then kept up by every upsert and update; a key whose row was
   * since changed or deleted is checked again before it is removed.
   */
  private readonly matchIndexes = new Map<TableModel, Map<string, MatchIndex>>();
  /** Per table, the columns some partial update sets. */
  private readonly patched = new Map<TableModel, Set<string>>();
  /** Per table, keys of rows a child upsert needs stored: the segment wrote no full row for them. */
  private readonly required = new Map<TableModel, Set<string>>();

  constructor(private readonly model: ProjectionModel) {
    for (const t of model.tables) {
      this.entries.set(t, new Map());
      this.cascades.set(t, new Map());
      this.matchIndexes.set(t, new Map());
      this.patched.set(t, new Set());
      this.required.set(t, new Set());
    }
  }

  /** Folds one change; false (nothing changed) when it must go to a new segment. */
  apply(op: Op): boolean {
    this.clock++;
    switch (op.kind) {
      case 'upsert':
        return this.upsert(op.table, op.row as Record<string, ColumnValue>);
      case 'update':
        this.update(op.table, op.key, op.set);
        return true;
      case 'delete': {
        if (this.removesRequired(op.table, [keyString(op.table, op.key)])) return false;
        this.remove(op.table, op.key);
        return true;
      }
      case 'deleteWhere':
        return this.deleteWhere(op.table, op.match);
      case 'copy':
        this.copy(op.table, op.key, op.columns);
        return true;
    }
  }

  /**
   * Same-row copies: resolved in memory where the segment knows the source's value (a full row, or a
   * patch that set it), otherwise left for the UPDATE to read from the stored row.
   */
  private copy(t: TableModel, key: Values, columns: Readonly<Record<string, string>>): void {
    const map = this.entries.get(t)!;
    const k = keyString(t, key);
    const e = map.get(k);
    if (e?.kind === 'deleted') return;
    if (e?.kind === 'row') {
      const set: Record<string, ColumnValue> = {};
      for (const [to, from] of Object.entries(columns)) set[to] = e.row[from];
      this.update(t, key, set);
      return;
    }
    const patch = e ?? { kind: 'patch' as const, key, set: {} };
    if (!e) map.set(k, patch);
    const copies = (patch.copies ??= {});
    const resolved: Record<string, ColumnValue> = {};
    for (const [to, from] of Object.entries(columns)) {
      if (from in patch.set) resolved[to] = patch.set[from];
      else {
        // A source that is itself an unresolved copy reads that copy's source.
        copies[to] = copies[from] ?? from;
        delete patch.set[to];
      }
      this.patched.get(t)!.add(to);
    }
    for (const to in resolved) {
      patch.set[to] = resolved[to];
      delete copies[to];
    }
    if (Object.keys(copies).length === 0) delete patch.copies;
  }

  private upsert(t: TableModel, row: Record<string, ColumnValue>): boolean {
    const k = keyString(t, row);
    // A row a child relied on being stored: writing it in this segment would hide a missing parent.
    if (this.required.get(t)!.has(k)) return false;
    const parent = this.parentOf(t, row);
    let needsParent = false;
    if (parent) {
      // Unless the segment wrote the parent, the database checks it (a parent deleted here is deleted
      // before the insert, which then fails as it does one by one).
      needsParent = this.entries.get(parent.table)!.get(parent.key)?.kind !== 'row';
      if (needsParent) this.required.get(parent.table)!.add(parent.key);
    }
    const map = this.entries.get(t)!;
    const before = map.get(k);
    const replaced = before?.kind === 'deleted' || (before?.kind === 'row' && before.replaced);
    map.set(k, { kind: 'row', row, replaced, needsParent, since: before?.kind === 'row' ? before.since : this.clock });
    for (const index of this.matchIndexes.get(t)!.values()) index.add(k, row);
    return true;
  }

  /** The parent table and key a child row refers to; undefined for a table without parent. */
  private parentOf(t: TableModel, row: Values): { table: TableModel; key: string } | undefined {
    const ref = t.def.parent;
    if (!ref) return undefined;
    const table = this.model.byName.get(ref.table)!;
    const key: Record<string, ColumnValue> = {};
    for (const [c, p] of Object.entries(ref.columns)) key[p] = row[c];
    return { table, key: keyString(table, key) };
  }

  private update(t: TableModel, key: Values, set: Values): void {
    // An empty update changes nothing (and the bulk UPDATE needs a column to set).
    if (Object.keys(set).length === 0) return;
    const map = this.entries.get(t)!;
    const k = keyString(t, key);
    const e = map.get(k);
    if (e?.kind === 'deleted') return; // an UPDATE would have matched nothing
    if (e?.kind === 'row') {
      assign(e.row, set);
      for (const index of this.matchIndexes.get(t)!.values()) if (index.cols.some((c) => c in set)) index.add(k, e.row);
      return;
    }
    if (e) {
      assign(e.set, set);
      if (e.copies) for (const c in set) delete e.copies[c];
    } else map.set(k, { kind: 'patch', key, set: { ...set } });
    const patched = this.patched.get(t)!;
    for (const c in set) patched.add(c);
  }

  /** Marks a row deleted, with its children (by key, or by the columns naming the parent). */
  private remove(t: TableModel, key: Values): void {
    this.entries.get(t)!.set(keyString(t, key), { kind: 'deleted', key });
    for (const child of t.children) {
      const childKey: Record<string, ColumnValue> = {};
      for (const [c, p] of Object.entries(child.columns)) childKey[c] = key[p];
      if (Object.keys(childKey).length === child.table.primaryKey.length) this.remove(child.table, childKey);
      // Several children per parent: the stored ones are deleted by a cascade (the parent row itself may
      // be written again in this segment, and then it is not deleted), the folded ones here.
      else this.cascade(child.table, childKey, this.matchingRows(child.table, childKey));
    }
  }

  /**
   * True when deleting these rows of `t` in memory would hide a failing insert from the database: a
   * parent a child upsert relies on being stored, or such a child itself.
   */
  private removesRequired(t: TableModel, keys: readonly string[]): boolean {
    const required = this.required.get(t)!;
    const entries = this.entries.get(t)!;
    for (const k of keys) {
      const e = entries.get(k);
      if (required.has(k) || (e?.kind === 'row' && e.needsParent)) return true;
    }
    const below = (m: TableModel): boolean => m.children.some((c) => this.required.get(c.table)!.size > 0 || below(c.table));
    return below(t);
  }

  private deleteWhere(t: TableModel, match: Values): boolean {
    const cols = Object.keys(match);
    // `column = NULL` is never true: the DELETE removes nothing.
    if (cols.some((c) => match[c] === null)) return true;
    const removal = this.removal(t, match, cols);
    if (removal === 'segment') return false;
    if (this.removesRequired(t, removal.rows.map((r) => keyString(r.t, r.key)))) return false;
    this.cascade(t, match, removal.rows, removal.sparesBefore);
    return true;
  }

  /**
   * Records the DELETE of stored rows matching `match` (sparing some, see Cascade), and removes the
   * folded rows it matches. The same match again in the segment spares only what both spare: a stored
   * row the earlier one deleted stays deleted, and a full row the later one does not spare was deleted
   * by key in between.
   */
  private cascade(t: TableModel, match: Values, rows: readonly { t: TableModel; key: Values }[], sparesBefore: number | null = null): void {
    const cols = Object.keys(match).sort();
    const sig = cols.join(',');
    let group = this.cascades.get(t)!.get(sig);
    if (!group) this.cascades.get(t)!.set(sig, (group = new Map()));
    const mk = matchKey(cols, match);
    const earlier = group.get(mk);
    if (!earlier) group.set(mk, { match, sparesBefore });
    else if (earlier.sparesBefore !== null) earlier.sparesBefore = sparesBefore === null ? null : Math.min(earlier.sparesBefore, sparesBefore);
    for (const r of rows) this.remove(r.t, r.key);
  }

  /**
   * What a `deleteWhere` on `t` removes from the fold: the full rows that match, and the updated rows
   * whose key and set columns match on every column. 'segment' when the DELETE on the stored rows would
   * differ from one-by-one application for a row the segment changed (see BatchFold).
   */
  private removal(t: TableModel, match: Values, cols: readonly string[]): Removal {
    const entries = this.entries.get(t)!;
    if (entries.size === 0) return { rows: [], sparesBefore: null };
    if (cols.some((c) => !DECIDABLE.has(t.columns.get(c)!.type))) return 'segment';
    const rows: { t: TableModel; key: Values }[] = [...this.matchingRows(t, match)];
    const patched = this.patched.get(t)!;
    if (cols.some((c) => patched.has(c))) {
      for (const e of entries.values()) {
        if (e.kind === 'patch' && e.copies && cols.some((c) => c in e.copies!)) return 'segment';
        if (e.kind !== 'patch' || !cols.some((c) => c in e.set)) continue;
        // The update changed a match column: the stored value no longer tells, the folded one must.
        if (!cols.every((c) => (c in e.set ? sameValue(e.set[c], match[c]) : c in e.key && sameValue(e.key[c], match[c])))) return 'segment';
        rows.push({ t, key: e.key });
      }
    }
    return { rows, sparesBefore: t.children.length ? this.clock : null };
  }

  /** The keys of the folded full rows of `t` that match, found through the match index. */
  private matchingRows(t: TableModel, match: Values): { t: TableModel; key: Values }[] {
    const cols = Object.keys(match).sort();
    const sig = cols.join(',');
    const entries = this.entries.get(t)!;
    let index = this.matchIndexes.get(t)!.get(sig);
    if (!index) {
      this.matchIndexes.get(t)!.set(sig, (index = new MatchIndex(cols)));
      for (const [k, e] of entries) if (e.kind === 'row') index.add(k, e.row);
    }
    const out: { t: TableModel; key: Values }[] = [];
    const seen = new Set<string>();
    for (const k of index.take(matchKey(cols, match))) {
      const e = entries.get(k);
      if (seen.has(k) || e?.kind !== 'row' || !cols.every((c) => sameValue(e.row[c], match[c]))) continue;
      seen.add(k);
      out.push({ t, key: Object.fromEntries(t.primaryKey.map((pk) => [pk, e.row[pk]])) });
    }
    return out;
  }

  /** The writes per table, parents first. */
  writes(): TableWrites[] {
    return this.model.tables.map((table) => {
      const deletes: Values[] = [];
      const upserts: Values[] = [];
      const heldSince: number[] = [];
      const patches: { key: Values; set: Values; copies?: Readonly<Record<string, string>> }[] = [];
      for (const e of this.entries.get(table)!.values()) {
        if (e.kind === 'deleted') deletes.push(e.key);
        else if (e.kind === 'row') {
          upserts.push(e.row);
          heldSince.push(e.since);
        }
        else patches.push(e.copies && Object.keys(e.copies).length ? { key: e.key, set: e.set, copies: e.copies } : { key: e.key, set: e.set });
      }
      const cascades = new Map([...this.cascades.get(table)!].map(([sig, m]) => [sig, [...m.values()].map((c) => ({ ...c }))]));
      return { table, cascades, deletes, upserts, heldSince, patches };
    });
  }
}

/** Equality of two decidable column values (see DECIDABLE): arrays element by element. */
function sameValue(a: ColumnValue | undefined, b: ColumnValue | undefined): boolean {
  if (a === b) return true;
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
  return a.every((v, i) => v === b[i]);
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

/** Keys of folded rows by their values in some columns (see Segment.matchIndexes). */
class MatchIndex {
  private readonly byValues = new Map<unknown, string[]>();

  constructor(readonly cols: readonly string[]) {}

  add(key: string, row: Values): void {
    const values = matchKey(this.cols, row);
    const keys = this.byValues.get(values);
    if (keys) keys.push(key);
    else this.byValues.set(values, [key]);
  }

  /**
   * The keys added with these values, forgotten here: the caller deletes the rows that still match,
   * and a row changed since was added again under its new values.
   */
  take(values: unknown): readonly string[] {
    const keys = this.byValues.get(values) ?? [];
    this.byValues.delete(values);
    return keys;
  }
}
