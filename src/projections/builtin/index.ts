import type { ProjectionDefinition } from '../types.js';
import { apps } from './apps.js';
import { instances } from './instances.js';
import { milestones } from './milestones.js';
import { orgs } from './orgs.js';
import { projects } from './projects.js';
import { users } from './users.js';

/** The built-in projections, in prefill order. */
export const BUILTIN_PROJECTIONS: readonly ProjectionDefinition[] = [instances, orgs, projects, apps, users, milestones];
