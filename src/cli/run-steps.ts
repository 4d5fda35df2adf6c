import { migrate } from '../migrate.js';
import { planMigrate } from '../plan.js';
import type { ExitCode } from '../errors.js';
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
}

/**
 * Plans (`--dry-run`) or runs the steps, prints the result (human or JSON) and returns the exit code.
 * Shared by `migrate`, `init-projections` and `demo`.
 */
export async function runSteps(s: Session, steps: readonly Step<any>[], options: RunStepsOptions): Promise<ExitCode> {
  const stepOptions = { concurrency: s.config.concurrency, exact: Boolean(options.exact) };
  if (options.dryRun) {
    const plan = await planMigrate(s.database, { steps, only: options.only, stepOptions });
    s.output({ dryRun: true, database: s.database.displayUrl, ...plan }, () =>
      (options.format === 'markdown' ? renderPlanMarkdown : renderPlanText)(plan, { database: s.database.displayUrl, concurrency: s.config.concurrency, steps }));
    return plan.steps.some((p) => p.error) ? 1 : 0;
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
