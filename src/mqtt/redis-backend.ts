import MQEmitterRedis from 'mqemitter-redis';
import { redisEmitterState } from './aedes/mqemitter-redis.js';
import type { RedisConnections } from '../redis-connections.js';
import type { RunnerContext } from '../runner.js';
import { RedisSessionStore } from './persistence-redis.js';
import { retainedStoreOptions, type MqttBackend } from './session-backends.js';

export interface RedisBackendSettings {
  url: string;
  /** Key prefix of this cluster, e.g. `nucleon:`; MQTT keys go under `<namespace>mqtt:`. */
  namespace: string;
  /** Opens the connections (cluster mode: watched by RedisHealth for /healthz). */
  connections: RedisConnections;
}

/**
 * Cluster mode's MQTT backend: aedes-persistence-redis for sessions and
 * mqemitter-redis for routing between instances. Nucleon wires it in when
 * `[cluster]` is set.
 */
export function redisSessions(settings: RedisBackendSettings): (context: RunnerContext) => MqttBackend {
  const { url, namespace, connections } = settings;
  return (context) => {
    const queueSize = context.config.mqtt.limits.offline_queue_size;
    return {
      openSessions: async (options) => {
        // Its own key prefix: aedes-persistence-redis names keys `client:`, `outgoing:`, ...
        const redis = connections.connect('mqtt-sessions', url, { keyPrefix: `${namespace}mqtt:`, maxRetriesPerRequest: 1 });
        await redis.connect();
        // A reconnecting session gets at most its whole bounded queue in one go.
        const store = new RedisSessionStore(redis, { ...options, retained: retainedStoreOptions(context) }, queueSize);
        return {
          value: store,
          close: async () => {
            await store.settled();
            await connections.release('mqtt-sessions');
          },
        };
      },
      openEmitter: async (concurrency) => {
        const subConn = connections.connect('mqtt-routing-sub', url, { maxRetriesPerRequest: null });
        // Publishes fail at once while Redis is away instead of piling up in a queue
        // and arriving late; the sender sees the failure (logged, counted).
        const pubConn = connections.connect('mqtt-routing-pub', url, { enableOfflineQueue: false });
        await subConn.connect();
        await pubConn.connect();
        const mq = MQEmitterRedis({ subConn, pubConn, concurrency });
        // Without a listener, mqemitter-redis would throw its connection errors (RedisHealth logs them).
        redisEmitterState(mq).on('error', (error: Error) => context.logger.debug({ err: error }, 'mqtt routing: redis error'));
        return {
          value: mq,
          close: async () => {
            await Promise.all([connections.release('mqtt-routing-sub'), connections.release('mqtt-routing-pub')]);
          },
        };
      },
    };
  };
}
