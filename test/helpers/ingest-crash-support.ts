// The crash scenario of the durable ingest log (README "Durable ingest"),
// shared by test/system/faults-ingest-crash.test.ts (short) and `npm run soak --
// --faults` (20 kills): a fleet of devices publishing app messages and
// telemetry at QoS 1 to a Nucleon process with an app runner (recording every
// event it handles, with its log id) and the Influx runner writing to a real
// victoria-metrics, which is down for part of the run; SIGKILL of the server
// at seeded random moments, restart each time. At the end every message a
// device saw acknowledged must have reached the app runner (app) and
// victoria-metrics (telemetry); duplicates are counted, and an app duplicate
// must carry the same log id as its first copy.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { encode } from 'cbor-x';
import mqtt, { type MqttClient } from 'mqtt';
import { tempDir, waitFor } from './index.js';
import { startVictoriaMetrics, type VictoriaMetrics } from './victoria-metrics.js';
import { freePorts, Rng, startInstance, type Instance, type Ports } from './reliability-support.js';

export interface CrashScenario {
  durability: 'fsync' | 'write' | 'memory';
  devices: number;
  kills: number;
  seed: number;
  /** Load between two kills: drawn between these (ms). */
  loadMs: [number, number];
  /** Kills during which victoria-metrics is down: [first, last] (indices). */
  influxDown: [number, number];
  log?: (line: string) => void;
}

export interface CrashResult {
  acknowledgedApp: number;
  acknowledgedTelemetry: number;
  lostApp: number;
  lostTelemetry: number;
  duplicateApp: number;
  duplicateAppWithOtherId: number;
  duplicateTelemetry: number;
  kills: number;
  restartsMs: number[];
}

/** Acknowledged app messages in each round before its kill may come. */
const MIN_PER_ROUND = 200;

/** One telemetry message per device at a time, 2 ms apart: InfluxDB keys a point by its millisecond. */
const TELEMETRY_GAP_MS = 2;

class Fleet {
  readonly ackedApp = new Set<string>();
  readonly ackedTelemetry = new Set<string>();
  private clients: MqttClient[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private counter = 0;

  constructor(
    private readonly uids: string[],
    private readonly port: () => number,
  ) {}

  async start(): Promise<void> {
    this.clients = await Promise.all(
      this.uids.map((uid) => mqtt.connectAsync(`mqtt://127.0.0.1:${this.port()}`, { clientId: uid, reconnectPeriod: 0, connectTimeout: 10_000, protocolVersion: 4, clean: true })),
    );
    this.running = true;
    this.loops = this.clients.map((client, i) => this.load(client, this.uids[i] ?? ''));
  }

  /** Publishes app and telemetry alternately, one at a time, until stopped or cut off. */
  private async load(client: MqttClient, uid: string): Promise<void> {
    // A publish cut off by the kill never settles (mqtt.js keeps it for a reconnect that never comes).
    const closed = new Promise<false>((resolve) => client.once('close', () => resolve(false)));
    const acked = (publishing: Promise<unknown>) => Promise.race([publishing.then(() => true, () => false), closed]);
    for (let round = 0; this.running && client.connected && round < 1_000_000; round++) {
      const n = ++this.counter;
      if (!(await acked(client.publishAsync(`${uid}/app/p/crash`, `${uid}:${n}`, { qos: 1 })))) return;
      this.ackedApp.add(`${uid}:${n}`);
      if (!(await acked(client.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<number, number>([[1, n]]))), { qos: 1 })))) return;
      this.ackedTelemetry.add(`${uid}:${n}`);
      await new Promise((resolve) => setTimeout(resolve, TELEMETRY_GAP_MS));
    }
  }

  /** Waits for the loops to end (they end when their connection drops or `stop` is called). */
  async settle(): Promise<void> {
    await Promise.all(this.loops);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.settle();
    await Promise.all(this.clients.map((client) => client.endAsync(true)));
  }
}

function config(scenario: CrashScenario, influxUrl: string): string[] {
  return [
    '[ingest]',
    `durability = "${scenario.durability}"`,
    '[mqtt.auth]',
    'anonymous = true',
    '[influx]',
    `url = "${influxUrl}"`,
    'bucket = "crash"',
    'flush_interval_ms = 200',
    'batch_size = 2000',
    'retry_initial_ms = 50',
    'retry_max_ms = 500',
    'max_retries = 2',
    'timeout_ms = 2000',
  ];
}

/** No message more delivered for this long fails the wait; while they keep arriving (a busy machine) it goes on. */
const STALL_MS = 60_000;
/** The whole wait's bound, however slowly they arrive. */
const DELIVERY_BOUND_MS = 240_000;

/**
 * Waits until every acknowledged message was delivered. After the last
 * restart a spool is replayed into a victoria-metrics that was down: on a
 * busy machine that takes longer than on a quiet one, so the wait fails only
 * when nothing more arrives for STALL_MS, naming what is missing and what
 * the server's /metrics say of its ingest and Influx delivery.
 */
async function deliveredWhileProgressing(missing: () => Promise<{ app: string[]; telemetry: string[] }>, metricsText: () => Promise<string>): Promise<number> {
  const started = Date.now();
  const countOf = (left: { app: string[]; telemetry: string[] }) => left.app.length + left.telemetry.length;
  let left = await missing();
  while (countOf(left) > 0) {
    const before = countOf(left);
    // Each step waits (polling, as waitFor does) for fewer missing messages, at most STALL_MS and within the whole bound.
    const stepMs = Math.min(STALL_MS, DELIVERY_BOUND_MS - (Date.now() - started));
    try {
      left = await waitFor(
        async () => {
          const now = await missing();
          return countOf(now) < before ? now : undefined;
        },
        'more acknowledged messages delivered',
        Math.max(0, stepMs),
        200,
      );
    } catch (error) {
      const metrics = await metricsText().catch((failure: unknown) => `(no /metrics: ${String(failure)})`);
      const server = metrics
        .split('\n')
        .filter((line) => /^nucleon_(influx|ingest)_/.test(line))
        .join('; ');
      throw new Error(
        `${left.app.length} app (e.g. ${left.app.slice(0, 3).join(', ')}) and ${left.telemetry.length} telemetry (e.g. ${left.telemetry.slice(0, 3).join(', ')}) acknowledged messages not delivered after ${Date.now() - started} ms; server: ${server}`,
        { cause: error },
      );
    }
  }
  return Date.now() - started;
}

