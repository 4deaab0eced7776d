import type { DeviceConnection, PresenceEntry } from './presence.js';

/** The entry a connection opened on `instance` stands for; a new object for every connection (its identity). */
export function entryOf(connection: DeviceConnection, instance: string): PresenceEntry {
  const { uid, clientId, remoteAddress, authMethod, at } = connection;
  return { uid, instance, clientId, connectedAt: at, remoteAddress, authMethod };
}

/** What closing a connection changed: the device's entry before and after (undefined: offline). */
export interface Closed {
  before: PresenceEntry;
  after: PresenceEntry | undefined;
}

/**
 * The device connections open on this instance, the one rule both presence
 * implementations follow: a device is online while at least one of its
 * connections is open, and the newest open one stands for it. Connections are
 * their entry objects (identity, not client id), so the goodbye of a connection
 * that was taken over never takes its successor offline.
 */
export class ConnectionBook {
  /** Per device, its open connections, oldest first; almost always one. Emptied lists are removed. */
  private readonly byUid = new Map<string, PresenceEntry[]>();
  private open = 0;

  /** Connections open now. */
  get connections(): number {
    return this.open;
  }

  /** Devices with at least one open connection. */
  get devices(): number {
    return this.byUid.size;
  }

  /** The newest open connection of a device. */
  current(uid: string): PresenceEntry | undefined {
    return this.byUid.get(uid)?.at(-1);
  }

  *currents(): IterableIterator<PresenceEntry> {
    for (const list of this.byUid.values()) {
      const newest = list.at(-1);
      if (newest) yield newest;
    }
  }

  /** Adds a connection, which now stands for its device; returns the entry that did before. */
  add(entry: PresenceEntry): PresenceEntry | undefined {
    const list = this.byUid.get(entry.uid);
    const before = list?.at(-1);
    if (list) list.push(entry);
    else this.byUid.set(entry.uid, [entry]);
    this.open++;
    return before;
  }

  /** Removes a connection; undefined when it was not open (closed twice). */
  remove(entry: PresenceEntry): Closed | undefined {
    const list = this.byUid.get(entry.uid);
    const index = list ? list.indexOf(entry) : -1;
    if (!list || index < 0) return undefined;
    const before = list.at(-1) ?? entry;
    list.splice(index, 1);
    if (list.length === 0) this.byUid.delete(entry.uid);
    this.open--;
    return { before, after: list.at(-1) };
  }
}
