import type { OnEvent, RunEvent } from '../step.js';

/**
 * Fault-suite hook (test/fault/): with `ZSETUP_TEST_KILL_AT` set, this process sends itself
 * `ZSETUP_TEST_KILL_SIGNAL` (default SIGKILL) the first time a matching engine event passes:
 *   `start <step-id>`                       the step starts (its row is marked running)
 *   `progress <step-id> <n> [phase prefix]` the n-th progress event of the step (in that phase)
 * Progress events are the ones the runner emits (at most one per 200 ms, plus the last of a phase).
 * Unset, the callback is returned as it is.
 */
export function withTestKill(onEvent: OnEvent, env: NodeJS.ProcessEnv = process.env): OnEvent {
  const spec = env.ZSETUP_TEST_KILL_AT?.trim();
  if (!spec) return onEvent;
  const matches = matcher(spec);
  const signal = (env.ZSETUP_TEST_KILL_SIGNAL || 'SIGKILL') as NodeJS.Signals;
  let fired = false;
  return (event) => {
    onEvent(event);
    if (fired || !matches(event)) return;
    fired = true;
    process.kill(process.pid, signal);
  };
}

function matcher(spec: string): (event: RunEvent) => boolean {
  const [kind, stepId, count, ...phase] = spec.split(/\s+/);
  if (kind === 'start') return (e) => e.type === 'step-start' && e.stepId === stepId;
  const n = Number(count);
  if (kind !== 'progress' || !Number.isInteger(n) || n < 1) throw new Error(`ZSETUP_TEST_KILL_AT: cannot read "${spec}"`);
  const prefix = phase.join(' ');
  let seen = 0;
  return (e) => e.type === 'step-progress' && !e.repeated && e.stepId === stepId && e.progress.phase.startsWith(prefix) && ++seen === n;
}
