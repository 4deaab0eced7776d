import MQEmitterRedis from 'mqemitter-redis';
import type { Registry } from 'prom-client';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import type { MqttBackend } from '../mqtt/index.js';
import { RedisSessionStore } from '../mqtt/persistence-redis.js';
import { retainedStoreOptions } from '../mqtt/session-backends.js';
import type { RunnerContext } from '../runner.js';
import { RedisBlobStore } from '../store/blob-redis.js';
import { RedisStore } from '../store/index.js';
import { newInstanceId, RedisPresence } from '../presence/index.js';
import { RedisHealth } from './redis-health.js';

/**
 * Everything cluster mode changes in one instance, built from `[cluster]`:
 * the KvStore, the firmware blob store, MQTT sessions and routing, and device
 * presence all move to Redis. Each part opens its own connection (so a large
 * GETRANGE does not queue behind presence writes) and every connection is
 * watched by one `RedisHealth`, which `/healthz` reports.
 */
export class ClusterServices {
  readonly instanceId: string;
  readonly health: RedisHealth;
  readonly store: RedisStore;
  private readonly url: string;
  private readonly namespace: string;
  private readonly presenceTtlMs: number;

  constructor(
    settings: NonNullable<Config['cluster']>,
    private readonly logger: Logger,
    metrics: Registry,
  ) {
    this.url = settings.redis_url;
    this.namespace = `${settings.namespace}:`;
    this.instanceId = newInstanceId();
    this.presenceTtlMs = settings.presence_ttl_s * 1000;
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

  /** aedes-persistence-redis for sessions and mqemitter-redis for routing between instances. */
  mqttBackend(context: RunnerContext): MqttBackend {
    const queueSize = context.config.mqtt.limits.offline_queue_size;
    return {
      openSessions: async (options) => {
        // Its own key prefix: aedes-persistence-redis names keys `client:`, `outgoing:`, ...
        const redis = this.health.connect('mqtt-sessions', this.url, { keyPrefix: `${this.namespace}mqtt:`, maxRetriesPerRequest: 1 });
        await redis.connect();
        // A reconnecting session gets at most its whole bounded queue in one go.
        const store = new RedisSessionStore(redis, { ...options, retained: retainedStoreOptions(context) }, queueSize);
        return {
          value: store,
          close: async () => {
            await store.settled();
            await this.health.release('mqtt-sessions');
          },
        };
      },
      openEmitter: async (concurrency) => {
        const subConn = this.health.connect('mqtt-routing-sub', this.url, { maxRetriesPerRequest: null });
        // Publishes fail at once while Redis is away instead of piling up in a queue
        // and arriving late; the sender sees the failure (logged, counted).
        const pubConn = this.health.connect('mqtt-routing-pub', this.url, { enableOfflineQueue: false });
        await subConn.connect();
        await pubConn.connect();
        const mq = MQEmitterRedis({ subConn, pubConn, concurrency });
        // Without a listener, mqemitter-redis would throw its connection errors (RedisHealth logs them).
        (mq as unknown as { state: NodeJS.EventEmitter }).state.on('error', (error: Error) => this.logger.debug({ err: error }, 'mqtt routing: redis error'));
        return {
          value: mq,
          close: async () => {
            await Promise.all([this.health.release('mqtt-routing-sub'), this.health.release('mqtt-routing-pub')]);
          },
        };
      },
    };
  }
}