export async function runCrashScenario(t: TestContext, scenario: CrashScenario): Promise<CrashResult> {
  const log = scenario.log ?? (() => undefined);
  const rng = new Rng(scenario.seed);
  const dir = await tempDir(t, 'nucleon-crash-');
  const vmDir = path.join(dir, 'vm');
  let vm: VictoriaMetrics | undefined = await startVictoriaMetrics(t, vmDir);
  if (!vm) throw new Error('victoria-metrics is required');
  const vmPort = vm.port;
  const influxUrl = vm.url;
  const ports: Ports = await freePorts();
  const recordFile = path.join(dir, 'handled.txt');
  const extraToml = config(scenario, influxUrl);
  const uids = Array.from({ length: scenario.devices }, (_, i) => `crash-${String(i).padStart(3, '0')}`);
  let instance: Instance = await startInstance(t, { dir, ports, recordFile, extraToml });
  const fleet = new Fleet(uids, () => ports.tcp);
  const restartsMs: number[] = [];

  for (let kill = 0; kill < scenario.kills; kill++) {
    if (kill === scenario.influxDown[0] && vm) {
      await vm.stop();
      vm = undefined;
      log(`kill ${kill}: victoria-metrics down`);
    }
    if (kill === scenario.influxDown[1] + 1 && !vm) {
      vm = await startVictoriaMetrics(t, vmDir, vmPort);
      log(`kill ${kill}: victoria-metrics back`);
    }
    const before = fleet.ackedApp.size;
    await fleet.start();
    const loadMs = scenario.loadMs[0] + rng.int(scenario.loadMs[1] - scenario.loadMs[0] + 1);
    // Some load in every round, however busy the machine; then the drawn moment.
    await waitFor(() => fleet.ackedApp.size >= before + MIN_PER_ROUND, `${MIN_PER_ROUND} acknowledged messages in round ${kill + 1}`, 60_000);
    await new Promise((resolve) => setTimeout(resolve, loadMs));
    await instance.kill();
    await fleet.stop();
    log(`kill ${kill + 1}/${scenario.kills} after ${loadMs} ms of load: ${fleet.ackedApp.size} app, ${fleet.ackedTelemetry.size} telemetry acknowledged so far`);
    const started = Date.now();
    instance = await startInstance(t, { dir, ports, recordFile, extraToml });
    restartsMs.push(Date.now() - started);
  }
  if (!vm) vm = await startVictoriaMetrics(t, vmDir, vmPort);
  if (!vm) throw new Error('victoria-metrics is required');
  const finalVm = vm;

  const handledApp = async () => {
    const counts = new Map<string, string[]>();
    for (const line of (await readFile(recordFile, 'utf8')).split('\n')) {
      const [, target, hex, id] = line.split(' ');
      if (target !== 'crash' || hex === undefined) continue;
      const key = Buffer.from(hex, 'hex').toString();
      counts.set(key, [...(counts.get(key) ?? []), id ?? '-']);
    }
    return counts;
  };
  const storedTelemetry = async () => {
    const counts = new Map<string, number>();
    for (const series of await finalVm.export('telemetry_rsrp')) {
      const uid = series.metric.id ?? '';
      for (const value of series.values) counts.set(`${uid}:${value}`, (counts.get(`${uid}:${value}`) ?? 0) + 1);
    }
    return counts;
  };
  const missing = async () => {
    const app = await handledApp();
    const tel = await storedTelemetry();
    return { app: [...fleet.ackedApp].filter((key) => !app.has(key)), telemetry: [...fleet.ackedTelemetry].filter((key) => !tel.has(key)) };
  };
  if (scenario.durability === 'memory') {
    // "memory" loses what was in flight at a kill: wait only as long as it takes the durable modes to deliver.
    await waitFor(async () => {
      const left = await missing();
      return left.app.length + left.telemetry.length === 0;
    }, 'every acknowledged message at the app runner and in victoria-metrics', 5000, 200).catch((error: unknown) => {
      // The loss is what this mode shows: only the time-out is expected.
      if (!(error instanceof Error && error.message.startsWith('timed out'))) throw error;
    });
  } else {
    const ms = await deliveredWhileProgressing(missing, () => instance.metricsText());
    log(`every acknowledged message delivered ${ms} ms after the last restart`);
  }
  const app = await handledApp();
  const tel = await storedTelemetry();
  const duplicatesOfApp = [...app.values()].filter((ids) => ids.length > 1);
  await instance.stop();
  return {
    acknowledgedApp: fleet.ackedApp.size,
    acknowledgedTelemetry: fleet.ackedTelemetry.size,
    lostApp: [...fleet.ackedApp].filter((key) => !app.has(key)).length,
    lostTelemetry: [...fleet.ackedTelemetry].filter((key) => !tel.has(key)).length,
    duplicateApp: duplicatesOfApp.length,
    duplicateAppWithOtherId: duplicatesOfApp.filter((ids) => new Set(ids).size > 1).length,
    duplicateTelemetry: [...tel.values()].filter((count) => count > 1).length,
    kills: scenario.kills,
    restartsMs,
  };
}
