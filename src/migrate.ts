import type { Database, Tx } from './db/connection.js';
import { withAdvisoryLock } from './db/lock.js';
import { ConfigError, ConnectionLostError, connectionLostDuring, describeError, InterruptedError, isConnectionLost } from './errors.js';
import { preflight, refuseWithoutSchemaUsage } from './privileges.js';
import { ProgressMeter } from './progress.js';
import { queryableOf } from './db/queryable.js';
import type { OnEvent, RunContext, Step, StepOptions, StepResult } from './step.js';
import { recordMigrations } from './zitadel/migrations.js';
import {
  ensureStepsTable,
  markFinished,
  markRunning,
  readSteps,
  saveCheckpoint,
  thisRunner,
  writeHeartbeat,
  type StepRow,
} from './steps-table.js';

/** Inputs of {@link migrate}. */
export interface MigrateOptions {
  /** The steps in run order (from the provider). */
  readonly steps: readonly Step<any>[];
  /** Run only the step with this id. */
  readonly only?: string;
  readonly lockWaitMs: number;
  readonly stepOptions: StepOptions;
  /** Abort to stop after the current unit of work. */
  readonly signal?: AbortSignal;
  readonly onEvent?: OnEvent;
  /** zsetup's version, recorded with each run. */
  readonly version: string;
  /** How often the heartbeat and live progress are written. Default is 1000 ms. */
  readonly heartbeatMs?: number;
}

/** What a migrate run did. */
export interface MigrateResult {
  /** True when every step had already succeeded: nothing was run. */
  readonly upToDate: boolean;
  /** How long this runner waited for another one's lock. */
  readonly lockWaitedMs: number;
  readonly steps: readonly StepResult[];
}

/**
 * Runs the pending steps in order under the runner lock. Never throws for a step failure: the result
 * says which step failed and why, and the steps after it are `not-run`.
 */
export async function migrate(database: Database, options: MigrateOptions): Promise<MigrateResult> {
  const emit: OnEvent = options.onEvent ?? (() => {});
  if (options.only && !options.steps.some((s) => s.id === options.only)) {
    throw new ConfigError(`--only: no step "${options.only}" (steps: ${options.steps.map((s) => s.id).join(', ')})`);
  }
  const stop = new AbortController();
  const forward = () => stop.abort(options.signal?.reason ?? 'stop requested');
  if (options.signal?.aborted) forward();
  options.signal?.addEventListener('abort', forward, { once: true });
  try {
    return await withAdvisoryLock(database, {
      waitMs: options.lockWaitMs,
      signal: stop.signal,
      onWait: (holder, waitedMs) => emit({ type: 'lock-wait', holder, waitedMs }),
      onLost: (err) => stop.abort(new ConnectionLostError(`lost the runner lock connection (${err.message})`)),
    }, async (lockWaitedMs) => {
      if (lockWaitedMs > 0) emit({ type: 'lock-acquired', waitedMs: lockWaitedMs });
      await refuseWithoutSchemaUsage(database.db);
      // Read after taking the lock: a runner that waited sees what the previous holder finished.
      const states = await readSteps(database.db);
      const due = await dueSteps(database, options, states);
      // Before zsetup's own schema is created: a refusal leaves the database exactly as it was.
      await preflight(database, options.steps.filter((s) => due.has(s.id)));
      await ensureStepsTable(database.db);
      const results: StepResult[] = [];
      let halted = false;
      const selected = options.steps.filter((s) => !options.only || s.id === options.only);
      for (let i = 0; i < selected.length; ) {
        // A run of steps of one parallel group goes together; any other step is a run of one.
        const group = selected[i].schedule?.group;
        let end = i + 1;
        while (group !== undefined && end < selected.length && selected[end].schedule?.group === group) end++;
        const batch = selected.slice(i, end);
        i = end;
        const outcomes = new Map<string, StepResult>();
        const finish = (result: StepResult) => {
          outcomes.set(result.id, result);
          if (result.status !== 'not-run') emit({ type: 'step-end', result });
        };
        const todo: Step<any>[] = [];
        for (const step of batch) {
          if (halted) finish(notRun(step));
          else if (!due.has(step.id)) finish(await reconciled(database, step, states.get(step.id)!, emit));
          else todo.push(step);
        }
        const queue = batch.length > 1 ? await heaviestFirst(database, todo) : todo;
        const worker = async () => {
          for (let step = queue.shift(); step; step = queue.shift()) {
            let result: StepResult;
            if (halted) result = notRun(step);
            else if (stop.signal.aborted) result = stoppedBefore(step, stop.signal);
            else result = await runStep(database, step, states.get(step.id), options, stop.signal, emit);
            if (result.status === 'failed' || result.status === 'interrupted') halted = true;
            finish(result);
          }
        };
        const workers = batch.length > 1 ? Math.max(1, Math.min(options.stepOptions.concurrency, queue.length)) : 1;
        await Promise.all(Array.from({ length: workers }, worker));
        for (const step of batch) results.push(outcomes.get(step.id)!);
      }
      return { upToDate: results.every((r) => r.status === 'skipped'), lockWaitedMs, steps: results };
    });
  } finally {
    options.signal?.removeEventListener('abort', forward);
  }
}

