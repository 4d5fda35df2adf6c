import type { MigrateResult } from '../migrate.js';
import type { StatusResult } from '../status.js';
import type { ErrorReport } from '../errors.js';
import { describeHolder } from '../db/lock.js';
import type { ProjectionState } from '../projection-status.js';
import { dropName, formatCount, formatDuration, formatProgress, groupDigits, plural } from './format.js';

/**
 * Human text of a migrate result: one closing line, and a failure's error in full. Each step's own
 * result was already printed as it ended (stderr), so it is not repeated here.
 */
export function renderMigrate(r: MigrateResult): string {
  if (r.steps.length === 0) return 'no steps to run';
  if (r.upToDate) return `database is up to date: all ${formatCount(r.steps.length)} steps already succeeded`;
  const failed = r.steps.find((s) => s.status === 'failed' || s.status === 'interrupted');
  const counts = (['succeeded', 'skipped', 'not-run'] as const)
    .map((status) => [status, r.steps.filter((s) => s.status === status).length] as const)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${formatCount(n)} ${plural(n, 'step')} ${status === 'skipped' ? 'already done' : status === 'not-run' ? 'not run' : status}`);
  if (!failed) return `done: ${counts.join(', ')}`;
  const took = failed.durationMs !== undefined ? ` after ${formatDuration(failed.durationMs)}` : '';
  const lines = [`stopped: ${failed.id} ${failed.status}${took}${counts.length ? `; ${counts.join(', ')}` : ''}`];
  if (failed.error) lines.push('', ...renderError(failed.error, failed.id));
  if (failed.status === 'interrupted') lines.push('', 'a rerun of `zsetup migrate` resumes where this one stopped');
  return lines.join('\n');
}

/** What `status` shows besides the steps' states. */
export interface StatusRenderOptions {
  /** Each succeeded step's result message. Default is true; `demo` has just printed them. */
  readonly summaries?: boolean;
}

/** Human text of `status`. */
export function renderStatus(r: StatusResult, options: StatusRenderOptions = {}): string {
  const out: string[] = [];
  out.push(r.runner ? `a runner is active: ${describeHolder(r.runner)}` : 'no runner is active');
  if (r.steps.length === 0) out.push('no steps known');
  for (const s of r.steps) {
    const row = s.row;
    const bits: string[] = [];
    if (row?.attempts) bits.push(`attempts ${row.attempts}`);
    if (row?.started_at) bits.push(`started ${new Date(row.started_at).toISOString()}`);
    if (row?.duration_ms !== null && row?.duration_ms !== undefined) bits.push(`took ${formatDuration(row.duration_ms)}`);
    if (s.live && row?.heartbeat_at) bits.push(`heartbeat ${formatDuration(Date.now() - new Date(row.heartbeat_at).getTime())} ago`);
    const behind = s.status === 'succeeded' && (s.projection?.eventsToApply ?? 0) > 0;
    const head = `${s.id.padEnd(36)} ${(s.status + (s.live ? ' (live)' : behind ? ' (behind)' : '')).padEnd(20)}`;
    out.push(bits.length ? `${head} ${bits.join(', ')}` : head.trimEnd());
    if (row?.progress && s.status !== 'succeeded') out.push(`    ${formatProgress(row.progress)}`);
    const summary = row?.summary as { message?: string } | null | undefined;
    if (s.status === 'succeeded' && summary?.message && options.summaries !== false) out.push(`    ${groupDigits(dropName(s.id, summary.message))}`);
    if (s.projection) out.push(`    ${describeProjectionState(s.status, s.projection)}`);
    if (row?.last_error && s.status !== 'succeeded') out.push(...renderError(row.last_error).map((l) => '    ' + l));
    if (s.status === 'interrupted' && !row?.last_error) out.push('    its runner died; the next `zsetup migrate` resumes it');
  }
  out.push(...renderZitadelSteps(r.zitadel));
  return out.join('\n');
}

/** ZITADEL's own setup steps: recorded ones, and what its next `setup` still runs. */
function renderZitadelSteps(steps: StatusResult['zitadel']): string[] {
  if (steps.length === 0) return [];
  const out = ['', 'ZITADEL setup steps (recorded in eventstore.events2; its next `setup` runs every one not done):'];
  for (const z of steps) {
    const state = z.recorded === null ? 'not recorded' : z.recorded === 'started' ? 'started (blocks ZITADEL setup)' : z.recorded;
    const who = z.recorded === 'done' ? '' : z.owner === 'zsetup' ? '  ← zsetup does this' : '  ← left to ZITADEL';
    out.push(`  ${z.name.padEnd(52)} ${state.padEnd(14)}${who}`);
  }
  return out;
}

/** Step, SQLSTATE, message, detail, hint: what an operator needs from a database error. */
export function renderError(e: ErrorReport, stepId?: string): string[] {
  const lines = [`error${stepId ? ` in step ${stepId}` : ''}${e.sqlstate ? ` [SQLSTATE ${e.sqlstate}]` : ''}: ${e.message}`];
  if (e.detail) lines.push(`detail: ${e.detail}`);
  if (e.hint) lines.push(`hint: ${e.hint}`);
  if (e.where) lines.push(`where: ${e.where}`);
  if (e.position) lines.push(`position: ${e.position}`);
  return lines;
}

/** A projection's true state, for `status --init-projections`. */
function describeProjectionState(status: string, p: ProjectionState): string {
  const recorded = `positions recorded for ${formatCount(p.instancesRecorded)} ${plural(p.instancesRecorded, 'instance')}`;
  if (p.eventsToApply === 0) return `at the head: ${recorded}`;
  const toApply = `${formatCount(p.eventsToApply)} ${plural(p.eventsToApply, 'event')} to apply in ${formatCount(p.instancesToApply)} ${plural(p.instancesToApply, 'instance')}`;
  return status === 'succeeded'
    ? `behind: ${toApply} arrived since; ${recorded}; the next \`zsetup migrate --init-projections\` applies them`
    : `${toApply}; ${recorded}`;
}
