// Nucleon under test: the built code (dist/) in its own process, with a bench
// config and an in-process counting app runner (what a user's app runner is).
// With a worker count (scenario 12) it runs `runWorkers`: this script is then
// the primary, answering the bench, and (forked by node:cluster) each worker,
// with its own counting runner that the primary asks over the cluster channel.
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { EventOf, EventRunner as EventRunnerType, Nucleon } from '../../src/index.js';
import { AppCounter, mergeStats, responsePayload, type AppStats, type RespondArgs, type RespondResult, type StatsOptions } from '../lib/app-counter.js';
import { memoryHandlers, notify, RpcCaller, serveRpc } from '../lib/ipc.js';
import { LoopDelayMonitor } from '../lib/loop-delay.js';

type NucleonModule = typeof import('../../src/index.js');

const [configJson, workersArg = '0'] = process.argv.slice(2);
if (!configJson) throw new Error('usage: nucleon-server.ts <config as JSON> [workers: 0 = one process without runWorkers]');
const workers = Number(workersArg);

// BENCH_NUCLEON_DIST: another build of Nucleon (an absolute dist directory inside the repository, for A/B runs).
const entry = process.env.BENCH_NUCLEON_DIST ? `${process.env.BENCH_NUCLEON_DIST}/index.js` : fileURLToPath(new URL('../../dist/index.js', import.meta.url));
if (!existsSync(entry)) throw new Error(`${entry} not found: run "npm run build" first`);
const nucleonModule = (await import(pathToFileURL(entry).href)) as NucleonModule;
// Service accounts are not in the library API (the CLI makes them); scenario 10 needs one, from the same build.
const devicesModule = (await import(pathToFileURL(path.join(path.dirname(entry), 'devices', 'index.js')).href)) as typeof import('../../src/devices/index.js');
const { createNucleon, EventRunner, createLogger, otaRunnerOf, runWorkers } = nucleonModule;
if (workers > 0 && typeof runWorkers !== 'function') throw new Error(`${entry} has no runWorkers: a build from before it was added`);

const counter = new AppCounter();
const loopDelay = new LoopDelayMonitor();

/** Counts every ApplicationRequest and, on command, sends ApplicationResponses. */
class BenchApp extends (EventRunner as unknown as typeof EventRunnerType<'ApplicationRequest'>) {
  constructor() {
    super('bench-app', ['ApplicationRequest']);
  }

  protected handle(event: EventOf<'ApplicationRequest'>): void {
    counter.delivered(event.target, event.payload);
  }

  async influxFlood(args: { points: number; batch: number; measurement: string }): Promise<{ published: number; elapsedMs: number }> {
    const started = performance.now();
    const base = Date.now() - args.points;
    let published = 0;
    while (published < args.points) {
      const count = Math.min(args.batch, args.points - published);
      const points = Array.from({ length: count }, (_, i) => ({
        measurement: args.measurement,
        tags: { source: 'bench' },
        fields: { value: published + i },
        timestampMs: base + published + i,
      }));
      await this.publish({ type: 'InfluxDataSave', points });
      published += count;
    }
    return { published, elapsedMs: performance.now() - started };
  }

  /** Server → device through the event pipeline, with its back-pressure. */
  async respond(args: RespondArgs): Promise<RespondResult> {
    const started = performance.now();
    let published = 0;
    for (let i = 0; i < args.perDevice; i++) {
      for (const uid of args.uids) {
        await this.publish({ type: 'ApplicationResponse', uid, target: 'resp', payload: responsePayload(args.payloadSize) });
        published++;
      }
    }
    return { published, elapsedMs: performance.now() - started };
  }
}

const config = JSON.parse(configJson) as NonNullable<Parameters<typeof createNucleon>[0]>;
const logger = createLogger({ level: 'warn', format: 'json' });

