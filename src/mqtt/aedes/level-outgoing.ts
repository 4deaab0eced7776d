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
 * Per message acknowledged in time: one put when queued (awaited: the
 * publisher's PUBACK waits for it) and one delete when acknowledged.
 */
import { createRequire } from 'node:module';
import type { Client, PublishPacket } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import type { PersistenceDb } from './persistence-db.js';
import { levelQueueKey } from './queue-layout.js';
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
  key: string;
  packet: StoredPacket;
}

/** How long a sent message's packet id waits to be written (most messages are acknowledged sooner). */
export const ID_WRITE_DELAY_MS = 250;

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

  async enqueue(clientId: string, packet: PublishPacket): Promise<void> {
    const stored = new this.modules.Packet(packet);
    await this.db.put(levelQueueKey(clientId, stored.brokerId, stored.brokerCounter), this.encode(stored));
  }

  /** aedes is about to send `packet` to `client` with its packet id (or a PUBREL in its place). */
  async update(client: Client, packet: StoredPacket): Promise<void> {
    let key: string;
    if (packet.brokerId) {
      key = levelQueueKey(client.id, packet.brokerId, packet.brokerCounter);
    } else {
      // A PUBREL carries only the packet id of the message it follows.
      const previous = this.sentOf(client).get(packet.messageId ?? 0);
      if (!previous) throw new Error('no such packet');
      packet.brokerId = previous.packet.brokerId;
      packet.brokerCounter = previous.packet.brokerCounter;
      key = previous.key;
    }
    const stored = Object.assign(new this.modules.Packet(packet), { messageId: packet.messageId });
    this.sentOf(client).set(packet.messageId ?? 0, { key, packet: stored });
    if (packet.cmd !== 'publish') {
      this.unwrittenIds.delete(key);
      return this.db.put(key, this.encode(stored));
    }
    this.unwrittenIds.set(key, { clientId: client.id, packet: stored });
    this.idTimer ??= setTimeout(() => this.writeIds(), ID_WRITE_DELAY_MS);
  }

  /** Writes the packet ids of sent, unacknowledged messages now (before a queue is read, and at close). */
  writeIds(): void {
    if (this.idTimer !== undefined) clearTimeout(this.idTimer);
    this.idTimer = undefined;
    for (const [key, { clientId, packet }] of this.unwrittenIds) {
      this.db.put(key, this.encode(packet)).then(undefined, (error: unknown) => this.options.onUnawaitedWriteFailed(clientId, error));
    }
    this.unwrittenIds.clear();
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
      const key = levelQueueKey(client.id, packet.brokerId, packet.brokerCounter);
      if (sent?.key === key) ofClient.delete(messageId);
      found = { key, packet };
    } else if (sent) {
      ofClient.delete(messageId);
      found = sent;
    }
    // An id this connection never sent: nothing is stored under it (the library answers the same).
    if (!found) return undefined;
    this.unwrittenIds.delete(found.key);
    await this.db.del(found.key);
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
