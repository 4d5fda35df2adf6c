import { sql } from 'kysely';
import type { Tx } from '../db/connection.js';
import type { RunContext } from '../step.js';
import type { CopyGate } from './copy.js';
import type { Events2Checkpoint } from './situation.js';

/**
 * The online copy's throttle. The bulk copy competes with the old version's writers for the CPUs and
 * for WAL flushes; the throttle watches how a writer fares and holds the copy back while it suffers.
 *
 * The signal is a probe: every {@link ThrottleSettings.probeEveryMs} one tiny write transaction on
 * {@link PROBE_TABLE} with `synchronous_commit = on` (as the old version commits), timed end to end,
 * against its median measured just before the copy. The copy then runs at one of a ladder of levels,
 * from every connection without pause, through fewer connections, to one connection that pauses
 * `nice` times as long as its last chunk took after each chunk (gh-ost's nice ratio). The top of the
 * ladder is the floor of progress: the copy never stops, so a server that is busy anyway still finishes.
 * A time budget bounds it further: the copy takes at most about {@link ThrottleSettings.maxSlowdown}
 * times its full-speed time, however slow the probe stays.
 */

/** A table of zsetup's own that the probe writes (one row); created with the capture, dropped with it. */
export const PROBE_TABLE = 'zsetup.events2_probe';

