import type { MachineDescription } from './machine.js';

/** The brokers a scenario runs against, in table column order. */
export const TARGET_NAMES = ['nucleon', 'nucleon-write', 'nucleon-memory', 'aedes', 'mosquitto', 'node-tls', 'node-relay'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

/**
 * Nucleon with another `[ingest] durability` ("nucleon" is the default,
 * "fsync"): run only by the scenarios that compare the modes (1 and 4), and
 * shown as columns only there.
 */
export const VARIANT_NAMES: readonly TargetName[] = ['nucleon-write', 'nucleon-memory'];

/**
 * Baselines a scenario asks for by name (`only`), never run otherwise and
 * shown as columns only where they have figures: Node's TLS with no broker
 * (scenario 5's floor for memory per connection) and a Node TLS relay with no
 * broker (the floor of the subscriber path, scenarios 10 and 11).
 */
export const ON_REQUEST_NAMES: readonly TargetName[] = ['node-tls', 'node-relay'];

export const TARGET_LABELS: Record<TargetName, string> = {
  nucleon: 'Nucleon',
  'nucleon-write': 'Nucleon (write)',
  'nucleon-memory': 'Nucleon (memory)',
  aedes: 'aedes (bare)',
  mosquitto: 'Mosquitto',
  'node-tls': 'Node TLS (no broker)',
  'node-relay': 'Node TLS relay (no broker)',
};

/** What the issue asks of Nucleon for one metric. */
export type Goal =
  | { kind: 'ratio-max'; against: TargetName; limit: number }
  | { kind: 'ratio-min'; against: TargetName; limit: number }
  | { kind: 'max'; limit: number }
  | { kind: 'min'; limit: number };

export interface Metric {
  label: string;
  unit: string;
  /** Figures per broker; a string says why there is no figure ("not run: ..."). */
  values: Partial<Record<TargetName, number | string>>;
  goal?: Goal;
  /** Decimal places when printing. */
  digits?: number;
}

export interface ScenarioResult {
  id: number;
  title: string;
  /** Set when the whole scenario could not run; the reason is printed instead of figures. */
  notRun?: string;
  metrics: Metric[];
  notes: string[];
}

export function metric(label: string, unit: string, digits = 1, goal?: Goal): Metric {
  return { label, unit, values: {}, digits, goal };
}

function formatValue(value: number | string | undefined, digits: number): string {
  if (value === undefined) return '–';
  if (typeof value === 'string') return value;
  if (!Number.isFinite(value)) return 'n/a';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ratio(m: Metric, against: TargetName, of: TargetName = 'nucleon'): number | undefined {
  const ours = m.values[of];
  const theirs = m.values[against];
  if (typeof ours !== 'number' || typeof theirs !== 'number' || !Number.isFinite(ours) || !Number.isFinite(theirs) || theirs === 0) return undefined;
  return ours / theirs;
}

export function goalText(goal: Goal | undefined): string {
  if (!goal) return '';
  switch (goal.kind) {
    case 'ratio-max':
      return `≤ ${goal.limit.toFixed(1)}× ${TARGET_LABELS[goal.against]}`;
    case 'ratio-min':
      return `≥ ${goal.limit.toFixed(1)}× ${TARGET_LABELS[goal.against]}`;
    case 'max':
      return `≤ ${goal.limit.toLocaleString('en-US')}`;
    case 'min':
      return `≥ ${goal.limit.toLocaleString('en-US')}`;
  }
}

/** "met", "missed by x%" or "" when there is nothing to judge. */
export function goalVerdict(m: Metric): string {
  const goal = m.goal;
  if (!goal) return '';
  const value = goal.kind === 'ratio-max' || goal.kind === 'ratio-min' ? ratio(m, goal.against) : m.values.nucleon;
  if (typeof value !== 'number' || !Number.isFinite(value)) return 'not measured';
  const over = (limit: number) => (limit === 0 ? `missed (${formatValue(value, 2)})` : `missed by ${formatValue(((value - limit) / limit) * 100, 0)}%`);
  switch (goal.kind) {
    case 'ratio-max':
    case 'max':
      return value <= goal.limit ? 'met' : over(goal.limit);
    case 'ratio-min':
    case 'min':
      return value >= goal.limit ? 'met' : `missed by ${formatValue(((goal.limit - value) / goal.limit) * 100, 0)}%`;
  }
}

/** The columns of a result: every broker, the durability variants and on-request baselines only where they were run. */
function columns(result: ScenarioResult): TargetName[] {
  return TARGET_NAMES.filter((t) => (!VARIANT_NAMES.includes(t) && !ON_REQUEST_NAMES.includes(t)) || result.metrics.some((m) => m.values[t] !== undefined));
}

/** Ratio columns: Nucleon/aedes, and each Nucleon column against Mosquitto. */
function ratioColumns(result: ScenarioResult): [TargetName, TargetName][] {
  const nucleons = columns(result).filter((t) => t.startsWith('nucleon'));
  return [['nucleon', 'aedes'], ...nucleons.map((t): [TargetName, TargetName] => [t, 'mosquitto'])];
}

function header(result: ScenarioResult): string[] {
  return ['metric', ...columns(result).map((t) => TARGET_LABELS[t]), ...ratioColumns(result).map(([of, against]) => `${TARGET_LABELS[of]}/${TARGET_LABELS[against]}`), 'target', 'verdict'];
}

function rows(result: ScenarioResult): string[][] {
  return result.metrics.map((m) => {
    const digits = m.digits ?? 1;
    const ratios = ratioColumns(result).map(([of, against]) => {
      const r = ratio(m, against, of);
      return r === undefined ? '–' : `${formatValue(r, 2)}×`;
    });
    return [
      m.unit ? `${m.label} (${m.unit})` : m.label,
      ...columns(result).map((t) => formatValue(m.values[t], digits)),
      ...ratios,
      goalText(m.goal),
      goalVerdict(m),
    ];
  });
}

export function machineLines(machine: MachineDescription): string[] {
  return [
    `CPU: ${machine.cores} × ${machine.cpuModel}; memory ${machine.memoryGiB} GiB; ${machine.kernel}; open files limit ${machine.fdLimit}`,
    `Node ${machine.node}; aedes ${machine.aedes}; Mosquitto ${machine.mosquitto ?? 'not installed'}`,
  ];
}

/** Plain-text table for the terminal. */
export function renderText(result: ScenarioResult): string {
  const title = `Scenario ${result.id}: ${result.title}`;
  if (result.notRun) return `${title}\n  not run: ${result.notRun}\n`;
  const HEADER = header(result);
  const table = [HEADER, ...rows(result)];
  const widths = HEADER.map((_, col) => Math.max(...table.map((row) => (row[col] ?? '').length)));
  const line = (row: string[]) => row.map((cell, col) => (col === 0 ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0))).join('  ');
  const body = table.map((row, i) => (i === 0 ? `  ${line(row)}\n  ${widths.map((w) => '-'.repeat(w)).join('  ')}` : `  ${line(row)}`));
  const notes = result.notes.map((n) => `  * ${n}`);
  return [title, ...body, ...notes, ''].join('\n');
}

function escapeCell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function renderMarkdown(result: ScenarioResult): string {
  const title = `### Scenario ${result.id}: ${result.title}`;
  if (result.notRun) return `${title}\n\nNot run: ${escapeCell(result.notRun)}\n`;
  const HEADER = header(result);
  const table = [HEADER, HEADER.map((_, i) => (i === 0 ? '---' : '---:')), ...rows(result)].map((row) => `| ${row.map(escapeCell).join(' | ')} |`);
  const notes = result.notes.map((n) => `- ${n}`);
  return [title, '', ...table, '', ...notes, ''].join('\n');
}

export interface ReportHeader {
  machine: MachineDescription;
  /** 1-minute load averages at the start and end: other work on the machine skews latency most. */
  loadAverage: { start: number; end: number };
  startedAt: Date;
  durationS: number;
  command: string;
  quick: boolean;
  setup: string[];
}

/** `sections`: Markdown lines after the results (the missed targets' profiles). */
export function renderDocument(header: ReportHeader, results: ScenarioResult[], sections: string[] = []): string {
  return [
    '# Nucleon benchmarks',
    '',
    `Generated by \`${header.command}\` on ${header.startedAt.toISOString()} (${Math.round(header.durationS)} s${header.quick ? ', quick mode: shorter runs, fewer devices' : ''}). Do not edit by hand; README "Benchmarks" explains the scenarios.`,
    '',
    '## Machine',
    '',
    ...machineLines(header.machine).map((l) => `- ${l}`),
    `- Load average (1 min) ${header.loadAverage.start.toFixed(2)} at the start, ${header.loadAverage.end.toFixed(2)} at the end (the machine is shared; anything above ~2 on 2 cores means other work competed with the run, which inflates latency tails far more than CPU per message).`,
    '',
    '## Setup',
    '',
    ...header.setup.map((l) => `- ${l}`),
    '',
    '## Results',
    '',
    'Ratios are Nucleon / baseline from this one run. CPU figures are user + system time from `/proc/<pid>/stat` of the broker process (for Nucleon and aedes the in-process application is included; for Mosquitto the subscriber application is a separate process, reported on its own row).',
    '',
    ...results.map(renderMarkdown),
    ...sections,
  ].join('\n');
}
