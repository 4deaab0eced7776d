import type { AuthMethod, DeviceFirmwareState, EventOf, Telemetry } from '../events.js';
import type { KvStore } from '../store/index.js';
import type { PresenceEntry, PresenceView } from '../cluster/presence.js';

/** What the admin knows about one device: presence, last telemetry, firmware. */
export interface DeviceRecord {
  uid: string;
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

/**
 * Where presence is kept between restarts. The embedded store is the default;
 * cluster mode will hold presence in Redis with expiry, so the fleet view only
 * talks to this interface.
 */
export interface PresenceStore {
  /** Every known device; nobody is online right after a (single-instance) start. */
  load(): Promise<DeviceRecord[]>;
  save(records: readonly DeviceRecord[]): Promise<void>;
}

const PREFIX = 'admin/fleet/';

export class KvPresenceStore implements PresenceStore {
  constructor(private readonly store: KvStore) {}

  async load(): Promise<DeviceRecord[]> {
    const records: DeviceRecord[] = [];
    for await (const [, record] of this.store.entries<DeviceRecord>(PREFIX)) {
      // Connections do not survive a restart of the only instance.
      records.push({ ...record, online: false });
    }
    return records;
  }

  async save(records: readonly DeviceRecord[]): Promise<void> {
    await this.store.batch(records.map((record) => ({ type: 'put', key: `${PREFIX}${record.uid}`, value: record })));
  }
}

/**
 * Cluster mode: who is online on any instance (src/cluster/presence.ts, Redis
 * with expiry). When given, it decides `online` and the connection fields, and
 * devices connected elsewhere are listed too.
 */
export type SharedPresence = PresenceView;
export type SharedPresenceEntry = PresenceEntry;

export type FleetEvent = EventOf<'DeviceConnected' | 'DeviceDisconnected' | 'TelemetryReceived' | 'DeviceFirmwareUpdated'>;

/**
 * The fleet as the admin sees it, fed by broker events. Updates are in memory at
 * once and written to the presence store in batches (`flush`), so telemetry at
 * fleet rates costs one store write per interval, not one per message.
 */
export class FleetView {
  private readonly devices = new Map<string, DeviceRecord>();
  /** Open connections per uid: a session takeover connects the new one before the old one disconnects. */
  private readonly connections = new Map<string, number>();
  private readonly dirty = new Set<string>();

  constructor(
    private readonly store: PresenceStore,
    private readonly now: () => number = Date.now,
    private readonly shared?: SharedPresence,
  ) {}

  async load(): Promise<void> {
    for (const record of await this.store.load()) this.devices.set(record.uid, record);
  }

  /** Applies an event and returns the device's new record. */
  apply(event: FleetEvent): DeviceRecord {
    switch (event.type) {
      case 'DeviceConnected': {
        const open = (this.connections.get(event.uid) ?? 0) + 1;
        this.connections.set(event.uid, open);
        return this.update(event.uid, {
          online: true,
          lastSeen: event.at,
          connectedAt: event.at,
          remoteAddress: event.remoteAddress,
          clientId: event.clientId,
          authMethod: event.authMethod,
        });
      }
      case 'DeviceDisconnected': {
        const open = Math.max(0, (this.connections.get(event.uid) ?? 0) - 1);
        if (open === 0) this.connections.delete(event.uid);
        else this.connections.set(event.uid, open);
        return this.update(event.uid, { online: open > 0, lastSeen: event.at, disconnectedAt: event.at, disconnectReason: event.reason });
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

  get(uid: string): DeviceRecord | undefined {
    return this.withSharedPresence(uid, this.devices.get(uid));
  }

  list(): DeviceRecord[] {
    const records = [...this.devices.values()].map((record) => this.withSharedPresence(record.uid, record) ?? record);
    if (this.shared) {
      for (const entry of this.shared.entries()) {
        const record = this.devices.has(entry.uid) ? undefined : this.withSharedPresence(entry.uid, undefined);
        if (record) records.push(record);
      }
    }
    return records.sort((a, b) => a.uid.localeCompare(b.uid));
  }

  get size(): number {
    if (!this.shared) return this.devices.size;
    let elsewhere = 0;
    for (const entry of this.shared.entries()) if (!this.devices.has(entry.uid)) elsewhere++;
    return this.devices.size + elsewhere;
  }

  get onlineCount(): number {
    return this.shared ? this.shared.size : this.connections.size;
  }

  /** Cluster mode: online state and connection fields from shared presence, wherever the device is connected. */
  private withSharedPresence(uid: string, record: DeviceRecord | undefined): DeviceRecord | undefined {
    if (!this.shared) return record;
    const entry = this.shared.get(uid);
    if (!entry) return record && { ...record, online: false };
    const base = record ?? { uid, online: false, lastSeen: entry.connectedAt, otaStatus: 'none' as const };
    return {
      ...base,
      online: true,
      lastSeen: Math.max(base.lastSeen, entry.connectedAt),
      connectedAt: entry.connectedAt,
      clientId: entry.clientId,
      remoteAddress: entry.remoteAddress,
      authMethod: entry.authMethod,
      instance: entry.instance,
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
