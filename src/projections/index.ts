/** The projection engine: definitions, prefill, and the built-in projections. */
export type * from './types.js';
export { BUILTIN_PROJECTIONS } from './builtin/index.js';
export { compileProjection, type ProjectionModel } from './model.js';
export { captureEndPoint } from './events.js';
export { prefillProjection, projectionBacklog, type PrefillOptions, type PrefillResult, type PrefillContext } from './prefill.js';
export { loadProjectionFile, selectProjections, type ProjectionSelection } from './load.js';
export * as payload from './payload.js';
