import type { Readable } from 'node:stream';

/**
 * aedes 1.2.0 sends a new subscription its retained messages with
 * `stream.pipe()` (lib/handlers/subscribe.js), which does not forward errors:
 * a read error on that stream (the store closing under a subscription at
 * shutdown, a disk or Redis error) was an uncaught exception. Every retained
 * stream handed to aedes gets a listener; that subscriber then misses the
 * retained messages not yet read, and the error is reported.
 */
export function reportRetainedReadErrors(stream: Readable, report: (error: Error) => void): Readable {
  stream.on('error', report);
  return stream;
}
