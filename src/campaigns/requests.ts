import { randomUUID } from 'node:crypto';
import { CampaignError } from './errors.js';

interface Waiting {
  resolve: (answer: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Requests this runner sends to the OTA runner (image and group lists), each
 * waiting for the event with its correlation id, or failing with UNAVAILABLE
 * after `timeoutMs`, so a campaign command never waits forever on a runner
 * that does not answer. The answers arrive through the runner's inbox, so
 * whoever waits here must not be the inbox handler itself.
 */
export class OtaRequests {
  private readonly waiting = new Map<string, Waiting>();

  constructor(private readonly timeoutMs: number) {}

  /** A fresh correlation id and the promise of its answer. */
  create(what: string): { correlationId: string; answer: Promise<unknown> } {
    const correlationId = `campaigns-${randomUUID()}`;
    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(correlationId);
        reject(new CampaignError('UNAVAILABLE', `${what}: the OTA runner did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.waiting.set(correlationId, { resolve, reject, timer });
    });
    return { correlationId, answer };
  }

  /** Delivers an answer; false when nobody here waits for it (it was for the admin runner, or timed out). */
  settle(correlationId: string, answer: unknown): boolean {
    const entry = this.waiting.get(correlationId);
    if (!entry) return false;
    this.waiting.delete(correlationId);
    clearTimeout(entry.timer);
    entry.resolve(answer);
    return true;
  }

  fail(correlationId: string, error: Error): void {
    const entry = this.waiting.get(correlationId);
    if (!entry) return;
    this.waiting.delete(correlationId);
    clearTimeout(entry.timer);
    entry.reject(error);
  }

  cancelAll(reason: string): void {
    for (const id of [...this.waiting.keys()]) this.fail(id, new CampaignError('UNAVAILABLE', reason));
  }
}
