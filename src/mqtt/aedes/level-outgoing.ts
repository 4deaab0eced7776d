/*
 * The outgoing (queued and in-flight) messages of persistent sessions in the
 * embedded store, in aedes-persistence-level's key layout but with less work
 * per message than the library does.
 *
 * The library keeps each message twice: `outgoing:<id>:<broker>:<counter>`
 * (the queue, read back in order by its outgoingStream and counted by
 * queue-layout.ts) and, once sent, `outgoing-id:<id>:<packet id>` (to find
 * the message by the packet id of its PUBACK). Per QoS 1 message to an
 * online subscriber that was 3 puts, 2 deletes, 2 reads, 3 msgpack encodes
 * and 2 decodes; the profile of bench scenario 10 (persistent session) had
 * LevelDB batches, msgpack-lite's 2 KB buffer per encode and the garbage
 * collector as its top entries.
 *
 * Here:
 * - A packet id means something only for the connection that used it (a
 *   reconnect resends the queue, with the ids it stored), so the
 *   `outgoing-id:` index is kept in memory per connection (a WeakMap on
 *   aedes' Client): a PUBACK finds its message without a read. Left-over
 *   `outgoing-id:` keys of an earlier version are removed at start.
 * - The packet id is recorded in the queued message (so that a resend after
 *   a reconnect uses it, [MQTT-4.4.0-1]) without holding the send back, and
 *   only for a message still unacknowledged after ID_WRITE_DELAY_MS, before
 *   its client's queue is read again, or at close: most are acknowledged
 *   first and never need it. If the process dies first, the message is
 *   resent with a new id, still at least once. A PUBREL (QoS 2) replaces its
 *   message before it is sent, as the library does, because after a PUBREC
 *   the PUBLISH must not be sent again.
 * - One msgpack-lite encoder is reused (the library's own msgpack-lite and
 *   aedes-packet, so the bytes are the library's): 2.0 µs per message
 *   instead of 5.9 µs and a zeroed 2 KB buffer each (measured in isolation).
 * - A message for a session connected here, routed with a settlement
 *   (routing-settlements.ts), is not written when queued: it waits in memory
 *   for DEFER_WRITE_MS, and its subscriber's acknowledgement in that time
 *   removes it without any write. One still unacknowledged then (or when the
 *   client's queue is read again, or at close) is written. Its publisher's
 *   PUBACK waits for either, so a PUBACK still means stored or delivered; a
 *   crash before then loses only messages no publisher was told about.
 * Per message acknowledged in time: no write. Otherwise one put when queued
 * (or deferred) and one delete when acknowledged.
 */
import { createRequire } from 'node:module';
import type { Client, PublishPacket } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import type { PersistenceDb } from './persistence-db.js';
import { levelQueueKey } from './queue-layout.js';
import type { Settlement } from './routing-settlements.js';
import { installedVersion } from './versions.js';

/** What the library stores: aedes-packet's Packet (its own copy of it), plus the packet id once sent. */
type StoredPacket = PublishPacket & { brokerId?: string; brokerCounter?: number };

interface LibraryModules {
  Packet: new (original: object) => StoredPacket;
  Encoder: new () => { encode(value: unknown): void; on(event: 'data', listener: (chunk: Buffer) => void): void };
}

function libraryModules(): LibraryModules {
  const fromLibrary = createRequire(createRequire(import.meta.url).resolve('aedes-persistence-level/asyncPersistence.js'));
  try {
    const Packet = fromLibrary('aedes-packet') as LibraryModules['Packet'];
    const { Encoder } = fromLibrary('msgpack-lite') as { Encoder: LibraryModules['Encoder'] };
    if (typeof Packet !== 'function' || typeof Encoder !== 'function') throw new Error('aedes-packet or msgpack-lite has another shape');
    return { Packet, Encoder };
  } catch (error) {
    throw new DependencyMismatchError('aedes-persistence-level', installedVersion('aedes-persistence-level'), `its aedes-packet and msgpack-lite are not what src/mqtt/aedes/level-outgoing.ts loads (${error instanceof Error ? error.message : String(error)})`);
  }
}

