import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Registry } from 'prom-client';
import { resolveApiKey } from '../admin/index.js';
import { ensureServerTls } from '../certs/index.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { guardProcess } from '../process-guard.js';
import { needsServerTls, workerConfig } from './settings.js';
import { WorkerPool, WorkerStartError } from './pool.js';

/**
 * What the workers share on local disk is made here, once, before any worker
 * exists, so that none of them races another to create it: the development
 * CA and server certificate (when a TLS listener needs them) and the
 * generated admin API key. Returns the key every worker is given.
 */
async function prepareShared(config: Readonly<Config>, logger: Logger): Promise<string | undefined> {
  if (needsServerTls(config)) await ensureServerTls(config.certs, logger);
  if (!config.admin.enabled) return undefined;
  const apiKey = await resolveApiKey(config.admin.api_key, config.store.path);
  if (apiKey.generated) logger.info({ file: apiKey.file }, 'generated an admin API key');
  return apiKey.key;
}

/** A log left by a single-process run is not any worker's: say so, since no worker replays it. */
async function warnAboutSingleProcessLog(config: Readonly<Config>, logger: Logger): Promise<void> {
  if (config.ingest.durability === 'memory') return;
  const dir = config.ingest.dir === '' ? path.join(config.store.path, 'ingest') : config.ingest.dir;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (names.some((name) => name.endsWith('.seg'))) {
    logger.warn(
      { dir },
      'this ingest log folder holds the log of a single-process run, which no worker replays: if runners had not caught up with it, run once with workers = 1 until ingest.status shows no lag (README "Workers")',
    );
  }
}

/**
 * `nucleon serve` with more than one worker, in the primary process: prepares
 * the shared files, runs the worker pool, stops it on the first SIGINT or
 * SIGTERM (a second one kills the workers and exits 1). Resolves with the exit
 * code: 0 when every worker stopped cleanly. `onReady` is called once every
 * worker is ready, with their pids by slot.
 */
export async function runPrimary(config: Readonly<Config>, count: number, logger: Logger, onReady?: (pids: Record<number, number | undefined>) => void): Promise<number> {
  const apiKey = await prepareShared(config, logger);
  await warnAboutSingleProcessLog(config, logger);
  const pool = new WorkerPool({ count, configOf: (slot) => workerConfig(config, slot, apiKey), logger, stopTimeoutMs: config.broker.stop_timeout_ms });
  const exitNow = (code: number): never => {
    logger.flush();
    process.exit(code);
  };

  // The primary's own last line of defence: a bug here stops the workers cleanly before exiting.
  guardProcess({ logger, metrics: new Registry(), fatal: () => void pool.stop().then(() => exitNow(1), () => exitNow(1)) });

  let signalled = 0;
  const stopped = new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      signalled++;
      if (signalled > 1) {
        logger.warn({ signal }, 'second signal: killing the workers');
        pool.kill();
        exitNow(1);
      }
      logger.info({ signal }, 'stopping the workers');
      pool.stop().then(resolve, (error: unknown) => {
        logger.error({ err: error }, 'stopping the workers failed');
        resolve(1);
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });

  try {
    await pool.start();
  } catch (error) {
    if (error instanceof WorkerStartError) {
      logger.error({ worker: error.slot, code: error.exitCode }, error.message);
      return error.exitCode;
    }
    throw error;
  }
  if (signalled === 0) {
    logger.info({ workers: count, pids: pool.pids() }, 'all workers ready');
    onReady?.(pool.pids());
  }
  return stopped;
}
