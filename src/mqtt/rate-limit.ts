import { TokenBucket } from '../util/token-bucket.js';

/**
 * The MQTT listeners' connection rate limit: `perSecond` new connections a
 * second, bursts up to one second's worth (src/util/token-bucket.ts).
 */
export class RateLimiter extends TokenBucket {
  constructor(perSecond: number, now?: () => number) {
    super({ perSecond, ...(now ? { now } : {}) });
  }
}
