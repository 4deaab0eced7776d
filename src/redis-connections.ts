import type { Redis, RedisOptions } from 'ioredis';

/**
 * Opens named Redis connections and closes them again. Cluster mode's
 * `RedisHealth` (src/cluster) is the implementation: every connection it
 * opens is watched for `/healthz`. Parts outside src/cluster (presence, the
 * MQTT Redis backend) take this interface, so they need not know the cluster
 * wiring.
 */
export interface RedisConnections {
  connect(name: string, url: string, options?: RedisOptions): Redis;
  /** Stops watching the connection and closes it. */
  release(name: string): Promise<void>;
}

/** Connects a client made with `lazyConnect` that has not connected yet; one already connecting or connected is left as it is. */
export async function connectIfIdle(client: Redis): Promise<void> {
  if (client.status === 'wait') await client.connect();
}
