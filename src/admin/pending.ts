import { PendingAnswers } from '../util/pending-answers.js';
import { AdminError } from './protocol.js';

/**
 * Requests sent to other runners (OTA, campaigns, the app) for admin clients,
 * waiting for the event with the same correlation id. Each one times out with
 * a clear error, so no admin client waits forever on a runner that never answers.
 */
export class PendingRequests extends PendingAnswers {
  constructor(timeoutMs: number) {
    super(timeoutMs, 'admin', (what, ms) => new AdminError('TIMEOUT', `${what}: no answer within ${ms} ms`));
  }

  /** Drops every request of a closed connection; their late answers are ignored. */
  cancelOwner(owner: string): void {
    this.failOwner(owner, (what) => new AdminError('UNAVAILABLE', `${what}: the connection closed`));
  }

  cancelAll(reason: string): void {
    this.failAll((what) => new AdminError('UNAVAILABLE', `${what}: ${reason}`));
  }
}
