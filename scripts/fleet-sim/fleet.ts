// A fleet of simulated Pyrinas devices in one process (scripts/fleet-sim/device.ts),
// each given a behaviour in the proportions asked for; bounded in count, and
// stop() closes every client.
import type { IClientOptions } from 'mqtt';
import { BEHAVIOURS, DEFAULT_TIMINGS, SimDevice, type Behaviour, type DeviceTimings } from './device.js';

export const MAX_DEVICES = 5000;

export interface FleetOptions {
  /** mqtts://host:port of the broker. */
  url: string;
  ca: Buffer;
  /** uid → its login (password, or certificate and key). */
  devices: { uid: string; login: Pick<IClientOptions, 'password' | 'cert' | 'key'> }[];
  version: string;
  /** A behaviour per uid; uids not named are 'good'. See behavioursByShare for proportions. */
  behaviourOf?: (uid: string) => Behaviour;
  timings?: Partial<DeviceTimings>;
  /** Devices connecting at the same time while the fleet starts. */
  connectConcurrency?: number;
}

export class Fleet {
  readonly devices: SimDevice[];

  constructor(private readonly options: FleetOptions) {
    if (options.devices.length > MAX_DEVICES) throw new Error(`at most ${MAX_DEVICES} simulated devices, asked for ${options.devices.length}`);
    const timings = { ...DEFAULT_TIMINGS, ...options.timings };
    this.devices = options.devices.map(
      ({ uid, login }) =>
        new SimDevice({ uid, url: options.url, login: { ca: options.ca, ...login }, version: options.version, behaviour: options.behaviourOf?.(uid) ?? 'good', timings }),
    );
  }

  device(uid: string): SimDevice {
    const device = this.devices.find((d) => d.uid === uid);
    if (!device) throw new Error(`no simulated device ${uid}`);
    return device;
  }

  /** Boots every device, a few at a time (each login costs the broker a password hash). */
  async start(): Promise<void> {
    const queue = [...this.devices];
    const workers = Array.from({ length: Math.max(1, this.options.connectConcurrency ?? 10) }, async () => {
      for (let device = queue.shift(); device; device = queue.shift()) await device.start();
    });
    await Promise.all(workers);
  }

  async stop(): Promise<void> {
    await Promise.all(this.devices.map((device) => device.stop()));
  }

  /** The first failure of any device's background work (a bug in the simulator or a broken connection), if any. */
  failure(): unknown {
    return this.devices.find((device) => device.failure !== undefined)?.failure;
  }

  /** Devices per version they run now, and per status. */
  summary(): { versions: Record<string, number>; status: Record<string, number>; offers: Record<string, number>; pushes: Record<string, number>; downloads: number } {
    const versions: Record<string, number> = {};
    const status: Record<string, number> = {};
    const offers: Record<string, number> = {};
    const pushes: Record<string, number> = {};
    let downloads = 0;
    for (const device of this.devices) {
      versions[device.version] = (versions[device.version] ?? 0) + 1;
      status[device.status] = (status[device.status] ?? 0) + 1;
      for (const [imageId, count] of device.log.offers) offers[imageId] = (offers[imageId] ?? 0) + count;
      for (const [imageId, count] of device.log.pushes) pushes[imageId] = (pushes[imageId] ?? 0) + count;
      downloads += device.log.downloaded.length;
    }
    return { versions, status, offers, pushes, downloads };
  }
}

/**
 * Behaviours in the proportions given (e.g. { never_back: 0.1 }), the rest
 * 'good': exactly round(share × n) devices each, spread over the list by
 * taking every k-th device, so the choice is the same on every run.
 */
export function behavioursByShare(uids: readonly string[], shares: Partial<Record<Behaviour, number>>): Map<string, Behaviour> {
  const total = Object.values(shares).reduce((sum, share) => sum + (share ?? 0), 0);
  if (total > 1) throw new Error(`the shares of misbehaving devices add up to ${total}, more than 1`);
  const result = new Map<string, Behaviour>(uids.map((uid) => [uid, 'good']));
  const free = [...uids];
  for (const behaviour of BEHAVIOURS) {
    const count = Math.round((shares[behaviour] ?? 0) * uids.length);
    if (behaviour === 'good' || count === 0) continue;
    const step = free.length / count;
    const chosen = Array.from({ length: count }, (_, i) => free[Math.floor(i * step)]).filter((uid): uid is string => uid !== undefined);
    for (const uid of chosen) result.set(uid, behaviour);
    const taken = new Set(chosen);
    free.splice(0, free.length, ...free.filter((uid) => !taken.has(uid)));
  }
  return result;
}
