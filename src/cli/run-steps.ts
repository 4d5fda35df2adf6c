import { migrate } from '../migrate.js';
import { planMigrate } from '../plan.js';
import { EXIT, INSUFFICIENT_PRIVILEGE, type ErrorReport, type ExitCode } from '../errors.js';
import type { Step } from '../step.js';
import { exitCodeFor } from './exit-code.js';
import { renderPlanMarkdown, renderPlanText } from './plan-report.js';
import { renderMigrate } from './render.js';
import { VERSION, type Session } from './session.js';
import { withTestKill } from './test-hooks.js';

/** How to run a list of steps. */
export interface RunStepsOptions {
  readonly dryRun?: boolean;
  readonly only?: string;
  readonly exact?: boolean;
  /** The dry-run's human report: plain text (default) or a Markdown document. */
  readonly format?: 'text' | 'markdown';
  /** The online events2 copy's throttle. Default is `auto`. */
  readonly throttle?: 'auto' | 'off';
}

/**
 * Plans (`--dry-run`) or runs the steps, prints the result (human or JSON) and returns the exit code.
 * Shared by `migrate`, `init-projections` and `demo`.
 */
export async function runSteps(s: Session, steps: readonly Step<any>[], options: RunStepsOptions): Promise<ExitCode> {
  const stepOptions = { concurrency: s.config.concurrency, exact: Boolean(options.exact), throttle: options.throttle ?? 'auto' };
  if (options.dryRun) {
    const planned = await planMigrate(s.database, { steps, only: options.only, stepOptions });
    const plan = { ...planned, steps: planned.steps.map((p) => (p.error ? { ...p, error: asReadOnly(p.error) } : p)) };
    // The first step that cannot be planned decides, as the first failed step decides a run.
    const exitCode = plan.steps.find((p) => p.error)?.error?.exitCode ?? EXIT.ok;
    s.output({ dryRun: true, database: s.database.displayUrl, exitCode, ...plan }, () =>
      (options.format === 'markdown' ? renderPlanMarkdown : renderPlanText)(plan, { database: s.database.displayUrl, concurrency: s.config.concurrency, steps }));
    return exitCode;
  }
  const result = await migrate(s.database, {
    steps,
    only: options.only,
    lockWaitMs: s.config.lockWaitMs,
    stepOptions,
    signal: s.signal,
    onEvent: withTestKill((e) => s.reporter.handle(e)),
    version: VERSION,
  });
  const exitCode = exitCodeFor(result.steps);
  s.output({ database: s.database.displayUrl, exitCode, ...result }, () => renderMigrate(result));
  return exitCode;
}

/** A dry-run only reads: a missing privilege is a refusal (exit 5) with nothing written. */
function asReadOnly(e: ErrorReport): ErrorReport {
  return e.sqlstate === INSUFFICIENT_PRIVILEGE ? { ...e, kind: 'RefusedError', code: 'refused', exitCode: EXIT.refused } : e;
}
