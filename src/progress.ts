import type { ProgressUpdate } from './step.js';
import type { Progress } from './steps-table.js';

/**
 * How long a phase must have been measured before a rate (and so an ETA) is given: a rate taken over
 * the first half second of a copy once promised `ETA 60h14m`.
 */
export const MIN_MEASURED_MS = 2_000;

/**
 * Turns a step's raw counts into progress with a rate and an ETA. The rate is measured over a sliding
 * window of recent samples, so a resumed run or a slow start does not distort it. Restarts per phase;
 * no rate nor ETA until the window spans {@link MIN_MEASURED_MS} and the count has moved in it.
 */
export class ProgressMeter {
  private samples: { t: number; done: number }[] = [];
  private phase = '';
  private latest: Progress | null = null;

  constructor(
    private readonly windowMs = 15_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records an update and returns the progress to report. */
  update(raw: ProgressUpdate): Progress {
    // Counts may arrive as strings (PostgreSQL NUMERIC/BIGINT); compare and compute on numbers.
    const u = { ...raw, done: Number(raw.done), total: raw.total === undefined || raw.total === null ? null : Number(raw.total) };
    const t = this.now();
    if (u.phase !== this.phase) {
      this.phase = u.phase;
      this.samples = [];
    }
    this.samples.push({ t, done: u.done });
    while (this.samples.length > 2 && t - this.samples[0].t > this.windowMs) this.samples.shift();
    const first = this.samples[0];
    const dt = (t - first.t) / 1000;
    const rate = dt * 1000 >= MIN_MEASURED_MS && u.done > first.done ? (u.done - first.done) / dt : null;
    const total = u.total ?? null;
    const etaSeconds = rate && rate > 0 && total !== null ? Math.max(0, (total - u.done) / rate) : null;
    this.latest = { phase: u.phase, done: u.done, total, unit: u.unit ?? 'units', rate, etaSeconds, ...(u.note ? { note: u.note } : {}) };
    return this.latest;
  }

  /** The last progress reported, if any. */
  current(): Progress | null {
    return this.latest;
  }
}
