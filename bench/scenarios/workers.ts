import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sleep } from '../lib/net.js';
import { describeCpu, type CpuReading } from '../lib/proc.js';
import { RedisServer } from '../lib/redis.js';
import { metric, type Metric, type ScenarioResult } from '../lib/report.js';
import { VictoriaMetrics } from '../lib/victoria.js';
import type { Target, TargetOptions } from '../targets/index.js';
import { acrossTargets, US_PER_S, type Figures, type Scenario, type ScenarioContext } from './context.js';
import { deviceTelemetry, POINTS_GOAL, TELEMETRY_DEVICES } from './influx.js';
import { DEVICES, perMessage, runIngest, WINDOW } from './ingest.js';

/** Issue 16: 2 workers deliver at least this many times what 1 worker does. */
const SPEEDUP_GOAL = 1.6;
/**
 * Devices each generator process connects at once. node:cluster hands a
 * queued connection to the worker that took the last one first, so 16 at a
 * time split 64 devices as unevenly as 19 + 45 in trials; one at a time lets
 * its round-robin alternate. (The connects are not measured.)
 */
const CONNECT_CONCURRENCY = 1;

interface Mode {
  label: string;
  /** 0: one process without Redis (the default); N: runWorkers with N workers on Redis. */
  workers: number;
}

const SINGLE: Mode = { label: 'single process', workers: 0 };
const ONE_WORKER: Mode = { label: '1 worker', workers: 1 };
const TWO_WORKERS: Mode = { label: '2 workers', workers: 2 };

interface PerWorker {
  pid: number;
  instance: string | undefined;
  devices: number;
}

/**
 * How many devices each worker holds `afterMs` from now (from presence, as
 * admin devices.list shows them): "33 + 31". An error becomes its text, so it
 * cannot go unhandled while the run goes on.
 */
function spreadLater(target: Target, afterMs: number): Promise<string> {
  return sleep(afterMs)
    .then(() => target.command<{ perWorker: PerWorker[] }>('workers', {}))
    .then(
      (answer) => answer.perWorker.map((w) => String(w.devices)).join(' + '),
      (error: unknown) => `failed: ${error instanceof Error ? error.message : String(error)}`,
    );
}

/**
 * Measures Nucleon in one mode into `rows` only (a failure marks just those
 * rows), with its own redis-server for a workers mode.
 */
