import type { Logger } from './logger.js';
import type { Nucleon } from './nucleon.js';
import { guardProcess } from './process-guard.js';
import { Once } from './util/once.js';

/**
 * Runs `nucleon` as the process: stops it on the first SIGINT or SIGTERM and
 * resolves with the exit code (0 clean, 1 failed). A second signal, or a stop
 * that takes longer than twice `broker.stop_timeout_ms`, exits at once with 1.
 *
 * It also installs the process's last line of defence (src/process-guard.ts):
 * an unhandled rejection is logged and counted and the process goes on; an
 * uncaught exception is logged at fatal and counted, Nucleon is stopped (the
 * same bounded stop as for a signal) and the process exits with 1.
 *
 * Used by `nucleon serve` and by programs that embed Nucleon (examples/main.ts).
 */
export interface StopOptions {
  /**
   * Another way to ask for the same clean stop: a worker of `serve --workers`
   * registers the primary's stop message here. It does not count as a signal,
   * so a worker told by both (Ctrl-C reaches the whole process group) still
   * stops cleanly instead of taking it as the second, forcing signal.
   */
  onStopRequest?: (stop: (reason: string) => void) => void;
}

export function stopOnSignals(nucleon: Nucleon, logger: Logger = nucleon.logger, options: StopOptions = {}): Promise<number> {
  const forceAfterMs = nucleon.config.broker.stop_timeout_ms * 2;
  const exitNow = (code: number): never => {
    logger.flush();
    process.exit(code);
  };
  const stopping = new Once(() => {
    const force = setTimeout(() => {
      logger.error({ timeoutMs: forceAfterMs }, 'clean stop took too long; exiting');
      exitNow(1);
    }, forceAfterMs);
    force.unref();
    return nucleon.stop().then(
      () => 0,
      (error: unknown) => {
        logger.error({ err: error }, 'stop failed');
        return 1;
      },
    );
  });
  const stop = (): Promise<number> => stopping.run();

  guardProcess({
    logger,
    metrics: nucleon.metrics,
    fatal: () => {
      stop().then(
        () => exitNow(1),
        () => exitNow(1),
      );
    },
  });

  let signalled = 0;
  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      signalled++;
      if (signalled > 1) {
        logger.warn({ signal }, 'second signal: exiting without a clean stop');
        exitNow(1);
      }
      logger.info({ signal }, 'stopping');
      void stop().then(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    options.onStopRequest?.((reason) => {
      logger.info({ reason }, 'stopping');
      void stop().then(resolve);
    });
  });
}