/**
 * The ids of the steps this run will run: selected by `--only`, and not succeeded unless they fell behind.
 * Decided once, so preflight and the run loop agree and `isBehind` is asked once per step.
 */
async function dueSteps(database: Database, options: MigrateOptions, states: Map<string, StepRow>): Promise<Set<string>> {
  const due = new Set<string>();
  for (const step of options.steps) {
    if (options.only && step.id !== options.only) continue;
    if (states.get(step.id)?.status !== 'succeeded' || (await isBehind(database, step))) due.add(step.id);
  }
  return due;
}

/** The due steps of a parallel group, heaviest first (steps without a weight keep their order, last). */
async function heaviestFirst(database: Database, steps: readonly Step<any>[]): Promise<Step<any>[]> {
  const weigh = (step: Step<any>) => (step.schedule?.remaining ? remainingWork(database, step) : Promise.resolve(-1));
  // The first alone, the others side by side: a weight may look at other sessions' open transactions
  // (the projections capture their shared end point there), which must not be the runner's own.
  const first = steps.length ? [await weigh(steps[0])] : [];
  const weights = [...first, ...(await Promise.all(steps.slice(1).map(weigh)))];
  const order = steps.map((step, i) => ({ step, weight: weights[i] }));
  return order.sort((a, b) => b.weight - a.weight).map((x) => x.step);
}

/** A stop requested after one step ended and before the next began: that next step is reported as interrupted. */
function stoppedBefore(step: Step<any>, signal: AbortSignal): StepResult {
  const error = describeError(new InterruptedError(`stopped (${String(signal.reason)}) before this step started; a rerun runs it`));
  return { id: step.id, title: step.title, status: 'interrupted', error };
}

/** Whether a succeeded step has work left, so it runs again (see StepSchedule.remaining). */
export async function isBehind(database: Database, step: Step<any>): Promise<boolean> {
  return step.schedule?.remaining !== undefined && (await remainingWork(database, step)) > 0;
}

function remainingWork(database: Database, step: Step<any>): Promise<number> {
  return database.db.transaction().setAccessMode('read only').execute((tx) => step.schedule!.remaining!(tx));
}

/** A step after a failed or interrupted one: not started. */
function notRun(step: Step<any>): StepResult {
  return { id: step.id, title: step.title, status: 'not-run' };
}

/**
 * Records the ZITADEL steps a succeeded step covers, in `tx` (see Step.zitadelSteps); logs what it
 * recorded.
 */
async function recordZitadelSteps(tx: Tx, step: Step<any>, emit: OnEvent): Promise<void> {
  if (!step.zitadelSteps) return;
  const db = queryableOf(tx);
  const names = await recordMigrations(db, await step.zitadelSteps(db));
  if (names.length) emit({ type: 'log', level: 'info', stepId: step.id, message: `recorded ZITADEL setup step(s) ${names.join(', ')} as done` });
}

/**
 * A succeeded step that is not due: skipped, after recording any ZITADEL step it covers that is not
 * recorded yet (a crash between its success and the record, or a database an older zsetup migrated).
 */