async function inMode(
  context: ScenarioContext,
  result: ScenarioResult,
  mode: Mode,
  rows: Metric[],
  extra: Partial<TargetOptions>,
  measure: (target: Target, beside: { label: string; pids: number[] }[]) => Promise<Figures>,
): Promise<void> {
  const scratch: ScenarioResult = { ...result, metrics: rows, notes: [] };
  const dir = mode.workers > 0 ? await mkdtemp(path.join(os.tmpdir(), 'nucleon-bench-redis-')) : undefined;
  const redis = dir ? await RedisServer.start(dir) : undefined;
  try {
    const beside = redis ? [{ label: 'redis-server', pids: [redis.pid] }] : [];
    await acrossTargets(context, scratch, (target) => measure(target, beside), { only: ['nucleon'], extra: { ...extra, workers: mode.workers, redisUrl: redis?.url } });
  } finally {
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
  result.notes.push(...scratch.notes.map((note) => `${mode.label}: ${note}`));
}

/** Device telemetry into a fresh victoria-metrics (the count is of every stored sample). */
async function telemetryInMode(context: ScenarioContext, result: ScenarioResult, mode: Mode, rows: Metric[], durationMs: number): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-bench-vm-'));
  const vm = await VictoriaMetrics.start(dataDir);
  try {
    const influx = { url: vm.url, org: 'bench', bucket: 'telemetry', token: '' };
    await inMode(context, result, mode, rows, { influx }, async (target, beside) => {
      const spread = mode.workers > 1 ? spreadLater(target, durationMs / 2) : undefined;
      const run = await deviceTelemetry(context, target, vm, durationMs, CONNECT_CONCURRENCY, beside);
      result.notes.push(`telemetry, ${mode.label}: CPU while the devices published, as a share of one core: ${describeCpu(run.cpu)}.`);
      if (process.env.BENCH_VERBOSE) {
        const text = await target.command<string>('metrics', {});
        context.log(text.split('\n').filter((line) => /^# worker|^nucleon_influx_write_seconds_(sum|count)|^nucleon_ingest_(batches|records|write_seconds|commit_seconds)/.test(line)).join('\n'));
      }
      return [run.pointsPerS, run.lost, run.cpuPerPointUs, machineBusyPercent(run.cpu), besideCpuPerMessageUs(run.cpu, run.published), await spread];
    });
  } finally {
    await vm.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

const machineBusyPercent = (cpu: CpuReading) => (cpu.machineBusyCores / cpu.cores) * 100;

/** CPU of what runs beside the broker (the load generator, victoria-metrics, Redis) per message or point (µs). */
const besideCpuPerMessageUs = (cpu: CpuReading, messages: number) =>
  (cpu.groups.filter((g) => /^(load generator|victoria-metrics|redis-server)/.test(g.label)).reduce((sum, g) => sum + g.cpuS, 0) * US_PER_S) / Math.max(1, messages);

/** Device → app runner, QoS 1, as scenario 1 (the counting runner in every worker). */
async function appInMode(context: ScenarioContext, result: ScenarioResult, mode: Mode, rows: Metric[]): Promise<void> {
  const durationMs = context.quick ? 3000 : 10_000;
  await inMode(context, result, mode, rows, {}, async (target, beside) => {
    // After the warm-up, halfway through the measured run.
    const warmupMs = context.quick ? 500 : 2000;
    const spread = mode.workers > 1 ? spreadLater(target, warmupMs + 1000 + durationMs / 2) : undefined;
    const run = await runIngest(context, target, [{ qos: 1, target: 'q1', window: WINDOW }], { mode: 'unthrottled', durationMs, warmupMs, connectConcurrency: CONNECT_CONCURRENCY, cpuSharesBeside: beside });
    result.notes.push(`app QoS 1, ${mode.label}: CPU while the devices published (after the warm-up), as a share of one core: ${run.cpu ? describeCpu(run.cpu) : 'not measured'}.`);
    if (run.disconnected > 0) result.notes.push(`${mode.label}: ${run.disconnected} devices were disconnected by the broker (${run.publish.reasons.join('; ')}).`);
    return [run.delivered / run.seconds, perMessage(run.brokerCpuS, run.delivered), run.accepted - run.delivered, run.cpu ? machineBusyPercent(run.cpu) : undefined, run.cpu ? besideCpuPerMessageUs(run.cpu, run.delivered) : undefined, await spread];
  });
}

/** BENCH_SCENARIO12_PARTS="telemetry" (or "app") runs only that half (development). */
function selectedParts(): string[] {
  const parts = process.env.BENCH_SCENARIO12_PARTS?.split(',').map((s) => s.trim()) ?? ['telemetry', 'app'];
  const unknown = parts.filter((p) => p !== 'telemetry' && p !== 'app');
  if (unknown.length > 0) throw new Error(`BENCH_SCENARIO12_PARTS names unknown parts: ${unknown.join(', ')} (known: telemetry, app)`);
  return parts;
}

export const scenario12: Scenario = {
  id: 12,
  title: 'all cores: runWorkers (`serve --workers`) on Redis vs one process: device telemetry → victoria-metrics, device → app QoS 1',
  async run(context) {
    const tel = (mode: Mode) => [
      metric(`telemetry, ${mode.label}: points stored`, 'points/s', 0, mode === TWO_WORKERS ? POINTS_GOAL : undefined),
      metric(`telemetry, ${mode.label}: points lost (acknowledged, not stored)`, '', 0, { kind: 'max', limit: 0 }),
      metric(`telemetry, ${mode.label}: broker CPU per point (primary + workers)`, 'µs', 2),
      metric(`telemetry, ${mode.label}: the machine busy while the devices published`, '% of all cores', 0),
      metric(`telemetry, ${mode.label}: load generator + victoria-metrics + Redis CPU per point`, 'µs', 2),
      metric(`telemetry, ${mode.label}: devices per worker`, '', 0),
    ];
    const app = (mode: Mode) => [
      metric(`app QoS 1, ${mode.label}: delivered`, 'msg/s', 0),
      metric(`app QoS 1, ${mode.label}: broker CPU per message (primary + workers)`, 'µs', 2),
      metric(`app QoS 1, ${mode.label}: lost (acknowledged, not delivered)`, '', 0, { kind: 'max', limit: 0 }),
      metric(`app QoS 1, ${mode.label}: the machine busy while the devices published`, '% of all cores', 0),
      metric(`app QoS 1, ${mode.label}: load generator + Redis CPU per message`, 'µs', 2),
      metric(`app QoS 1, ${mode.label}: devices per worker`, '', 0),
    ];
    const telSingle = tel(SINGLE).slice(0, 5);
    const telTwo = tel(TWO_WORKERS);
    const appSingle = app(SINGLE).slice(0, 5);
    const appOne = app(ONE_WORKER).slice(0, 5);
    const appTwo = app(TWO_WORKERS);
    const speedup = metric('app QoS 1: 2 workers / 1 worker delivered', '×', 2, { kind: 'min', limit: SPEEDUP_GOAL });
    const result: ScenarioResult = {
      id: 12,
      title: `${this.title} (Nucleon only: the baselines have no workers)`,
      metrics: [...telSingle, ...telTwo, ...appSingle, ...appOne, ...appTwo, speedup],
      notes: [],
    };
    const noRedis = RedisServer.unavailable();
    if (noRedis) return { ...result, notRun: noRedis };

    const telemetryMs = context.quick ? 4000 : 15_000;
    const parts = selectedParts();
    const noVictoria = VictoriaMetrics.unavailable();
    if (!parts.includes('telemetry')) {
      for (const m of [...telSingle, ...telTwo]) m.values.nucleon = 'not run';
    } else if (noVictoria) {
      for (const m of [...telSingle, ...telTwo]) m.values.nucleon = 'not run';
      result.notes.push(`telemetry not run: ${noVictoria}`);
    } else {
      await telemetryInMode(context, result, SINGLE, telSingle, telemetryMs);
      await telemetryInMode(context, result, TWO_WORKERS, telTwo, telemetryMs);
    }
    if (parts.includes('app')) {
      await appInMode(context, result, SINGLE, appSingle);
      await appInMode(context, result, ONE_WORKER, appOne);
      await appInMode(context, result, TWO_WORKERS, appTwo);
    }
    const one = appOne[0]?.values.nucleon;
    const two = appTwo[0]?.values.nucleon;
    if (typeof one === 'number' && typeof two === 'number' && one > 0) speedup.values.nucleon = two / one;
    else if (context.targets.some((t) => t.name === 'nucleon')) speedup.values.nucleon = 'not measured';

    result.notes.push(
      `Telemetry: ${TELEMETRY_DEVICES} devices publish Pyrinas telemetry CBOR on <uid>/tel/p at QoS 1 (32 in flight each) for ${telemetryMs / 1000} s into a fresh victoria-metrics per mode, as scenario 8's device path; points/s = points found there / time from the first publish until the last was stored.`,
      `App: ${DEVICES} devices, QoS 1, 64-byte payloads, ${WINDOW} in flight each, unthrottled, as scenario 1; each worker runs the bench's counting app runner (added with runWorkers' setup) and the primary sums their counts. "1 worker" and "2 workers" both run in cluster mode on Redis, so their ratio is the gain of the second worker alone; "single process" is the default without Redis, for reference. Latency is not reported here (percentiles of several processes cannot be merged from their summaries).`,
      'Each workers mode gets its own redis-server (appendonly yes, as README "Cluster" asks) on a free loopback port, started and stopped by the bench; Redis CPU is not in the broker CPU figures. Broker CPU is user + system time from /proc/<pid>/stat summed over the primary and every worker.',
      'Devices per worker: counted from presence (the instance of each device\'s entry, as admin devices.list shows it) halfway through the run. Each generator process connects its devices one at a time here: with 16 at a time (the other scenarios), node:cluster\'s round-robin gave a queued connection to whichever worker took its last one first, and 64 devices split as unevenly as 19 + 45.',
      'CPU while the devices published (a note per mode): user + system time of each process from /proc/<pid>/stat over the publishing (after the app runs\' warm-up), as a share of one core; the workers\' own threads (libuv\'s pool writing the ingest log, V8\'s GC) are in their figures. "The machine" is every core\'s busy time from /proc/stat over the same time (the kernel\'s loopback network work and anything else running included); steal is time the hypervisor gave to other guests.',
      `On this ${os.cpus().length}-core machine the load generator's processes, victoria-metrics and redis-server compete with the workers for the same cores: two workers never get two free cores, so the gain measured here is lower than on a machine with cores to spare.`,
    );
    return result;
  },
};
