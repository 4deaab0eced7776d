import type { Registry } from 'prom-client';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { RedisBlobStore } from '../store/blob-redis.js';
import { RedisStore } from '../store/index.js';
import { newInstanceId, RedisPresence } from '../presence/index.js';
import { RedisHealth } from './redis-health.js';
import { LeaseKeeper } from './lease-keeper.js';
import { RedisObservationRelay } from './observation-relay.js';
import { RedisByteBuckets } from './budget-buckets.js';

/**
 * Everything cluster mode changes in one instance, built from `[cluster]`:
 * the KvStore, the firmware blob store, MQTT sessions and routing, and device
 * presence all move to Redis. Each part opens its own connection (so a large
 * GETRANGE does not queue behind presence writes) and every connection is
 * watched by one `RedisHealth` (`health`), which `/healthz` reports. The MQTT
 * part lives with the MQTT runner (src/mqtt/redis-backend.ts); Nucleon hands
 * it `url`, `namespace` and `health`.
 */
export class ClusterServices {
  readonly instanceId: string;
  readonly health: RedisHealth;
  readonly store: RedisStore;
  readonly url: string;
  /** Key prefix with its colon, e.g. `nucleon:`. */
  readonly namespace: string;
  private readonly presenceTtlMs: number;
  private readonly campaignLeaseMs: number;

  constructor(
    settings: NonNullable<Config['cluster']>,
    logger: Logger,
    metrics: Registry,
    instanceId: string = newInstanceId(),
  ) {
    this.url = settings.redis_url;
    this.namespace = `${settings.namespace}:`;
    this.instanceId = instanceId;
    this.presenceTtlMs = settings.presence_ttl_s * 1000;
    this.campaignLeaseMs = settings.campaign_lease_ms;
    this.health = new RedisHealth(logger.child({ component: 'cluster' }), metrics);
    this.store = new RedisStore(this.url, this.namespace);
    this.health.watch('store', this.store.client);
  }

  /** Device presence of the whole cluster (Nucleon builds it once; the MQTT gateway writes it). */
  presence(logger: Logger): RedisPresence {
    return new RedisPresence({ url: this.url, namespace: this.namespace, instanceId: this.instanceId, ttlMs: this.presenceTtlMs }, this.health, logger);
  }

  /** Firmware bytes for the OTA runner (and through it the HTTP download runner). */
  blobStore(): RedisBlobStore {
    const redis = this.health.connect('blobs', this.url, { maxRetriesPerRequest: 1 });
    return new RedisBlobStore(redis, { namespace: this.namespace, release: () => this.health.release('blobs') });
  }

  /** Campaign byte budgets every instance draws on (README "Byte budget"). */
  budgetBuckets(): RedisByteBuckets {
    const redis = this.health.connect('budgets', this.url, { maxRetriesPerRequest: 1 });
    return new RedisByteBuckets(redis, `${this.namespace}campaigns:budget:`, () => this.health.release('budgets'));
  }

  /**
   * Who drives the campaigns (the holder of `<ns>campaigns:lease`) and how the
   * device events of the other instances reach it (README "Campaigns").
   */
  campaignDriving(logger: Logger): { seat: LeaseKeeper; relay: RedisObservationRelay } {
    const redis = this.health.connect('campaigns', this.url, { maxRetriesPerRequest: 1 });
    const sub = this.health.connect('campaigns-observations', this.url, { maxRetriesPerRequest: null });
    const seat = new LeaseKeeper(redis, { key: `${this.namespace}campaigns:lease`, instanceId: this.instanceId, ttlMs: this.campaignLeaseMs }, logger, {
      release: () => this.health.release('campaigns'),
    });
    const relay = new RedisObservationRelay(redis, sub, `${this.namespace}campaigns:observations`, this.instanceId, logger, () => this.health.release('campaigns-observations'));
    return { seat, relay };
  }
}
