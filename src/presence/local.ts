import type { Logger } from '../logger.js';
import { ConnectionBook, entryOf } from './connections.js';
import { PresenceListeners } from './listeners.js';
import type { DeviceConnection, PresenceEntry, PresenceListener, PresenceService } from './presence.js';

/** Presence of a single instance: the devices connected to it, in memory (nobody is online after a restart). */
export class LocalPresence implements PresenceService {
  readonly cluster = false;
  private readonly book = new ConnectionBook();
  private readonly listeners: PresenceListeners;

  constructor(
    readonly instanceId: string,
    logger: Logger,
  ) {
    this.listeners = new PresenceListeners(logger);
  }

  connected(connection: DeviceConnection): PresenceEntry {
    const entry = entryOf(connection, this.instanceId);
    const before = this.book.add(entry);
    this.listeners.notify(entry.uid, entry, before);
    return entry;
  }

  disconnected(entry: PresenceEntry): void {
    const closed = this.book.remove(entry);
    // An older connection's goodbye (a takeover) changes nothing anyone can see.
    if (closed && closed.after !== closed.before) this.listeners.notify(entry.uid, closed.after, closed.before);
  }

  get(uid: string): PresenceEntry | undefined {
    return this.book.current(uid);
  }

  isOnline(uid: string): boolean {
    return this.book.current(uid) !== undefined;
  }

  entries(): IterableIterator<PresenceEntry> {
    return this.book.currents();
  }

  get size(): number {
    return this.book.devices;
  }

  get connections(): number {
    return this.book.connections;
  }

  onChange(listener: PresenceListener): () => void {
    return this.listeners.add(listener);
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {
    this.listeners.clear();
  }
}
