import { EXIT } from '../errors.js';

/** Seconds after SIGTERM at which zsetup cancels its statements still running (a unit that ends sooner commits). */
export const TERM_CANCEL_AFTER_MS = 2_000;
/** After a stop-now request, the latest zsetup exits, recorded or not (Kubernetes gives 30 s by default). */
export const STOP_DEADLINE_MS = 4_500;

/** What {@link StopHandler} needs from the rest of the session. */
export interface StopHooks {
  /** Prints a warning line (above any spinner). */
  warn(message: string): void;
  /** Cancels the statements zsetup's sessions are running (pg_cancel_backend). */
  cancelRunning(): Promise<unknown>;
  /** Last words before a forced exit: stop spinners, print the final line. */
  beforeForcedExit(reason: string): void;
}

/**
 * Ctrl-C and SIGTERM. The first SIGINT asks the run to stop after its current unit of work. SIGTERM
 * does the same, but a statement still running after {@link TERM_CANCEL_AFTER_MS} is cancelled, so a
 * long index build or prefill batch does not outlive a container's grace period. A second signal
 * cancels at once. Either way the process exits 130 by {@link STOP_DEADLINE_MS}, normally sooner with
 * the step recorded as interrupted; a third signal exits immediately.
 */
export class StopHandler {
  private readonly controller = new AbortController();
  private count = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly listener = (name: NodeJS.Signals) => this.onSignal(name);

  constructor(private readonly hooks: StopHooks) {}

  /** Aborted on the first signal. Its reason is the signal's name. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  install(): void {
    process.on('SIGINT', this.listener);
    process.on('SIGTERM', this.listener);
  }

  /** Removes the handlers and any pending cancel or forced exit. */
  uninstall(): void {
    process.removeListener('SIGINT', this.listener);
    process.removeListener('SIGTERM', this.listener);
    for (const t of this.timers) clearTimeout(t);
    this.timers.length = 0;
  }

  private onSignal(name: NodeJS.Signals): void {
    this.count++;
    if (this.count === 1) {
      this.controller.abort(name);
      if (name === 'SIGTERM') {
        this.hooks.warn(`SIGTERM received: stopping after the current unit of work; statements still running in ${TERM_CANCEL_AFTER_MS / 1000}s are cancelled (their unit rolls back, a rerun redoes it), so zsetup exits within ${Math.ceil(STOP_DEADLINE_MS / 1000)}s`);
        this.later(TERM_CANCEL_AFTER_MS, () => this.cancel());
      } else {
        this.hooks.warn(`${name} received: stopping after the current unit of work (press Ctrl-C again to stop at once)`);
      }
      if (name === 'SIGTERM') this.later(STOP_DEADLINE_MS, () => this.forceExit(name));
      return;
    }
    if (this.count === 2) {
      this.hooks.warn(`second ${name}: cancelling the running statements and exiting; a rerun resumes from the last committed checkpoint`);
      this.cancel();
      this.later(STOP_DEADLINE_MS - TERM_CANCEL_AFTER_MS, () => this.forceExit(name));
      return;
    }
    this.forceExit(name);
  }

  private cancel(): void {
    void this.hooks.cancelRunning();
    // A statement may have begun just after the cancel (a worker between two units): once more, later.
    this.later(1_000, () => void this.hooks.cancelRunning());
  }

  private forceExit(name: string): void {
    this.hooks.beforeForcedExit(`interrupted (${name}); rerun to resume`);
    process.exit(EXIT.interrupted);
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(fn, ms);
    // Never the reason the process stays alive.
    t.unref();
    this.timers.push(t);
  }
}
