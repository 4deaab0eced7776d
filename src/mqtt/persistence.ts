import AsyncLevelPersistence, { type QueuedSubscription } from 'aedes-persistence-level/asyncPersistence.js';
import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';
import type { ClassicLevel } from 'classic-level';
import type { Readable } from 'node:stream';
import { LevelOutgoing } from './aedes/level-outgoing.js';
import { combiningPersistenceDb, type PersistenceDb } from './aedes/persistence-db.js';
import { checkQueueLayout, levelQueueRange } from './aedes/queue-layout.js';
import { markRedeliveries } from './aedes/redelivery.js';
import type { RoutingSettlements } from './aedes/routing-settlements.js';
import { reportRetainedReadErrors } from './aedes/retained-stream.js';
import { Compactor } from './compactor.js';
import { TopicMatches } from './topic-matches.js';
import { defaultRetainedOptions, storeRetainedWithin, type RetainedPolicy, type RetainedStoreOptions } from './retained.js';

export interface SessionStoreOptions {
  /** QoS 1/2 messages kept per client that is not connected. */
  offlineQueueSize: number;
  /** The ACL, asked again before a subscription is stored (see `addSubscriptions`). */
  maySubscribe: (client: Client, filter: string) => boolean;
  /** Whether the client is connected to this instance now. */
  isConnected: (clientId: string) => boolean;
  /** Called for each message not queued because the client's queue was full. */
  onOfflineDrop: (clientId: string) => void;
  /**
   * Deleting a will failed (Redis away, say). Reported, not thrown: aedes'
   * will sweep awaits several deletions together, and a second rejection in
   * one batch became an unhandled rejection. The will is then published again
   * by a later sweep (at least once).
   */
  onWillDeleteFailed?: (clientId: string, error: unknown) => void;
  /** Reading retained messages for a new subscription failed (see src/mqtt/aedes/retained-stream.ts). */
  onRetainedReadFailed?: (error: Error) => void;
  /** The retained-message bounds; without them, config.toml's defaults apply, unreported. */
  retained?: RetainedStoreOptions;
  /**
   * A session write nothing waits for failed (embedded store: the packet id
   * of a message being sent, see aedes/level-outgoing.ts). The message itself
   * stays queued; reported so a failing disk is seen.
   */
  onUnawaitedWriteFailed?: (clientId: string, error: unknown) => void;
  /**
   * Shared with NucleonAedes: a message for a session connected here may then
   * wait in memory for its subscriber's acknowledgement instead of being
   * written (embedded store, aedes/level-outgoing.ts). Without it every
   * queued message is written before its route ends.
   */
  settlements?: RoutingSettlements;
}

/** What the MQTT runner needs of a session store besides the aedes persistence API. */
export interface SessionPersistence {
  /** Forgets the count for a client whose session was cleaned; it is recounted when needed. */
  forget(clientId: string): void;
}

/**
 * The two rules Nucleon adds to any aedes persistence (embedded or Redis):
 * - The offline queue per client is bounded. When a client that is not
 *   connected has `offlineQueueSize` messages waiting, further messages for it
 *   are dropped (newest dropped, like Mosquitto's max_queued_messages) and counted.
 *   A connected client is never refused here: aedes would drop its connection.
 * - Subscriptions are stored only when the ACL allows them. aedes stores every
 *   filter of a SUBSCRIBE packet when one is allowed, which would let a device
 *   queue another device's messages by mixing a denied filter into the packet.
 */
export class SessionPolicy {
  /** Messages queued per client id, as far as this process knows; recounted at the limit. */
  private readonly queued = new Map<string, number>();

  constructor(
    private readonly options: SessionStoreOptions,
    /** Counts the messages queued for a client in the store, stopping at `limit`. */
    private readonly countQueued: (clientId: string, limit: number) => Promise<number>,
  ) {}

  willDeleteFailed(clientId: string, error: unknown): void {
    this.options.onWillDeleteFailed?.(clientId, error);
  }

  /** A retained stream for aedes' subscribe handler, whose errors are reported instead of thrown. */
  retainedStream(stream: Readable): Readable {
    return reportRetainedReadErrors(stream, (error) => this.options.onRetainedReadFailed?.(error));
  }

  allowedSubscriptions(client: Client, subs: Subscription[]): Subscription[] {
    return subs.filter((sub) => this.options.maySubscribe(client, sub.topic));
  }

  /** Whether one more message may be queued for the client; a refusal is reported. */
  async admit(clientId: string): Promise<boolean> {
    if (this.options.isConnected(clientId)) return true;
    const limit = this.options.offlineQueueSize;
    let count = this.queued.get(clientId);
    // Counted from the store the first time, and again at the limit, so a count
    // that drifted (a session cleaned by aedes, a message delivered by another
    // cluster instance) cannot drop messages wrongly.
    if (count === undefined || count >= limit) {
      count = await this.countQueued(clientId, limit);
      this.queued.set(clientId, count);
    }
    if (count < limit) return true;
    this.options.onOfflineDrop(clientId);
    return false;
  }