/** The library's index by packet id, which this module keeps in memory instead. */
const LEVEL_OUTGOING_ID_RANGE = { gte: 'outgoing-id:', lt: 'outgoing-id;' } as const;

interface Sent {
  /** Its key in the store; undefined while the message is deferred (computed when needed). */
  key: string | undefined;
  packet: StoredPacket;
}

/** How long a sent message's packet id waits to be written (most messages are acknowledged sooner). */
export const ID_WRITE_DELAY_MS = 250;

/**
 * How long a message queued for a connected session waits in memory before
 * it is written; its publisher's PUBACK waits at most this long (plus the
 * write) for a subscriber that does not acknowledge.
 */
export const DEFER_WRITE_MS = 50;

/** Deferred messages at most (a few MB); past it messages are written when queued, as without deferral. */
export const MAX_DEFERRED = 16_384;

interface Deferred {
  clientId: string;
  /** The message as it would be written now (with its packet id once sent). */
  packet: StoredPacket;
  settlement: Settlement;
  /** Date.now() when queued. */
  since: number;
}

/**
 * The deferred messages, found by client, broker id and counter, and kept
 * oldest first. Not by their store key in one Map: building that 75-character
 * key and hashing it, three times per message, was most of this module's
 * time in the profile of bench scenario 10 (QoS 1, persistent session: 7 % of
 * the broker's busy time on those three lines). A client id hashes once (V8
 * keeps a string's hash) and a counter is a small integer.
 */
class DeferredMessages {
  private readonly byClient = new Map<string, Map<number, Deferred>>();
  /** Insertion order is queue order: oldest first. */
  private readonly order = new Set<Deferred>();

  get size(): number {
    return this.order.size;
  }

  get(clientId: string, brokerId: string | undefined, counter: number | undefined): Deferred | undefined {
    const found = this.byClient.get(clientId)?.get(counter ?? -1);
    return found !== undefined && found.packet.brokerId === brokerId ? found : undefined;
  }

  /** Whether a message with this counter is deferred for the client (from any broker). */
  holds(clientId: string, counter: number | undefined): boolean {
    return this.byClient.get(clientId)?.has(counter ?? -1) === true;
  }

  /** Adds a message for which `holds` is false. */
  add(entry: Deferred): void {
    let ofClient = this.byClient.get(entry.clientId);
    if (ofClient === undefined) {
      ofClient = new Map();
      this.byClient.set(entry.clientId, ofClient);
    }
    ofClient.set(entry.packet.brokerCounter ?? -1, entry);
    this.order.add(entry);
  }

  delete(entry: Deferred): void {
    this.order.delete(entry);
    const ofClient = this.byClient.get(entry.clientId);
    if (ofClient?.get(entry.packet.brokerCounter ?? -1) !== entry) return;
    ofClient.delete(entry.packet.brokerCounter ?? -1);
    if (ofClient.size === 0) this.byClient.delete(entry.clientId);
  }

  oldest(): Deferred | undefined {
    const first = this.order.values().next();
    return first.done === true ? undefined : first.value;
  }

  /** Oldest first; deleting the entry being visited is allowed. */
  values(): IterableIterator<Deferred> {
    return this.order.values();
  }
}

export interface LevelOutgoingOptions {
  /** A write that nothing waits for failed (the packet id of a sent message); the store is failing. */
  onUnawaitedWriteFailed: (clientId: string, error: unknown) => void;
}

