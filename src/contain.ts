import type { Logger } from './logger.js';

/**
 * Wraps an event-emitter callback ('request', 'upgrade', 'connection',
 * 'message'…) so that a throw stays with the one request or socket it was
 * about. Node calls these listeners synchronously from its own code; an
 * exception there is uncaught and ends the process, taking every other device
 * and client with it. The throw is a bug, so it is logged at error with its
 * stack and `where`; `recover` then answers or closes what the callback was
 * handling (500, destroy the socket).
 */
export function contain<A extends unknown[]>(logger: Logger, where: string, callback: (...args: A) => unknown, recover: (...args: A) => void): (...args: A) => void {
  return (...args) => {
    try {
      callback(...args);
    } catch (error) {
      logger.error({ err: error, where }, 'event handler failed; only its request or connection is dropped');
      try {
        recover(...args);
      } catch (recoverError) {
        // Recovery is closing a socket; if even that throws, say so rather than crash on it.
        logger.error({ err: recoverError, where }, 'cleaning up after a failed event handler failed too');
      }
    }
  };
}
