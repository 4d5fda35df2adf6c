import type { Base64Bytes } from './payload.js';
/**
 * The shape of a projection definition: the tables it owns and one reducer per event type it handles.
 * Built-in projections and custom ones (`--projections-module ./file.js`) use the same types and engine.
 */

/** Column types the engine can validate and write. */
export type ColumnType =
  | 'text'
  | 'smallint'
  | 'integer'
  | 'bigint'
  | 'numeric'
  | 'boolean'
  | 'timestamptz'
  | 'jsonb'
  | 'text[]'
  | 'smallint[]'
  | 'bytea';

/**
 * A value a reducer may write into a column. Timestamps are ISO-8601 strings; `bytea` values are strings
 * in PostgreSQL's hex form, `\x` followed by two hex digits per byte (`'\x'` is the empty value), or
 * the Base64Bytes of a payload key as `optBytes` reads it.
 */
export type ColumnValue = string | number | boolean | null | readonly string[] | readonly number[] | Base64Bytes | { readonly [k: string]: unknown };

/** One column of a projection table. */
export interface ColumnDefinition {
  readonly name: string;
  readonly type: ColumnType;
  /** Default is false: the column is NOT NULL. */
  readonly nullable?: boolean;
  /** Value used when an upserted row omits the column (also the SQL DEFAULT). */
  readonly default?: ColumnValue;
}

/** A foreign key to a parent table of the same projection; deleting the parent deletes the child. */
export interface ParentReference {
  readonly table: string;
  /** Child column → parent column, covering the parent's primary key. */
  readonly columns: Readonly<Record<string, string>>;
  /** Constraint name, e.g. `fk_humans_ref_users14`. */
  readonly constraint: string;
}

/** One table of a projection. Parents are listed before their children. */
export interface TableDefinition {
  /** Schema-qualified name, e.g. `projections.orgs1`. */
  readonly name: string;
  readonly columns: readonly ColumnDefinition[];
  readonly primaryKey: readonly string[];
  readonly parent?: ParentReference;
  /** Secondary indexes: index name → column list. */
  readonly indexes?: Readonly<Record<string, readonly string[]>>;
}

/** An event as reducers see it. */
export interface ProjectionEvent {
  readonly instanceId: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly eventType: string;
  readonly sequence: number;
  readonly revision: number;
  /** `created_at`, ISO-8601 in UTC with microseconds. */
  readonly createdAt: string;
  /** Parsed JSON payload; null when the event has none. */
  readonly payload: unknown;
  readonly creator: string;
  /** Resource owner. */
  readonly owner: string;
  /** Exact decimal text of `position`. */
  readonly position: string;
  readonly inTxOrder: number;
}

/** A row (or part of one): column → value. */
export type Row = Readonly<Record<string, ColumnValue | undefined>>;

/**
 * What a reducer calls to change the projection. Calls are collected and applied only if the reducer
 * returns normally, so a reducer that throws changes nothing (the event is recorded as failed).
 */
export interface ProjectionWriter {
  /** Inserts a full row, replacing any row with the same primary key. Omitted columns get their default. */
  upsert(table: string, row: Row): void;
  /** Sets some columns of the row with this key; no effect if it does not exist. */
  update(table: string, key: Row, set: Row): void;
  /** Deletes the row with this primary key (and its children). */
  delete(table: string, key: Row): void;
  /**
   * Deletes every row whose columns equal `match` (and their children), e.g. all projects of an org.
   */
  deleteWhere(table: string, match: Row): void;
  /**
   * Sets columns of the row with this key to the values other columns of the same row hold at that
   * point (`{ verified_email: 'last_email' }`); no effect if the row does not exist.
   */
  copy(table: string, key: Row, columns: Readonly<Record<string, string>>): void;
}

/** Applies one event; throws on a payload it cannot use. */
export type Reducer = (event: ProjectionEvent, write: ProjectionWriter) => void;

/** A projection: its tables, and per aggregate type the reducers of the event types it handles. */
export interface ProjectionDefinition {
  /** Recorded in `projections.current_states.projection_name`; by convention the main table's name. */
  readonly name: string;
  readonly tables: readonly TableDefinition[];
  /** aggregate type → event type → reducer. Only these events are read. */
  readonly reducers: Readonly<Record<string, Readonly<Record<string, Reducer>>>>;
}
