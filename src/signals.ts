import type { Logger } from './logger.js';
import type { Nucleon } from './nucleon.js';

/**
 * Stops `nucleon` on the first SIGINT or SIGTERM and resolves with the exit
 * code (0 clean, 1 failed). A second signal, or a stop that takes longer than
 * twice `broker.stop_timeout_ms`, exits at once with 1. Used by `nucleon serve`
 * and by programs that embed Nucleon (examples/main.ts).
 */
export function stopOnSignals(nucleon: Nucleon, logger: Logger = nucleon.logger): Promise<number> {
  const forceAfterMs = nucleon.config.broker.stop_timeout_ms * 2;
  let signalled = 0;
  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      signalled++;
      if (signalled > 1) {
        logger.warn({ signal }, 'second signal: exiting without a clean stop');
        logger.flush();
        process.exit(1);
      }
      logger.info({ signal }, 'stopping');
      const force = setTimeout(() => {
        logger.error({ timeoutMs: forceAfterMs }, 'clean stop took too long; exiting');
        logger.flush();
        process.exit(1);
      }, forceAfterMs);
      force.unref();
      nucleon.stop().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