  enqueued(clientId: string): void {
    this.queued.set(clientId, (this.queued.get(clientId) ?? 0) + 1);
  }

  cleared(clientId: string): void {
    const count = this.queued.get(clientId);
    if (count === undefined) return;
    if (count <= 1) this.queued.delete(clientId);
    else this.queued.set(clientId, count - 1);
  }

  forget(clientId: string): void {
    this.queued.delete(clientId);
  }
}

/**
 * Whether a packet is the PUBACK of a message aedes never stored: a clean
 * session's deliveries skip the store (aedes `deliverQoS` and `publish` store
 * only for `clean === false`), and its leftovers from an earlier persistent
 * session are cleared at CONNECT (with the stored packet, cmd 'publish').
 * Looking each such PUBACK up anyway was one store read per message sent
 * (17% of the broker's CPU sending app responses to clean-session devices).
 */
export function isUnstoredPuback(client: Client, packet: PublishPacket | { cmd: string }): boolean {
  return client.clean && packet.cmd === 'puback';
}

/** aedes-persistence-level's key range of retained messages: `retained:<topic>`. */
const RETAINED_RANGE = { start: 'retained:', end: 'retained;' } as const;

/** A burst of clears (a device clearing its topics one by one) waits this long to share one compaction. */
const COMPACT_SETTLE_MS = 1000;

/**
 * Writes per combined LevelDB batch before it is written without waiting for
 * the loop turn to end (src/mqtt/write-combiner.ts): 2 per QoS 1 message of
 * a persistent session acknowledged in time (aedes/level-outgoing.ts), so a
 * batch carries up to ~2,000 messages.
 */
const MAX_BATCH_OPS = 4096;

/**
 * aedes-persistence-level on the embedded LevelDB (`<store.path>/mqtt`): sessions,
 * subscriptions, queued QoS 1/2 messages, retained messages and wills survive a
 * restart, including SIGKILL (LevelDB's write-ahead log is written before each
 * call returns; only a power loss can take the last writes). The library's
 * writes of one loop turn are combined into one LevelDB batch, and each of
 * its calls returns only when its batch is written (aedes/persistence-db.ts).
 * Queued and in-flight messages take a leaner path in the same key layout
 * (aedes/level-outgoing.ts). `SessionPolicy`
 * adds the queue bound and the ACL check, `RetainedPolicy` the retained bounds;
 * cleared retained messages are compacted away so their disk space comes back.
 */
export class SessionStore extends AsyncLevelPersistence implements SessionPersistence {
  private readonly policy: SessionPolicy;
  private readonly retained: RetainedPolicy;
  /** Will deletions of aedes' sweep still running (close waits for them). */
  private readonly willDeletes = new Set<Promise<unknown>>();
  private readonly compactor: Compactor;
  /** The database as the library sees it: writes combined per loop turn. */
  private readonly combined: PersistenceDb;
  private readonly outgoing: LevelOutgoing;
  private readonly settlements: RoutingSettlements | undefined;
  private readonly isConnected: (clientId: string) => boolean;
  /** The stored sessions' subscribers per topic; the library walks its trie for each QoS > 0 message. */
  private readonly subscribers = new TopicMatches<QueuedSubscription>();

  constructor(
    private readonly db: ClassicLevel<string, Buffer>,
    options: SessionStoreOptions,
    combined: PersistenceDb = combiningPersistenceDb(db, { maxBatchOps: MAX_BATCH_OPS }).db,
  ) {
    super(combined);
    this.combined = combined;
    this.settlements = options.settlements;
    this.isConnected = options.isConnected;
    this.outgoing = new LevelOutgoing(combined, { onUnawaitedWriteFailed: options.onUnawaitedWriteFailed ?? (() => undefined) });
    const retained = options.retained ?? defaultRetainedOptions();
    this.policy = new SessionPolicy(options, (clientId, limit) => this.countQueued(clientId, limit));
    this.retained = retained.policy;
    this.compactor = new Compactor({
      compact: () => db.compactRange(RETAINED_RANGE.start, RETAINED_RANGE.end),
      intervalMs: retained.compactIntervalMs,
      settleMs: Math.min(COMPACT_SETTLE_MS, retained.compactIntervalMs),
      onDone: retained.onCompacted ?? (() => undefined),
    });
  }

