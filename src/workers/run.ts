import cluster from 'node:cluster';
import { validateConfig, type Config, type ConfigInput } from '../config/index.js';
import { createLogger, type Logger } from '../logger.js';
import { runPrimary } from './primary.js';
import { workerCount } from './settings.js';
import { runWorker, workerEnvironment, type WorkerSetup } from './worker.js';

/**
 * In a worker forked by `runWorkers` or `serve --workers`: runs it (with
 * `setup`) until it is stopped and resolves with its exit code. In any other
 * process: resolves with undefined at once.
 */
export async function runIfWorker(setup?: WorkerSetup): Promise<number | undefined> {
  const worker = cluster.isWorker ? workerEnvironment() : undefined;
  if (!worker) return undefined;
  try {
    return await runWorker(worker.slot, worker.config, setup);
  } finally {
    // Closes the channel to the primary (a listener on it would keep the process alive) as an
    // orderly exit, so node:cluster does not take it for the primary's death and exit with 0.
    cluster.worker?.disconnect();
  }
}

export interface WorkersOptions {
  /** Worker processes; 0 is one per core. Needs cluster mode (`[cluster] redis_url`). */
  workers: number;
  /** Called in every worker, before it starts: add your runners (README "Workers"). */
  setup?: WorkerSetup;
  /** The primary's logger; from `config.log` by default. */
  logger?: Logger;
  /** Called in the primary once every worker is ready, with their pids by slot. */
  onReady?: (pids: Record<number, number | undefined>) => void;
}

/**
 * `nucleon serve --workers N` from a program of your own, with your runners
 * in every worker. node:cluster forks the program itself: the same call in a
 * worker runs that worker (with the config the primary resolved, whatever
 * `config` it is given there) and `setup`; in the primary it runs the pool
 * (src/workers/primary.ts). Resolves with the process's exit code once it is
 * stopped (SIGINT/SIGTERM to the primary).
 */
export async function runWorkers(config: ConfigInput | Readonly<Config>, options: WorkersOptions): Promise<number> {
  const asWorker = await runIfWorker(options.setup);
  if (asWorker !== undefined) return asWorker;
  const validated = validateConfig(config, { baseDir: process.cwd() });
  const count = workerCount(validated, options.workers, 'config');
  const logger = options.logger ?? createLogger({ level: validated.log.level, format: validated.log.format });
  return runPrimary(validated, count, logger.child({ role: 'primary' }), options.onReady);
}
