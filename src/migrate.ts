import type { Database, Tx } from './db/connection.js';
import { withAdvisoryLock } from './db/lock.js';
import { ConfigError, ConnectionLostError, connectionLostDuring, describeError, InterruptedError, isConnectionLost, type ErrorReport } from './errors.js';
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
 * says which step failed and why, and the steps after it are `not-run`. Reads as nested scopes: a stop
 * signal, the runner lock, the plan of what is due, then the step groups one after another.
 */
export async function migrate(database: Database, options: MigrateOptions): Promise<MigrateResult> {
  const emit: OnEvent = options.onEvent ?? (() => {});
  if (options.only && !options.steps.some((s) => s.id === options.only)) {
    throw new ConfigError(`--only: no step "${options.only}" (steps: ${options.steps.map((s) => s.id).join(', ')})`);
  }
  return withStopSignal(options.signal, (stop) => withAdvisoryLock(database, {
    waitMs: options.lockWaitMs,
    signal: stop.signal,
    onWait: (holder, waitedMs) => emit({ type: 'lock-wait', holder, waitedMs }),
    onLost: (err) => stop.abort(new ConnectionLostError(`lost the runner lock connection (${err.message})`)),
  }, async (lockWaitedMs) => {
    if (lockWaitedMs > 0) emit({ type: 'lock-acquired', waitedMs: lockWaitedMs });
    const run: Run = { database, options, emit, signal: stop.signal, ...(await planRun(database, options)), changed: false, halted: false };
    const results: StepResult[] = [];
    for (const group of stepGroups(options.steps.filter((s) => !options.only || s.id === options.only))) {
      results.push(...(await runGroup(run, group)));
    }
    return { upToDate: results.every((r) => r.status === 'skipped'), lockWaitedMs, steps: results };
  }));
}

/** Runs `fn` with a controller that aborts when `signal` does (or stops the run itself, e.g. a lost lock). */
async function withStopSignal<T>(signal: AbortSignal | undefined, fn: (stop: AbortController) => Promise<T>): Promise<T> {
  const stop = new AbortController();
  const forward = () => stop.abort(signal?.reason ?? 'stop requested');
  if (signal?.aborted) forward();
  signal?.addEventListener('abort', forward, { once: true });
  try {
    return await fn(stop);
  } finally {
    signal?.removeEventListener('abort', forward);
  }
}

/** One migrate run under the lock: what is recorded, what is due, and whether a failure halted it. */
interface Run {
  readonly database: Database;
  readonly options: MigrateOptions;
  readonly emit: OnEvent;
  readonly signal: AbortSignal;
  states: Map<string, StepRow>;
  readonly due: Set<string>;
  /** Step ids the list holds more than once: whether they are due is decided again as their group starts. */
  readonly repeated: ReadonlySet<string>;
  /** A step succeeded in this run: later steps that measure their work left may have some now. */
  changed: boolean;
  halted: boolean;
}

/**
 * Under the lock: reads the steps table (a runner that waited sees what the previous holder finished),
 * decides what is due, and checks privileges before zsetup's own schema is created, so a refusal
 * leaves the database exactly as it was.
 */
async function planRun(database: Database, options: MigrateOptions): Promise<Pick<Run, 'states' | 'due' | 'repeated'>> {
  await refuseWithoutSchemaUsage(database.db);
  const states = await readSteps(database.db);
  const repeated = new Set(options.steps.filter((s, i) => options.steps.findIndex((t) => t.id === s.id) !== i).map((s) => s.id));
  const due = await dueSteps(database, options, states, repeated);
  // A step may become due only later in the run (see refreshDue), so it is checked now as well.
  const firstDue = options.steps.findIndex((s) => due.has(s.id));
  const mayBecomeDue = (s: Step<any>, i: number) => repeated.has(s.id) || (firstDue >= 0 && i > firstDue && s.schedule?.remaining !== undefined);
  const checked = options.steps.filter((s, i) => due.has(s.id) || mayBecomeDue(s, i));
  await preflight(database, firstOccurrences(checked));
  await ensureStepsTable(database.db);
  return { states, due, repeated };
}

/** Each step id once, at its first place (a list may repeat an id: the projections before and after an online cut-over). */
function firstOccurrences(steps: readonly Step<any>[]): Step<any>[] {
  return steps.filter((s, i) => steps.findIndex((t) => t.id === s.id) === i);
}

