import type { AppStats } from '../lib/app-counter.js';
import { sleep } from '../lib/net.js';
import { CpuMeter, RssWatcher, type CpuReading } from '../lib/proc.js';
import { metric, type ScenarioResult } from '../lib/report.js';
import type { PublishArgs, PublishPlan, PublishResult } from '../loadgen/protocol.js';
import type { Target } from '../targets/index.js';
import { acrossTargets, acrossTargetsInRounds, cpuSharesOf, deviceIds, gcNote, logIngestCommits, roundsNote, settle, US_PER_S, type Scenario, type ScenarioContext } from './context.js';

/** Devices in every ingest scenario (the 64), payload bytes, QoS 1 window per device. */
export const DEVICES = 64;
export const PAYLOAD = 64;
export const WINDOW = 32;

export interface IngestRun {
  publish: PublishResult;
  stats: AppStats;
  /** Deliveries counted for the measured target(s). */
  delivered: number;
  /** Messages the broker took responsibility for (QoS 1: acknowledged; QoS 0: written). */
  accepted: number;
  brokerCpuS: number;
  appCpuS: number | undefined;
  genCpuS: number;
  /** From the first publish to the last delivery. */
  seconds: number;
  peakRss: number;
  /** App stats taken `snapshotAtMs` after the measured run started, if asked. */
  snapshot: AppStats | undefined;
  /** Devices the broker disconnected, warm-up included, and why (as the devices saw it). */
  disconnected: number;
  /** With `timing.cpuSharesBeside`: who had the cores during the measured publishing. */
  cpu: CpuReading | undefined;
}

export interface Timing {
  mode: PublishArgs['mode'];
  ratePerSec?: number;
  durationMs: number;
  warmupMs: number;
  /** Per device; bounds QoS 0 runs, whose backlog otherwise grows with the kernel's socket buffers. */
  maxPerDevice?: number;
  /** Wait only for QoS 1 deliveries after sending stops (overload: QoS 0 backlog is not waited for). */
  settleQos1Only?: boolean;
  snapshotAtMs?: number;
  /** Devices connecting at once (default 16); 1 spreads them evenly over a workers-mode Nucleon (scenario 12). */
  connectConcurrency?: number;
  /** Set: the run's `cpu` says who had the cores during the measured publishing, these processes included. */
  cpuSharesBeside?: { label: string; pids: number[] }[];
}

/**
 * Connects 64 devices, warms the broker up (JIT, buffers), then runs `plans`
 * and meters broker, application and generator CPU over the measured part
 * (the broker's CPU over all its processes: the primary and any workers).
 */
