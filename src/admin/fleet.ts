import type { AuthMethod, DeviceFirmwareState, EventOf, Telemetry } from '../events.js';
import type { Presence } from '../presence/index.js';
import type { KvStore } from '../store/index.js';

/** What the admin knows about one device: presence, last telemetry, firmware. */
export interface DeviceRecord {
  uid: string;
  /** From presence when asked (stored records say false). */
  online: boolean;
  /** Last connect, disconnect or message, ms since the epoch. */
  lastSeen: number;
  connectedAt?: number;
  disconnectedAt?: number;
  disconnectReason?: string;
  remoteAddress?: string;
  clientId?: string;
  authMethod?: AuthMethod;
  /** Cluster mode: the instance holding the connection. */
  instance?: string;
  /** From telemetry (`version`) or the OTA runner's report. */
  firmwareVersion?: string;
  telemetry?: Telemetry;
  telemetryAt?: number;
  ota?: DeviceFirmwareState;
  otaStatus: OtaStatus;
}

/** `none`: no image assigned; `assigned`: told about one; `downloading`: bytes served; `updated`: reported done on the assigned image. */
export type OtaStatus = 'none' | 'assigned' | 'downloading' | 'updated';

/** Where the fleet records are kept between restarts (the KvStore: embedded, or Redis in cluster mode). */
export interface FleetStore {
  /** Every known device. */
  load(): Promise<DeviceRecord[]>;
  save(records: readonly DeviceRecord[]): Promise<void>;
  /** Deletes one device's record; whether there was one. */
  remove(uid: string): Promise<boolean>;
}

const PREFIX = 'admin/fleet/';

export class KvFleetStore implements FleetStore {
  constructor(private readonly store: KvStore) {}

  async load(): Promise<DeviceRecord[]> {
    const records: DeviceRecord[] = [];
    // A stored `online` is from the time it was written; presence decides when a record is read.
    for await (const [, record] of this.store.entries<DeviceRecord>(PREFIX)) records.push({ ...record, online: false });
    return records;
  }

  async save(records: readonly DeviceRecord[]): Promise<void> {
    await this.store.batch(records.map((record) => ({ type: 'put', key: `${PREFIX}${record.uid}`, value: record })));
  }

  async remove(uid: string): Promise<boolean> {
    const had = (await this.store.get(`${PREFIX}${uid}`)) !== undefined;
    await this.store.del(`${PREFIX}${uid}`);
    return had;
  }
}

export type FleetEvent = EventOf<'DeviceConnected' | 'DeviceDisconnected' | 'TelemetryReceived' | 'DeviceFirmwareUpdated'>;

/**
 * The fleet as the admin sees it: a record per device ever seen, fed by broker
 * events (last connect and disconnect, telemetry, firmware). Whether a device
 * is online, and through which connection, is read from presence whenever a
 * record is asked for, so the admin keeps no count of connections of its own;
 * devices online (in a cluster: on other instances too) that it has no record
 * of yet are listed as well. Updates are in memory at once and written to the
 * fleet store in batches (`flush`), so telemetry at fleet rates costs one store
 * write per interval, not one per message.
 */
export class FleetView {
  private readonly devices = new Map<string, DeviceRecord>();
  private readonly dirty = new Set<string>();

  constructor(
    private readonly store: FleetStore,
    private readonly presence: Presence,
    private readonly now: () => number = Date.now,
  ) {}

  async load(): Promise<void> {
    for (const record of await this.store.load()) this.devices.set(record.uid, record);
  }

  /** Applies an event and returns the device's new record (online as presence says now). */
  apply(event: FleetEvent): DeviceRecord {
    const record = this.recordEvent(event);
    return this.withPresence(record.uid, record);
  }

