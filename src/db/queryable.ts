import { CompiledQuery } from 'kysely';
import type { Queryable } from '../projections/events.js';
import type { Tx } from './connection.js';

/** A kysely transaction as a plain `query(text, values)` target, for engine code written against pg. */
export function queryableOf(tx: Tx): Queryable {
  return { query: async (text, values) => tx.executeQuery(CompiledQuery.raw(String(text), values ?? [])) as Promise<{ rows: any[] }> };
}
