import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/index.js';
import { createLogger } from '../logger.js';
import { Nucleon } from '../nucleon.js';
import { stopOnSignals } from '../signals.js';

export const serveUsage = `nucleon serve [--config <file>]

Starts the broker with the given configuration (default: config.toml).
SIGINT or SIGTERM stops it cleanly (exit 0); a second signal forces exit (1).`;

/** Runs until a signal stops it; resolves with the process exit code. */
export async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c', default: 'config.toml' } }, strict: true });
  const { config, source } = await loadConfigFile(values.config ?? 'config.toml');
  const logger = createLogger({ level: config.log.level, format: config.log.format });
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
