import { Readable } from 'node:stream';
import AsyncRedisPersistence from 'aedes-persistence-redis/asyncPersistence.js';
import type { Client, PublishPacket, Subscription } from 'aedes';
import type { Redis } from 'ioredis';
import { isUnstoredPuback, SessionPolicy, type SessionPersistence, type SessionStoreOptions } from './persistence.js';

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
 */
export class RedisSessionStore extends AsyncRedisPersistence implements SessionPersistence {
  private readonly policy: SessionPolicy;

  constructor(
    private readonly redis: Redis,
    options: SessionStoreOptions,
    maxSessionDelivery: number,
  ) {
    super({ conn: redis, maxSessionDelivery });
    this.policy = new SessionPolicy(options, (clientId) => this.redis.llen(`outgoing:${encodeURIComponent(clientId)}`));
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
    return Readable.from(super.createRetainedStreamCombi(patterns));
  }

  override createRetainedStream(pattern: string): Readable {
    return this.createRetainedStreamCombi([pattern]);
  }

  override outgoingStream(client: Client): Readable {
    return Readable.from(super.outgoingStream(client));
  }

  forget(clientId: string): void {
    this.policy.forget(clientId);
  }
}