/**
 * Whether a step is due is decided again as its group starts when the steps before it in this run may
 * have given it work: a step whose id the list repeats (the projections before and after an online
 * cut-over: the catch-up and the cut-over add events), and, once a step succeeded in this run, a step
 * that measures its work left (a projection behind the milestone events just written). Their rows are
 * read again, for what an earlier occurrence recorded.
 */
async function refreshDue(run: Run, group: readonly Step<any>[]): Promise<void> {
  const again = group.filter((s) => run.repeated.has(s.id) || (run.changed && s.schedule?.remaining !== undefined));
  if (again.length === 0 || run.halted) return;
  run.states = await readSteps(run.database.db);
  for (const step of again) {
    if (run.states.get(step.id)?.status !== 'succeeded' || (await isBehind(run.database, step))) run.due.add(step.id);
    else run.due.delete(step.id);
  }
}

/** Consecutive steps of one schedule group form a group; any other step is a group of one. */
function stepGroups(steps: readonly Step<any>[]): Step<any>[][] {
  const groups: Step<any>[][] = [];
  for (const step of steps) {
    const last = groups[groups.length - 1];
    const group = step.schedule?.group;
    if (last && group !== undefined && last[0].schedule?.group === group) last.push(step);
    else groups.push([step]);
  }
  return groups;
}

/**
 * Runs one group: steps not due are skipped (after reconciling their ZITADEL records), the due ones run
 * the most work first on up to `concurrency` workers. Results come back in the group's order.
 */
async function runGroup(run: Run, group: readonly Step<any>[]): Promise<StepResult[]> {
  const outcomes = new Map<string, StepResult>();
  const finish = (result: StepResult) => {
    outcomes.set(result.id, result);
    if (result.status !== 'not-run') run.emit({ type: 'step-end', result });
  };
  await refreshDue(run, group);
  const todo: Step<any>[] = [];
  for (const step of group) {
    if (run.halted) finish(notRun(step));
    else if (!run.due.has(step.id)) finish(await reconciled(run.database, step, run.states.get(step.id)!, run.emit));
    else todo.push(step);
  }
  const queue = group.length > 1 ? await heaviestFirst(run.database, todo) : todo;
  const worker = async () => {
    for (let step = queue.shift(); step; step = queue.shift()) {
      let result: StepResult;
      if (run.halted) result = notRun(step);
      else if (run.signal.aborted) result = stoppedBefore(step, run.signal);
      else result = await runStep(run, step);
      if (result.status === 'failed' || result.status === 'interrupted') run.halted = true;
      if (result.status === 'succeeded') run.changed = true;
      finish(result);
    }
  };
  const workers = group.length > 1 ? Math.max(1, Math.min(run.options.stepOptions.concurrency, queue.length)) : 1;
  await Promise.all(Array.from({ length: workers }, worker));
  return group.map((step) => outcomes.get(step.id)!);
}

/**
 * The ids of the steps this run will run: selected by `--only`, and not succeeded unless they fell behind.
 * Decided once here, so preflight and the run loop agree and `isBehind` is asked once per step; only
 * what refreshDue decides again later is left out or revised.
 */