export async function runIngest(
  context: ScenarioContext,
  target: Target,
  plans: PublishPlan[],
  timing: Timing,
): Promise<IngestRun> {
  const group = 'ingest';
  const connected = await context.gen.connect({ group, host: '127.0.0.1', port: target.port, uids: deviceIds('dev', DEVICES), keepalive: 600, concurrency: timing.connectConcurrency ?? 16, timeoutMs: 20_000 });
  if (connected.connected !== DEVICES) throw new Error(`only ${connected.connected} of ${DEVICES} devices connected: ${connected.errors.join('; ')}`);
  try {
    const base = { group, plans, mode: timing.mode, ratePerSec: timing.ratePerSec, maxPerDevice: timing.maxPerDevice ?? 1_000_000, payloadSize: PAYLOAD, ackTimeoutMs: 30_000 };
    if (timing.warmupMs > 0) {
      const warm = await context.gen.publish({ ...base, durationMs: timing.warmupMs, maxPerDevice: Math.ceil(base.maxPerDevice / 5) });
      await settle(target, sumValues(warm.acked) + sumOf(warm.sent, plans, 0), 60_000);
      await target.reset();
    }
    const watcher = new RssWatcher(target.brokerPid);
    watcher.start();
    const brokerCpu = new CpuMeter(brokerPids(target));
    const appCpu = target.appPid === undefined ? undefined : new CpuMeter([target.appPid]);
    const genCpu = new CpuMeter(context.gen.pids);
    const snapshot = timing.snapshotAtMs === undefined ? undefined : captureLater(target, timing.snapshotAtMs);
    const shares = timing.cpuSharesBeside ? cpuSharesOf(context, target, timing.cpuSharesBeside) : undefined;
    const publish = await context.gen.publish({ ...base, durationMs: timing.durationMs });
    const cpu = shares?.read();
    const accepted = sumValues(publish.acked) + sumOf(publish.sent, plans, 0);
    if (process.env.BENCH_VERBOSE) context.log(`${target.name}: generator ${JSON.stringify(publish)}`);
    const qos1Targets = plans.filter((p) => p.qos === 1).map((p) => p.target);
    if (timing.settleQos1Only) await settle(target, sumValues(publish.acked), 60_000, { targets: qos1Targets });
    else await settle(target, accepted, 60_000);
    const brokerCpuS = brokerCpu.elapsed();
    const appCpuS = appCpu?.elapsed();
    const genCpuS = genCpu.elapsed();
    // After the CPU readings: the latency percentiles sort up to a million samples in the app's process.
    const stats = await target.stats();
    const snapped = await snapshot;
    if (snapped instanceof Error) throw snapped;
    const run: IngestRun = {
      publish,
      stats,
      delivered: stats.total,
      accepted,
      brokerCpuS,
      appCpuS,
      genCpuS,
      seconds: (Math.max(stats.lastMs, publish.stopMs) - publish.startMs) / 1000,
      peakRss: watcher.stop(),
      snapshot: snapped,
      disconnected: publish.closedAtStart + publish.disconnects,
      cpu,
    };
    if (!target.alive()) throw new Error(`broker died: ${target.exitReason() ?? 'unknown'}`);
    return run;
  } finally {
    await context.gen.close(group);
  }
}

