import type { Redis } from 'ioredis';
import type { ObservationRelay, ObservedEvent } from '../campaigns/driving.js';
import { isObserved } from '../campaigns/driving.js';
import type { Logger } from '../logger.js';
import { shouldLog } from '../util/log-sampling.js';

/**
 * Device events of non-driving instances to the driving one, over a Redis
 * pub/sub channel (`<namespace>campaigns:observations`), as JSON.
 *
 * Pub/sub delivers at most once and only to a listener connected now, which
 * is what the campaigns runner already accepts on a single instance: it takes
 * device events live (`durable: false`), and devices repeat their state (the
 * version in every telemetry message, a new connection after each reboot).
 * An event published while no instance drives (a takeover in progress) is
 * lost the same way; README "Campaigns" says what that can cost.
 */
export class RedisObservationRelay implements ObservationRelay {
  private deliver: ((event: ObservedEvent) => void) | undefined;
  private changed: (() => void) | undefined;
  private failures = 0;
  private readonly changes: string;

  constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly channel: string,
    private readonly logger: Logger,
    private readonly release: () => Promise<void> = async () => undefined,
  ) {
    this.changes = `${channel}:changes`;
    sub.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.received(message);
      else if (channel === this.changes) this.changed?.();
    });
  }

  async open(): Promise<void> {
    if (this.pub.status === 'wait') await this.pub.connect();
    if (this.sub.status === 'wait') await this.sub.connect();
    await this.sub.subscribe(this.changes);
  }

  async listen(deliver: (event: ObservedEvent) => void): Promise<void> {
    this.deliver = deliver;
    await this.sub.subscribe(this.channel);
  }

  async unlisten(): Promise<void> {
    this.deliver = undefined;
    if (this.sub.status === 'ready') await this.sub.unsubscribe(this.channel);
  }

  forward(event: ObservedEvent): void {
    // The ingest log position means nothing on another instance.
    const { log: _log, ...rest } = event as ObservedEvent & { log?: unknown };
    this.pub.publish(this.channel, JSON.stringify(rest)).then(
      () => undefined,
      (error: unknown) => this.failed(error),
    );
  }

  announceChange(): void {
    this.pub.publish(this.changes, '1').then(
      () => undefined,
      (error: unknown) => this.failed(error),
    );
  }

  onChange(listener: () => void): void {
    this.changed = listener;
  }

  async close(): Promise<void> {
    this.deliver = undefined;
    await this.release();
  }

  private received(message: string): void {
    let event: unknown;
    try {
      event = JSON.parse(message);
    } catch (error) {
      this.logger.warn({ err: error }, 'dropped a campaign observation that is not JSON');
      return;
    }
    if (typeof event !== 'object' || event === null || !isObserved(event as { type: string })) {
      this.logger.warn({ message: message.slice(0, 200) }, 'dropped a campaign observation of an unknown type');
      return;
    }
    this.deliver?.(event as ObservedEvent);
  }

  private failed(error: unknown): void {
    // Logged once per 100 so a Redis outage does not flood the log; the device repeats itself.
    this.failures++;
    if (shouldLog(this.failures, 100)) this.logger.warn({ err: error, failures: this.failures }, 'could not forward a device event to the driving instance');
  }
}
