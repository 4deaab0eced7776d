/**
 * Token buckets: `perSecond` tokens a second, at most `burst` saved up. One
 * bucket limits new MQTT connections; keyed buckets limit failed logins per
 * address block and per uid. The clock is injectable for tests.
 */
export interface TokenBucketOptions {
  perSecond: number;
  /** Tokens a full bucket holds; one second's worth unless given. */
  burst?: number;
  now?: () => number;
}

export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perMs: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(options: TokenBucketOptions) {
    this.burst = options.burst ?? options.perSecond;
    this.perMs = options.perSecond / 1000;
    this.now = options.now ?? (() => performance.now());
    this.tokens = this.burst;
    this.last = this.now();
  }

  /** Takes a token if there is one. */
  tryTake(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /**
   * Takes `count` tokens now, into debt if need be, and says how many ms
   * until the debt is paid: the caller waits that long before it acts, so
   * callers served in turn share the rate exactly (the OTA byte budget).
   * Nothing is taken, and undefined returned, when the wait would be longer
   * than `maxWaitMs`: waiters stay bounded.
   */
  reserve(count: number, maxWaitMs: number): number | undefined {
    const waitMs = this.waitFor(count);
    if (waitMs > maxWaitMs) return undefined;
    this.tokens -= count;
    return waitMs;
  }

  /** Ms until `count` tokens are there (0 when they are now); nothing is taken. */
  waitFor(count: number): number {
    this.refill();
    return this.tokens >= count ? 0 : (count - this.tokens) / this.perMs;
  }

  /** Whether a token is there now, without taking it. */
  has(): boolean {
    this.refill();
    return this.tokens >= 1;
  }

  /** True when the bucket is full again: it holds nothing worth remembering. */
  full(): boolean {
    this.refill();
    return this.tokens >= this.burst;
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
    this.last = now;
  }
}

export interface KeyedTokenBucketsOptions extends TokenBucketOptions {
  /** Keys tracked at once; see `bucket()` for what happens past it. */
  maxKeys: number;
}

/**
 * One bucket per key (an address block, a uid), created when a key first
 * takes a token. A key with a full bucket is the same as an absent one, so
 * memory holds only keys that took something recently, at most `maxKeys`.
 */
export class KeyedTokenBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(private readonly options: KeyedTokenBucketsOptions) {}

  get size(): number {
    return this.buckets.size;
  }

  /** Whether `key` has a token now (nothing is taken). */
  has(key: string): boolean {
    return this.buckets.get(key)?.has() ?? true;
  }

  /** Takes a token for `key`; false when its bucket is empty. */
  tryTake(key: string): boolean {
    return this.bucket(key).tryTake();
  }

  /**
   * The key's bucket, made when missing. At `maxKeys`, full buckets go first;
   * failing that the oldest key is forgotten (it may start afresh): a flood of
   * distinct keys costs the flood its own history, never unbounded memory.
   */
  private bucket(key: string): TokenBucket {
    const existing = this.buckets.get(key);
    if (existing) return existing;
    if (this.buckets.size >= this.options.maxKeys) this.evict();
    const bucket = new TokenBucket(this.options);
    this.buckets.set(key, bucket);
    return bucket;
  }

  private evict(): void {
    // Bounded scan from the oldest end: amortised O(1) per new key.
    let scanned = 0;
    for (const [key, bucket] of this.buckets) {
      if (scanned++ >= 32) break;
      if (bucket.full()) this.buckets.delete(key);
    }
    if (this.buckets.size < this.options.maxKeys) return;
    const oldest = this.buckets.keys().next();
    if (oldest.done !== true) this.buckets.delete(oldest.value);
  }
}