/** The default: one process, `createNucleon` with the counting runner. */
async function runSingleProcess(): Promise<void> {
  const nucleon = createNucleon(config, { logger });
  const app = new BenchApp();
  await nucleon.addRunner(app);
  await nucleon.start();

  serveRpc(
    {
      stats: (options: StatsOptions) => ({ ...counter.stats(options.latency !== false), loopDelay: loopDelay.read(), runners: nucleon.broker.stats() }),
      reset: () => {
        counter.reset();
        loopDelay.reset();
      },
      respond: (args: RespondArgs) => app.respond(args),
      /** The Prometheus text of /metrics (the ingest log's commit histograms, say), for a verbose run. */
      metrics: () => nucleon.metrics.metrics(),
      // Scenario 8: the application writes `points` through the Influx runner in InfluxDataSave batches.
      // Timestamps are distinct (1 ms apart per source) so the database keeps every point and they can be counted.
      influxFlood: (args: { points: number; batch: number; measurement: string }) => app.influxFlood(args),
      // Scenario 7: a firmware image of `size` pseudo-random bytes, through the OTA runner's API.
      otaAddImage: async (args: { id: string; size: number }) => {
        const data = randomBytes(args.size);
        const added = await otaRunnerOf(nucleon).addImage({ id: args.id, imageType: 'primary', description: 'bench image', source: { kind: 'bytes', data } });
        return { id: added.image.id, size: added.image.size };
      },
      // Scenario 10: a service account for the MQTT subscriber (username `svc:<name>`).
      addServiceAccount: async (args: { name: string; password: string }) => {
        await devicesModule.serviceCredentials(nucleon.store).add(args.name, args.password);
        return { name: args.name };
      },
      ...memoryHandlers(),
    },
    () => nucleon.stop(),
  );
  notify('ready', { workerPids: [] });
}

/** One worker of runWorkers: the counting runner in its Nucleon, answering the primary in the bench's RPC protocol. */
async function runBenchWorker(): Promise<void> {
  const app = new BenchApp();
  let nucleon: Nucleon | undefined;
  serveRpc(
    {
      stats: (options: StatsOptions) => counter.stats(options.latency !== false),
      reset: () => counter.reset(),
      metrics: () => nucleon?.metrics.metrics() ?? '',
      // The devices this worker holds, from presence (what admin devices.list shows as each device's instance).
      devices: () => {
        const presence = nucleon?.presence;
        let devices = 0;
        for (const entry of presence?.entries() ?? []) if (entry.instance === presence?.instanceId) devices++;
        return { pid: process.pid, instance: presence?.instanceId, devices };
      },
    },
    // The worker stops when the primary asks it (runWorkers); nothing of the bench's own to close.
    () => Promise.resolve(),
  );
  process.exitCode = await runWorkers(config, {
    workers,
    setup: async (worker) => {
      nucleon = worker;
      await worker.addRunner(app);
    },
  });
}

/** The primary of runWorkers: the bench's calls are answered from every worker's runner. */
async function runBenchPrimary(): Promise<void> {
  const callers = new Map<number, RpcCaller>();
  const callerOf = (worker: Worker): RpcCaller => {
    let caller = callers.get(worker.id);
    if (!caller) {
      caller = new RpcCaller(`worker ${worker.id}`, (message) => worker.send(message));
      callers.set(worker.id, caller);
    }
    return caller;
  };
  cluster.on('message', (worker, message) => callers.get(worker.id)?.replied(message));
  cluster.on('exit', (worker) => {
    callers.get(worker.id)?.failAll(new Error(`worker ${worker.id} exited`));
    callers.delete(worker.id);
  });
  const ask = <T>(cmd: string, args: unknown = {}): Promise<T[]> =>
    Promise.all(Object.values(cluster.workers ?? {}).flatMap((worker) => (worker ? [callerOf(worker).call<T>(cmd, args)] : [])));
  let workerPids: number[] = [];
  const stopped = runWorkers(config, {
    workers,
    logger,
    onReady: (pids) => {
      workerPids = Object.values(pids).filter((pid): pid is number => pid !== undefined);
      notify('ready', { workerPids });
    },
  });
  serveRpc(
    {
      // Counts only: latency percentiles of several processes cannot be merged from their summaries.
      stats: async () => mergeStats(await ask<AppStats>('stats', { latency: false })),
      reset: async () => {
        await ask('reset');
      },
      /** Every worker's Prometheus text, one after the other, for a verbose run. */
      metrics: async () => (await ask<string>('metrics')).map((text, i) => `# worker ${i + 1}\n${text}`).join('\n'),
      workers: async () => ({ workerPids, perWorker: await ask<{ pid: number; instance: string | undefined; devices: number }>('devices') }),
      gc: () => false,
    },
    async () => {
      // runWorkers stops the pool on SIGTERM, each worker draining as `nucleon serve --workers` does.
      process.kill(process.pid, 'SIGTERM');
      await stopped;
    },
  );
  // Ends here without a shutdown call only when the pool could not start (a worker failed): say so by the exit.
  process.exit(await stopped);
}

if (workers === 0) await runSingleProcess();
else if (cluster.isWorker) await runBenchWorker();
else await runBenchPrimary();
