import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';

// The single-instance lock of the Redis documentation ("Distributed Locks with
// Redis", and the SET command page): take with SET NX PX, extend and release
// only while the key still holds our token, each check and change in one Lua
// script so no other holder's lease can be touched in between.
const EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export interface RedisLeaseOptions {
  /** The full Redis key (namespace included). */
  key: string;
  /** This holder's token: unique per instance run, so a restarted instance is a new holder. */
  owner: string;
  ttlMs: number;
  /**
   * Share of the TTL assumed lost to clock drift between this process and
   * Redis, as Redlock's `driftFactor`; plus 2 ms. 1% by default.
   */
  driftFactor?: number;
  /** Monotonic milliseconds; injectable for tests. */
  now?: () => number;
}

/**
 * A lease on one Redis key. `held` is answered locally, without a round trip:
 * the lease counts as ours until the TTL (less drift) has passed since the
 * start of the last acquire or extend that Redis confirmed. Redis can only
 * have let the key expire later than that, so no two holders ever both see
 * `held` true, even when Redis is unreachable or this process was paused.
 */
export class RedisLease {
  private validUntil = 0;
  private readonly now: () => number;
  private readonly margin: number;

  constructor(
    private readonly redis: Redis,
    private readonly options: RedisLeaseOptions,
  ) {
    this.now = options.now ?? (() => performance.now());
    this.margin = Math.floor(options.ttlMs * (options.driftFactor ?? 0.01)) + 2;
  }

  get key(): string {
    return this.options.key;
  }

  get owner(): string {
    return this.options.owner;
  }

  get ttlMs(): number {
    return this.options.ttlMs;
  }

  /** Whether this holder may act on the lease now (the fence before each write). */
  get held(): boolean {
    return this.now() < this.validUntil;
  }

  /** Milliseconds the lease stays ours without a new extend; 0 when not held. */
  get remainingMs(): number {
    return Math.max(0, this.validUntil - this.now());
  }

  /** Takes the lease if free (or extends it if it is ours already). */
  async acquire(): Promise<boolean> {
    const started = this.now();
    const answer = await this.redis.set(this.options.key, this.options.owner, 'PX', this.options.ttlMs, 'NX');
    if (answer === 'OK') {
      this.validUntil = started + this.options.ttlMs - this.margin;
      return true;
    }
    // Ours already, e.g. when the reply to an earlier SET was lost: extending keeps it.
    return this.extend();
  }

  /** Extends the lease by a full TTL if the key still holds our token; false (and not held) otherwise. */
  async extend(): Promise<boolean> {
    const started = this.now();
    const answer = await this.redis.eval(EXTEND, 1, this.options.key, this.options.owner, String(this.options.ttlMs));
    if (answer === 1) {
      this.validUntil = started + this.options.ttlMs - this.margin;
      return true;
    }
    this.validUntil = 0;
    return false;
  }

  /** Gives the lease up at once if it is still ours; true when a key was deleted. */
  async release(): Promise<boolean> {
    this.validUntil = 0;
    return (await this.redis.eval(RELEASE, 1, this.options.key, this.options.owner)) === 1;
  }

  /** Stops counting the lease as ours (e.g. after a failed extend) without asking Redis. */
  forget(): void {
    this.validUntil = 0;
  }

  /** The token of whoever holds the lease now, if anyone. */
  async holder(): Promise<string | undefined> {
    return (await this.redis.get(this.options.key)) ?? undefined;
  }
}
