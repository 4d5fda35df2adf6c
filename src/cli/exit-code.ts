import { EXIT, type ExitCode } from '../errors.js';
import type { StepResult } from '../step.js';

/** The process exit code for a set of step results: the first failure decides. */
export function exitCodeFor(steps: readonly StepResult[]): ExitCode {
  const bad = steps.find((s) => s.status === 'failed' || s.status === 'interrupted');
  if (!bad) return EXIT.ok;
  if (bad.status === 'interrupted') return EXIT.interrupted;
  return bad.error?.exitCode ?? EXIT.stepFailed;
}
