import type { Redis } from 'ioredis';
import { connectIfIdle } from '../redis-connections.js';
import type { SharedByteBuckets } from '../ota/budget.js';
import { Once } from '../util/once.js';

/**
 * The token bucket of src/util/token-bucket.ts (`reserve`: take into debt,
 * say how long to wait), kept in one Redis hash per campaign so that every
 * instance of a cluster draws on the same bytes. Redis's own clock (`TIME`)
 * refills it, so instances with skewed clocks agree. The hash expires when
 * no instance has touched it for `ttlMs`: an ended campaign leaves nothing
 * behind.
 *
 * A script rather than a library: the rate limiters on npm count requests in
 * windows and refuse past the limit; a campaign's budget must instead hand
 * every request its turn at the rate (requests wait out the debt), which is
 * these dozen lines.
 */
const RESERVE = `
local perMs = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local maxWait = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * perMs)
  at = now
end
local wait = 0
if tokens < count then wait = (count - tokens) / perMs end
if wait > maxWait then return {0, tostring(wait)} end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - count), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, tostring(wait)}
`;

interface BudgetRedis extends Redis {
  nucleonReserveBytes(key: string, perMs: number, burst: number, count: number, maxWaitMs: number, ttlMs: number): Promise<[number, string]>;
}

export class RedisByteBuckets implements SharedByteBuckets {
  private readonly redis: BudgetRedis;
  private readonly closing: Once;

  /** `keyPrefix` ends with the namespace's colon, e.g. `nucleon:campaigns:budget:`. */
  constructor(
    redis: Redis,
    private readonly keyPrefix: string,
    release: () => Promise<void>,
    private readonly ttlMs = 60_000,
  ) {
    redis.defineCommand('nucleonReserveBytes', { numberOfKeys: 1, lua: RESERVE });
    this.redis = redis as BudgetRedis;
    this.closing = new Once(release);
  }

  async open(): Promise<void> {
    await connectIfIdle(this.redis);
  }

  close(): Promise<void> {
    return this.closing.run();
  }

  async reserve(campaignId: string, limits: { bytesPerSecond: number; burst: number }, bytes: number, maxWaitMs: number): Promise<{ taken: boolean; waitMs: number }> {
    const [taken, wait] = await this.redis.nucleonReserveBytes(this.keyPrefix + campaignId, limits.bytesPerSecond / 1000, limits.burst, bytes, maxWaitMs, this.ttlMs);
    return { taken: taken === 1, waitMs: Number(wait) };
  }
}