async function dueSteps(database: Database, options: MigrateOptions, states: Map<string, StepRow>, repeated: ReadonlySet<string>): Promise<Set<string>> {
  const due = new Set<string>();
  for (const step of firstOccurrences(options.steps)) {
    if (options.only && step.id !== options.only) continue;
    // Decided as its group starts (refreshDue), after the steps before it: asking now would only cost
    // (a projection's work left reads the capture queue, long after a --prepare).
    if (repeated.has(step.id)) continue;
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

/** Runs one due step: recorded as running, its context and heartbeat, then its outcome recorded. */
async function runStep(run: Run, step: Step<any>): Promise<StepResult> {
  const row = await startStep(run, step);
  const progress = new ProgressEmitter(step.id, run.emit);
  return withHeartbeat(run, step.id, progress, async () => {
    const started = Date.now();
    try {
      const summary = await step.run(stepContext(run, step, row, progress));
      const durationMs = Date.now() - started;
      await run.database.db.transaction().execute(async (tx) => {
        await recordZitadelSteps(tx, step, run.emit);
        await markFinished(tx, step.id, 'succeeded', { durationMs, summary, progress: progress.meter.current() });
      });
      return { id: step.id, title: step.title, status: 'succeeded', attempt: row.attempts, durationMs, summary };
    } catch (err) {
      const durationMs = Date.now() - started;
      const { status, error } = stepFailure(step, err, run.signal, progress.meter.current()?.phase);
      await markFinished(run.database.db, step.id, status, { durationMs, error }).catch(() => {});
      return { id: step.id, title: step.title, status, attempt: row.attempts, durationMs, error };
    }
  });
}

/**
 * Marks the step running. Holding the lock means no other runner is alive, so a row left 'running'
 * was a crashed run: it simply resumes from its checkpoint, no manual clean-up needed.
 */
async function startStep(run: Run, step: Step<any>): Promise<StepRow> {
  const row = await markRunning(run.database.db, step.id, thisRunner(run.options.version));
  const resuming = row.checkpoint !== null && row.checkpoint !== undefined;
  run.emit({ type: 'step-start', stepId: step.id, title: step.title, attempt: row.attempts, resuming });
  const previous = run.states.get(step.id);
  if (previous?.status === 'running') {
    run.emit({ type: 'log', level: 'warn', stepId: step.id, message: `previous attempt by ${describeRunner(previous)} was interrupted; resuming` });
  }
  return row;
}

/** A step's progress: metered, and emitted throttled (the first and last event of every phase always pass). */
class ProgressEmitter {
  readonly meter = new ProgressMeter();
  lastEmit = 0;
  private lastPhase = '';

  constructor(private readonly stepId: string, private readonly emit: OnEvent) {}

  update(update: Parameters<RunContext['progress']>[0]): void {
    const progress = this.meter.update(update);
    const now = Date.now();
    if (now - this.lastEmit >= 200 || (progress.total !== null && progress.done >= progress.total) || progress.phase !== this.lastPhase) {
      this.lastEmit = now;
      this.lastPhase = progress.phase;
      this.emit({ type: 'step-progress', stepId: this.stepId, progress });
    }
  }
}

/**
 * Writes the heartbeat and live progress while `fn` runs, and re-announces unchanged progress, so a
 * long unit of work (an index build) still gives CI a line at a steady interval.
 */
async function withHeartbeat<T>(run: Run, stepId: string, progress: ProgressEmitter, fn: () => Promise<T>): Promise<T> {
  const heartbeat = setInterval(() => {
    const current = progress.meter.current();
    writeHeartbeat(run.database.db, stepId, current).catch(() => {});
    if (current && Date.now() - progress.lastEmit >= 1000) run.emit({ type: 'step-progress', stepId, progress: current, repeated: true });
  }, run.options.heartbeatMs ?? 1000);
  try {
    return await fn();
  } finally {
    clearInterval(heartbeat);
  }
}

/** What a step's `run` works through. */
function stepContext(run: Run, step: Step<any>, row: StepRow, progress: ProgressEmitter): RunContext<unknown> {
  const { db } = run.database;
  const signal = run.signal;
  return {
    db,
    database: run.database,
    options: run.options.stepOptions,
    checkpoint: row.checkpoint ?? null,
    attempt: row.attempts,
    signal,
    transaction: (fn) => db.transaction().execute(fn),
    saveCheckpoint: (tx, checkpoint) => saveCheckpoint(tx, step.id, checkpoint),
    progress: (update) => progress.update(update),
    log: (message) => run.emit({ type: 'log', level: 'info', stepId: step.id, message }),
    throwIfStopped() {
      if (signal.aborted) throw new InterruptedError(`stopped: ${String(signal.reason)}; a rerun resumes from the last checkpoint`);
    },
  };
}

/** How a step that threw ended: a lost connection and other failures fail it; a requested stop interrupts it. */
function stepFailure(step: Step<any>, err: unknown, signal: AbortSignal, phase: string | undefined): { status: 'failed' | 'interrupted'; error: ErrorReport } {
  const lost = isConnectionLost(err) || isConnectionLost(signal.reason);
  const interrupted = signal.aborted && !lost;
  const error = lost ? describeError(connectionLostDuring(step.id, phase, err))
    : interrupted && !(err instanceof InterruptedError)
    ? describeError(new InterruptedError(`stopped: ${String(signal.reason)} (${describeError(err).message}); a rerun resumes from the last checkpoint`))
    : describeError(err);
  return { status: interrupted ? 'interrupted' : 'failed', error };
}

function describeRunner(row: StepRow): string {
  return row.runner ? `${row.runner.host} pid ${row.runner.pid}` : 'an unknown runner';
}
