import { isPrepareOnly, summarizePlan, type PlanResult, type PlanSummary, type StepPlanReport } from '../plan.js';
import type { Step } from '../step.js';
import { formatBytes, formatCount, formatDuration, groupDigits } from './format.js';
import { renderError } from './render.js';

/** What the plan reports say besides the plan itself. */
export interface PlanReportContext {
  /** The database, password masked. */
  readonly database?: string;
  /** Parallel connections (`--concurrency`): how many steps of a parallel group run at once. Default is 2. */
  readonly concurrency?: number;
  /** The steps planned, for their parallel groups. */
  readonly steps?: readonly Step<any>[];
  /** When the plan was made. Default is now. */
  readonly now?: Date;
}

/** The human dry-run report: a summary (time, downtime, disk), then every step with its figures in units. */
export function renderPlanText(r: PlanResult, context: PlanReportContext = {}): string {
  if (r.steps.length === 0) return 'no steps';
  const summary = summarize(r, context);
  const out = ['dry-run: nothing was written', '', 'summary'];
  for (const [label, text] of summaryRows(r, summary, context)) out.push(`  ${`${label}:`.padEnd(16)} ${text}`);
  for (const s of r.steps) {
    out.push('');
    if (s.state === 'succeeded' && !s.plan) {
      out.push(`${s.id}: already done`);
      continue;
    }
    if (s.error) {
      out.push(`${s.id}: cannot plan`, ...renderError(s.error, s.id).map((l) => '  ' + l));
      continue;
    }
    const p = s.plan!;
    out.push(`${s.id}: ${groupDigits(p.action)}${resumeNote(s)}`);
    const rows = detailRows(p.details);
    if (p.estimatedSeconds !== undefined && p.willChange) rows.push(['estimated time', formatDuration(p.estimatedSeconds * 1000)]);
    const width = Math.max(0, ...rows.map(([k]) => k.length)) + 1;
    for (const [k, v] of rows) out.push(`  ${`${k}:`.padEnd(width)} ${v}`);
    for (const n of p.notes ?? []) out.push(`  note: ${groupDigits(n)}`);
  }
  return out.join('\n');
}

/** The same plan as a Markdown document, to paste into a change review. */
export function renderPlanMarkdown(r: PlanResult, context: PlanReportContext = {}): string {
  const summary = summarize(r, context);
  const now = (context.now ?? new Date()).toISOString().replace(/:\d\d\.\d+Z$/, ' UTC').replace('T', ' ');
  const out = ['# zsetup upgrade plan', '', `Dry-run of \`zsetup migrate\` made ${now}; nothing was written.`, '', '| | |', '|---|---|'];
  if (context.database) out.push(`| database | \`${cell(context.database)}\` |`);
  for (const [label, text] of summaryRows(r, summary, context)) out.push(`| ${label} | ${cell(text)} |`);
  out.push('', '## Steps', '', '| # | step | state | what it would do | estimated time |', '|---|---|---|---|---|');
  r.steps.forEach((s, i) => {
    const what = s.error ? `cannot plan: ${s.error.message}` : s.plan ? groupDigits(s.plan.action) + resumeNote(s) : 'already done';
    const time = s.plan?.willChange && s.plan.estimatedSeconds !== undefined ? formatDuration(s.plan.estimatedSeconds * 1000) : '—';
    out.push(`| ${i + 1} | \`${s.id}\` | ${s.state} | ${cell(what)} | ${time} |`);
  });
  for (const s of r.steps) {
    if (!s.plan && !s.error) continue;
    out.push('', `## ${s.id}`, '');
    if (s.error) {
      out.push(...renderError(s.error, s.id).map((l) => `> ${l}`));
      continue;
    }
    out.push(groupDigits(s.plan!.action) + resumeNote(s));
    const rows = detailRows(s.plan!.details);
    if (rows.length) out.push('', '| figure | value |', '|---|---|', ...rows.map(([k, v]) => `| ${cell(k)} | ${cell(v)} |`));
    const notes = s.plan!.notes ?? [];
    if (notes.length) out.push('', ...notes.map((n) => `- ${cell(groupDigits(n))}`));
  }
  return out.join('\n') + '\n';
}

function summarize(r: PlanResult, context: PlanReportContext): PlanSummary {
  const groups = new Map((context.steps ?? []).map((s) => [s.id, s.schedule?.group]));
  return summarizePlan(r, { concurrency: context.concurrency ?? 2, groupOf: (id) => groups.get(id) });
}

/** The summary lines: estimated time with its parts, downtime, disk. */
function summaryRows(r: PlanResult, s: PlanSummary, context: PlanReportContext): [string, string][] {
  const rows: [string, string][] = [['estimated time', describeTime(r, s, context)], ['downtime', describeDowntime(r, s)], ['disk needed', describeDisk(r, s)]];
  const failed = r.steps.filter((x) => x.error).map((x) => x.id);
  if (failed.length) rows.push(['cannot plan', `${failed.join(', ')} (see below); their time is not in the estimate`]);
  return rows;
}

