import { Counter, type Registry } from 'prom-client';
import type { Logger } from './logger.js';

export type UnhandledKind = 'rejection' | 'exception';

/** The part of `process` the guard listens on (a plain EventEmitter in tests). */
export interface GuardedProcess {
  on(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  on(event: 'uncaughtException', listener: (error: Error) => void): unknown;
  off(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  off(event: 'uncaughtException', listener: (error: Error) => void): unknown;
}

export interface ProcessGuardOptions {
  logger: Logger;
  metrics: Registry;
  /**
   * Called on the first uncaught exception: stop what can be stopped and exit
   * non-zero. Later ones while it runs are logged and counted only.
   */
  fatal: (error: Error) => void;
  process?: GuardedProcess;
}

/**
 * The last line of defence, not the fix: every listener that handles network
 * input validates it and contains its own failures (src/contain.ts); what
 * still arrives here is a bug, made visible in the log and in
 * `nucleon_process_unhandled_total{kind}`.
 *
 * - An unhandled rejection is logged at error and counted; the process goes on.
 *   A promise nobody awaited has no caller left to corrupt, and ending the
 *   process would take every device down for it.
 * - An uncaught exception is logged at fatal and counted, then `fatal` stops
 *   and exits: the throw left a synchronous call half done, with state that
 *   can no longer be trusted, so a supervisor's restart is safer than going on.
 *
 * Returns a function that removes the handlers again.
 */
export function guardProcess(options: ProcessGuardOptions): () => void {
  const target = options.process ?? process;
  const counter = unhandledCounter(options.metrics);
  let failing = false;
  const onRejection = (reason: unknown) => {
    counter.inc({ kind: 'rejection' });
    options.logger.error({ err: reason }, 'unhandled promise rejection (a bug); the process goes on');
  };
  const onException = (error: Error) => {
    counter.inc({ kind: 'exception' });
    if (failing) {
      options.logger.fatal({ err: error }, 'another uncaught exception while stopping');
      return;
    }
    failing = true;
    options.logger.fatal({ err: error }, 'uncaught exception (a bug): stopping and exiting');
    options.fatal(error);
  };
  target.on('unhandledRejection', onRejection);
  target.on('uncaughtException', onException);
  return () => {
    target.off('unhandledRejection', onRejection);
    target.off('uncaughtException', onException);
  };
}

function unhandledCounter(registry: Registry): Counter<'kind'> {
  const name = 'nucleon_process_unhandled_total';
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing;
  const counter = new Counter({
    name,
    help: 'Unhandled promise rejections and uncaught exceptions that reached the process (each one is a bug)',
    labelNames: ['kind'],
    registers: [registry],
  });
  // Both series from the start, so a dashboard sees 0 rather than nothing.
  for (const kind of ['rejection', 'exception'] satisfies UnhandledKind[]) counter.inc({ kind }, 0);
  return counter;
}