  // aedes requires setup() to be an async function (it checks the constructor name).
  override async setup(broker: Aedes): Promise<void> {
    await super.setup(broker);
    // The library loaded the stored subscriptions into its trie.
    this.subscribers.forget();
    await checkQueueLayout('aedes-persistence-level', {
      enqueue: (sub, packet) => super.outgoingEnqueue(sub, packet),
      count: (clientId) => this.countQueued(clientId, 10),
      // By the key Nucleon computes, so the check also finds a key it would miss.
      remove: (clientId, packet) => this.outgoing.clear({ id: clientId } as Client, packet),
    });
    await this.outgoing.removeStoredIdIndex();
    await this.retained.rebuild(super.createRetainedStream('#') as AsyncIterable<PublishPacket>);
  }

  override async storeRetained(packet: PublishPacket): Promise<void> {
    const admission = await storeRetainedWithin(this.retained, packet, (write) => super.storeRetained(write));
    if (admission.removed) this.compactor.request();
  }

  override delWill(client: { id: string; brokerId?: string }): Promise<unknown> {
    const deleting = super.delWill(client).catch((error: unknown) => this.policy.willDeleteFailed(client.id, error));
    // Waited for by close(): a will published by the sweep and not yet deleted would be published again after a restart.
    this.willDeletes.add(deleting);
    void deleting.finally(() => this.willDeletes.delete(deleting));
    return deleting;
  }

  override outgoingStream(client: Client): Readable {
    // Deferred messages, and the packet ids of messages sent on its last connection (so they are resent
    // with them), are written before the queue is read.
    const written = this.outgoing.writeHeld();
    const read = () => super.outgoingStream(client) as unknown as AsyncIterable<PublishPacket>;
    return markRedeliveries(
      (async function* afterHeldWrites() {
        await written;
        yield* read();
      })(),
    );
  }

  override createRetainedStreamCombi(patterns: string[]): Readable {
    return this.policy.retainedStream(super.createRetainedStreamCombi(patterns) as Readable);
  }

  override createRetainedStream(pattern: string): Readable {
    return this.policy.retainedStream(super.createRetainedStream(pattern) as Readable);
  }

  override async addSubscriptions(client: Client, subs: Subscription[]): Promise<void> {
    const allowed = this.policy.allowedSubscriptions(client, subs);
    if (allowed.length === 0) return;
    // The library changes its trie before its first await: the remembered matches are forgotten right after.
    const adding = super.addSubscriptions(client, allowed);
    this.subscribers.forget();
    await adding;
  }

  override async removeSubscriptions(client: Client, topics: string[]): Promise<void> {
    const removing = super.removeSubscriptions(client, topics);
    this.subscribers.forget();
    await removing;
  }

  override subscriptionsByTopic(topic: string): Promise<QueuedSubscription[]> {
    const remembered = this.subscribers.peek(topic);
    // Frozen: aedes only reads the list (it hands it to outgoingEnqueueCombi).
    if (remembered !== undefined) return Promise.resolve(remembered as QueuedSubscription[]);
    const mark = this.subscribers.mark();
    return super.subscriptionsByTopic(topic).then((match) => this.subscribers.rememberSince(mark, topic, match) as QueuedSubscription[]);
  }

  override outgoingEnqueue(sub: { clientId: string }, packet: PublishPacket): Promise<void> {
    // A client connected here acknowledges most messages before a write would end; the route waits for
    // it. (The queue bound never refuses a connected client, so admit() is not asked.)
    const settlement = this.settlements?.of(packet.payload);
    if (settlement !== undefined && this.isConnected(sub.clientId) && this.outgoing.defer(sub.clientId, packet, settlement)) {
      this.policy.enqueued(sub.clientId);
      return Promise.resolve();
    }
    return this.enqueueWritten(sub.clientId, packet);
  }

  override outgoingUpdate(client: Client, packet: PublishPacket): Promise<void> {
    return this.outgoing.update(client, packet);
  }

  override async outgoingClearMessageId(client: Client, packet: PublishPacket): Promise<PublishPacket | undefined> {
    if (isUnstoredPuback(client, packet)) return undefined;
    const cleared = await this.outgoing.clear(client, packet);
    if (cleared) this.policy.cleared(client.id);
    return cleared;
  }

  forget(clientId: string): void {
    this.policy.forget(clientId);
  }

  /** Stops compacting (waiting for a compaction that runs) before the database closes. */
  stopCompacting(): Promise<void> {
    return this.compactor.close();
  }

  /** Waits for the combined writes still pending, then closes the database. */
  async close(): Promise<void> {
    await this.outgoing.writeHeld();
    await Promise.all(this.willDeletes);
    await this.combined.close();
  }

  private async enqueueWritten(clientId: string, packet: PublishPacket): Promise<void> {
    if (!(await this.policy.admit(clientId))) return;
    await this.outgoing.enqueue(clientId, packet);
    this.policy.enqueued(clientId);
  }

  private async countQueued(clientId: string, limit: number): Promise<number> {
    let count = 0;
    for await (const _key of this.db.keys({ ...levelQueueRange(clientId), limit })) count++;
    return count;
  }
}
