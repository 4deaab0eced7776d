import type { Telemetry } from '../events.js';
import type { KvStore } from '../store/index.js';

/**
 * The last N telemetry points per device in the embedded store, for the admin
 * endpoint when no InfluxDB is configured.
 *
 * Key layout (a ring per device, so a write is two keys whatever N is):
 * - `telemetry/recent/<uid>/head`        → `{ seq }`, the sequence number of the newest point
 * - `telemetry/recent/<uid>/slot/<k>`    → `RecentTelemetryPoint`, where `k = seq % N`,
 *                                           zero-padded to 6 digits
 * When N changes, the ring is re-cut by the new N: a few older points may be
 * overwritten early, and points older than the newest N (left in slots beyond
 * the new N) are filtered out by `seq` when listing.
 */
export interface RecentTelemetryPoint {
  uid: string;
  /** Grows by one per point of this device. */
  seq: number;
  /** Milliseconds since the epoch, when the server received it. */
  receivedAt: number;
  telemetry: Telemetry;
}

const PREFIX = 'telemetry/recent/';

export class RecentTelemetry {
  /** The prefix under which one device's points live. */
  static deviceKey(uid: string): string {
    return `${PREFIX}${uid}/`;
  }

  /** Stores a point and makes it the newest; keeps at most `keep` per device (0: stores nothing). */
  static async record(store: KvStore, uid: string, telemetry: Telemetry, receivedAt: number, keep: number): Promise<void> {
    if (keep <= 0) return;
    const base = RecentTelemetry.deviceKey(uid);
    const head = await store.get<{ seq: number }>(`${base}head`);
    const seq = (head?.seq ?? 0) + 1;
    const point: RecentTelemetryPoint = { uid, seq, receivedAt, telemetry };
    await store.batch([
      { type: 'put', key: `${base}slot/${String(seq % keep).padStart(6, '0')}`, value: point },
      { type: 'put', key: `${base}head`, value: { seq } },
    ]);
  }

  /**
   * The newest points of a device, newest first, at most `limit` (and never
   * more than `keep`, the configured N, when given).
   */
  static async list(store: KvStore, uid: string, limit: number, keep = Number.POSITIVE_INFINITY): Promise<RecentTelemetryPoint[]> {
    const base = RecentTelemetry.deviceKey(uid);
    const head = await store.get<{ seq: number }>(`${base}head`);
    if (!head || limit <= 0) return [];
    const oldest = head.seq - Math.min(limit, keep);
    const points: RecentTelemetryPoint[] = [];
    for await (const [, point] of store.entries<RecentTelemetryPoint>(`${base}slot/`)) {
      if (point.seq > oldest && point.seq <= head.seq) points.push(point);
    }
    return points.sort((a, b) => b.seq - a.seq);
  }

  /** Devices that have recent telemetry, in key order. */
  static async devices(store: KvStore): Promise<string[]> {
    const uids: string[] = [];
    for await (const [key] of store.entries(PREFIX)) {
      if (key.endsWith('/head')) uids.push(key.slice(PREFIX.length, -'/head'.length));
    }
    return uids;
  }
}