  private recordEvent(event: FleetEvent): DeviceRecord {
    switch (event.type) {
      case 'DeviceConnected': {
        return this.update(event.uid, {
          lastSeen: event.at,
          connectedAt: event.at,
          remoteAddress: event.remoteAddress,
          clientId: event.clientId,
          authMethod: event.authMethod,
        });
      }
      case 'DeviceDisconnected': {
        // Online or not is presence's to say: this may be the goodbye of a connection already taken over.
        return this.update(event.uid, { lastSeen: event.at, disconnectedAt: event.at, disconnectReason: event.reason });
      }
      case 'TelemetryReceived': {
        const changes: Partial<DeviceRecord> = { lastSeen: event.receivedAt, telemetry: event.telemetry, telemetryAt: event.receivedAt };
        if (event.telemetry.version !== undefined) changes.firmwareVersion = event.telemetry.version;
        return this.update(event.uid, changes);
      }
      case 'DeviceFirmwareUpdated': {
        const changes: Partial<DeviceRecord> = { ota: event.state };
        if (event.state.reportedVersion !== undefined) changes.firmwareVersion = event.state.reportedVersion;
        return this.update(event.state.uid, changes);
      }
    }
  }

  /** Forgets a removed device (`devices.remove`): its record here and in the fleet store; whether it had one. */
  async forget(uid: string): Promise<boolean> {
    const had = this.devices.delete(uid);
    this.dirty.delete(uid);
    return (await this.store.remove(uid)) || had;
  }

  get(uid: string): DeviceRecord | undefined {
    const record = this.devices.get(uid);
    return record ? this.withPresence(uid, record) : this.unrecorded(uid);
  }

  list(): DeviceRecord[] {
    return this.all().sort((a, b) => a.uid.localeCompare(b.uid));
  }

  /** Every record as `list()` has them, in no particular order (devices.search sorts only what it matched). */
  all(): DeviceRecord[] {
    const records = [...this.devices.values()].map((record) => this.withPresence(record.uid, record));
    for (const entry of this.presence.entries()) {
      const record = this.devices.has(entry.uid) ? undefined : this.unrecorded(entry.uid);
      if (record) records.push(record);
    }
    return records;
  }

  get size(): number {
    let unrecorded = 0;
    for (const entry of this.presence.entries()) if (!this.devices.has(entry.uid)) unrecorded++;
    return this.devices.size + unrecorded;
  }

  get onlineCount(): number {
    return this.presence.size;
  }

  /** A device online without a record here yet (its DeviceConnected still on its way, or connected to another instance). */
  private unrecorded(uid: string): DeviceRecord | undefined {
    const entry = this.presence.get(uid);
    return entry && this.withPresence(uid, { uid, online: false, lastSeen: entry.connectedAt, otaStatus: 'none' });
  }

  /** The record with `online` and the connection fields from presence, wherever the device is connected. */
  private withPresence(uid: string, record: DeviceRecord): DeviceRecord {
    const entry = this.presence.get(uid);
    if (!entry) return { ...record, online: false };
    return {
      ...record,
      online: true,
      lastSeen: Math.max(record.lastSeen, entry.connectedAt),
      connectedAt: entry.connectedAt,
      clientId: entry.clientId,
      remoteAddress: entry.remoteAddress,
      authMethod: entry.authMethod,
      ...(this.presence.cluster ? { instance: entry.instance } : {}),
    };
  }

  /** Writes the records changed since the last flush. */
  async flush(): Promise<void> {
    if (this.dirty.size === 0) return;
    const records: DeviceRecord[] = [];
    for (const uid of this.dirty) {
      const record = this.devices.get(uid);
      if (record) records.push(record);
    }
    this.dirty.clear();
    try {
      await this.store.save(records);
    } catch (error) {
      // Keep them dirty so the next flush tries again.
      for (const record of records) this.dirty.add(record.uid);
      throw error;
    }
  }

  private update(uid: string, changes: Partial<DeviceRecord>): DeviceRecord {
    const previous = this.devices.get(uid) ?? { uid, online: false, lastSeen: this.now(), otaStatus: 'none' as const };
    const next: DeviceRecord = { ...previous, ...changes, uid };
    next.otaStatus = otaStatusOf(next.ota);
    this.devices.set(uid, next);
    this.dirty.add(uid);
    return next;
  }
}

export function otaStatusOf(state: DeviceFirmwareState | undefined): OtaStatus {
  if (!state?.assignedImageId) return state?.doneImageId ? 'updated' : 'none';
  if (state.doneImageId === state.assignedImageId) return 'updated';
  // bytesServed counts the download of downloadImageId (older states lack it).
  if (state.bytesServed > 0 && (state.downloadImageId === undefined || state.downloadImageId === state.assignedImageId)) return 'downloading';
  return 'assigned';
}
