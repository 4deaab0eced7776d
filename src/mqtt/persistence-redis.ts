import { Readable } from 'node:stream';
import AsyncRedisPersistence from 'aedes-persistence-redis/asyncPersistence.js';
import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';
import type { Redis } from 'ioredis';
import { checkQueueLayout, redisQueueKey } from './aedes/queue-layout.js';
import { markRedeliveries } from './aedes/redelivery.js';
import { isUnstoredPuback, SessionPolicy, type SessionPersistence, type SessionStoreOptions } from './persistence.js';
import { defaultRetainedOptions, storeRetainedWithin, type RetainedPolicy } from './retained.js';

/** After a refusal, the retained accounting is recounted from Redis at most this often. */
const RESYNC_INTERVAL_MS = 30_000;

/**
 * aedes-persistence-redis for cluster mode: sessions, subscriptions, queued
 * QoS 1/2 messages, retained messages and wills live in Redis, so a device
 * that reconnects to another instance finds its session and its queue.
 * The connection should carry a key prefix (ioredis `keyPrefix`) so MQTT keys
 * stay apart from the rest of Nucleon's. `SessionPolicy` adds the same queue
 * bound and ACL check as the embedded store.
 *
 * aedes queues a QoS 1/2 message for every persistent subscriber through
 * `outgoingEnqueueCombi` (one packet record, one list entry per client), so the
 * queue bound is applied there, before the packet's reference count is written.
 *
 * aedes-persistence-redis 11 returns async generators where aedes 1.2 pipes a
 * stream (retained messages on SUBSCRIBE: `stream.pipe`), so those are wrapped
 * in `Readable.from`, as aedes-persistence-level does itself.
 *
 * Retained messages are bounded by the same `RetainedPolicy` as the embedded
 * store, counted from Redis at start. In a cluster each instance counts what
 * Redis held when it started plus what it stored and cleared itself, so a
 * refusal triggers a recount from Redis (at most every RESYNC_INTERVAL_MS):
 * counts that drifted because another instance cleared messages cannot refuse
 * a device for long. Redis frees a deleted value at once; nothing to compact.
 */
export class RedisSessionStore extends AsyncRedisPersistence implements SessionPersistence {
  private readonly policy: SessionPolicy;
  private readonly retained: RetainedPolicy;
  private readonly onResyncFailed: (error: unknown) => void;
  private resyncing: Promise<void> | undefined;
  private lastResync = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly redis: Redis,
    options: SessionStoreOptions,
    maxSessionDelivery: number,
  ) {
    super({ conn: redis, maxSessionDelivery });
    this.policy = new SessionPolicy(options, (clientId) => this.redis.llen(redisQueueKey(clientId)));
    const retained = options.retained ?? defaultRetainedOptions();
    this.retained = retained.policy;
    this.onResyncFailed = retained.onResyncFailed ?? (() => undefined);
  }

  // aedes requires setup() to be an async function (it checks the constructor name).
  override async setup(broker: Aedes): Promise<void> {
    await super.setup(broker);
    await checkQueueLayout('aedes-persistence-redis', {
      enqueue: (sub, packet) => super.outgoingEnqueue(sub, packet),
      count: (clientId) => this.redis.llen(redisQueueKey(clientId)),
      remove: async (clientId, packet) => {
        const { brokerId, brokerCounter } = packet as PublishPacket & { brokerId: string; brokerCounter: number };
        await this.redis.del(redisQueueKey(clientId), `packet:${brokerId}:${brokerCounter}`);
      },
    });
    this.lastResync = Date.now();
    await this.retained.rebuild(this.storedRetained());
  }

  override async storeRetained(packet: PublishPacket): Promise<void> {
    const admission = await storeRetainedWithin(this.retained, packet, (write) => super.storeRetained(write));
    if (admission.refused !== undefined) this.resyncSoon();
  }

  /** Waits for a recount that is running (tests, and before the connection closes). */
  async settled(): Promise<void> {
    await this.resyncing;
  }

  override async delWill(client: { id: string; brokerId?: string }): Promise<unknown> {
    return super.delWill(client).catch((error: unknown) => this.policy.willDeleteFailed(client.id, error));
  }

  override async addSubscriptions(client: Client, subs: Subscription[]): Promise<void> {
    const allowed = this.policy.allowedSubscriptions(client, subs);
    if (allowed.length > 0) await super.addSubscriptions(client, allowed);
  }

  override async outgoingEnqueueCombi(subs: { clientId: string }[], packet: PublishPacket): Promise<void> {
    const admitted: { clientId: string }[] = [];
    for (const sub of subs) if (await this.policy.admit(sub.clientId)) admitted.push(sub);
    if (admitted.length === 0) return;
    await super.outgoingEnqueueCombi(admitted, packet);
    for (const sub of admitted) this.policy.enqueued(sub.clientId);
  }

  override async outgoingClearMessageId(client: Client, packet: PublishPacket): Promise<PublishPacket | undefined> {
    if (isUnstoredPuback(client, packet)) return undefined;
    const cleared = await super.outgoingClearMessageId(client, packet);
    if (cleared) this.policy.cleared(client.id);
    return cleared;
  }

  override createRetainedStreamCombi(patterns: string[]): Readable {
    return this.policy.retainedStream(Readable.from(super.createRetainedStreamCombi(patterns)));
  }

  override createRetainedStream(pattern: string): Readable {
    return this.createRetainedStreamCombi([pattern]);
  }

  override outgoingStream(client: Client): Readable {
    return markRedeliveries(super.outgoingStream(client));
  }

  forget(clientId: string): void {
    this.policy.forget(clientId);
  }

  private resyncSoon(): void {
    if (this.resyncing !== undefined || Date.now() - this.lastResync < RESYNC_INTERVAL_MS) return;
    this.lastResync = Date.now();
    this.resyncing = this.retained
      .rebuild(this.storedRetained())
      .then(
        () => undefined,
        (error: unknown) => this.onResyncFailed(error),
      )
      .finally(() => {
        this.resyncing = undefined;
      });
  }

  private storedRetained(): AsyncIterable<PublishPacket> {
    return super.createRetainedStreamCombi(['#']) as AsyncIterable<PublishPacket>;
  }
}