export class LevelOutgoing {
  private readonly modules = libraryModules();
  /** Per connection (aedes' Client object): packet id → the message sent with it. */
  private readonly sent = new WeakMap<object, Map<number, Sent>>();
  private readonly encoder = new this.modules.Encoder();
  private encoded: Buffer | undefined;
  /** Sent messages whose packet id is not written yet, by key (bounded by what clients have in flight). */
  private readonly unwrittenIds = new Map<string, { clientId: string; packet: StoredPacket }>();
  private idTimer: NodeJS.Timeout | undefined;
  /** Queued messages not written yet. */
  private readonly deferred = new DeferredMessages();
  private deferTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: PersistenceDb,
    private readonly options: LevelOutgoingOptions,
  ) {
    // msgpack-lite's Encoder hands each encoded value to 'data', synchronously.
    this.encoder.on('data', (chunk) => {
      this.encoded = chunk;
    });
  }

  /** Removes the packet-id index an earlier version wrote to disk (no id is in flight at start). */
  async removeStoredIdIndex(): Promise<void> {
    await this.db.clear(LEVEL_OUTGOING_ID_RANGE);
  }

  /**
   * Holds `packet` for a client connected here in memory under the route's
   * settlement instead of writing it; false when too many are held (then
   * `enqueue` it).
   */
  defer(clientId: string, packet: PublishPacket, settlement: Settlement): boolean {
    // Only messages routed here are deferred, so counters do not collide; one that did is written instead.
    if (this.deferred.size >= MAX_DEFERRED || this.deferred.holds(clientId, (packet as StoredPacket).brokerCounter)) return false;
    const stored = new this.modules.Packet(packet);
    settlement.hold();
    this.deferred.add({ clientId, packet: stored, settlement, since: Date.now() });
    this.deferTimer ??= setTimeout(() => this.writeDue(), DEFER_WRITE_MS);
    return true;
  }

  /** Queues `packet` for the client; resolves once written. */
  async enqueue(clientId: string, packet: PublishPacket): Promise<void> {
    const stored = new this.modules.Packet(packet);
    await this.db.put(levelQueueKey(clientId, stored.brokerId, stored.brokerCounter), this.encode(stored));
  }

  /** Queued messages not written yet. */
  deferredCount(): number {
    return this.deferred.size;
  }

  /** aedes is about to send `packet` to `client` with its packet id (or a PUBREL in its place). */
  async update(client: Client, packet: StoredPacket): Promise<void> {
    const ofClient = this.sentOf(client);
    let previousKey: string | undefined;
    if (!packet.brokerId) {
      // A PUBREL carries only the packet id of the message it follows.
      const previous = ofClient.get(packet.messageId ?? 0);
      if (!previous) throw new Error('no such packet');
      packet.brokerId = previous.packet.brokerId;
      packet.brokerCounter = previous.packet.brokerCounter;
      previousKey = previous.key;
    }
    const deferred = this.deferred.get(client.id, packet.brokerId, packet.brokerCounter);
    if (deferred !== undefined && packet.cmd === 'publish') {
      // Not written yet: the deferred write carries the packet id. The deferred copy is this store's own.
      deferred.packet.messageId = packet.messageId;
      ofClient.set(packet.messageId ?? 0, { key: undefined, packet: deferred.packet });
      return;
    }
    const key = previousKey ?? levelQueueKey(client.id, packet.brokerId, packet.brokerCounter);
    const stored = Object.assign(new this.modules.Packet(packet), { messageId: packet.messageId });
    ofClient.set(packet.messageId ?? 0, { key, packet: stored });
    if (packet.cmd !== 'publish') {
      this.unwrittenIds.delete(key);
      if (deferred === undefined) return this.db.put(key, this.encode(stored));
      // After a PUBREC the subscriber has the message; the PUBREL state is written before it is sent.
      this.deferred.delete(deferred);
      return this.db.put(key, this.encode(stored)).then(
        () => deferred.settlement.release(),
        (error: unknown) => {
          deferred.settlement.release(asError(error));
          throw error;
        },
      );
    }
    this.unwrittenIds.set(key, { clientId: client.id, packet: stored });
    this.idTimer ??= setTimeout(() => void this.writeHeld(), ID_WRITE_DELAY_MS);
  }

  /**
   * Writes what is held in memory now: deferred messages and the packet ids
   * of sent, unacknowledged ones (before a queue is read, and at close).
   * Resolves once those writes have ended (a failure is reported, not thrown).
   */
  writeHeld(): Promise<void> {
    if (this.idTimer !== undefined) clearTimeout(this.idTimer);
    this.idTimer = undefined;
    const writes: Promise<void>[] = [];
    for (const [key, { clientId, packet }] of this.unwrittenIds) {
      writes.push(this.db.put(key, this.encode(packet)).then(undefined, (error: unknown) => this.options.onUnawaitedWriteFailed(clientId, error)));
    }
    this.unwrittenIds.clear();
    this.writeDeferred(Number.POSITIVE_INFINITY, writes);
    return Promise.all(writes).then(() => undefined);
  }

  private writeDue(): void {
    this.deferTimer = undefined;
    this.writeDeferred(Date.now() - DEFER_WRITE_MS);
  }

  /** Writes the deferred messages queued at or before `queuedBy` (oldest first), and schedules the next. */
  private writeDeferred(queuedBy: number, writes?: Promise<void>[]): void {
    for (const entry of this.deferred.values()) {
      if (entry.since > queuedBy) break;
      this.deferred.delete(entry);
      const { settlement } = entry;
      const key = levelQueueKey(entry.clientId, entry.packet.brokerId, entry.packet.brokerCounter);
      const written = this.db.put(key, this.encode(entry.packet)).then(
        () => settlement.release(),
        // The publisher's route fails with it (its device is not acknowledged).
        (error: unknown) => settlement.release(asError(error)),
      );
      writes?.push(written);
    }
    if (this.deferTimer !== undefined) clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    const oldest = this.deferred.oldest();
    if (oldest !== undefined) this.deferTimer = setTimeout(() => this.writeDue(), Math.max(1, oldest.since + DEFER_WRITE_MS - Date.now()));
  }

  /**
   * The message acknowledged by `packet` (a PUBACK or PUBCOMP, by packet id)
   * or `packet` itself (a stored message aedes drops), removed from the queue.
   */
  async clear(client: Client, packet: StoredPacket): Promise<StoredPacket | undefined> {
    const ofClient = this.sentOf(client);
    const messageId = packet.messageId ?? 0;
    const sent = ofClient.get(messageId);
    let found: Sent | undefined;
    if (packet.brokerId) {
      if (sent !== undefined && sent.packet.brokerId === packet.brokerId && sent.packet.brokerCounter === packet.brokerCounter) ofClient.delete(messageId);
      found = { key: undefined, packet };
    } else if (sent) {
      ofClient.delete(messageId);
      found = sent;
    }
    // An id this connection never sent: nothing is stored under it (the library answers the same).
    if (!found) return undefined;
    const deferred = this.deferred.get(client.id, found.packet.brokerId, found.packet.brokerCounter);
    if (deferred !== undefined) {
      // Acknowledged before it was ever written: nothing to delete (and no packet id waits to be written).
      this.deferred.delete(deferred);
      deferred.settlement.release();
      return found.packet;
    }
    const key = found.key ?? levelQueueKey(client.id, found.packet.brokerId, found.packet.brokerCounter);
    this.unwrittenIds.delete(key);
    await this.db.del(key);
    return found.packet;
  }

  private sentOf(client: Client): Map<number, Sent> {
    let map = this.sent.get(client);
    if (!map) {
      map = new Map();
      this.sent.set(client, map);
    }
    return map;
  }

  private encode(value: StoredPacket): Buffer {
    this.encoder.encode(value);
    const chunk = this.encoded;
    this.encoded = undefined;
    if (!chunk) throw new DependencyMismatchError('aedes-persistence-level', installedVersion('aedes-persistence-level'), 'its msgpack-lite Encoder gave no data (src/mqtt/aedes/level-outgoing.ts)');
    return chunk;
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
