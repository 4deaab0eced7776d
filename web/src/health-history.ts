// The overview's memory: the last hour of health snapshots from the live
// 'health' stream, as per-second rates (from the cumulative counters) and
// levels, ready for uPlot. Pure (no DOM), tested in test/unit/console-health.test.ts.
import type { HealthSnapshot } from './api/types.js';

/** An hour at the default admin.health_interval_ms (1 s); older samples go first. */
export const HISTORY_MS = 60 * 60 * 1000;
export const MAX_SAMPLES = 3600;
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
    const seconds = previous ? (snapshot.at - previous.at) / 1000 : 0;
    const rate = (now: number, before: number | undefined, per = 1) => {
      // A counter that went down: the instance restarted, no rate for this step.
      if (before === undefined || seconds <= 0 || now < before) return null;
      return ((now - before) / seconds) * per;
    };
    const refusals: Record<string, number | null> = {};
    for (const reason of Object.keys(snapshot.refusals).slice(0, MAX_KEYS)) refusals[reason] = rate(snapshot.refusals[reason] ?? 0, previous ? (previous.refusals[reason] ?? 0) : undefined, 60);
    const lag = snapshot.ingest ? Object.fromEntries(Object.entries(snapshot.ingest.lag).slice(0, MAX_KEYS)) : undefined;
    this.samples.push({
      t: snapshot.at / 1000,
      connections: snapshot.connections,
      messagesIn: rate(snapshot.counters.messagesIn, previous?.counters.messagesIn),
      messagesOut: rate(snapshot.counters.messagesOut, previous?.counters.messagesOut),
      pointsAccepted: rate(snapshot.counters.pointsAccepted, previous?.counters.pointsAccepted),
      pointsWritten: rate(snapshot.counters.pointsWritten, previous?.counters.pointsWritten),
      lag,
      spoolBytes: snapshot.spoolBytes,
      refusals,
      eventLoopLagMs: snapshot.eventLoopLagMs,
      rssBytes: snapshot.rssBytes,
      heapUsedBytes: snapshot.heapUsedBytes,
    });
    this.previous = snapshot;
    const oldest = snapshot.at / 1000 - HISTORY_MS / 1000;
    let drop = Math.max(0, this.samples.length - this.maxSamples);
    while (drop < this.samples.length && (this.samples[drop]?.t ?? 0) < oldest) drop++;
    if (drop > 0) this.samples.splice(0, drop);
    this.version++;
    for (const listener of this.listeners) listener();
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