function describeTime(r: PlanResult, s: PlanSummary, context: PlanReportContext): string {
  if (s.estimatedSeconds === 0 && !r.steps.some((x) => x.plan?.willChange)) return 'none: nothing to do';
  const groups = new Map((context.steps ?? []).map((x) => [x.id, x.schedule?.group]));
  const parts: string[] = [];
  const grouped = new Map<string, { n: number; seconds: number }>();
  for (const t of s.times) {
    const step = r.steps.find((x) => x.id === t.id);
    if (!step?.plan?.willChange) continue;
    const group = groups.get(t.id);
    if (!group) {
      parts.push(`${t.id} ${s.unestimated.includes(t.id) ? '(no estimate)' : formatDuration(t.seconds * 1000)}`);
      continue;
    }
    const g = grouped.get(group) ?? { n: 0, seconds: 0 };
    grouped.set(group, { n: g.n + 1, seconds: g.seconds + t.seconds });
    if (g.n === 0) parts.push(`\0${group}`);
  }
  const concurrency = context.concurrency ?? 2;
  const text = parts.map((p) => {
    if (!p.startsWith('\0')) return p;
    const g = grouped.get(p.slice(1))!;
    return `${formatCount(g.n)} ${p.slice(1)} ${formatDuration(g.seconds * 1000)} of work, up to ${concurrency} at once`;
  });
  return `about ${formatDuration(s.estimatedSeconds * 1000)} in total (${text.join('; ') || 'no step has an estimate'})`;
}

function describeDowntime(r: PlanResult, s: PlanSummary): string {
  const c = s.cutOff;
  const events2 = r.steps.find((x) => x.id === 'events2');
  if (!c) {
    if (events2?.error) return 'unknown: the events2 step cannot be planned (see below)';
    if (events2 && isPrepareOnly(events2)) {
      return 'none from this run: --prepare stops before the cut-over and the old version keeps writing; the later `zsetup migrate` cuts over (plan it then)';
    }
    return 'none from this run: it does not cut off writers (eventstore.events2 is in place or there are no events yet), and the other steps run while the application writes';
  }
  const length = formatDuration((c.untilSeconds - c.fromSeconds) * 1000);
  if (c.mode === 'offline') {
    return `old writers are cut off when ${c.stepId} starts (it renames eventstore.events to events_old first) and stay cut off until the new version runs on eventstore.events2: ` +
      `from the start of this run to its end, about ${length}, plus the new version's start`;
  }
  if (c.mode === 'earlier') {
    return `old writers have been cut off since an earlier attempt renamed eventstore.events to events_old; they stay cut off until the new version runs: about ${length} more, plus the new version's start`;
  }
  const blocked = c.blockedSeconds !== undefined ? ` (writes block for about ${formatDuration(c.blockedSeconds * 1000)} in it)` : '';
  return `old writers keep writing during ${c.stepId}'s copy and index builds; they are cut off at its cut-over${blocked}, about ${formatDuration(c.fromSeconds * 1000)} after the start, ` +
    `and fail from then until the new version runs: about ${length}, plus the new version's start`;
}

function describeDisk(r: PlanResult, s: PlanSummary): string {
  const projections = r.steps.some((x) => x.id.startsWith('projection:') && x.plan?.willChange);
  const tables = projections ? '; the projection tables come on top (not estimated)' : '';
  if (s.diskBytes === null) return projections ? 'the projection tables (not estimated)' : 'nothing notable';
  return `about ${formatBytes(s.diskBytes)} for eventstore.events2 and its indexes, plus write-ahead log until the next checkpoint (see events2's notes)${tables}`;
}

function resumeNote(s: StepPlanReport): string {
  return s.state !== 'pending' && s.state !== 'succeeded' ? ` (recorded: ${s.state}; would resume)` : '';
}

/** Labels of detail keys where the words of the key say it less well. */
const LABELS: Record<string, string> = {
  source: 'reads from',
  concurrency: 'connections',
  sourceIndexBytes: 'source indexes',
  events2IndexBytesEstimate: 'events2 indexes',
  sampleRows: 'sample rows read',
  sampleMs: 'sample read in',
  eventsToProcess: 'events to apply',
  endPoint: 'end point (position)',
  countedIn: 'counted in',
  referenceStepsDone: "reference system's steps done",
  oldTable: 'projections.milestones exists',
  events2: 'eventstore.events2 exists',
};

/** A step's details as label and value in units: bytes in MB/GB, times as durations, counts with separators. */
export function detailRows(details: Readonly<Record<string, unknown>>): [string, string][] {
  const counted = details.eventsCounted;
  const rows: [string, string][] = [];
  for (const [key, value] of Object.entries(details)) {
    if (key === 'eventsCounted') continue;
    const words = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase().split(' ');
    let text = renderDetail(words, value);
    if ((key === 'events' || key === 'eventsToProcess') && counted === 'estimate') text += ' (estimate)';
    const estimate = words[words.length - 1] === 'estimate';
    const label = LABELS[key] ?? words.filter((w, i) => !['bytes', 'ms', 'seconds'].includes(w) && !(estimate && i === words.length - 1)).join(' ');
    rows.push([label, estimate ? `${text} (estimate)` : text]);
  }
  return rows;
}

function renderDetail(words: readonly string[], value: unknown): string {
  if (value === null || value === undefined) return 'n/a';
  if (typeof value === 'number') {
    if (words.includes('bytes')) return formatBytes(value);
    if (words.includes('ms')) return formatDuration(value);
    if (words.includes('seconds')) return formatDuration(value * 1000);
    return formatCount(value);
  }
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.length === 0 ? 'none' : value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ');
  return JSON.stringify(value);
}

/** Text safe inside a Markdown table cell. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', '<br>');
}
