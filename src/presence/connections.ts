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
  /**
   * Per device, its open connections: the entry itself when there is one (the
   * usual case: no array per device), oldest first in an array while a
   * takeover briefly holds two or more. Devices with none are removed.
   */
  private readonly byUid = new Map<string, PresenceEntry | PresenceEntry[]>();
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
    return newest(this.byUid.get(uid));
  }

  *currents(): IterableIterator<PresenceEntry> {
    for (const open of this.byUid.values()) {
      const entry = newest(open);
      if (entry) yield entry;
    }
  }

  /** Adds a connection, which now stands for its device; returns the entry that did before. */
  add(entry: PresenceEntry): PresenceEntry | undefined {
    const open = this.byUid.get(entry.uid);
    const before = newest(open);
    if (open === undefined) this.byUid.set(entry.uid, entry);
    else if (Array.isArray(open)) open.push(entry);
    else this.byUid.set(entry.uid, [open, entry]);
    this.open++;
    return before;
  }

  /** Removes a connection; undefined when it was not open (closed twice). */
  remove(entry: PresenceEntry): Closed | undefined {
    const open = this.byUid.get(entry.uid);
    if (open === undefined) return undefined;
    const before = newest(open) ?? entry;
    if (!Array.isArray(open)) {
      if (open !== entry) return undefined;
      this.byUid.delete(entry.uid);
      this.open--;
      return { before, after: undefined };
    }
    const index = open.indexOf(entry);
    if (index < 0) return undefined;
    open.splice(index, 1);
    // An array holds two or more, so one is left at least: back to the single form then.
    const [only] = open;
    if (open.length === 1 && only) this.byUid.set(entry.uid, only);
    this.open--;
    return { before, after: newest(this.byUid.get(entry.uid)) };
  }
}

function newest(open: PresenceEntry | PresenceEntry[] | undefined): PresenceEntry | undefined {
  return Array.isArray(open) ? open.at(-1) : open;
}
