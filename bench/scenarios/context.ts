import type { AppStats } from '../lib/app-counter.js';
import type { LoopDelay } from '../lib/loop-delay.js';
import { sleep } from '../lib/net.js';
import { CpuShares } from '../lib/proc.js';
import type { LoadGenerator } from '../loadgen/pool.js';
import { ON_REQUEST_NAMES, VARIANT_NAMES, type Metric, type ScenarioResult, type TargetName } from '../lib/report.js';
import type { Target, TargetOptions } from '../targets/index.js';

/** What every scenario gets from the harness. */
export interface ScenarioContext {
  quick: boolean;
  gen: LoadGenerator;
  /** Brokers to measure, in order; unavailable ones carry their reason. */
  targets: { name: TargetName; unavailable?: string }[];
  start(name: TargetName, extra?: Partial<TargetOptions>): Promise<Target>;
  /** Results of scenarios already run in this run (scenario 6 compares with 2). */
  previous: ReadonlyMap<number, ScenarioResult>;
  log(message: string): void;
}

export interface Scenario {
  id: number;
  title: string;
  run(context: ScenarioContext): Promise<ScenarioResult>;
}

/**
 * A CPU meter over the broker's processes (primary and workers), the load
 * generator, `beside` (victoria-metrics, redis-server) and the bench itself:
 * who had the machine's cores while a scenario ran.
 */
export function cpuSharesOf(context: ScenarioContext, target: Target, beside: { label: string; pids: number[] }[] = []): CpuShares {
  return new CpuShares([
    { label: target.workerPids.length > 0 ? 'primary' : 'broker', pids: [target.brokerPid] },
    ...target.workerPids.map((pid, i) => ({ label: `worker ${i + 1}`, pids: [pid] })),
    { label: `load generator (${context.gen.pids.length} processes)`, pids: context.gen.pids },
    ...beside,
    { label: 'bench harness', pids: [process.pid] },
  ]);
}

/** One row's figure per broker, in metric order. */
export type Figures = (number | string | undefined)[];

/**
 * Runs `measure` once per broker, each on a freshly started broker that is
 * stopped afterwards. A failure becomes "failed: ..." in that broker's column
 * and a note, never a number.
 */
