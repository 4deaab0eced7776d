import type { Redis } from 'ioredis';
import { connectIfIdle } from '../redis-connections.js';
import type { DrivingSeat } from '../campaigns/driving.js';
import type { Logger } from '../logger.js';
import { Once } from '../util/once.js';
import { RedisLease } from './lease.js';

export interface LeaseKeeperOptions {
  /** How often the holder extends and the others try to take the lease; a quarter of the TTL by default. */
  intervalMs?: number;
  /** Called when the keeper is done with the connection. */
  release?: () => Promise<void>;
  /** Monotonic milliseconds for the lease's validity (RedisLeaseOptions.now); injectable for tests. */
  now?: () => number;
}

/**
 * Keeps a RedisLease: every `intervalMs` the holder extends it and every
 * other instance tries to take it. A dead holder's key expires by itself in
 * Redis, so another instance holds it at most TTL + interval after the last
 * extend. The holder learns it lost the lease the moment its local validity
 * runs out (a timer, not the next Redis answer), so a Redis outage or a
 * paused process stops it driving before anyone else can start.
 */
export class LeaseKeeper implements DrivingSeat {
  private readonly lease: RedisLease;
  private readonly intervalMs: number;
  private onChange: ((driving: boolean) => void) | undefined;
  private driving = false;
  private loop: NodeJS.Timeout | undefined;
  private expiry: NodeJS.Timeout | undefined;
  private attempt: Promise<void> | undefined;
  private stopped = false;
  private readonly stopping = new Once(() => this.doStop());

  constructor(
    private readonly redis: Redis,
    settings: { key: string; instanceId: string; ttlMs: number },
    private readonly logger: Logger,
    private readonly options: LeaseKeeperOptions = {},
  ) {
    this.lease = new RedisLease(redis, { key: settings.key, owner: settings.instanceId, ttlMs: settings.ttlMs, ...(options.now ? { now: options.now } : {}) });
    this.intervalMs = options.intervalMs ?? Math.max(1, Math.floor(settings.ttlMs / 4));
  }

  get instanceId(): string {
    return this.lease.owner;
  }

  get held(): boolean {
    return this.lease.held;
  }

  holder(): Promise<string | undefined> {
    return this.lease.holder();
  }

  async start(onChange: (driving: boolean) => void): Promise<void> {
    this.onChange = onChange;
    await connectIfIdle(this.redis);
    await this.round();
    this.loop = setInterval(() => this.scheduled(), this.intervalMs);
    this.loop.unref();
  }

  /** Safe to call more than once: later calls wait for the first. */
  stop(): Promise<void> {
    return this.stopping.run();
  }

  private async doStop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.loop);
    await this.attempt;
    this.setDriving(false);
    try {
      // Compare-and-delete: the next instance takes over at its next try instead of after the TTL.
      if (await this.lease.release()) this.logger.info({ lease: this.lease.key }, 'campaign lease given up');
    } catch (error) {
      this.logger.warn({ err: error, lease: this.lease.key }, 'could not give the campaign lease up; it expires by itself');
    }
    await this.options.release?.();
  }

  private scheduled(): void {
    // One Redis call at a time: a slow answer makes the next round wait, never pile up.
    if (this.attempt || this.stopped) return;
    this.attempt = this.round().finally(() => (this.attempt = undefined));
  }

  /** Extends (holder) or tries to take (everyone else) the lease once. Never rejects. */
  private async round(): Promise<void> {
    const wasDriving = this.driving;
    try {
      const ok = wasDriving ? await this.lease.extend() : await this.lease.acquire();
      if (this.stopped) return;
      if (ok && this.lease.held) {
        this.armExpiry();
        this.setDriving(true);
      } else {
        if (wasDriving) this.logger.error({ lease: this.lease.key }, 'campaign lease lost to another instance: this instance stops driving campaigns');
        this.setDriving(false);
      }
    } catch (error) {
      // Redis unreachable: keep driving only while the local validity lasts (the expiry timer ends it).
      if (wasDriving) this.logger.warn({ err: error, lease: this.lease.key, remainingMs: this.lease.remainingMs }, 'could not extend the campaign lease');
      else this.logger.debug({ err: error, lease: this.lease.key }, 'could not try the campaign lease');
    }
  }

  /** Ends driving when the lease's validity runs out without a confirmed extend. */
  private armExpiry(): void {
    clearTimeout(this.expiry);
    this.expiry = setTimeout(() => {
      if (!this.driving) return;
      // Node times a timer from the loop's cached clock, which lags while a turn runs, so it can fire
      // before the validity has run out: wait for the rest (returning here left a keeper cut off from
      // Redis driving for good; test/integration/campaigns-lease.test.ts, seen in CI).
      if (this.lease.held) {
        this.armExpiry();
        return;
      }
      this.logger.error({ lease: this.lease.key }, 'campaign lease expired before it could be extended (Redis unreachable or the process paused): this instance stops driving campaigns');
      this.setDriving(false);
    }, this.lease.remainingMs + 1);
    this.expiry.unref();
  }

  private setDriving(driving: boolean): void {
    if (!driving) {
      clearTimeout(this.expiry);
      this.lease.forget();
    }
    if (driving === this.driving) return;
    this.driving = driving;
    if (driving) this.logger.info({ lease: this.lease.key, instance: this.lease.owner }, 'this instance drives the campaigns');
    this.onChange?.(driving);
  }
}
