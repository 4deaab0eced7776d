import { Redis, type RedisOptions } from 'ioredis';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../logger.js';
import type { RedisConnections } from '../redis-connections.js';

/** What `/healthz` shows for the cluster: every Redis connection and whether it is usable. */
export interface RedisHealthReport {
  ok: boolean;
  connections: Record<string, string>;
  /** Milliseconds since the epoch when the first connection went down (absent while all are up). */
  downSince?: number;
}

/**
 * Watches every Redis connection an instance opens (store, blobs, presence,
 * MQTT persistence, MQTT routing). One place decides "degraded", logs each
 * outage once when it begins and once when it ends, and keeps
 * `nucleon_cluster_redis_up{connection}` current.
 */
export class RedisHealth implements RedisConnections {
  private readonly clients = new Map<string, Redis>();
  private readonly down = new Map<string, number>();
  private readonly gauge: Gauge | undefined;

  constructor(
    private readonly logger: Logger,
    metrics?: Registry,
    private readonly now: () => number = Date.now,
  ) {
    if (metrics) {
      this.gauge = new Gauge({
        name: 'nucleon_cluster_redis_up',
        help: 'Whether each Redis connection of this instance is ready (1) or not (0)',
        labelNames: ['connection'],
        registers: [metrics],
        collect: () => {
          for (const [name, client] of this.clients) this.gauge?.set({ connection: name }, client.status === 'ready' ? 1 : 0);
        },
      });
    }
  }

  /** Opens a connection that is watched from its first moment. */
  connect(name: string, url: string, options: RedisOptions = {}): Redis {
    if (this.clients.has(name)) throw new Error(`a Redis connection named "${name}" is already watched`);
    const client = new Redis(url, {
      lazyConnect: true,
      // Reconnect quickly at first, then every 2 s for as long as it takes.
      retryStrategy: (times) => Math.min(times * 100, 2000),
      connectionName: `nucleon-${name}`,
      ...options,
    });
    this.watch(name, client);
    return client;
  }

  /** Tracks a connection made elsewhere (the KvStore's). */
  watch(name: string, client: Redis): void {
    this.clients.set(name, client);
    let lastError = 'connection closed';
    client.on('ready', () => {
      lastError = 'connection closed';
      this.up(name);
    });
    // ioredis reports errors here (a listener keeps them from being printed as unhandled);
    // 'reconnecting' comes only for a connection that was lost, never for one closed on purpose.
    client.on('error', (error: Error) => (lastError = error.message));
    client.on('reconnecting', () => this.lost(name, lastError));
  }

  /** Stops watching a connection and closes it (closing on purpose is not an outage). */
  async release(name: string): Promise<void> {
    const client = this.clients.get(name);
    this.clients.delete(name);
    this.down.delete(name);
    if (client) await closeRedis(client);
  }

  get ok(): boolean {
    for (const client of this.clients.values()) if (client.status !== 'ready') return false;
    return true;
  }

  report(): RedisHealthReport {
    const connections: Record<string, string> = {};
    for (const [name, client] of this.clients) connections[name] = client.status;
    const since = [...this.down.values()];
    return { ok: this.ok, connections, ...(since.length > 0 ? { downSince: Math.min(...since) } : {}) };
  }

  private lost(name: string, reason: string): void {
    if (!this.clients.has(name) || this.down.has(name)) return;
    this.down.set(name, this.now());
    this.logger.error({ connection: name, reason }, 'redis unavailable: cluster state is degraded until it is back (connected devices stay connected)');
  }

  private up(name: string): void {
    const since = this.down.get(name);
    if (since === undefined) return;
    this.down.delete(name);
    this.logger.warn({ connection: name, downMs: this.now() - since }, 'redis connection restored');
  }
}

/** Closes a connection politely, or tears it down when Redis does not answer in time. */
export async function closeRedis(client: Redis, timeoutMs = 2000): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      client.disconnect();
      resolve();
    }, timeoutMs);
    timer.unref();
  });
  // QUIT can fail when the connection drops meanwhile; disconnect covers that.
  const quit = client.quit().then(
    () => undefined,
    () => client.disconnect(),
  );
  await Promise.race([quit, timedOut]);
  clearTimeout(timer);
}
