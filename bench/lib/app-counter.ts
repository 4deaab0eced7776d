import { LatencyRecorder, latencyUs, monotonicMs, type LatencySummary } from './latency.js';
import type { LoopDelay } from './loop-delay.js';

/**
 * What every bench "application" keeps: deliveries per topic target and
 * device → app latency. The same class runs inside the Nucleon app runner,
 * the aedes in-process subscriber and the Mosquitto subscriber process, so the
 * three are counted the same way.
 */
export interface AppStats {
  total: number;
  byTarget: Record<string, number>;
  /** CLOCK_MONOTONIC milliseconds of the first and last delivery (0 when none). */
  firstMs: number;
  lastMs: number;
  latency: LatencySummary;
  /** Event-loop delay of the process the app runs in (Node brokers only). */
  loopDelay?: LoopDelay;
}

/** Options of the `stats` call: `latency: false` for a cheap poll of the counts. */
export interface StatsOptions {
  latency?: boolean;
}

const NOT_SUMMARIZED: LatencySummary = { count: 0, p50: Number.NaN, p99: Number.NaN, max: Number.NaN, negative: 0 };

export class AppCounter {
  private readonly byTarget = new Map<string, number>();
  private readonly latency = new LatencyRecorder();
  private total = 0;
  private firstMs = 0;
  private lastMs = 0;

  /** `target` is the topic part after `<uid>/app/p/`. */
  delivered(target: string, payload: Uint8Array): void {
    const now = monotonicMs();
    if (this.total === 0) this.firstMs = now;
    this.lastMs = now;
    this.total++;
    this.byTarget.set(target, (this.byTarget.get(target) ?? 0) + 1);
    const us = latencyUs(payload, now);
    if (!Number.isNaN(us)) this.latency.record(us);
  }

  reset(): void {
    this.byTarget.clear();
    this.latency.reset();
    this.total = 0;
    this.firstMs = 0;
    this.lastMs = 0;
  }

  /**
   * Counts, and the latency percentiles when `withLatency`: those sort up to a
   * million samples, which must not run on every poll of a waiting scenario
   * (it ran in the broker process for Nucleon and aedes, every 100 ms).
   */
  stats(withLatency = true): AppStats {
    return {
      total: this.total,
      byTarget: Object.fromEntries(this.byTarget),
      firstMs: this.firstMs,
      lastMs: this.lastMs,
      latency: withLatency ? this.latency.summary() : NOT_SUMMARIZED,
    };
  }
}

/**
 * The counts of several processes' apps as one (the workers of a workers-mode
 * Nucleon). Latency percentiles cannot be merged from summaries, so they are
 * left out (count 0, NaN).
 */
export function mergeStats(parts: readonly AppStats[]): AppStats {
  const byTarget: Record<string, number> = {};
  for (const part of parts) for (const [target, n] of Object.entries(part.byTarget)) byTarget[target] = (byTarget[target] ?? 0) + n;
  const counted = parts.filter((p) => p.total > 0);
  return {
    total: parts.reduce((n, p) => n + p.total, 0),
    byTarget,
    // CLOCK_MONOTONIC is one clock for every process of the machine.
    firstMs: counted.length ? Math.min(...counted.map((p) => p.firstMs)) : 0,
    lastMs: counted.length ? Math.max(...counted.map((p) => p.lastMs)) : 0,
    latency: NOT_SUMMARIZED,
  };
}

/** The target of an `<uid>/app/p/<target>` topic (what the MQTT subscribers see). */
export function appTarget(topic: string): string {
  const marker = topic.indexOf('/app/p/');
  return marker < 0 ? '' : topic.slice(marker + 7);
}

/** The arguments of the `respond` call: server → device messages the app sends. */
export interface RespondArgs {
  uids: string[];
  perDevice: number;
  payloadSize: number;
  /** Messages the app may have outstanding (unacknowledged) at once. */
  window: number;
}

export interface RespondResult {
  published: number;
  elapsedMs: number;
}

/** A response payload: a send timestamp followed by filler, `size` bytes. */
export function responsePayload(size: number): Buffer {
  const payload = Buffer.alloc(Math.max(size, 8), 0x5a);
  payload.writeDoubleBE(monotonicMs(), 0);
  return payload;
}