export async function acrossTargets(
  context: ScenarioContext,
  result: ScenarioResult,
  measure: (target: Target) => Promise<Figures>,
  options: { only?: TargetName[]; extra?: Partial<TargetOptions>; variants?: boolean } = {},
): Promise<void> {
  for (const { name, unavailable } of context.targets) {
    if (options.only && !options.only.includes(name)) continue;
    if (!options.variants && VARIANT_NAMES.includes(name)) continue;
    if (ON_REQUEST_NAMES.includes(name) && !options.only?.includes(name)) continue;
    if (unavailable) {
      setAll(result.metrics, name, 'not run');
      result.notes.push(`${name} not run: ${unavailable}`);
      continue;
    }
    context.log(`scenario ${result.id}: ${name}`);
    let target: Target | undefined;
    try {
      target = await context.start(name, options.extra);
      const figures = await measure(target);
      result.metrics.forEach((m, i) => {
        const value = figures[i];
        if (value !== undefined) m.values[name] = value;
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      setAll(result.metrics, name, 'failed');
      result.notes.push(`${name} failed: ${message.split('\n')[0] ?? message}`);
      context.log(`scenario ${result.id}: ${name} failed: ${message}`);
    } finally {
      if (target) {
        if (process.env.BENCH_VERBOSE) context.log(`${name} output tail:\n${target.output().slice(-4000)}`);
        const exited = target.exitReason();
        if (exited) result.notes.push(`${name} broker ${exited.split('\n')[0] ?? exited}`);
        await target.stop();
      }
    }
  }
}

/**
 * Runs `rounds` rounds of acrossTargets (broker after broker inside each round,
 * so slow drifts of a shared machine hit every broker alike) and reports each
 * figure as the median of its rounds. A round that failed for a broker leaves
 * that broker's text ("failed") in place. Returns every round's figures so the
 * scenario can print them next to the medians.
 */
export async function acrossTargetsInRounds(
  context: ScenarioContext,
  result: ScenarioResult,
  rounds: number,
  measure: (target: Target, round: number) => Promise<Figures>,
  options: { variants?: boolean; extra?: Partial<TargetOptions>; only?: TargetName[]; laterRoundsOnly?: TargetName[] } = {},
): Promise<Partial<Record<TargetName, Figures[]>>> {
  const perRound: Partial<Record<TargetName, Figures[]>> = {};
  // The brokers acrossTargets measures (the others would show as rounds of blanks).
  const measured = (only: TargetName[] | undefined) =>
    context.targets
      .map((t) => t.name)
      .filter((name) => (!only || only.includes(name)) && (options.variants || !VARIANT_NAMES.includes(name)) && (!ON_REQUEST_NAMES.includes(name) || only?.includes(name)));
  const names = measured(options.only);
  for (let round = 0; round < rounds; round++) {
    // After the first round, only the brokers the verdict compares, where measuring every one again costs too long.
    const only = round > 0 && options.laterRoundsOnly ? options.laterRoundsOnly.filter((name) => !options.only || options.only.includes(name)) : options.only;
    const scratch: ScenarioResult = { ...result, metrics: result.metrics.map((m) => ({ ...m, values: {} })), notes: [] };
    await acrossTargets(context, scratch, (target) => measure(target, round), { ...options, only });
    for (const note of scratch.notes) result.notes.push(rounds > 1 ? `round ${String(round + 1)}: ${note}` : note);
    for (const name of measured(only)) {
      const figures = scratch.metrics.map((m) => m.values[name]);
      (perRound[name] ??= []).push(figures);
    }
  }
  for (const name of names) {
    const all = perRound[name] ?? [];
    result.metrics.forEach((m, i) => {
      const values = all.map((figures) => figures[i]);
      const numbers = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
      if (numbers.length === values.length && numbers.length > 0) m.values[name] = median(numbers);
      else {
        const text = values.find((v) => typeof v === 'string');
        if (text !== undefined) m.values[name] = text;
      }
    });
  }
  return perRound;
}

/**
 * The note under a rounds table: how the medians came about, and one figure
 * (a p99, say: the metric at `index`) per round and broker, so the spread shows.
 */
export function roundsNote(perRound: Partial<Record<TargetName, Figures[]>>, index: number, label: string): string {
  const counts = Object.values(perRound).map((figures) => figures.length);
  const rounds = Math.max(0, ...counts);
  const once = Object.entries(perRound)
    .filter(([, figures]) => figures.length < rounds)
    .map(([name]) => name);
  const perBroker = Object.entries(perRound)
    .map(([name, figures]) => `${name} ${figures.map((f) => (typeof f[index] === 'number' ? f[index].toFixed(3) : String(f[index]))).join(' / ')}`)
    .join('; ');
  const subset = once.length > 0 ? ` (${once.join(', ')} in the first round only, beside the brokers the target compares: its figures are of that one run)` : '';
  return `Each figure is the median of ${String(rounds)} rounds${subset}; in each round every broker runs once, one after the other, so drifts of the shared machine hit them alike. ${label} per round: ${perBroker}.`;
}

/**
 * BENCH_VERBOSE: Nucleon's ingest-log commit and write histograms after a run,
 * in the log (where a latency tail waits for the disk).
 */
export async function logIngestCommits(context: ScenarioContext, target: Target): Promise<void> {
  if (!process.env.BENCH_VERBOSE || !target.name.startsWith('nucleon')) return;
  const text = await target.command<string>('metrics', {});
  context.log(text.split('\n').filter((line) => /^nucleon_ingest_(commit|write)_seconds_(bucket|sum|count)|^nucleon_ingest_batches_total|^nucleon_ingest_lag|^nucleon_mqtt_routed_before/.test(line)).join('\n'));
}

/** A Node broker's GC pauses during one measured run, as a note (undefined for Mosquitto, which has no GC). */
export function gcNote(name: TargetName, round: number, loopDelay: LoopDelay | undefined): string | undefined {
  const gc = loopDelay?.gc;
  if (!gc) return undefined;
  const line = (p: { count: number; totalMs: number; maxMs: number }) => `${p.count} pauses, ${p.totalMs.toFixed(1)} ms in all, longest ${p.maxMs.toFixed(2)} ms`;
  return `${name} GC during round ${String(round + 1)}: minor ${line(gc.minor)}; major ${line(gc.major)}; other ${line(gc.other)}.`;
}

/**
 * The subscriber path's floor (scenarios 10 and 11), as notes: for each
 * metric whose label ends with `suffix`, what the Node TLS relay with no
 * broker (bench/servers/relay-server.ts) measured, against Mosquitto and
 * against Nucleon, where all three have figures.
 */
export function relayFloorNotes(result: ScenarioResult, suffix: string): string[] {
  const notes: string[] = [];
  for (const m of result.metrics) {
    if (!m.label.endsWith(suffix)) continue;
    const [relay, mosquitto, nucleon] = [m.values['node-relay'], m.values.mosquitto, m.values.nucleon];
    if (typeof relay !== 'number' || typeof mosquitto !== 'number' || typeof nucleon !== 'number') continue;
    notes.push(`Floor, ${m.label}: the Node TLS relay ${relay.toFixed(m.digits)} ${m.unit} = ${(relay / mosquitto).toFixed(2)}× Mosquitto; Nucleon = ${(nucleon / relay).toFixed(2)}× the relay.`);
  }
  return notes;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

function setAll(metrics: Metric[], name: TargetName, text: string): void {
  for (const m of metrics) m.values[name] = text;
}

/**
 * Waits until the application has counted `want` deliveries (in total, or on
 * the given topic targets), or the count stops moving for `quietMs`, or
 * `maxMs` passes; returns the last counts (latency not summarized: ask
 * `target.stats()` for that once, after reading the CPU meters).
 */
export async function settle(target: Pick<Target, 'stats'>, want: number, maxMs: number, options: { quietMs?: number; targets?: string[] } = {}): Promise<AppStats> {
  const deadline = Date.now() + maxMs;
  const quietMs = options.quietMs ?? 2000;
  const counted = (s: AppStats) => (options.targets ? options.targets.reduce((n, t) => n + (s.byTarget[t] ?? 0), 0) : s.total);
  let stats = await target.stats({ latency: false });
  let lastChange = Date.now();
  while (counted(stats) < want && Date.now() < deadline && Date.now() - lastChange < quietMs) {
    await sleep(100);
    const next = await target.stats({ latency: false });
    if (next.total !== stats.total) lastChange = Date.now();
    stats = next;
  }
  return stats;
}

export function deviceIds(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(5, '0')}`);
}

export const MS_PER_S = 1000;
export const US_PER_S = 1_000_000;
