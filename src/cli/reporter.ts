import { Chalk, type ChalkInstance } from 'chalk';
import ora, { type Ora } from 'ora';
import { describeHolder } from '../db/lock.js';
import type { RunEvent, StepResult } from '../step.js';
import { formatDuration, formatProgress, groupDigits, labelled } from './format.js';

/** How progress is shown: spinners on a terminal, timestamped lines elsewhere. */
export type ReporterMode = 'tty' | 'plain';

/** Options of {@link Reporter}. */
export interface ReporterOptions {
  readonly mode: ReporterMode;
  readonly color: boolean;
  /** Plain mode: minimum time between two progress lines of one step. Default is 10 s. */
  readonly progressIntervalMs?: number;
  readonly stream?: NodeJS.WriteStream;
}

/** Writes the engine's events to stderr: the only place where progress meets the terminal. */
export class Reporter {
  readonly c: ChalkInstance;
  private readonly stream: NodeJS.WriteStream;
  /** One spinner for every running step (steps of a parallel group run side by side), a line each. */
  private spinner: Ora | undefined;
  private readonly running = new Map<string, string>();
  private lastProgressLine = new Map<string, number>();
  /** Plain mode: the phase each step last logged, so a new phase is logged at once. */
  private lastPhase = new Map<string, string>();
  private lastLockLine = 0;

  constructor(private readonly options: ReporterOptions) {
    this.c = new Chalk({ level: options.color ? 1 : 0 });
    this.stream = options.stream ?? process.stderr;
  }

  /** Picks the mode from the stream: a TTY gets spinners, anything else plain lines. NO_COLOR wins. */
  static forStderr(env: NodeJS.ProcessEnv = process.env): Reporter {
    // A pseudo-terminal without a size (e.g. `script` in CI) would make spinners redraw endlessly.
    const tty = Boolean(process.stderr.isTTY) && (process.stderr.columns ?? 0) > 0 && env.CI !== 'true';
    const interval = Number(env.ZSETUP_PROGRESS_INTERVAL_MS);
    return new Reporter({
      mode: tty ? 'tty' : 'plain',
      color: tty && !('NO_COLOR' in env) && env.TERM !== 'dumb',
      progressIntervalMs: Number.isFinite(interval) && interval > 0 ? interval : undefined,
    });
  }

  info(message: string): void {
    this.line(message);
  }

  warn(message: string): void {
    this.line(this.c.yellow(`warning: ${message}`));
  }

  /** Handles one engine event. */
  handle(event: RunEvent): void {
    switch (event.type) {
      case 'log':
        return event.level === 'warn' ? this.warn(stepText(event.stepId, event.message)) : this.line(stepText(event.stepId, event.message));
      case 'lock-wait':
        return this.lockWait(event.holder ? describeHolder(event.holder) : 'a session that just released it', event.waitedMs);
      case 'lock-acquired':
        return this.line(`got the runner lock after ${formatDuration(event.waitedMs)}`);
      case 'step-start': {
        this.lastPhase.delete(event.stepId);
        const what = `${event.stepId}: ${event.title}${event.resuming ? ' (resuming from checkpoint)' : ''}${event.attempt > 1 ? `, attempt ${event.attempt}` : ''}`;
        if (this.options.mode === 'tty') this.showRunning(event.stepId, what);
        else this.line(`start ${what}`);
        return;
      }
      case 'step-progress': {
        const text = labelled(event.stepId, formatProgress(event.progress));
        if (this.options.mode === 'tty') {
          if (this.running.has(event.stepId)) this.showRunning(event.stepId, text);
          return;
        }
        // Every phase change is logged; within a phase, one line per interval.
        const now = Date.now();
        const last = this.lastProgressLine.get(event.stepId) ?? 0;
        const newPhase = this.lastPhase.get(event.stepId) !== event.progress.phase;
        if (newPhase || now - last >= (this.options.progressIntervalMs ?? 10_000)) {
          this.lastProgressLine.set(event.stepId, now);
          this.lastPhase.set(event.stepId, event.progress.phase);
          this.line(text);
        }
        return;
      }
      case 'step-end':
        return this.stepEnd(event.result);
    }
  }

  /**
   * The one line of a finished step. A failure's error is not repeated here: the final report (or the
   * JSON document) carries it in full, with SQLSTATE, detail and hint.
   */
  private stepEnd(r: StepResult): void {
    const took = r.durationMs !== undefined ? ` (${formatDuration(r.durationMs)})` : '';
    const text =
      r.status === 'skipped' ? `${r.id}: already done`
      : r.status === 'succeeded' ? `${groupDigits(labelled(r.id, r.summary?.message ?? 'done'))}${took}`
      : `${r.id}: ${r.status}${took}`;
    if (this.options.mode === 'tty' && this.running.delete(r.id) && this.spinner) {
      const symbol = r.status === 'succeeded' ? this.c.green('✔') : r.status === 'skipped' ? this.c.blue('ℹ') : this.c.red('✖');
      this.line(`${symbol} ${r.status === 'succeeded' || r.status === 'skipped' ? text : this.c.red(text)}`);
      if (this.running.size === 0) this.close();
      else this.renderRunning();
      return;
    }
    const mark = r.status === 'succeeded' ? this.c.green('ok') : r.status === 'skipped' ? 'skip' : this.c.red(r.status === 'interrupted' ? 'stopped' : 'FAILED');
    this.line(`${mark} ${text}`);
  }

  private lockWait(holder: string, waitedMs: number): void {
    const now = Date.now();
    if (now - this.lastLockLine < 5000) return;
    this.lastLockLine = now;
    this.line(`waiting for the runner lock (${formatDuration(waitedMs)} so far), held by ${holder}`);
  }

  /** Sets a running step's line and shows every running step under one spinner. */
  private showRunning(stepId: string, text: string): void {
    this.running.set(stepId, text);
    this.renderRunning();
  }

  private renderRunning(): void {
    const all = [...this.running.values()].join('\n');
    if (this.spinner) this.spinner.text = all;
    // discardStdin off: ora's stdin discarding puts the terminal in raw mode, and its Ctrl-C detection
    // needs a stdin that is read, which ours is not; so Ctrl-C never became SIGINT. The terminal stays
    // in its normal mode and delivers SIGINT itself.
    // ora colours its spinner through its own chalk, which ignores NO_COLOR: switch it off here. The
    // mode was chosen already (forStderr): ora must not decide again (it turns itself off when CI is set at all).
    else this.spinner = ora({ text: all, stream: this.stream, color: this.options.color ? 'cyan' : false, discardStdin: false, isEnabled: true }).start();
  }

  /** Stops any spinner (e.g. before the final report). */
  close(): void {
    this.spinner?.stop();
    this.spinner = undefined;
    this.running.clear();
  }

  private line(text: string): void {
    if (this.options.mode === 'tty') {
      if (this.spinner) {
        // Print above the spinner without breaking it.
        this.spinner.clear();
        this.stream.write(text + '\n');
        this.spinner.render();
      } else this.stream.write(text + '\n');
      return;
    }
    this.stream.write(`${new Date().toISOString()} ${text}\n`);
  }
}

/** A log line of a step, with its id and its counts grouped; other log lines as they are. */
function stepText(stepId: string | undefined, message: string): string {
  return stepId ? groupDigits(labelled(stepId, message)) : message;
}
