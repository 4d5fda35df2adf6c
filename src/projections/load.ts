import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../errors.js';
import { BUILTIN_PROJECTIONS } from './builtin/index.js';
import { checkFoldable } from './fold.js';
import { compileProjection, type ProjectionModel } from './model.js';
import type { ProjectionDefinition } from './types.js';

/**
 * Loads custom projection definitions from an ES module: its `projections` export, or its default
 * export, is one definition or an array of them (see the ProjectionDefinition type).
 */
export async function loadProjectionFile(file: string): Promise<ProjectionDefinition[]> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(pathToFileURL(path.resolve(file)).href);
  } catch (err) {
    throw new ConfigError(`--projections: cannot load ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const exported = mod.projections ?? mod.default;
  const list = Array.isArray(exported) ? exported : exported ? [exported] : [];
  if (list.length === 0) throw new ConfigError(`--projections: ${file} exports no projections (export \`projections\` or a default)`);
  return list as ProjectionDefinition[];
}

/** Which projections to prefill. */
export interface ProjectionSelection {
  /** Names to keep (`projections.orgs1` or `orgs1`); all when empty. */
  readonly names?: readonly string[];
  /** A module with custom definitions, added to the built-in ones. */
  readonly file?: string;
}

/** The built-in projections plus custom ones, checked, filtered by name. Unknown names are a ConfigError. */
export async function selectProjections(selection: ProjectionSelection = {}): Promise<ProjectionModel[]> {
  const custom = selection.file ? await loadProjectionFile(selection.file) : [];
  // Checked at load, so a definition the fold cannot write exactly is refused before any step runs.
  const models = [...BUILTIN_PROJECTIONS, ...custom].map((def) => {
    const model = compileProjection(def);
    checkFoldable(model);
    return model;
  });
  const seen = new Set<string>();
  for (const m of models) {
    if (seen.has(m.name)) throw new ConfigError(`projection ${m.name} is defined twice (a custom projection needs its own name)`);
    seen.add(m.name);
  }
  const names = selection.names ?? [];
  if (names.length === 0) return models;
  const match = (m: ProjectionModel, n: string) => m.name === n || m.name.split('.').pop() === n;
  const unknown = names.filter((n) => !models.some((m) => match(m, n)));
  if (unknown.length) throw new ConfigError(`--projection: unknown ${unknown.join(', ')} (known: ${models.map((m) => m.name).join(', ')})`);
  return models.filter((m) => names.some((n) => match(m, n)));
}
