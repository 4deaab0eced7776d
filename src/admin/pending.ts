import { randomUUID } from 'node:crypto';
import { AdminError } from './protocol.js';

interface Pending {
  owner: string;
  what: string;
  resolve: (event: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Requests sent to other runners (OTA, the app) and waiting for the event with
 * the same correlation id. Each one times out with a clear error, so no admin
 * client waits forever on a runner that never answers.
 */
export class PendingRequests {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly timeoutMs: number) {}

  /** Registers a request for `owner` (a connection id); the promise resolves with the answering event. */
  create(owner: string, what: string): { correlationId: string; answer: Promise<unknown> } {
    const correlationId = `admin-${randomUUID()}`;
    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlationId);
        reject(new AdminError('TIMEOUT', `${what}: no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      // A pending request must not keep the process alive on its own.
      timer.unref();
      this.pending.set(correlationId, { owner, what, resolve, reject, timer });
    });
    return { correlationId, answer };
  }

  /** Delivers an answer; false when nobody waits for it (timed out, client gone, another instance's). */
  settle(correlationId: string, event: unknown): boolean {
    const entry = this.pending.get(correlationId);
    if (!entry) return false;
    this.pending.delete(correlationId);
    clearTimeout(entry.timer);
    entry.resolve(event);
    return true;
  }

  /** Fails a request that could not be sent. */
  fail(correlationId: string, error: Error): void {
    const entry = this.pending.get(correlationId);
    if (!entry) return;
    this.pending.delete(correlationId);
    clearTimeout(entry.timer);
    entry.reject(error);
  }

  /** Drops every request of a closed connection; their late answers are ignored. */
  cancelOwner(owner: string): void {
    for (const [id, entry] of this.pending) {
      if (entry.owner !== owner) continue;
      this.fail(id, new AdminError('UNAVAILABLE', `${entry.what}: the connection closed`));
    }
  }

  cancelAll(reason: string): void {
    for (const [id, entry] of this.pending) this.fail(id, new AdminError('UNAVAILABLE', `${entry.what}: ${reason}`));
  }

  get size(): number {
    return this.pending.size;
  }
}
