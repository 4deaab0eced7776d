import { Redis } from 'ioredis';
import type { KvOperation, KvStore } from './kv.js';

/**
 * The cluster implementation of KvStore: values are JSON strings under
 * `<namespace>kv:<key>`, and a sorted set `<namespace>kv-index` (all scores 0)
 * holds every key so `entries(prefix)` is an ordered ZRANGEBYLEX scan.
 * Writes go through MULTI/EXEC, so a value and its index entry change together.
 */
export class RedisStore implements KvStore {
  private readonly redis: Redis;
  private readonly indexKey: string;

  constructor(
    url: string,
    private readonly namespace = 'nucleon:',
  ) {
    // Commands issued while Redis is away wait in ioredis's offline queue and
    // fail after maxRetriesPerRequest, so callers see an error instead of a hang.
    this.redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3, enableOfflineQueue: true });
    this.indexKey = `${namespace}kv-index`;
  }

  /** The connection, for health checks and for sharing with other Redis users. */
  get client(): Redis {
    return this.redis;
  }

  async open(): Promise<void> {
    await this.redis.connect();
  }

  async close(): Promise<void> {
    if (this.redis.status === 'end') return;
    await this.redis.quit().catch((error: unknown) => {
      // quit fails when the connection is already gone; disconnect tears down the rest.
      this.redis.disconnect();
      if (!(error instanceof Error && /Connection is closed/.test(error.message))) throw error;
    });
  }

  async get<T>(key: string): Promise<T | undefined> {
    const value = await this.redis.get(this.valueKey(key));
    return value === null ? undefined : (JSON.parse(value) as T);
  }

  async put(key: string, value: unknown): Promise<void> {
    await this.batch([{ type: 'put', key, value }]);
  }

  async del(key: string): Promise<void> {
    await this.batch([{ type: 'del', key }]);
  }

  async batch(operations: KvOperation[]): Promise<void> {
    if (operations.length === 0) return;
    const multi = this.redis.multi();
    for (const op of operations) {
      if (op.type === 'put') {
        multi.set(this.valueKey(op.key), JSON.stringify(op.value));
        multi.zadd(this.indexKey, 0, op.key);
      } else {
        multi.del(this.valueKey(op.key));
        multi.zrem(this.indexKey, op.key);
      }
    }
    const results = await multi.exec();
    const failed = results?.find(([error]) => error !== null);
    if (failed?.[0]) throw failed[0];
  }

  async *entries<T>(prefix: string): AsyncIterable<[string, T]> {
    const pageSize = 500;
    // Exclusive lower bound after the first page, so every key is read once.
    let lower = `[${prefix}`;
    const upper = `[${prefix}\uffff`;
    for (;;) {
      const keys = await this.redis.zrangebylex(this.indexKey, lower, upper, 'LIMIT', 0, pageSize);
      if (keys.length === 0) return;
      const values = await this.redis.mget(keys.map((key) => this.valueKey(key)));
      for (let i = 0; i < keys.length; i++) {
        const value = values[i];
        // A key deleted between the two reads is skipped rather than returned empty.
        if (value !== null && value !== undefined) yield [keys[i] as string, JSON.parse(value) as T];
      }
      if (keys.length < pageSize) return;
      lower = `(${keys[keys.length - 1] as string}`;
    }
  }

  private valueKey(key: string): string {
    return `${this.namespace}kv:${key}`;
  }
}