async function reconciled(database: Database, step: Step<any>, state: StepRow, emit: OnEvent): Promise<StepResult> {
  if (step.zitadelSteps) await database.db.transaction().execute((tx) => recordZitadelSteps(tx, step, emit));
  return skipped(step, state);
}

function skipped(step: Step<any>, state: StepRow): StepResult {
  return { id: step.id, title: step.title, status: 'skipped', attempt: state.attempts, summary: state.summary as StepResult['summary'] };
}

async function runStep(
  database: Database,
  step: Step<any>,
  previous: StepRow | undefined,
  options: MigrateOptions,
  signal: AbortSignal,
  emit: OnEvent,
): Promise<StepResult> {
  const { db } = database;
  // Holding the lock means no other runner is alive, so a row left 'running' was a crashed run:
  // it simply resumes from its checkpoint, no manual clean-up needed.
  const row = await markRunning(db, step.id, thisRunner(options.version));
  const resuming = row.checkpoint !== null && row.checkpoint !== undefined;
  emit({ type: 'step-start', stepId: step.id, title: step.title, attempt: row.attempts, resuming });
  if (previous?.status === 'running') {
    emit({ type: 'log', level: 'warn', stepId: step.id, message: `previous attempt by ${describeRunner(previous)} was interrupted; resuming` });
  }
  const meter = new ProgressMeter();
  let lastEmit = 0;
  let lastPhase = '';
  const heartbeat = setInterval(() => {
    const progress = meter.current();
    writeHeartbeat(db, step.id, progress).catch(() => {});
    // Re-announce the current progress, so a long unit (an index build) still gives CI a line at a
    // steady interval; the reporter decides how often to print.
    if (progress && Date.now() - lastEmit >= 1000) emit({ type: 'step-progress', stepId: step.id, progress, repeated: true });
  }, options.heartbeatMs ?? 1000);
  const ctx: RunContext<unknown> = {
    db,
    database,
    options: options.stepOptions,
    checkpoint: row.checkpoint ?? null,
    attempt: row.attempts,
    signal,
    transaction: (fn) => db.transaction().execute(fn),
    saveCheckpoint: (tx, checkpoint) => saveCheckpoint(tx, step.id, checkpoint),
    progress(update) {
      const progress = meter.update(update);
      const now = Date.now();
      // Throttled, but the first and last event of every phase always pass, so watchers see each phase.
      if (now - lastEmit >= 200 || (progress.total !== null && progress.done >= progress.total) || progress.phase !== lastPhase) {
        lastEmit = now;
        lastPhase = progress.phase;
        emit({ type: 'step-progress', stepId: step.id, progress });
      }
    },
    log: (message) => emit({ type: 'log', level: 'info', stepId: step.id, message }),
    throwIfStopped() {
      if (signal.aborted) throw new InterruptedError(`stopped: ${String(signal.reason)}; a rerun resumes from the last checkpoint`);
    },
  };
  const started = Date.now();
  try {
    const summary = await step.run(ctx);
    const durationMs = Date.now() - started;
    await db.transaction().execute(async (tx) => {
      await recordZitadelSteps(tx, step, emit);
      await markFinished(tx, step.id, 'succeeded', { durationMs, summary, progress: meter.current() });
    });
    return { id: step.id, title: step.title, status: 'succeeded', attempt: row.attempts, durationMs, summary };
  } catch (err) {
    const durationMs = Date.now() - started;
    const lost = isConnectionLost(err) || isConnectionLost(signal.reason);
    const interrupted = signal.aborted && !lost;
    const error = lost ? describeError(connectionLostDuring(step.id, meter.current()?.phase, err))
      : interrupted && !(err instanceof InterruptedError)
      ? describeError(new InterruptedError(`stopped: ${String(signal.reason)} (${describeError(err).message}); a rerun resumes from the last checkpoint`))
      : describeError(err);
    const status = interrupted ? 'interrupted' : 'failed';
    await markFinished(db, step.id, status, { durationMs, error }).catch(() => {});
    return { id: step.id, title: step.title, status, attempt: row.attempts, durationMs, error };
  } finally {
    clearInterval(heartbeat);
  }
}

function describeRunner(row: StepRow): string {
  return row.runner ? `${row.runner.host} pid ${row.runner.pid}` : 'an unknown runner';
}
