import { randomUUID } from 'node:crypto';

interface Pending {
  owner: string;
  what: string;
  resolve: (answer: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Requests sent to another runner, each waiting for the event with its
 * correlation id. Every one times out with the error `timedOut` makes, so
 * nobody waits forever on a runner that never answers. Used by the admin
 * runner (for its clients) and the campaigns runner (for the OTA runner's
 * lists); each brings its own error class.
 */
export class PendingAnswers {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly timeoutMs: number,
    /** Correlation ids start with this, so a log line shows who asked. */
    private readonly prefix: string,
    private readonly timedOut: (what: string, timeoutMs: number) => Error,
  ) {}

  /** Registers a request for `owner` (a connection id, say); the promise resolves with the answering event. */
  create(owner: string, what: string): { correlationId: string; answer: Promise<unknown> } {
    const correlationId = `${this.prefix}-${randomUUID()}`;
    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlationId);
        reject(this.timedOut(what, this.timeoutMs));
      }, this.timeoutMs);
      // A pending request must not keep the process alive on its own.
      timer.unref();
      this.pending.set(correlationId, { owner, what, resolve, reject, timer });
    });
    return { correlationId, answer };
  }

  /** Delivers an answer; false when nobody waits for it (timed out, asker gone, someone else's). */
  settle(correlationId: string, answer: unknown): boolean {
    const entry = this.take(correlationId);
    if (!entry) return false;
    entry.resolve(answer);
    return true;
  }

  /** Fails a request that could not be sent. */
  fail(correlationId: string, error: Error): void {
    this.take(correlationId)?.reject(error);
  }

  /** Fails every request of `owner` with the error `why` makes from its description; late answers are ignored. */
  failOwner(owner: string, why: (what: string) => Error): void {
    for (const [id, entry] of this.pending) if (entry.owner === owner) this.fail(id, why(entry.what));
  }

  failAll(why: (what: string) => Error): void {
    for (const [id, entry] of this.pending) this.fail(id, why(entry.what));
  }

  get size(): number {
    return this.pending.size;
  }

  private take(correlationId: string): Pending | undefined {
    const entry = this.pending.get(correlationId);
    if (!entry) return undefined;
    this.pending.delete(correlationId);
    clearTimeout(entry.timer);
    return entry;
  }
}
