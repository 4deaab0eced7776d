import { validateConfig } from '../config/index.js';
import { createLogger } from '../logger.js';
import { Nucleon } from '../nucleon.js';
import { newInstanceId } from '../presence/index.js';
import { stopOnSignals } from '../signals.js';
import { isToWorker, WORKER_CONFIG_ENV, WORKER_SLOT_ENV, type ToPrimary } from './messages.js';
import { WorkerMetrics } from './metrics.js';

/** What the primary handed this process, or undefined when it is not a worker of `serve --workers`. */
export function workerEnvironment(env: NodeJS.ProcessEnv = process.env): { slot: number; config: string } | undefined {
  const slot = Number(env[WORKER_SLOT_ENV]);
  const config = env[WORKER_CONFIG_ENV];
  if (!Number.isInteger(slot) || slot < 1 || config === undefined) return undefined;
  return { slot, config };
}

/**
 * What a program gives each of its workers before it starts: add the
 * application's runners here (`nucleon.addRunner(...)`), as with
 * `createNucleon` in a single process. `slot` is the worker's (1..N).
 */
export type WorkerSetup = (nucleon: Nucleon, slot: number) => void | Promise<void>;

/**
 * One worker: a normal cluster-mode Nucleon, with the config the primary
 * resolved (so a restarted worker runs exactly what its siblings run, even if
 * the file changed meanwhile), its own folders (src/workers/settings.ts), an
 * instance id naming its slot, and `/metrics` served for all workers.
 * Stops on SIGINT/SIGTERM or the primary's stop message, draining as
 * `nucleon serve` does; resolves with the exit code. If the primary dies,
 * node:cluster ends the worker at once (the durable ingest log keeps what
 * was acknowledged), so no worker outlives it.
 */
export async function runWorker(slot: number, configJson: string, setup?: WorkerSetup): Promise<number> {
  const config = validateConfig(JSON.parse(configJson), { label: `worker ${slot} config` });
  const logger = createLogger({ level: config.log.level, format: config.log.format }).child({ worker: slot });
  const instanceId = newInstanceId({ worker: slot });
  const exposition = new WorkerMetrics(slot);
  const nucleon = new Nucleon(config, { logger, processMetrics: true, instanceId, exposition });
  // Labels apply when metrics are read, so the runners' metrics registered later are labelled too.
  exposition.report(nucleon.metrics);
  const stopped = stopOnSignals(nucleon, logger, {
    onStopRequest: (stop) =>
      process.on('message', (message: unknown) => {
        if (isToWorker(message) && message.nucleon === 'stop') stop('the primary asked');
      }),
  });
  // A server runs until it is told to stop, even with every listener switched off.
  const keepAlive = setInterval(() => undefined, 2 ** 30);
  try {
    // Inside the try: a setup that throws fails this worker before it is ready, which stops the pool's start.
    await setup?.(nucleon, slot);
    await nucleon.start();
    const ready: ToPrimary = { nucleon: 'ready', instanceId };
    process.send?.(ready, undefined, {}, (error: Error | null) => {
      if (error) logger.error({ err: error }, 'telling the primary this worker is ready failed');
    });
    return await stopped;
  } finally {
    clearInterval(keepAlive);
    exposition.close();
  }
}
