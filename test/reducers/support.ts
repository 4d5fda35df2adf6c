import { expect } from 'vitest';
import { compileProjection, reduceEvent, type ProjectionModel } from '../../src/projections/model.js';
import { Base64Bytes } from '../../src/projections/payload.js';
import type { ProjectionDefinition, ProjectionEvent } from '../../src/projections/types.js';

/** The time and sequence every test event has, so expected rows can be written out by hand. */
export const AT = '2024-05-01T10:00:00.000000Z';
export const SEQ = 7;
/** The bump of a parent row: change_date = event time, sequence = event sequence. */
export const BUMP = { change_date: AT, sequence: SEQ } as const;

/** An event as reducers see it; unset fields are the test defaults (instance i1, owner o1). */
export function event(aggregateType: string, aggregateId: string, eventType: string, payload: unknown = null, more: Partial<ProjectionEvent> = {}): ProjectionEvent {
  return {
    instanceId: 'i1', aggregateType, aggregateId, eventType, sequence: SEQ, revision: 1, createdAt: AT, payload,
    creator: 'c', owner: 'o1', position: '1700000000.000001', inTxOrder: 0, ...more,
  };
}

/** One change, with the table by name, as the expectations are written. */
export type PlainOp =
  | { upsert: string; row: Record<string, unknown> }
  | { update: string; key: Record<string, unknown>; set: Record<string, unknown> }
  | { delete: string; key: Record<string, unknown> }
  | { deleteWhere: string; match: Record<string, unknown> }
  | { copy: string; key: Record<string, unknown>; columns: Record<string, string> };

/** Values as the expectations spell them: a bytea value read from a payload (Base64Bytes) in its hex form. */
const plain = (values: Readonly<Record<string, unknown>>) =>
  Object.fromEntries(Object.entries(values).map(([c, v]) => [c, v instanceof Base64Bytes ? v.toJSON() : v]));

/** The changes the projection's reducer makes for `e`, as plain objects. */
export function reduce(model: ProjectionModel, e: ProjectionEvent): PlainOp[] {
  return reduceEvent(model, e).map((op): PlainOp => {
    switch (op.kind) {
      case 'upsert': return { upsert: op.table.name, row: plain(op.row) };
      case 'update': return { update: op.table.name, key: { ...op.key }, set: plain(op.set) };
      case 'delete': return { delete: op.table.name, key: { ...op.key } };
      case 'deleteWhere': return { deleteWhere: op.table.name, match: { ...op.match } };
      case 'copy': return { copy: op.table.name, key: { ...op.key }, columns: { ...op.columns } };
    }
  });
}

/** A case: an event, and either the exact changes or the error the event fails with. */
export interface Case {
  readonly name?: string;
  readonly event: ProjectionEvent;
  readonly ops?: readonly PlainOp[];
  readonly fails?: RegExp;
}

/** `aggregate type/event type` of every reducer of a definition. */
export function subscriptions(def: ProjectionDefinition): string[] {
  return Object.entries(def.reducers).flatMap(([agg, events]) => Object.keys(events).map((t) => `${agg}/${t}`)).sort();
}

/** Checks every case, and that the cases cover every subscribed event type. */
export function checkCases(def: ProjectionDefinition, cases: readonly Case[]): void {
  const model = compileProjection(def);
  for (const c of cases) {
    const label = c.name ?? `${c.event.aggregateType}/${c.event.eventType}`;
    if (c.fails) expect(() => reduce(model, c.event), label).toThrow(c.fails);
    else expect(reduce(model, c.event), label).toEqual(c.ops);
  }
  const covered = new Set(cases.map((c) => `${c.event.aggregateType}/${c.event.eventType}`));
  expect(subscriptions(def).filter((s) => !covered.has(s)), 'subscribed event types without a case').toEqual([]);
}
