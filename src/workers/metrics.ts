import { AggregatorRegistry, prometheusContentType, type Registry } from 'prom-client';
import type { MetricsExposition } from '../admin/index.js';
import { isToWorker, type ToPrimary } from './messages.js';

/** Scrapes one worker may have waiting for the primary; more are refused (500) rather than queued. */
const MAX_PENDING = 16;

/**
 * The primary's side of `/metrics`: prom-client's AggregatorRegistry asks
 * every connected worker for its registry over the cluster channel and merges
 * them. Each worker labels its series `worker="<slot>"`, so the merge keeps
 * them apart instead of summing (a sum would count the cluster-wide gauges,
 * such as devices online, once per worker).
 */
export class MetricsCollector {
  private readonly aggregator = new AggregatorRegistry();
  private inFlight: Promise<string> | undefined;

  /** One collection at a time, shared by the scrapes that arrive meanwhile (prom-client bounds it to 5 s). */
  collect(): Promise<string> {
    this.inFlight ??= this.aggregator.clusterMetrics().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }
}

interface Waiting {
  resolve: (text: string) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A worker's side: `/metrics` arrives at whichever worker the primary handed
 * the connection to, which asks the primary for every worker's metrics and
 * serves the merged text. The worker's own registry answers the primary's
 * collection (prom-client's responder, installed here).
 */
export class WorkerMetrics implements MetricsExposition {
  readonly contentType = prometheusContentType;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private readonly onMessage = (message: unknown) => this.answered(message);

  constructor(
    private readonly slot: number,
    private readonly timeoutMs = 10_000,
  ) {
    process.on('message', this.onMessage);
  }

  /** Makes `registry` (the worker's Nucleon's) what this worker reports, its series labelled with the slot. */
  report(registry: Registry): void {
    registry.setDefaultLabels({ worker: String(this.slot) });
    AggregatorRegistry.setRegistries([registry]);
    // Its constructor installs prom-client's responder to the primary's requests (once per process).
    new AggregatorRegistry();
  }

  metrics(): Promise<string> {
    if (this.waiting.size >= MAX_PENDING) return Promise.reject(new Error(`more than ${MAX_PENDING} /metrics requests at once`));
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(id, new Error(`the primary did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      timer.unref();
      this.waiting.set(id, { resolve, reject, timer });
      const request: ToPrimary = { nucleon: 'metrics', id };
      if (!process.send) {
        this.settle(id, new Error('not a worker process'));
        return;
      }
      process.send(request, undefined, {}, (error: Error | null) => {
        if (error) this.settle(id, error);
      });
    });
  }

  /** Fails what is still waiting and stops listening. */
  close(): void {
    process.off('message', this.onMessage);
    for (const id of [...this.waiting.keys()]) this.settle(id, new Error('stopping'));
  }

  private answered(message: unknown): void {
    if (!isToWorker(message) || message.nucleon !== 'metrics') return;
    this.settle(message.id, 'text' in message ? message.text : new Error(message.error));
  }

  private settle(id: number, result: string | Error): void {
    const waiting = this.waiting.get(id);
    if (!waiting) return;
    this.waiting.delete(id);
    clearTimeout(waiting.timer);
    if (typeof result === 'string') waiting.resolve(result);
    else waiting.reject(result);
  }
}
