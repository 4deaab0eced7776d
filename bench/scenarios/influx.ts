import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CpuMeter, describeCpu, type CpuReading } from '../lib/proc.js';
import { metric, type ScenarioResult } from '../lib/report.js';
import { VictoriaMetrics } from '../lib/victoria.js';
import type { Target } from '../targets/index.js';
import { acrossTargets, cpuSharesOf, deviceIds, type Scenario, type ScenarioContext } from './context.js';
import { brokerPids } from './ingest.js';

export const TELEMETRY_DEVICES = 64;
export const POINTS_GOAL = { kind: 'min', limit: 150_000 } as const;

export interface TelemetryRun {
  /** Points found in victoria-metrics per second, from the first publish until the last was stored. */
  pointsPerS: number;
  /** Acknowledged by the broker, not stored. */
  lost: number;
  /** Broker CPU (all its processes) per stored point. */
  cpuPerPointUs: number;
  /** Who had the machine's cores while the devices published. */
  cpu: CpuReading;
  /** Points the broker acknowledged. */
  published: number;
}

/**
 * Device telemetry into victoria-metrics: 64 devices publish Pyrinas telemetry
 * (QoS 1, unthrottled, `durationMs`); the Influx runner turns each message into
 * one point. `vm` must hold no telemetry yet (the count is of every sample).
 * `connectConcurrency`: devices connecting at once (1 spreads them evenly over workers).
 */
export async function deviceTelemetry(context: ScenarioContext, target: Target, vm: VictoriaMetrics, durationMs: number, connectConcurrency = 16, beside: { label: string; pids: number[] }[] = []): Promise<TelemetryRun> {
  const group = 'telemetry';
  const connected = await context.gen.connect({ group, host: '127.0.0.1', port: target.port, uids: deviceIds('tel', TELEMETRY_DEVICES), keepalive: 600, concurrency: connectConcurrency, timeoutMs: 20_000 });
  if (connected.connected !== TELEMETRY_DEVICES) throw new Error(`only ${connected.connected} of ${TELEMETRY_DEVICES} devices connected: ${connected.errors.join('; ')}`);
  const cpu = new CpuMeter(brokerPids(target));
  const started = performance.now();
  const shares = cpuSharesOf(context, target, [{ label: 'victoria-metrics', pids: [vm.pid] }, ...beside]);
  let published: number;
  let cpuReading: CpuReading;
  try {
    const run = await context.gen.publish({ group, plans: [{ qos: 1, target: 'tel', window: 32, kind: 'telemetry' }], mode: 'unthrottled', durationMs, maxPerDevice: 1_000_000, payloadSize: 0, ackTimeoutMs: 30_000 });
    cpuReading = shares.read();
    published = run.acked.tel ?? 0;
  } finally {
    await context.gen.close(group);
  }
  // Every telemetry point has an rsrp field, stored by victoria-metrics as series telemetry_rsrp.
  const stored = await vm.waitForSamples('telemetry_rsrp', published, 120_000);
  const cpuS = cpu.elapsed();
  return {
    pointsPerS: stored.count / ((stored.atMs - started) / 1000),
    lost: published - stored.count,
    cpuPerPointUs: (cpuS * 1e6) / Math.max(1, stored.count),
    cpu: cpuReading,
    published,
  };
}

export const scenario8: Scenario = {
  id: 8,
  title: 'telemetry → InfluxDB (victoria-metrics): points/s sustained, zero loss',
  async run(context) {
    const result: ScenarioResult = {
      id: 8,
      title: `${this.title} (Nucleon only: the baselines have no Influx writer)`,
      metrics: [
        metric(`device telemetry (${TELEMETRY_DEVICES} devices, QoS 1, MQTT/TLS, one point per message): points stored`, 'points/s', 0, POINTS_GOAL),
        metric('device telemetry: points lost (acknowledged, not stored)', '', 0, { kind: 'max', limit: 0 }),
        metric('device telemetry: broker CPU per point', 'µs', 2),
        metric('Influx pipeline, app InfluxDataSave batches: points stored', 'points/s', 0, POINTS_GOAL),
        metric('app InfluxDataSave batches: points lost', '', 0, { kind: 'max', limit: 0 }),
        metric('app InfluxDataSave batches: broker CPU per point', 'µs', 2),
      ],
      notes: [],
    };
    const unavailable = VictoriaMetrics.unavailable();
    if (unavailable) return { ...result, notRun: unavailable };
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-bench-vm-'));
    const vm = await VictoriaMetrics.start(dataDir);
    const durationMs = context.quick ? 4000 : 15_000;
    const appPoints = context.quick ? 200_000 : 1_000_000;
    try {
      const influx = { url: vm.url, org: 'bench', bucket: 'telemetry', token: '' };
      await acrossTargets(
        context,
        result,
        async (target) => {
          const telemetry = await deviceTelemetry(context, target, vm, durationMs);
          result.notes.push(`Device telemetry: CPU while the devices published, as a share of one core: ${describeCpu(telemetry.cpu)}.`);

          // The app writes points in batches of 1000 (distinct timestamps, so none overwrite another).
          const cpu = new CpuMeter([target.brokerPid]);
          const started = performance.now();
          const flood = await target.command<{ published: number }>('influxFlood', { points: appPoints, batch: 1000, measurement: 'benchapp' }, 600_000);
          const app = await vm.waitForSamples('benchapp_value', flood.published, 120_000);
          const appCpu = cpu.elapsed();
          const appSeconds = (app.atMs - started) / 1000;
          return [
            telemetry.pointsPerS,
            telemetry.lost,
            telemetry.cpuPerPointUs,
            app.count / appSeconds,
            flood.published - app.count,
            (appCpu * 1e6) / Math.max(1, app.count),
          ];
        },
        { only: ['nucleon'], extra: { influx } },
      );
      result.notes.push(
        `Influx runner with its defaults (batch_size 5000, flush_interval_ms 1000). Points/s = points found in victoria-metrics / time from the first publish until the last of them was stored (device run ${durationMs / 1000} s, then ${appPoints.toLocaleString('en-US')} app points). Counted with /api/v1/export after /internal/force_flush.`,
        'The 150,000 points/s target is checked on both paths. Device telemetry is one point per QoS 1 MQTT message: that path is bound by the broker\'s one event-loop thread (it runs at about one core, with victoria-metrics and the generator on the other), so it reaches 150,000 only below about 6.5 µs of broker CPU per telemetry message.',
      );
    } finally {
      await vm.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
    return result;
  },
};
