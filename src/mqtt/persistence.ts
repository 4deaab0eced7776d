import AsyncLevelPersistence from 'aedes-persistence-level/asyncPersistence.js';
import type { Client, PublishPacket, Subscription } from 'aedes';
import type { ClassicLevel } from 'classic-level';

export interface SessionStoreOptions {
  /** QoS 1/2 messages kept per client that is not connected. */
  offlineQueueSize: number;
  /** The ACL, asked again before a subscription is stored (see `addSubscriptions`). */
  maySubscribe: (client: Client, filter: string) => boolean;
  /** Whether the client is connected to this instance now. */
  isConnected: (clientId: string) => boolean;
  /** Called for each message not queued because the client's queue was full. */
  onOfflineDrop: (clientId: string) => void;
}

/**
 * aedes-persistence-level on the embedded LevelDB (`<store.path>/mqtt`): sessions,
 * subscriptions, queued QoS 1/2 messages, retained messages and wills survive a
 * restart, including SIGKILL (LevelDB's write-ahead log is written before each
 * call returns; only a power loss can take the last writes).
 *
 * Two additions:
 * - The offline queue per client is bounded. When a client that is not
 *   connected has `offlineQueueSize` messages waiting, further messages for it
 *   are dropped (newest dropped, like Mosquitto's max_queued_messages) and counted.
 *   A connected client is never refused here: aedes would drop its connection.
 * - Subscriptions are stored only when the ACL allows them. aedes stores every
 *   filter of a SUBSCRIBE packet when one is allowed, which would let a device
 *   queue another device's messages by mixing a denied filter into the packet.
 */
export class SessionStore extends AsyncLevelPersistence {
  /** Messages queued per client id, as far as this process knows; recounted at the limit. */
  private readonly queued = new Map<string, number>();

  constructor(
    private readonly db: ClassicLevel<string, Buffer>,
    private readonly options: SessionStoreOptions,
  ) {
    super(db);
  }

  override async addSubscriptions(client: Client, subs: Subscription[]): Promise<void> {
    const allowed = subs.filter((sub) => this.options.maySubscribe(client, sub.topic));
    if (allowed.length > 0) await super.addSubscriptions(client, allowed);
  }

  override async outgoingEnqueue(sub: { clientId: string }, packet: PublishPacket): Promise<void> {
    if (!(await this.admit(sub.clientId))) {
      this.options.onOfflineDrop(sub.clientId);
      return;
    }
    await super.outgoingEnqueue(sub, packet);
    this.queued.set(sub.clientId, (this.queued.get(sub.clientId) ?? 0) + 1);
  }

  override async outgoingClearMessageId(client: Client, packet: PublishPacket): Promise<PublishPacket | undefined> {
    const cleared = await super.outgoingClearMessageId(client, packet);
    const count = this.queued.get(client.id);
    if (cleared && count !== undefined) {
      if (count <= 1) this.queued.delete(client.id);
      else this.queued.set(client.id, count - 1);
    }
    return cleared;
  }

  /** Forgets the count for a client whose session was cleaned; it is recounted when needed. */
  forget(clientId: string): void {
    this.queued.delete(clientId);
  }

  private async admit(clientId: string): Promise<boolean> {
    if (this.options.isConnected(clientId)) return true;
    const limit = this.options.offlineQueueSize;
    let count = this.queued.get(clientId);
    // Counted from the store the first time, and again at the limit, so a count
    // that drifted (a session cleaned by aedes) cannot drop messages wrongly.
    if (count === undefined || count >= limit) {
      count = await this.countQueued(clientId, limit);
      this.queued.set(clientId, count);
    }
    return count < limit;
  }

  private async countQueued(clientId: string, limit: number): Promise<number> {
    // Same key layout as aedes-persistence-level: `outgoing:<encoded id>:<broker>:<counter>`.
    const prefix = `outgoing:${encodeURIComponent(clientId)}:`;
    let count = 0;
    for await (const _key of this.db.keys({ gte: prefix, lt: `${prefix.slice(0, -1)};`, limit })) count++;
    return count;
  }
}
