import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import type { EventBroker } from '../broker/index.js';
import type { Presence } from '../presence/index.js';

/** health.get and the live `Health` event (docs/console-contract.md). */
export interface HealthSnapshot {
  at: number;
  instance?: string;
  /** Devices connected to this instance. */
  connections: number;
  /** Cumulative since the start; the browser computes rates. */
  counters: { messagesIn: number; messagesOut: number; pointsAccepted: number; pointsWritten: number };
  /** Connection refusals by reason (nucleon_mqtt_refused_total). */
  refusals: Record<string, number>;
  /** The durable ingest log; null in memory mode. */
  ingest: null | { bytes: number; segments: number; lag: Record<string, number> };
  spoolBytes: number;
  /** p99 event-loop delay since the previous snapshot. */
  eventLoopLagMs: number;
  rssBytes: number;
  heapUsedBytes: number;
}

export interface HealthSources {
  registry: Registry;
  broker: EventBroker;
  presence: Presence;
  now?: () => number;
}

/**
 * Takes health snapshots from what the instance measures anyway: its
 * prom-client registry (MQTT and Influx counters), presence, the ingest log's
 * stats and the process. The event-loop delay histogram runs from start() to
 * stop() and is reset by each snapshot, so its p99 covers one interval.
 */
export class HealthSampler {
  private histogram: IntervalHistogram | undefined;
  private readonly now: () => number;

  constructor(private readonly sources: HealthSources) {
    this.now = sources.now ?? Date.now;
  }

  start(): void {
    this.histogram ??= monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
  }

  stop(): void {
    this.histogram?.disable();
    this.histogram = undefined;
  }

  async snapshot(): Promise<HealthSnapshot> {
    const { registry, broker, presence } = this.sources;
    const [messagesIn, messagesOut, pointsAccepted, pointsWritten, spoolBytes, refusals] = await Promise.all([
      sumOf(registry, 'nucleon_mqtt_messages_received_total'),
      sumOf(registry, 'nucleon_mqtt_messages_sent_total'),
      sumOf(registry, 'nucleon_influx_points_accepted_total'),
      sumOf(registry, 'nucleon_influx_points_written_total'),
      sumOf(registry, 'nucleon_influx_spool_bytes'),
      byLabel(registry, 'nucleon_mqtt_refused_total', 'reason'),
    ]);
    const stats = broker.ingestStats();
    const memory = process.memoryUsage();
    const lagNs = this.histogram && this.histogram.count > 0 ? this.histogram.percentile(99) : 0;
    this.histogram?.reset();
    return {
      at: this.now(),
      ...(presence.cluster ? { instance: presence.instanceId } : {}),
      connections: localConnections(presence),
      counters: { messagesIn, messagesOut, pointsAccepted, pointsWritten },
      refusals,
      ingest: stats ? { bytes: stats.bytes, segments: stats.segments, lag: Object.fromEntries(stats.runners.map((runner) => [runner.name, runner.lagEvents])) } : null,
      spoolBytes,
      eventLoopLagMs: Math.round(lagNs / 1e4) / 100,
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
    };
  }
}

function localConnections(presence: Presence): number {
  if (!presence.cluster) return presence.size;
  let count = 0;
  for (const entry of presence.entries()) if (entry.instance === presence.instanceId) count++;
  return count;
}

async function valuesOf(registry: Registry, name: string): Promise<{ value: number; labels: Record<string, string | number> }[]> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return [];
  return (await metric.get()).values as { value: number; labels: Record<string, string | number> }[];
}

/** The sum over every label set; 0 for a metric this instance does not have (no Influx, no MQTT runner). */
async function sumOf(registry: Registry, name: string): Promise<number> {
  let sum = 0;
  for (const { value } of await valuesOf(registry, name)) sum += value;
  return sum;
}

async function byLabel(registry: Registry, name: string, label: string): Promise<Record<string, number>> {
  const sums: Record<string, number> = {};
  for (const { value, labels } of await valuesOf(registry, name)) {
    const key = String(labels[label] ?? '');
    sums[key] = (sums[key] ?? 0) + value;
  }
  return sums;
}

/**
 * The live `Health` event: a timer that runs only while some admin connection
 * is subscribed to the `health` kind. `update()` is called whenever a
 * subscription changes or a connection closes; `stop()` ends the timer.
 */
export class HealthStream {
  private timer: NodeJS.Timeout | undefined;
  private sending = false;

  constructor(
    private readonly options: {
      intervalMs: number;
      wanted: () => boolean;
      sample: () => Promise<HealthSnapshot>;
      send: (snapshot: HealthSnapshot) => void;
      onError: (error: unknown) => void;
    },
  ) {}

  get running(): boolean {
    return this.timer !== undefined;
  }

  update(): void {
    const wanted = this.options.wanted();
    if (wanted && !this.timer) {
      this.timer = setInterval(() => this.tick(), this.options.intervalMs);
      this.timer.unref();
    } else if (!wanted && this.timer) {
      this.stop();
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    // A snapshot slower than the interval is not stacked up behind itself.
    if (this.sending) return;
    this.sending = true;
    this.options
      .sample()
      .then((snapshot) => {
        if (this.timer) this.options.send(snapshot);
      })
      .catch(this.options.onError)
      .finally(() => {
        this.sending = false;
      });
  }
}