/** App counts `ms` from now; an error is returned as a value so it cannot go unhandled meanwhile. */
function captureLater(target: Target, ms: number): Promise<AppStats | Error> {
  return sleep(ms)
    .then(() => target.stats({ latency: false }))
    .then(
      (stats) => stats,
      (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
    );
}

function sumValues(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** Messages sent on the targets of plans with the given QoS. */
function sumOf(counts: Record<string, number>, plans: PublishPlan[], qos: 0 | 1): number {
  const targets = new Set(plans.filter((p) => p.qos === qos).map((p) => p.target));
  return Object.entries(counts).reduce((total, [t, n]) => (targets.has(t) ? total + n : total), 0);
}

/** Every process of the broker: its own and, for Nucleon with workers, the workers'. */
export function brokerPids(target: Target): number[] {
  return [target.brokerPid, ...target.workerPids];
}

export const perMessage = (cpuS: number | undefined, messages: number) => (cpuS === undefined ? 'in broker' : messages > 0 ? (cpuS * US_PER_S) / messages : Number.NaN);

function throughputScenario(id: number, qos: 0 | 1): Scenario {
  return {
    id,
    title:
      qos === 1
        ? `ingest, QoS 1 over TLS, ${DEVICES} devices → app, ${PAYLOAD}-byte payloads, unthrottled (${WINDOW} in flight per device)`
        : `ingest, QoS 0 over TLS, ${DEVICES} devices → app, ${PAYLOAD}-byte payloads, a fixed count written as fast as the sockets take it`,
    async run(context) {
      const goals = id === 1;
      const result: ScenarioResult = {
        id,
        title: this.title,
        metrics: [
          metric('delivered to the app', 'msg/s', 0, goals ? { kind: 'ratio-min', against: 'mosquitto', limit: 1.0 } : undefined),
          // With the ingest log (durability "fsync"): issue 14 asks ≤ 0.5× Mosquitto, which persists nothing per message.
          metric('broker CPU per delivered message', 'µs', 2, goals ? { kind: 'ratio-max', against: 'mosquitto', limit: 0.5 } : undefined),
          metric('app process CPU per message', 'µs', 2),
          metric('broker + app CPU per message', 'µs', 2),
          metric('load generator CPU per message', 'µs', 2),
          metric('messages delivered', '', 0),
          metric('lost (accepted by broker, not delivered)', '', 0, qos === 1 ? { kind: 'max', limit: 0 } : undefined),
          metric(`devices disconnected by the broker (of ${DEVICES})`, '', 0),
          metric('latency p50 under full load', 'ms', 2),
          metric('latency p99 under full load', 'ms', 2),
        ],
        notes: [],
      };
      const durationMs = context.quick ? 3000 : 10_000;
      // QoS 0 has no acknowledgement to pace it, so a time-bounded run would just fill the
      // kernel's socket buffers; a fixed count per device bounds it instead (and the time cap still holds).
      const maxPerDevice = qos === 0 ? (context.quick ? 2000 : 8000) : undefined;
      await acrossTargets(
        context,
        result,
        async (target) => {
          const run = await runIngest(context, target, [{ qos, target: `q${qos}`, window: WINDOW }], { mode: 'unthrottled', durationMs, warmupMs: context.quick ? 500 : 2000, maxPerDevice });
          if (run.disconnected > 0) result.notes.push(`${target.name}: ${run.disconnected} devices were disconnected by the broker (${run.publish.reasons.join('; ')}); they stopped sending.`);
          const appPer = perMessage(run.appCpuS, run.delivered);
          return [
            run.delivered / run.seconds,
            perMessage(run.brokerCpuS, run.delivered),
            appPer,
            perMessage(run.brokerCpuS + (run.appCpuS ?? 0), run.delivered),
            perMessage(run.genCpuS, run.delivered),
            run.delivered,
            run.accepted - run.delivered,
            run.disconnected,
            qos === 1 ? run.stats.latency.p50 / 1000 : 'n/a',
            qos === 1 ? run.stats.latency.p99 / 1000 : 'n/a',
          ];
        },
        // Scenario 1 compares the ingest log's durability modes.
        { variants: id === 1 },
      );
      result.notes.push(
        qos === 1
          ? `Each broker runs ${durationMs / 1000} s after a warm-up; "lost" counts messages the broker acknowledged but the application never got.`
          : `Each device writes ${maxPerDevice ?? 0} messages (at most ${durationMs / 1000} s) after a warm-up; msg/s is from the first write to the last delivery. Latency is not meaningful here (it measures the backlog in socket buffers). "lost" counts messages written but never delivered.`,
      );
      return result;
    },
  };
}

export const scenario1 = throughputScenario(1, 1);
export const scenario2 = throughputScenario(2, 0);

const PACED_RATE = 5000;
/** Latency tails swing run to run on a shared 2-core machine; the median of interleaved rounds is steadier. */
const ROUNDS = 3;

export const scenario4: Scenario = {
  id: 4,
  title: `latency device → app at a paced ${PACED_RATE.toLocaleString('en-US')} msg/s, QoS 1 over TLS, ${DEVICES} devices`,
  async run(context) {
    const result: ScenarioResult = {
      id: 4,
      title: this.title,
      metrics: [
        metric('latency p50', 'ms', 3),
        metric('latency p99', 'ms', 3, { kind: 'ratio-max', against: 'mosquitto', limit: 1.5 }),
        metric('latency max', 'ms', 2),
        metric('achieved rate', 'msg/s', 0),
        metric('broker CPU per message', 'µs', 2),
        metric('lost', '', 0, { kind: 'max', limit: 0 }),
        metric('devices disconnected by the broker', '', 0),
        metric('broker event-loop delay p99 (Node brokers)', 'ms', 1),
        metric('broker event-loop delay max (Node brokers)', 'ms', 1),
      ],
      notes: [],
    };
    const durationMs = context.quick ? 3000 : 10_000;
    const rounds = context.quick ? 1 : ROUNDS;
    const perRound = await acrossTargetsInRounds(context, result, rounds, async (target, round) => {
      const run = await runIngest(context, target, [{ qos: 1, target: 'lat', window: 100 }], { mode: 'paced', ratePerSec: PACED_RATE, durationMs, warmupMs: 1000 });
      await logIngestCommits(context, target);
      if (run.publish.skipped > 0) result.notes.push(`${target.name}: ${run.publish.skipped} messages skipped by the generator (a device's window was full)`);
      const latency = run.stats.latency;
      const gc = gcNote(target.name, round, run.stats.loopDelay);
      if (gc) result.notes.push(gc);
      if (latency.negative > 0) throw new Error(`${latency.negative} negative latencies: the clocks of the generator and the application disagree`);
      return [latency.p50 / 1000, latency.p99 / 1000, latency.max / 1000, run.delivered / run.seconds, perMessage(run.brokerCpuS, run.delivered), run.accepted - run.delivered, run.disconnected, run.stats.loopDelay?.p99Ms ?? 'n/a', run.stats.loopDelay?.maxMs ?? 'n/a'];
    }, { variants: true });
    if (rounds > 1) result.notes.push(roundsNote(perRound, 1, 'p99 (ms)'));
    result.notes.push('Latency: the device writes CLOCK_MONOTONIC time into each payload; the application subtracts it on delivery (same clock across processes).');
    return result;
  },
};

export const scenario6: Scenario = {
  id: 6,
  title: `overload: ${DEVICES} unthrottled publishers (half QoS 0, half QoS 1 with 1000 in flight each)`,
  async run(context) {
    const durationMs = context.quick ? 5000 : 30_000;
    const result: ScenarioResult = {
      id: 6,
      title: `${this.title} for ${durationMs / 1000} s`,
      metrics: [
        metric('broker crashed', '', 0),
        metric('peak RSS', 'MB', 1),
        metric('delivered to the app', 'msg/s', 0),
        metric("delivered as a fraction of scenario 2's rate", '', 2, { kind: 'min', limit: 0.7 }),
        metric('QoS 1 lost (acknowledged, not delivered)', '', 0, { kind: 'max', limit: 0 }),
        metric('QoS 0 not delivered (backlog dropped at disconnect)', '', 0),
        metric('devices disconnected by the broker', '', 0),
      ],
      notes: [],
    };
    const scenario2Rate = context.previous.get(2)?.metrics[0]?.values;
    const plans: PublishPlan[] = [
      { qos: 0, target: 'o0', window: 1 },
      { qos: 1, target: 'o1', window: 1000 },
    ];
    await acrossTargets(context, result, async (target) => {
      let run: IngestRun;
      try {
        run = await runIngest(context, target, plans, { mode: 'unthrottled', durationMs, warmupMs: 0, settleQos1Only: true, snapshotAtMs: durationMs });
      } catch (error) {
        if (!target.alive()) return ['YES', undefined, undefined, undefined, undefined, undefined, undefined];
        throw error;
      }
      // The rate while the overload lasted: deliveries counted when sending stopped.
      const rate = (run.snapshot?.total ?? Number.NaN) / (durationMs / 1000);
      const base = scenario2Rate?.[target.name];
      const q1 = run.stats.byTarget.o1 ?? 0;
      const q0 = run.stats.byTarget.o0 ?? 0;
      return [
        target.alive() ? 'no' : 'YES',
        run.peakRss / 2 ** 20,
        rate,
        typeof base === 'number' ? rate / base : 'scenario 2 not run',
        // Delivered without a PUBACK reaching the device (connection cut) is not a loss, so clamp at 0.
        Math.max(0, (run.publish.acked.o1 ?? 0) - q1),
        (run.publish.sent.o0 ?? 0) - q0,
        run.disconnected,
      ];
    });
    result.notes.push(
      `QoS 0 devices write as fast as their sockets take data; QoS 1 devices keep 1000 messages in flight each. The delivered rate counts deliveries during the ${durationMs / 1000} s; QoS 1 deliveries are then awaited (bounded), and the QoS 0 backlog still in socket buffers is dropped when the devices disconnect.`,
    );
    return result;
  },
};
