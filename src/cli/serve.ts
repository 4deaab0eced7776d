import { parseArgs } from 'node:util';
import { loadConfigFile, MAX_WORKERS } from '../config/index.js';
import { ConfigError } from '../errors.js';
import { createLogger } from '../logger.js';
import { Nucleon } from '../nucleon.js';
import { stopOnSignals } from '../signals.js';
import { runIfWorker, runPrimary, workerCount } from '../workers/index.js';

export const serveUsage = `nucleon serve [--config <file>] [--workers <n>]

Starts the broker with the given configuration (default: config.toml).
--workers <n>  worker processes sharing the listening ports (default: [cluster] workers,
               itself 1 by default); 0: one per core. More than 1 needs cluster mode
               ([cluster] redis_url or NUCLEON_REDIS_URL): README "Workers".
SIGINT or SIGTERM stops it cleanly (exit 0); a second signal forces exit (1).`;

/** Runs until a signal stops it; resolves with the process exit code. */
export async function serve(argv: string[]): Promise<number> {
  // A worker forked by `serve --workers` runs the same command line; the primary's environment says which it is.
  const asWorker = await runIfWorker();
  if (asWorker !== undefined) return asWorker;

  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c', default: 'config.toml' }, workers: { type: 'string', short: 'w' } },
    strict: true,
  });
  const flag = values.workers === undefined ? undefined : parseWorkers(values.workers);
  const { config, source } = await loadConfigFile(values.config ?? 'config.toml');
  const count = workerCount(config, flag, source);
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  if (count > 1) {
    logger.info({ config: source, workers: count }, 'starting nucleon with worker processes');
    return runPrimary(config, count, logger.child({ role: 'primary' }));
  }

  const nucleon = new Nucleon(config, { logger, processMetrics: true });
  logger.info({ config: source }, 'starting nucleon');

  const stopped = stopOnSignals(nucleon, logger);

  // A server runs until it is told to stop, even with every listener switched off.
  const keepAlive = setInterval(() => undefined, 2 ** 30);
  try {
    await nucleon.start();
    return await stopped;
  } finally {
    clearInterval(keepAlive);
  }
}

function parseWorkers(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > MAX_WORKERS) throw new ConfigError([`--workers: expected an integer 0..${MAX_WORKERS}, got ${JSON.stringify(text)}`]);
  return n;
}