/** The probe table's DDL (IF NOT EXISTS: a move started before the throttle existed gets it on resume). */
export function probeTableDdl(): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${PROBE_TABLE} (id integer PRIMARY KEY, n bigint NOT NULL)`,
    `INSERT INTO ${PROBE_TABLE} (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`,
  ];
}

/** Drops the probe table. */
export async function dropProbeTable(tx: Tx): Promise<void> {
  await sql.raw(`DROP TABLE IF EXISTS ${PROBE_TABLE}`).execute(tx);
}

/** `--throttle`: `auto` watches the old writers, `off` copies at full speed. */
export type ThrottleMode = 'auto' | 'off';

/** How the throttle decides. */
export interface ThrottleSettings {
  /** Back off while the probe (median of the last three) takes longer than this multiple of its baseline. */
  readonly slowRatio: number;
  /** Speed up again once it has stayed below this multiple for {@link recoverAfterMs}. */
  readonly fastRatio: number;
  /** Added to both thresholds, so that the noise of a sub-millisecond baseline does not count as slow. */
  readonly slackMs: number;
  /** At most one step back per this interval: the chunks in flight need time to show the effect. */
  readonly backOffEveryMs: number;
  /** The probe must stay fast this long before each step forward. */
  readonly recoverAfterMs: number;
  /** Probe period. */
  readonly probeEveryMs: number;
  /** Probes taken before the copy for the baseline (their median). */
  readonly baselineProbes: number;
  /** The pause ratios of the one-connection levels; the last is the floor of progress. */
  readonly niceRatios: readonly number[];
  /**
   * The time budget: the copy takes at most about this multiple of its full-speed time. Once the
   * throttle has held back that much (plus {@link budgetGraceMs}), it may hold back only as much as keeps
   * the whole copy within it, so a server that is slow for other reasons does not stretch the move.
   */
  readonly maxSlowdown: number;
  /** Full-rate time the throttle may hold back before the budget counts. */
  readonly budgetGraceMs: number;
}

/** The defaults: the issue's target is the old writers' p99 at most 2× its baseline during the copy. */
export const DEFAULT_THROTTLE: ThrottleSettings = {
  slowRatio: 1.5,
  fastRatio: 1.2,
  slackMs: 1,
  backOffEveryMs: 400,
  recoverAfterMs: 1000,
  probeEveryMs: 150,
  baselineProbes: 9,
  niceRatios: [0.5, 1, 2, 4],
  maxSlowdown: 1.5,
  budgetGraceMs: 2000,
};

/** One rung of the ladder: how many connections copy, and the pause after each chunk (× its duration). */
export interface ThrottleLevel {
  readonly workers: number;
  readonly nice: number;
}

/** The ladder for `concurrency` connections: all of them, one fewer each rung down to one, then the pause ratios. */
export function throttleLevels(concurrency: number, settings: ThrottleSettings = DEFAULT_THROTTLE): ThrottleLevel[] {
  const levels: ThrottleLevel[] = [];
  for (let w = Math.max(1, concurrency); w >= 1; w--) levels.push({ workers: w, nice: 0 });
  for (const nice of settings.niceRatios) levels.push({ workers: 1, nice });
  return levels;
}

/** Share of the full copy rate a level holds back, 0–1 (workers over concurrency, then the pause). */
export function heldBack(level: ThrottleLevel, concurrency: number): number {
  return 1 - level.workers / Math.max(1, concurrency) / (1 + level.nice);
}

/**
 * The deepest rung the time budget allows, pure: the whole ladder while the full-rate time held back
 * (`lostMs`) is within (maxSlowdown − 1) × the full-rate time copied (`effectiveMs`) plus the grace;
 * beyond it only the rungs that hold back at most 1 − 1/maxSlowdown, so the copy's average pace
 * returns to the budget.
 */
export function budgetCap(levels: readonly ThrottleLevel[], concurrency: number, lostMs: number, effectiveMs: number, settings: ThrottleSettings = DEFAULT_THROTTLE): number {
  if (lostMs < (settings.maxSlowdown - 1) * effectiveMs + settings.budgetGraceMs) return levels.length - 1;
  let cap = 0;
  levels.forEach((level, i) => { if (heldBack(level, concurrency) <= 1 - 1 / settings.maxSlowdown) cap = i; });
  return cap;
}

/** The throttle's decision state. */
export interface ThrottleState {
  /** Index into the ladder; 0 is full speed. */
  readonly level: number;
  /** The last probe latencies, newest last (at most three). */
  readonly recent: readonly number[];
  /** When the level last changed (ms). */
  readonly changedAt: number;
  /** Since when the probe has been fast, or null. */
  readonly fastSince: number | null;
}

/** The state before the first probe of the copy. */
export function initialThrottle(at: number): ThrottleState {
  return { level: 0, recent: [], changedAt: at, fastSince: null };
}

/**
 * One decision, pure: the state after a probe that took `ms` at time `at`, with the probe's
 * `baselineMs` and a ladder of `maxLevel + 1` rungs. Backs off one rung at a time while slow (at most
 * every backOffEveryMs), steps forward one rung once fast for recoverAfterMs, never past either end.
 */
export function nextThrottle(state: ThrottleState, ms: number, at: number, baselineMs: number, maxLevel: number, settings: ThrottleSettings = DEFAULT_THROTTLE): ThrottleState {
  const recent = [...state.recent, ms].slice(-3);
  const signal = median(recent);
  const slow = signal > baselineMs * settings.slowRatio + settings.slackMs;
  const fast = signal <= baselineMs * settings.fastRatio + settings.slackMs;
  if (slow) {
    if (state.level < maxLevel && at - state.changedAt >= settings.backOffEveryMs) {
      return { level: state.level + 1, recent, changedAt: at, fastSince: null };
    }
    return { ...state, recent, fastSince: null };
  }
  if (!fast) return { ...state, recent, fastSince: null };
  const fastSince = state.fastSince ?? at;
  if (state.level > 0 && at - fastSince >= settings.recoverAfterMs && at - state.changedAt >= settings.recoverAfterMs) {
    return { level: state.level - 1, recent, changedAt: at, fastSince: at };
  }
  return { ...state, recent, fastSince };
}

/** The median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** What the throttle did, for the step summary. */
export interface ThrottleReport {
  /** The probe's median before the copy. */
  readonly probeBaselineMs: number;
  /** The probe's median and 99th percentile during the copy. */
  readonly probeP50Ms: number;
  readonly probeP99Ms: number;
  readonly probes: number;
  /** Wall time in which the throttle held back at least one connection. */
  readonly throttledMs: number;
  /** Wall time in which no chunk was copying because of the throttle. */
  readonly pausedMs: number;
  /** The most it held back, in percent of the full copy rate. */
  readonly maxHeldBackPercent: number;
}

const TICK_MS = 50;

/**
 * The live throttle of one copy: a probe loop on its own pooled connection, and the gate the copy's
 * workers pass before each chunk. Create it with {@link CopyThrottle.start}; {@link stop} ends the probe.
 */
export class CopyThrottle implements CopyGate {
  private state: ThrottleState;
  private readonly levels: ThrottleLevel[];
  private readonly samples: number[] = [];
  private readonly lastChunk = new Map<number, { end: number; ms: number }>();
  private stopped = false;
  private probeLoop: Promise<void> | undefined;
  private failure: unknown;
  private listener: (note: string | undefined) => void = () => {};
  private waiting = 0;
  private live: number;
  private accountedAt = Date.now();
  private throttledMs = 0;
  private pausedMs = 0;
  /** Full-rate time held back and full-rate time copied (the budget's two sides). */
  private lostMs = 0;
  private effectiveMs = 0;
  private maxHeldBack = 0;

  private constructor(
    private readonly ctx: RunContext<Events2Checkpoint>,
    private readonly concurrency: number,
    private readonly baselineMs: number,
    private readonly settings: ThrottleSettings,
  ) {
    this.levels = throttleLevels(concurrency, settings);
    this.state = initialThrottle(Date.now());
    this.live = concurrency;
  }

  /** Measures the probe's baseline (before any chunk runs); the probing starts with the first {@link admit}. */
  static async start(ctx: RunContext<Events2Checkpoint>, concurrency: number, settings: ThrottleSettings = DEFAULT_THROTTLE): Promise<CopyThrottle> {
    await ctx.transaction(async (tx) => { for (const ddl of probeTableDdl()) await sql.raw(ddl).execute(tx); });
    const base: number[] = [];
    for (let i = 0; i < settings.baselineProbes; i++) {
      base.push(await probe(ctx));
      await sleep(TICK_MS);
    }
    return new CopyThrottle(ctx, Math.max(1, concurrency), median(base), settings);
  }

  /** The current level as a progress note (`throttled 40%`), or undefined at full speed. */
  note(): string | undefined {
    const held = heldBack(this.levels[this.state.level], this.concurrency);
    return held > 0 ? `throttled ${Math.round(held * 100)}%` : undefined;
  }

  /**
   * Waits until worker `worker` (0-based) may copy its next chunk: while its connection is not in the
   * current level, or while its pause after the last chunk (nice × that chunk's time) runs. Worker 0
   * is in every level, so the copy always moves. Returns early when the run is stopped or `more` says
   * no chunk is left.
   */
  async admit(worker: number, more: () => boolean): Promise<void> {
    this.probeLoop ??= this.runProbes();
    this.account();
    this.waiting++;
    try {
      while (!this.ctx.signal.aborted && more()) {
        if (this.failure !== undefined) throw this.failure;
        const level = this.levels[this.state.level];
        const last = this.lastChunk.get(worker);
        const pauseLeft = last ? last.end + level.nice * last.ms - Date.now() : 0;
        if (worker < level.workers && pauseLeft <= 0) return;
        await sleep(Math.max(1, Math.min(TICK_MS, worker < level.workers ? pauseLeft : TICK_MS)));
        this.account();
      }
    } finally {
      this.account();
      this.waiting--;
    }
  }

  /** Calls `listener` with the new note whenever the level changes. */
  watch(listener: (note: string | undefined) => void): void {
    this.listener = listener;
  }

  /** Worker `worker` copied a chunk in `ms`. */
  chunkDone(worker: number, ms: number): void {
    this.lastChunk.set(worker, { end: Date.now(), ms });
  }

  /** Worker `worker` has no chunk left (it no longer counts towards a pause of the whole copy). */
  workerDone(): void {
    this.account();
    this.live--;
  }

  /** Ends the probe loop and reports. */
  async stop(): Promise<ThrottleReport> {
    this.account();
    this.stopped = true;
    await this.probeLoop;
    const s = [...this.samples].sort((a, b) => a - b);
    const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : 0);
    return {
      probeBaselineMs: round1(this.baselineMs),
      probeP50Ms: round1(at(0.5)),
      probeP99Ms: round1(at(0.99)),
      probes: s.length,
      throttledMs: Math.round(this.throttledMs),
      pausedMs: Math.round(this.pausedMs),
      maxHeldBackPercent: Math.round(this.maxHeldBack * 100),
    };
  }

  private async runProbes(): Promise<void> {
    while (!this.stopped && !this.ctx.signal.aborted) {
      const started = Date.now();
      try {
        const ms = await probe(this.ctx);
        this.samples.push(ms);
        this.decide(ms);
      } catch (err) {
        // The copy's workers fail on the next admit: a probe that cannot commit means the copy cannot either.
        this.failure = err;
        return;
      }
      await sleep(Math.max(TICK_MS, this.settings.probeEveryMs - (Date.now() - started)));
    }
  }

  private decide(ms: number): void {
    const before = this.state.level;
    this.account();
    const cap = budgetCap(this.levels, this.concurrency, this.lostMs, this.effectiveMs, this.settings);
    const now = Date.now();
    if (this.state.level > cap) this.state = { ...this.state, level: cap, changedAt: now, fastSince: null };
    this.state = nextThrottle(this.state, ms, now, this.baselineMs, cap, this.settings);
    if (this.state.level === before) return;
    this.maxHeldBack = Math.max(this.maxHeldBack, heldBack(this.levels[this.state.level], this.concurrency));
    this.listener(this.note());
  }

  /** Adds the time since the last call to the throttled / paused totals, by the state that held meanwhile. */
  private account(): void {
    const now = Date.now();
    const dt = now - this.accountedAt;
    this.accountedAt = now;
    if (this.stopped) return;
    const held = heldBack(this.levels[this.state.level], this.concurrency);
    this.lostMs += dt * held;
    this.effectiveMs += dt * (1 - held);
    if (this.state.level > 0) this.throttledMs += dt;
    if (this.waiting > 0 && this.waiting >= this.live) this.pausedMs += dt;
  }
}

/** One probe: a one-row write transaction committed synchronously, timed end to end (ms). */
async function probe(ctx: RunContext<Events2Checkpoint>): Promise<number> {
  const started = performance.now();
  await ctx.transaction(async (tx) => {
    await sql`SET LOCAL synchronous_commit = on`.execute(tx);
    await sql.raw(`UPDATE ${PROBE_TABLE} SET n = n + 1 WHERE id = 1`).execute(tx);
  });
  return performance.now() - started;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
