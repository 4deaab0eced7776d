// The overview's memory: the last hour of health snapshots from the live
// 'health' stream, as per-second rates (from the cumulative counters) and
// levels, ready for uPlot. Pure (no DOM), tested in test/unit/console-health.test.ts.
import type { HealthSnapshot } from './api/types.js';

/** An hour at the default admin.health_interval_ms (1 s); older samples go first. */
export const HISTORY_MS = 60 * 60 * 1000;
export const MAX_SAMPLES = 3600;
/**
 * Rates are taken over at least this span, not between two neighbouring
 * samples: devices that report every second, sampled every half second, would
 * otherwise draw a saw-tooth of 0 and twice the rate.
 */
export const RATE_WINDOW_MS = 5000;
/** Runners and refusal reasons drawn per chart; more would be unreadable (and the sample size unbounded). */
export const MAX_KEYS = 12;

export interface HealthSample {
  /** Seconds since the epoch (uPlot's x unit). */
  t: number;
  connections: number;
  messagesIn: number | null;
  messagesOut: number | null;
  pointsAccepted: number | null;
  pointsWritten: number | null;
  /** Events behind, per runner; undefined in memory mode. */
  lag: Record<string, number> | undefined;
  spoolBytes: number;
  /** Refusals per minute, by reason. */
  refusals: Record<string, number | null>;
  eventLoopLagMs: number;
  rssBytes: number;
  heapUsedBytes: number;
}

export type Series = { labels: string[]; data: [number[], ...(number | null)[][]] };

export class HealthHistory {
  private samples: HealthSample[] = [];
  private previous: HealthSnapshot | undefined;
  /** The snapshots of the last RATE_WINDOW_MS (and the one before), oldest first: the base of each rate. Bounded by the window and MAX_SAMPLES. */
  private recent: HealthSnapshot[] = [];
  private readonly listeners = new Set<() => void>();
  /** Bumped on every new sample, so views can tell that the data changed. */
  version = 0;

  constructor(private readonly maxSamples = MAX_SAMPLES) {}

  get latest(): HealthSample | undefined {
    return this.samples.at(-1);
  }

  get size(): number {
    return this.samples.length;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  add(snapshot: HealthSnapshot): void {
    const previous = this.previous;
    // An old or repeated snapshot (an answer to health.get crossing a live frame) adds nothing.
    if (previous && snapshot.at <= previous.at) return;
    // A counter that went down: the instance restarted, and the rates start again from this snapshot.
    if (previous && restarted(previous, snapshot)) this.recent = [];
    const base = this.rateBase(snapshot.at);
    const seconds = base ? (snapshot.at - base.at) / 1000 : 0;
    const rate = (now: number, before: number | undefined, per = 1) => (before === undefined || seconds <= 0 || now < before ? null : ((now - before) / seconds) * per);
    const refusals: Record<string, number | null> = {};
    for (const reason of Object.keys(snapshot.refusals).slice(0, MAX_KEYS)) refusals[reason] = rate(snapshot.refusals[reason] ?? 0, base ? (base.refusals[reason] ?? 0) : undefined, 60);
    const lag = snapshot.ingest ? Object.fromEntries(Object.entries(snapshot.ingest.lag).slice(0, MAX_KEYS)) : undefined;
    this.samples.push({
      t: snapshot.at / 1000,
      connections: snapshot.connections,
      messagesIn: rate(snapshot.counters.messagesIn, base?.counters.messagesIn),
      messagesOut: rate(snapshot.counters.messagesOut, base?.counters.messagesOut),
      pointsAccepted: rate(snapshot.counters.pointsAccepted, base?.counters.pointsAccepted),
      pointsWritten: rate(snapshot.counters.pointsWritten, base?.counters.pointsWritten),
      lag,
      spoolBytes: snapshot.spoolBytes,
      refusals,
      eventLoopLagMs: snapshot.eventLoopLagMs,
      rssBytes: snapshot.rssBytes,
      heapUsedBytes: snapshot.heapUsedBytes,
    });
    this.previous = snapshot;
    this.recent.push(snapshot);
    const oldest = snapshot.at / 1000 - HISTORY_MS / 1000;
    let drop = Math.max(0, this.samples.length - this.maxSamples);
    while (drop < this.samples.length && (this.samples[drop]?.t ?? 0) < oldest) drop++;
    if (drop > 0) this.samples.splice(0, drop);
    this.version++;
    for (const listener of this.listeners) listener();
  }

  /** The newest snapshot at least RATE_WINDOW_MS before `at`, or the oldest one known; older ones are dropped. */
  private rateBase(at: number): HealthSnapshot | undefined {
    let keepFrom = 0;
    for (let i = 0; i < this.recent.length; i++) if ((this.recent[i]?.at ?? 0) <= at - RATE_WINDOW_MS) keepFrom = i;
    if (keepFrom > 0) this.recent.splice(0, keepFrom);
    if (this.recent.length > this.maxSamples) this.recent.splice(0, this.recent.length - this.maxSamples);
    return this.recent[0];
  }

  /** Fixed series: one y array per field. */
  series(fields: ReadonlyArray<{ label: string; value: (sample: HealthSample) => number | null }>): Series {
    const x = this.samples.map((sample) => sample.t);
    return { labels: fields.map((field) => field.label), data: [x, ...fields.map((field) => this.samples.map(field.value))] };
  }

  /** Series by key (runners, reasons): every key seen in the window, sorted; a sample without a key has null. */
  keyed(pick: (sample: HealthSample) => Record<string, number | null> | undefined): Series {
    const keys = new Set<string>();
    for (const sample of this.samples) for (const key of Object.keys(pick(sample) ?? {})) if (keys.size < MAX_KEYS) keys.add(key);
    const labels = [...keys].sort();
    const x = this.samples.map((sample) => sample.t);
    return { labels, data: [x, ...labels.map((key) => this.samples.map((sample) => pick(sample)?.[key] ?? null))] };
  }
}

function restarted(before: HealthSnapshot, after: HealthSnapshot): boolean {
  const counters = Object.keys(after.counters) as Array<keyof HealthSnapshot['counters']>;
  return counters.some((name) => after.counters[name] < before.counters[name]) || Object.entries(before.refusals).some(([reason, count]) => (after.refusals[reason] ?? 0) < count);
}
