// Writes a fleet into an instance's embedded store before it starts: the admin's
// fleet records and, optionally, OTA group links, in one batch (10,000 devices
// take well under a second), for tests of search and paging at fleet scale.
import path from 'node:path';
import type { DeviceRecord, OtaStatus } from '../../src/admin/fleet.js';
import { LevelStore, type KvStore } from '../../src/store/index.js';

export interface SeedOptions {
  count: number;
  /** uid = prefix + zero-padded index (`dev-00042`). */
  prefix?: string;
  /** Versions handed out round-robin; a device at index i % (versions.length + 1) === versions.length has none. */
  firmware?: readonly string[];
  /** Every `every`-th device (by index) is linked to the group; a device is in at most one group, the first that takes it. */
  groups?: readonly { name: string; every: number; imageId?: string }[];
  /** The newest lastSeen; device i was seen i seconds before it. */
  now?: number;
}

export interface SeededDevice {
  uid: string;
  firmwareVersion?: string;
  otaStatus: OtaStatus;
  group?: string;
  lastSeen: number;
}

const OTA_CYCLE: readonly OtaStatus[] = ['none', 'assigned', 'downloading', 'updated'];

/** The devices `seedFleet` writes for these options, without writing them (tests compute expected answers from it). */
export function seededDevices(options: SeedOptions): SeededDevice[] {
  const prefix = options.prefix ?? 'dev-';
  const firmware = options.firmware ?? ['1.0.0-0-g0000000', '1.1.0-3-gabcdef1', '2.0.0-1-g1234567'];
  const now = options.now ?? Date.now();
  const width = Math.max(5, String(options.count - 1).length);
  const devices: SeededDevice[] = [];
  for (let i = 0; i < options.count; i++) {
    const version = firmware[i % (firmware.length + 1)];
    const group = options.groups?.find((g) => i % g.every === 0)?.name;
    devices.push({
      uid: `${prefix}${String(i).padStart(width, '0')}`,
      ...(version !== undefined ? { firmwareVersion: version } : {}),
      otaStatus: OTA_CYCLE[i % OTA_CYCLE.length] as OtaStatus,
      ...(group !== undefined ? { group } : {}),
      lastSeen: now - i * 1000,
    });
  }
  return devices;
}

/** Writes the seeded fleet into `store` in one batch. */
export async function seedStore(store: KvStore, options: SeedOptions): Promise<SeededDevice[]> {
  const devices = seededDevices(options);
  const operations: { type: 'put'; key: string; value: unknown }[] = [];
  for (const device of devices) {
    const record: DeviceRecord = {
      uid: device.uid,
      online: false,
      lastSeen: device.lastSeen,
      disconnectedAt: device.lastSeen,
      disconnectReason: 'closed',
      otaStatus: device.otaStatus,
      ...(device.firmwareVersion !== undefined ? { firmwareVersion: device.firmwareVersion } : {}),
    };
    operations.push({ type: 'put', key: `admin/fleet/${device.uid}`, value: record });
    if (device.group !== undefined) {
      // The OTA catalog's layout (src/ota/catalog.ts): the device's group and the group's member index.
      operations.push({ type: 'put', key: `ota/device/${device.uid}`, value: { group: device.group } });
      operations.push({ type: 'put', key: `ota/member/${device.group}/${device.uid}`, value: true });
    }
  }
  for (const group of options.groups ?? []) {
    operations.push({ type: 'put', key: `ota/group/${group.name}`, value: { name: group.name, ...(group.imageId !== undefined ? { imageId: group.imageId } : {}) } });
  }
  await store.batch(operations);
  return devices;
}

/** Seeds the embedded store of an instance whose `store.path` is `dataDir` (startFullInstance's `<dir>/data`); call before it starts. */
export async function seedFleet(dataDir: string, options: SeedOptions): Promise<SeededDevice[]> {
  const store = new LevelStore(path.join(dataDir, 'kv'));
  await store.open();
  try {
    return await seedStore(store, options);
  } finally {
    await store.close();
  }
}
