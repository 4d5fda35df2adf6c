import { ConfigError } from '../errors.js';
import { LEGACY_SETUP_STEPS, SETUP_EVENTS } from './scenes.js';

/** One instance of the seeded database: its id, event budget and time span. */
export interface InstancePlan {
  readonly inst: number;
  readonly instanceId: string;
  /** Base of every id generated inside the instance (ids are `base + 16 * scene + role`). */
  readonly base: string;
  readonly name: string;
  /** All events of the instance, its creation push included. */
  readonly budget: number;
  /** Events after the creation push, the final `instance.removed` excluded. */
  readonly activity: number;
  readonly removed: boolean;
  /** Creation time, as an exact UTC timestamp with microseconds. */
  readonly start: string;
  /** Microseconds from creation to the instance's last event. */
  readonly spanUs: number;
}

/** One `system.migration.*` event of the older setup runs (instance_id ''). */
export interface SystemEventPlan {
  readonly eventType: 'system.migration.started' | 'system.migration.done';
  readonly step: string;
  readonly at: string;
}

/** Everything decided before the database generates rows. */
export interface SeedPlan {
  readonly instances: readonly InstancePlan[];
  readonly systemEvents: readonly SystemEventPlan[];
}

const DAY_US = 86_400_000_000;
/** First setup run of the seeded installation. */
const FIRST_SETUP_US = Date.UTC(2021, 0, 4, 9, 12, 33) * 1000 + 123_457;
/** Last moment of the legacy era (before the events2 move, v2.39, Oct 2023). */
const LEGACY_END_US = Date.UTC(2023, 8, 28, 17, 41, 5) * 1000 + 654_321;
/** Upgrade runs of the setup steps 04…11, in days after the first setup. */
const UPGRADE_DAYS = [151, 273, 364, 455, 548, 637, 728, 902];

/** The fewest events a seed of `instances` instances can have. */
export function minimumEvents(instances: number): number {
  return LEGACY_SETUP_STEPS.length * 2 + instances * SETUP_EVENTS + (instances >= 3 ? 1 : 0);
}

/**
 * Splits `events` over `instances` (one large main instance, the others of varying size), places them
 * in time and, with three instances or more, marks the last one as removed. Deterministic in `seed`.
 */
export function planSeed(events: number, instances: number, seed: number): SeedPlan {
  if (!Number.isSafeInteger(instances) || instances < 1) throw new ConfigError(`--instances must be a positive integer, got ${instances}`);
  if (!Number.isSafeInteger(events) || events < minimumEvents(instances)) {
    throw new ConfigError(
      `--events ${events} is too small for ${instances} instance(s): each instance's creation takes ${SETUP_EVENTS} events ` +
        `and the older setup runs ${LEGACY_SETUP_STEPS.length * 2}, so at least ${minimumEvents(instances)} are needed`,
    );
  }
  const random = mulberry32(seed);
  const removedCount = instances >= 3 ? 1 : 0;
  const activity = events - minimumEvents(instances);
  const weights = Array.from({ length: instances }, (_, i) => (i === 0 ? 3 : 0.3 + random()));
  const shares = splitExactly(activity, weights);
  const plans: InstancePlan[] = [];
  for (let i = 0; i < instances; i++) {
    const startUs = i === 0 ? FIRST_SETUP_US + 600_000_000 + 1_234 : FIRST_SETUP_US + Math.floor(random() * 700 * DAY_US);
    const removed = removedCount > 0 && i === instances - 1;
    const endUs = removed ? startUs + Math.floor((LEGACY_END_US - startUs) * 0.6) : LEGACY_END_US - Math.floor(random() * DAY_US);
    const baseNumber = 160_000_000_000_000_000n + BigInt(i) * 10_000_000_000_000n + BigInt(Math.floor(random() * 1e11)) * 16n;
    plans.push({
      inst: i,
      instanceId: baseNumber.toString(),
      base: baseNumber.toString(),
      name: i === 0 ? 'ZITADEL' : `${COMPANIES[i % COMPANIES.length]} ${i}`,
      budget: SETUP_EVENTS + shares[i] + (removed ? 1 : 0),
      activity: shares[i],
      removed,
      start: isoMicros(startUs),
      spanUs: endUs - startUs,
    });
  }
  return { instances: plans, systemEvents: systemEvents(parseMicros(plans[0].start)) };
}

/** started/done pairs: 01–03 around the first instance's creation, the others at later upgrades. */
function systemEvents(firstStartUs: number): SystemEventPlan[] {
  const out: SystemEventPlan[] = [];
  LEGACY_SETUP_STEPS.forEach((step, i) => {
    let startedUs: number;
    let doneUs: number;
    if (i < 3) {
      startedUs = FIRST_SETUP_US + i * 97_531_246;
      doneUs = i === 2 ? firstStartUs + 2_345_678 : startedUs + 1_234_567 + i * 311;
    } else {
      startedUs = FIRST_SETUP_US + UPGRADE_DAYS[i - 3] * DAY_US + 37_000_000 * i + 4_321;
      doneUs = startedUs + (i >= 9 ? 187_654_321 : 2_468_013);
    }
    out.push({ eventType: 'system.migration.started', step, at: isoMicros(startedUs) });
    out.push({ eventType: 'system.migration.done', step, at: isoMicros(doneUs) });
  });
  return out;
}

/** Splits `total` into integer parts proportional to `weights`, summing exactly to `total`. */
export function splitExactly(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const parts = weights.map((w) => Math.floor((total * w) / sum));
  let rest = total - parts.reduce((a, b) => a + b, 0);
  for (let i = 0; rest > 0; i = (i + 1) % parts.length, rest--) parts[i]++;
  return parts;
}

/** Microseconds since the epoch → `2021-01-04T09:12:33.123457Z`. */
export function isoMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  const micro = us - ms * 1000;
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, (_, m: string) => `.${m}${String(micro).padStart(3, '0')}Z`);
}

function parseMicros(iso: string): number {
  const m = /^(.*)\.(\d{6})Z$/.exec(iso);
  if (!m) throw new Error(`not a microsecond timestamp: ${iso}`);
  return Date.parse(`${m[1]}Z`) * 1000 + Number(m[2]);
}

/** Small deterministic PRNG (mulberry32) for the instance-level choices. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COMPANIES = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark', 'Wayne', 'Wonka', 'Tyrell', 'Cyberdyne', 'Soylent', 'Vandelay'];
