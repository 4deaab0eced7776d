import type { Telemetry } from '../events.js';
import { numericFields } from '../protocol/numeric-fields.js';

/** The bounds of the embedded recent telemetry store (README "Device history"). */
export interface TelemetryRingBounds {
  /** How far back a device page's chart reaches. */
  windowMs: number;
  /** Points kept per field of a device. */
  pointsPerField: number;
  /** A point closer than this to the field's newest one replaces it, so `pointsPerField` points span the whole window. */
  minSpacingMs: number;
  /** Numeric fields kept per device; later new fields are not kept. */
  fieldsPerDevice: number;
  /** Points kept over all devices; beyond it the least recently reporting devices' series are dropped. */
  maxPoints: number;
}

/** A device's numeric fields over a window: [ms since epoch, value] points, oldest first. */
export interface TelemetrySeries {
  from: number;
  to: number;
  fields: Record<string, Array<[number, number]>>;
}

export const DEFAULT_TELEMETRY_BOUNDS: TelemetryRingBounds = {
  windowMs: 60 * 60 * 1000,
  pointsPerField: 360,
  minSpacingMs: 10_000,
  fieldsPerDevice: 16,
  maxPoints: 1_000_000,
};

/** One field's last points, oldest first once read: a ring over two growing typed arrays (16 bytes a point). */
class Ring {
  private times: Float64Array;
  private values: Float64Array;
  /** Index of the oldest point. */
  private start = 0;
  /** When the newest slot got its first point: later points within minSpacingMs of it replace it. */
  private slotOpenedAt: number | undefined;
  length = 0;

  constructor(private readonly capacity: number) {
    this.times = new Float64Array(Math.min(8, capacity));
    this.values = new Float64Array(Math.min(8, capacity));
  }

  /** Adds a point; answers how many points the ring holds more than before (0 or 1). */
  push(at: number, value: number, minSpacingMs: number): number {
    if (this.slotOpenedAt !== undefined && at >= this.slotOpenedAt && at - this.slotOpenedAt < minSpacingMs) {
      // Within the spacing of the newest slot's first point: the newest value wins, the slot keeps its place.
      const last = this.index(this.length - 1);
      this.times[last] = at;
      this.values[last] = value;
      return 0;
    }
    this.slotOpenedAt = at;
    if (this.length === this.times.length && this.length < this.capacity) this.grow();
    if (this.length < this.times.length) {
      const slot = this.index(this.length);
      this.times[slot] = at;
      this.values[slot] = value;
      this.length++;
      return 1;
    }
    // Full: the oldest point makes room.
    this.times[this.start] = at;
    this.values[this.start] = value;
    this.start = (this.start + 1) % this.times.length;
    return 0;
  }

  /** Points at or after `from`, oldest first. */
  read(from: number): Array<[number, number]> {
    const points: Array<[number, number]> = [];
    for (let i = 0; i < this.length; i++) {
      const slot = this.index(i);
      const at = this.times[slot] as number;
      if (at >= from) points.push([at, this.values[slot] as number]);
    }
    return points;
  }

  private index(i: number): number {
    return (this.start + i) % this.times.length;
  }

  private grow(): void {
    const size = Math.min(this.capacity, this.times.length * 2);
    const times = new Float64Array(size);
    const values = new Float64Array(size);
    for (let i = 0; i < this.length; i++) {
      times[i] = this.times[this.index(i)] as number;
      values[i] = this.values[this.index(i)] as number;
    }
    this.times = times;
    this.values = values;
    this.start = 0;
  }
}

interface DeviceSeries {
  fields: Map<string, Ring>;
  points: number;
  lastAt: number;
  /** Reported since it was last passed over for eviction (second chance). */
  again: boolean;
}

/**
 * The embedded recent telemetry store of the device pages: the numeric fields
 * of each device over the last hour, in memory. Bounded per field
 * (`pointsPerField`, at least `minSpacingMs` apart), per device
 * (`fieldsPerDevice`) and overall (`maxPoints`): past the overall bound the
 * series of the devices that reported least recently go (down to 95 % of
 * it, so a full store does not sweep on every message), in CLOCK order
 * (a device that reported since it was last passed over gets a second chance),
 * because moving a Map entry to the end on every message costs more than the
 * message.
 */
export class TelemetryRings {
  private readonly devices = new Map<string, DeviceSeries>();
  private totalPoints = 0;

  constructor(private readonly bounds: TelemetryRingBounds = DEFAULT_TELEMETRY_BOUNDS) {}

  record(uid: string, telemetry: Telemetry, at: number): void {
    const fields = numericFields(telemetry);
    if (fields.length === 0) return;
    let series = this.devices.get(uid);
    if (!series) {
      series = { fields: new Map(), points: 0, lastAt: at, again: false };
      this.devices.set(uid, series);
    } else {
      series.again = true;
    }
    series.lastAt = Math.max(series.lastAt, at);
    for (const [name, value] of fields) {
      let ring = series.fields.get(name);
      if (!ring) {
        if (series.fields.size >= this.bounds.fieldsPerDevice) continue;
        ring = new Ring(this.bounds.pointsPerField);
        series.fields.set(name, ring);
      }
      const added = ring.push(at, value, this.bounds.minSpacingMs);
      series.points += added;
      this.totalPoints += added;
    }
    this.evict(uid);
  }

  /** A device's fields over the window ending at `now`, each oldest first. */
  read(uid: string, now: number): TelemetrySeries {
    const from = now - this.bounds.windowMs;
    const fields: Record<string, Array<[number, number]>> = {};
    for (const [name, ring] of this.devices.get(uid)?.fields ?? []) {
      const points = ring.read(from);
      if (points.length > 0) fields[name] = points;
    }
    return { from, to: now, fields };
  }

  forget(uid: string): void {
    const series = this.devices.get(uid);
    if (!series) return;
    this.totalPoints -= series.points;
    this.devices.delete(uid);
  }

  get points(): number {
    return this.totalPoints;
  }

  get deviceCount(): number {
    return this.devices.size;
  }

  private evict(keep: string): void {
    if (this.totalPoints <= this.bounds.maxPoints) return;
    // Down to 95 %: evicting one device per message once the store is full made every message pay a sweep.
    const target = Math.floor(this.bounds.maxPoints * 0.95);
    // One iterator for the whole sweep: a new one per step would scan the deleted slots at the
    // front of the Map again each time (quadratic at 10,000 devices). A device moved to the end
    // is met again by the same iterator, so each one is passed over at most twice.
    let passes = this.devices.size * 2;
    for (const [uid, series] of this.devices) {
      if (this.totalPoints <= target || passes-- <= 0) return;
      this.devices.delete(uid);
      if (uid === keep || series.again) {
        series.again = false;
        this.devices.set(uid, series);
        continue;
      }
      this.totalPoints -= series.points;
    }
  }
}
